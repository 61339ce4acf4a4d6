"""Blocks a Fabric-derived log has taken in (consortium mode).

* ``fabric_blocks``: one row per block of the organisation's own peer that the derived
  log has processed: block number, the block header hash, and the log size after it.
  Written in the same transaction as the block's entries, so a crash never leaves a
  block half taken in; append-only.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fabric_blocks",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER fabric_blocks_no_{action.lower()} BEFORE {action} ON "
                "fabric_blocks BEGIN SELECT RAISE(ABORT, 'fabric_blocks is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER fabric_blocks_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON fabric_blocks FOR EACH STATEMENT EXECUTE FUNCTION custody_append_only()"
        )
    else:  # pragma: no cover
        raise RuntimeError(f"unsupported database dialect {dialect}")


def downgrade() -> None:
    raise RuntimeError("the ledger schema is append-only and cannot be downgraded")
