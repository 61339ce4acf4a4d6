"""Blocks a Fabric-derived log has taken in (consortium mode).

* ``fabric_blocks``: one row per block of the organisation's own peer that the derived
  log has processed: block number, the block header hash, and the log size after it.
  Written in the same transaction as the block's entries, so a crash never leaves a
  block half taken in; append-only.
"""

import sqlalchemy as sa
from alembic import op

from ledger.store.migrations.ddl import append_only, key, refuse_downgrade

revision, down_revision = "0003", "0002"


def upgrade() -> None:
    op.create_table(
        "fabric_blocks",
        key("number", sa.BigInteger),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    append_only("fabric_blocks")


downgrade = refuse_downgrade
