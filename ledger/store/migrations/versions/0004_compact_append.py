"""Fewer pages per append: clustered log tables on SQLite, a narrower state index.

An append writes one row or more into seven tables in one transaction, and every B-tree
page it touches is one more page in the WAL before the commit's fsync. Before this
revision SQLite kept each of those tables twice: a hidden rowid table plus a separate
index for the declared primary key. Same columns, same keys, same triggers afterwards;
only the physical layout changes:

* SQLite: ``entries.idx`` and ``checkpoints.size`` become ``INTEGER PRIMARY KEY`` (the
  rowid itself, so no separate key index), and ``merkle_nodes``, ``refs``, ``state``,
  ``state_log`` and ``map_nodes_v`` become ``WITHOUT ROWID`` tables (the rows live in
  the primary-key B-tree). The tables are rebuilt, rows copied in key order, and the
  append-only triggers recreated.
* Both backends: ``state_bucket`` only indexes rows that have a bucket
  (``WHERE bucket IS NOT NULL``): the per-event ``nonce/`` records have none and were
  one index insert each for nothing. ``WHERE bucket = ?`` implies it, so the planners
  still use the index.

A ledger created before this revision is upgraded in place by ``migrate`` (one copy of
each rebuilt table, in the migration's transaction).
"""

import sqlalchemy as sa
from alembic import op

from ledger.store.migrations.ddl import append_only, key, refuse_downgrade

revision, down_revision = "0004", "0003"

_APPEND_ONLY = ("entries", "merkle_nodes", "checkpoints", "refs", "state_log", "map_nodes_v")
_BUCKET_WHERE = sa.text("bucket IS NOT NULL")


def _tables() -> dict[str, tuple[list[sa.Column], dict[str, object], str]]:
    """New SQLite layout: columns, table options, and the key order for the copy."""
    no_rowid = {"sqlite_with_rowid": False}
    return {
        "entries": ([
            key("idx", sa.Integer),
            sa.Column("leaf", sa.LargeBinary, nullable=False),
            sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False, unique=True),
            sa.Column("ledger_time", sa.BigInteger, nullable=False),
        ], {}, "idx"),
        "checkpoints": ([
            key("size", sa.Integer),
            sa.Column("note", sa.Text, nullable=False),
        ], {}, "size"),
        "merkle_nodes": ([
            key("level", sa.SmallInteger),
            key("idx", sa.BigInteger),
            sa.Column("hash", sa.LargeBinary(32), nullable=False),
        ], no_rowid, "level, idx"),
        "refs": ([
            sa.Column("ref", sa.String(80), primary_key=True),
            key("idx", sa.BigInteger),
        ], no_rowid, "ref, idx"),
        "state": ([
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
            sa.Column("idx", sa.BigInteger, nullable=False),
            sa.Column("bucket", sa.Integer, nullable=True),
        ], no_rowid, "key"),
        "state_log": ([
            sa.Column("key", sa.String(200), primary_key=True),
            key("size", sa.BigInteger),
            sa.Column("bucket", sa.Integer, nullable=True),
            sa.Column("value", sa.Text, nullable=False),
        ], no_rowid, "key, size"),
        "map_nodes_v": ([
            key("level", sa.SmallInteger),
            key("idx", sa.Integer),
            key("size", sa.BigInteger),
            sa.Column("hash", sa.LargeBinary(32), nullable=False),
        ], no_rowid, "level, idx, size"),
    }


def _sqlite() -> None:
    op.drop_index("state_bucket", table_name="state")
    op.drop_index("state_log_bucket", table_name="state_log")
    for name, (columns, options, order) in _tables().items():
        names = ", ".join(c.name for c in columns)
        op.rename_table(name, f"_old_{name}")  # its triggers go with it
        op.create_table(name, *columns, **options)  # type: ignore[arg-type]
        op.execute(f"INSERT INTO {name} ({names}) SELECT {names} "  # noqa: S608 - constants
                   f"FROM _old_{name} ORDER BY {order}")
        op.drop_table(f"_old_{name}")
    op.create_index("state_bucket", "state", ["bucket"], sqlite_where=_BUCKET_WHERE)
    op.create_index("state_log_bucket", "state_log", ["bucket", "size"])
    append_only(*_APPEND_ONLY)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite()
    elif dialect == "postgresql":
        op.drop_index("state_bucket", table_name="state")
        op.create_index("state_bucket", "state", ["bucket"], postgresql_where=_BUCKET_WHERE)
    else:  # pragma: no cover
        raise RuntimeError(f"unsupported database dialect {dialect}")


downgrade = refuse_downgrade
