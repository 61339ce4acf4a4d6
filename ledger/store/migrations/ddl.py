"""DDL that several revisions share: ledger-assigned key columns and append-only triggers.

The revisions import this module, so what it emits is part of their history: never
change a statement an existing revision runs (``tests/integration/test_migrations.py``
compares the migrated schema with ``ledger.store.schema``). A revision that needs other
DDL writes it itself.

An append-only table refuses ``UPDATE`` and ``DELETE`` (and ``TRUNCATE`` on PostgreSQL)
with a trigger: on SQLite one ``RAISE(ABORT)`` trigger per action, on PostgreSQL one
statement-level trigger calling ``custody_append_only()`` (created by revision 0001),
which raises ``insufficient_privilege``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

__all__ = ["append_only", "create_tree_nodes", "key", "refuse_downgrade"]


def refuse_downgrade() -> None:
    """Every revision's ``downgrade``: the ledger schema only grows (an append-only
    log cannot be taken back to an older shape without losing what it proves)."""
    raise RuntimeError("the ledger schema is append-only and cannot be downgraded")


def key(name: str, type_: Any) -> sa.Column[Any]:
    """A primary-key column whose values the ledger assigns (never autoincremented)."""
    return sa.Column(name, type_, primary_key=True, autoincrement=False)


def create_tree_nodes(name: str, *keys: sa.Column[Any]) -> None:
    """Create a table of hash-tree nodes: ``keys``, then the node's 32-byte ``hash``."""
    op.create_table(name, *keys, sa.Column("hash", sa.LargeBinary(32), nullable=False))


def append_only(*tables: str, create_function: bool = False) -> None:
    """Make each of ``tables`` append-only on the current connection's database.

    ``create_function`` first creates the PostgreSQL trigger function (revision 0001
    only; later revisions' triggers call it). Raises ``RuntimeError`` on a database
    other than SQLite or PostgreSQL."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in tables:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        if create_function:
            op.execute(
                "CREATE FUNCTION custody_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            )
        for table in tables:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION custody_append_only()"
            )
    else:  # pragma: no cover
        raise RuntimeError(f"unsupported database dialect {dialect}")
