"""Migration 0004 (clustered log tables on SQLite, a partial state index) upgrades an
existing ledger in place and keeps it readable, auditable and writable.

A ledger is written at revision 0003 (the layout before this revision: every table with
a rowid and a separate key index), then ``migrate`` brings it to the newest revision.
Every row of every table is unchanged, the audit passes, proofs and receipts are the
same, the append-only triggers are back, and appends continue from where the log was.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext

from ledger.core.errors import LedgerError
from ledger.store.audit_sql import audit_store
from ledger.store.schema import APPEND_ONLY
from ledger.store.sql import MIGRATIONS, make_engine, migrate
from tests.conftest import FakeClock
from tests.integration.conftest import build_world, reopen_world

TABLES = ("entries", "checkpoints", "merkle_nodes", "refs", "state", "state_log",
          "map_nodes_v", "cosignatures", "fabric_blocks", "head")


def _upgrade_to(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def _dump(url: str) -> dict[str, list[Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {table: sorted(tuple(bytes(v) if isinstance(v, memoryview) else v
                                        for v in row)
                                  for row in conn.exec_driver_sql(
                                      f"SELECT * FROM {table}"))  # noqa: S608
                    for table in TABLES}
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_a_0003_ledger_upgrades_in_place(db_url: str, backend: str) -> None:
    _upgrade_to(db_url, "0003")
    assert _revision(db_url) == "0003"
    w = build_world(db_url, FakeClock(), create=False)
    for _ in range(30):
        w.store.append(w.access_event())
    w.store.append_many([w.access_event(w.court) for _ in range(70)])  # checked by workers
    receipt = w.store.append(w.access_event())
    size = w.store.size()
    picks = (0, 7, size // 2, size - 1)
    proofs = [w.store.inclusion_proof(i, size) for i in picks]
    consistency = w.store.consistency_proof(11, size)
    assert audit_store(w.store).ok
    w.close()
    before = _dump(db_url)

    engine = make_engine(db_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    assert _revision(db_url) == "0005"  # 0004, then 0005 (spent login challenges, no rows)
    assert _dump(db_url) == before  # every row of every table, byte for byte

    w = reopen_world(db_url, w.clock, w)
    try:
        report = audit_store(w.store)
        assert report.ok, report
        assert report.entries_checked == size
        assert [w.store.inclusion_proof(i, size) for i in picks] == proofs
        assert w.store.consistency_proof(11, size) == consistency
        again = w.store.receipt(receipt.event_id)
        assert again is not None
        assert (again.index, again.leaf_hash, again.checkpoint) == \
            (receipt.index, receipt.leaf_hash, receipt.checkpoint)
        # Writable from where it was: single appends and a group commit.
        assert w.store.append(w.access_event()).index == size
        out = w.store.append_many([w.access_event() for _ in range(80)])
        assert [o.index for o in out if not isinstance(o, LedgerError)] == \
            list(range(size + 1, size + 81))
        assert audit_store(w.store).ok
        # The append-only triggers came back with the rebuilt tables (the empty ones,
        # cosignatures and fabric_blocks, were not rebuilt).
        for table in sorted(set(APPEND_ONLY) - {"cosignatures", "fabric_blocks"}):
            with pytest.raises(sa.exc.DBAPIError), w.store.engine.begin() as conn:
                conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - constant names
    finally:
        w.close()
    if backend == "sqlite":
        _check_sqlite_layout(db_url)


def _check_sqlite_layout(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ddl = dict(conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").all())
            for table in ("merkle_nodes", "refs", "state", "state_log", "map_nodes_v"):
                assert "WITHOUT ROWID" in ddl[table], table
            for table, key in (("entries", "idx"), ("checkpoints", "size")):
                assert f"{key} INTEGER NOT NULL" in ddl[table], ddl[table]
            assert "WHERE bucket IS NOT NULL" in ddl["state_bucket"]
            assert not [n for n in ddl if n.startswith("_old_")]
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT key, value FROM state WHERE bucket = 7"))
            assert "state_bucket" in plan, plan
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    finally:
        engine.dispose()
