"""Alembic environment: run with a connection passed in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from ledger.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via ledger.store.sql.migrate
    raise RuntimeError("run migrations through ledger.store.sql.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
