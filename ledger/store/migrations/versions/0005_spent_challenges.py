"""Login challenges already redeemed, shared by every worker process of the API server.

* ``spent_challenges``: the id of each redeemed login challenge (``api.auth``) and when
  the challenge expires (ms). A challenge is single use: its id is inserted in the same
  transaction that decides the login, so of two workers redeeming one challenge the
  second finds the key taken. Rows are deleted once expired (``api.challenges``), so
  the table is not append-only and is not part of the log or of the audit.
"""

import sqlalchemy as sa
from alembic import op

from ledger.store.migrations.ddl import refuse_downgrade

revision, down_revision = "0005", "0004"


def upgrade() -> None:
    op.create_table(
        "spent_challenges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,  # rows in the primary-key B-tree
    )


downgrade = refuse_downgrade
