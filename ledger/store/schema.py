"""Table definitions used by queries. Alembic migrations are the only schema source;
``tests/integration/test_migrations.py`` fails if these and the migrations differ.

Physical layout on SQLite (migration 0004): ``entries`` and ``checkpoints`` are keyed by
the rowid itself (``INTEGER PRIMARY KEY``), the other log tables are ``WITHOUT ROWID``
(rows stored in the primary-key B-tree), so an append writes each row once instead of
once in a rowid table and again in a key index."""

from __future__ import annotations

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

metadata = MetaData()

#: BIGINT on PostgreSQL; on SQLite the rowid itself (``INTEGER PRIMARY KEY``).
RowKey = BigInteger().with_variant(Integer(), "sqlite")

#: Append-only. One row per log entry; ``leaf`` is the exact leaf bytes L.
entries = Table(
    "entries", metadata,
    Column("idx", RowKey, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("ledger_time", BigInteger, nullable=False),
)

#: Append-only. Perfect Merkle subtree hashes: (level, index) covers leaves
#: [index * 2**level, (index + 1) * 2**level). Proofs read O(log n) of these.
nodes = Table(
    "merkle_nodes", metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,  # rows in the primary-key B-tree
)

#: Append-only. One signed checkpoint (C2SP signed note) per committed transaction.
checkpoints = Table(
    "checkpoints", metadata,
    Column("size", RowKey, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
)

#: Append-only. Which entries concern which object (artefact, case, transfer, actor...).
refs = Table(
    "refs", metadata,
    Column("ref", String(80), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,  # rows in the primary-key B-tree
)

#: Derived world state (the custody rules' key/value records). Mutable, recomputed and
#: compared by audit.
state = Table(
    "state", metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("bucket", Integer, nullable=True, index=False),
    # Only mapped keys have a bucket; the per-event nonce/ rows stay out of the index.
    # (Migration 0004 gives it the same WHERE on PostgreSQL; not declared here, so that
    # a process on SQLite never imports SQLAlchemy's PostgreSQL dialect.)
    Index("state_bucket", "bucket", sqlite_where=text("bucket IS NOT NULL")),
    sqlite_with_rowid=False,  # rows in the primary-key B-tree
)

#: Append-only. Every state write: (key, log size after its batch, map bucket, value).
#: The state as of tree size N is the newest row per key with ``size`` <= N.
state_log = Table(
    "state_log", metadata,
    Column("key", String(200), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("bucket", Integer, nullable=True),
    Column("value", Text, nullable=False),
    Index("state_log_bucket", "bucket", "size"),
    sqlite_with_rowid=False,  # rows in the primary-key B-tree
)

#: Append-only. Versioned state-map nodes (``ledger/vmap.py``): node (level, idx) as of
#: tree size N is the row with the largest ``size`` <= N; a missing node is empty.
map_nodes = Table(
    "map_nodes_v", metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,  # rows in the primary-key B-tree
)

#: Append-only. Witness cosignature lines (C2SP tlog-cosignature) by checkpoint size.
cosignatures = Table(
    "cosignatures", metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(300), primary_key=True),
    Column("line", Text, nullable=False),
)

#: Append-only. Consortium mode: the Fabric blocks this derived log has taken in.
fabric_blocks = Table(
    "fabric_blocks", metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("size", BigInteger, nullable=False),
)

#: Single row: size and last ledger time. Also the row writers lock on PostgreSQL.
head = Table(
    "head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=False),
)

APPEND_ONLY = ("entries", "merkle_nodes", "checkpoints", "refs", "state_log", "map_nodes_v",
               "cosignatures", "fabric_blocks")
