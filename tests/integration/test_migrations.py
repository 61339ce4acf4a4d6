"""Alembic is the only schema source: the migrated database must equal the models.

``compare_metadata`` between a freshly migrated database and
``ledger.store.schema.metadata`` must find no difference (types included), so a change
to one without the other fails here. Downgrading the append-only schema is refused.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from ledger.store.schema import APPEND_ONLY, metadata
from ledger.store.sql import MIGRATIONS, make_engine, migrate


def _config(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@pytest.fixture
def engine(db_url: str) -> Any:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _diff(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "compare_server_default": True})
        return list(compare_metadata(ctx, metadata))


def test_upgrade_head_matches_the_models(engine: sa.Engine) -> None:
    migrate(engine)
    assert _diff(engine) == []
    head = ScriptDirectory.from_config(_config(None)).get_current_head()  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
        assert conn.execute(sa.text("SELECT id, size, last_time FROM head")).all() == [(1, 0, 0)]
    migrate(engine)  # idempotent: upgrading an up-to-date database changes nothing
    assert _diff(engine) == []


def test_comparison_detects_a_model_drift(engine: sa.Engine) -> None:
    """The check above is not vacuous: a column the migrations lack is reported."""
    migrate(engine)
    drifted = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    sa.Table("entries", drifted, sa.Column("extra", sa.Integer), extend_existing=True)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), drifted)
    assert any(d[0] == "add_column" and d[3].name == "extra" for d in diff), diff


def test_append_only_triggers_are_installed(engine: sa.Engine, backend: str) -> None:
    migrate(engine)
    with engine.connect() as conn:
        if backend == "sqlite":
            rows = conn.execute(sa.text(
                "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")).all()
        else:
            rows = conn.execute(sa.text(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c "
                "ON c.oid = t.tgrelid WHERE NOT t.tgisinternal")).all()
    assert {table for table, _ in rows} == set(APPEND_ONLY)


def test_downgrade_is_refused(engine: sa.Engine) -> None:
    migrate(engine)
    with pytest.raises(RuntimeError, match="cannot be downgraded"), engine.begin() as conn:
        command.downgrade(_config(conn), "base")
    assert _diff(engine) == []
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None
