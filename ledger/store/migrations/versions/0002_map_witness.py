"""Verifiable state map and witness cosignatures.

* ``state_log``: every write to the world state, append-only (key, log size after the
  batch that wrote it, bucket, canonical value). The state as of any checkpoint is the
  newest row per key with ``size`` <= the checkpoint size; map proofs at old
  checkpoints read it.
* ``map_nodes``: versioned nodes of the state map (see ``ledger/core/vmap.py``), append-only:
  the node (level, idx) as of tree size N is the row with the largest ``size`` <= N.
* ``cosignatures``: witness cosignature lines (C2SP tlog-cosignature) per checkpoint
  size, append-only.
* ``state.bucket``: the map bucket of each current state key (NULL for keys the map
  does not cover), so a writer can read and verify a whole bucket at once.
"""

import sqlalchemy as sa
from alembic import op

from ledger.store.migrations.ddl import append_only, create_tree_nodes, key, refuse_downgrade

revision, down_revision = "0002", "0001"

APPEND_ONLY = ("state_log", "map_nodes_v", "cosignatures")


def upgrade() -> None:
    op.add_column("state", sa.Column("bucket", sa.Integer, nullable=True))
    op.create_index("state_bucket", "state", ["bucket"])
    op.create_table(
        "state_log",
        sa.Column("key", sa.String(200), primary_key=True),
        key("size", sa.BigInteger),
        sa.Column("bucket", sa.Integer, nullable=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("state_log_bucket", "state_log", ["bucket", "size"])
    create_tree_nodes("map_nodes_v", key("level", sa.SmallInteger), key("idx", sa.Integer),
                      key("size", sa.BigInteger))
    op.create_table(
        "cosignatures",
        key("size", sa.BigInteger),
        sa.Column("witness", sa.String(300), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
    )
    append_only(*APPEND_ONLY)


downgrade = refuse_downgrade
