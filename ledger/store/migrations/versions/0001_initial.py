"""Initial schema: entries, Merkle nodes, checkpoints, refs, state, head; append-only triggers."""

import sqlalchemy as sa
from alembic import op

from ledger.store.migrations.ddl import append_only, create_tree_nodes, key, refuse_downgrade

revision, down_revision = "0001", None

APPEND_ONLY = ("entries", "merkle_nodes", "checkpoints", "refs")


def upgrade() -> None:
    op.create_table(
        "entries",
        key("idx", sa.BigInteger),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("ledger_time", sa.BigInteger, nullable=False),
    )
    create_tree_nodes("merkle_nodes", key("level", sa.SmallInteger), key("idx", sa.BigInteger))
    op.create_table(
        "checkpoints",
        key("size", sa.BigInteger),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "refs",
        sa.Column("ref", sa.String(80), primary_key=True),
        key("idx", sa.BigInteger),
    )
    op.create_table(
        "state",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "head",
        key("id", sa.Integer),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_time", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO head (id, size, last_time) VALUES (1, 0, 0)")
    append_only(*APPEND_ONLY, create_function=True)


downgrade = refuse_downgrade
