"""Login challenges already redeemed, shared by every worker process of the API server.

* ``spent_challenges``: the id of each redeemed login challenge (``api.auth``) and when
  the challenge expires (ms). A challenge is single use: its id is inserted in the same
  transaction that decides the login, so of two workers redeeming one challenge the
  second finds the key taken. Rows are deleted once expired (``api.challenges``), so
  the table is not append-only and is not part of the log or of the audit.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spent_challenges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,  # rows in the primary-key B-tree
    )


def downgrade() -> None:
    raise RuntimeError("the ledger schema is append-only and cannot be downgraded")
