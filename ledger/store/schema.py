"""Table definitions used by queries. Alembic migrations are the only schema source;
``tests/integration/test_migrations.py`` fails if these and the migrations differ.

Physical layout on SQLite (migration 0004): ``entries`` and ``checkpoints`` are keyed by
the rowid itself (``INTEGER PRIMARY KEY``), the other log tables are ``WITHOUT ROWID``
(rows stored in the primary-key B-tree), so an append writes each row once instead of
once in a rowid table and again in a key index."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.schema import SchemaItem
from sqlalchemy.types import TypeEngine

metadata = MetaData()

#: BIGINT on PostgreSQL; on SQLite the rowid itself (``INTEGER PRIMARY KEY``).
RowKey = BigInteger().with_variant(Integer(), "sqlite")


def _key(name: str, type_: TypeEngine[Any] | type[TypeEngine[Any]]) -> Column[Any]:
    """A primary-key column whose values the ledger assigns (never autoincremented)."""
    return Column(name, type_, primary_key=True, autoincrement=False)


def _clustered(name: str, *items: SchemaItem) -> Table:
    """A table whose rows live in its primary-key B-tree on SQLite (``WITHOUT ROWID``)."""
    return Table(name, metadata, *items, sqlite_with_rowid=False)


def _tree_nodes(name: str, *keys: Column[Any]) -> Table:
    """Append-only nodes of a hash tree: the 32-byte ``hash`` of each node under ``keys``."""
    return _clustered(name, *keys, Column("hash", LargeBinary(32), nullable=False))


#: Append-only. One row per log entry; ``leaf`` is the exact leaf bytes L.
entries = Table(
    "entries", metadata,
    _key("idx", RowKey),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("ledger_time", BigInteger, nullable=False),
)

#: Append-only. Perfect Merkle subtree hashes: (level, index) covers leaves
#: [index * 2**level, (index + 1) * 2**level). Proofs read O(log n) of these.
nodes = _tree_nodes("merkle_nodes", _key("level", SmallInteger), _key("idx", BigInteger))

#: Append-only. One signed checkpoint (C2SP signed note) per committed transaction.
checkpoints = Table(
    "checkpoints", metadata,
    _key("size", RowKey),
    Column("note", Text, nullable=False),
)

#: Append-only. Which entries concern which object (artefact, case, transfer, actor...).
refs = _clustered(
    "refs",
    Column("ref", String(80), primary_key=True),
    _key("idx", BigInteger),
)

#: Derived world state (the custody rules' key/value records). Mutable, recomputed and
#: compared by audit.
state = _clustered(
    "state",
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("bucket", Integer, nullable=True, index=False),
    # Only mapped keys have a bucket; the per-event nonce/ rows stay out of the index.
    # (Migration 0004 gives it the same WHERE on PostgreSQL; not declared here, so that
    # a process on SQLite never imports SQLAlchemy's PostgreSQL dialect.)
    Index("state_bucket", "bucket", sqlite_where=text("bucket IS NOT NULL")),
)

#: Append-only. Every state write: (key, log size after its batch, map bucket, value).
#: The state as of tree size N is the newest row per key with ``size`` <= N.
state_log = _clustered(
    "state_log",
    Column("key", String(200), primary_key=True),
    _key("size", BigInteger),
    Column("bucket", Integer, nullable=True),
    Column("value", Text, nullable=False),
    Index("state_log_bucket", "bucket", "size"),
)

#: Append-only. Versioned state-map nodes (``ledger/core/vmap.py``): node (level, idx) as of
#: tree size N is the row with the largest ``size`` <= N; a missing node is empty.
map_nodes = _tree_nodes("map_nodes_v", _key("level", SmallInteger), _key("idx", Integer),
                       _key("size", BigInteger))

#: Append-only. Witness cosignature lines (C2SP tlog-cosignature) by checkpoint size.
cosignatures = Table(
    "cosignatures", metadata,
    _key("size", BigInteger),
    Column("witness", String(300), primary_key=True),
    Column("line", Text, nullable=False),
)

#: Append-only. Consortium mode: the Fabric blocks this derived log has taken in.
fabric_blocks = Table(
    "fabric_blocks", metadata,
    _key("number", BigInteger),
    Column("hash", LargeBinary(32), nullable=False),
    Column("size", BigInteger, nullable=False),
)

#: Single row: size and last ledger time. Also the row writers lock on PostgreSQL.
head = Table(
    "head", metadata,
    _key("id", Integer),
    Column("size", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=False),
)

#: Not part of the log: ids of the login challenges already redeemed (``api.challenges``,
#: revision 0005), so that every worker process of the API sees them; deleted once expired.
spent_challenges = _clustered(
    "spent_challenges",
    Column("id", String(64), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
)

APPEND_ONLY = ("entries", "merkle_nodes", "checkpoints", "refs", "state_log", "map_nodes_v",
               "cosignatures", "fabric_blocks")
