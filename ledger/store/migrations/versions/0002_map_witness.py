"""Verifiable state map and witness cosignatures.

* ``state_log``: every write to the world state, append-only (key, log size after the
  batch that wrote it, bucket, canonical value). The state as of any checkpoint is the
  newest row per key with ``size`` <= the checkpoint size; map proofs at old
  checkpoints read it.
* ``map_nodes``: versioned nodes of the state map (see ``ledger/vmap.py``), append-only:
  the node (level, idx) as of tree size N is the row with the largest ``size`` <= N.
* ``cosignatures``: witness cosignature lines (C2SP tlog-cosignature) per checkpoint
  size, append-only.
* ``state.bucket``: the map bucket of each current state key (NULL for keys the map
  does not cover), so a writer can read and verify a whole bucket at once.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("state_log", "map_nodes_v", "cosignatures")


def upgrade() -> None:
    op.add_column("state", sa.Column("bucket", sa.Integer, nullable=True))
    op.create_index("state_bucket", "state", ["bucket"])
    op.create_table(
        "state_log",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.Integer, nullable=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("state_log_bucket", "state_log", ["bucket", "size"])
    op.create_table(
        "map_nodes_v",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(300), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION custody_append_only()"
            )
    else:  # pragma: no cover
        raise RuntimeError(f"unsupported database dialect {dialect}")


def downgrade() -> None:
    raise RuntimeError("the ledger schema is append-only and cannot be downgraded")
