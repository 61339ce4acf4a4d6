"""``audit_store`` with its worker processes, on SQLite and PostgreSQL: the same report as
with none, and a tampered signature named at its exact index."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.audit import build
from ledger.core import audit as audit_mod
from ledger.core import events as ev
from ledger.core import merkle
from ledger.store import audit_sql
from ledger.store.audit_sql import audit_store
from ledger.store.schema import APPEND_ONLY
from ledger.store.sql import SqlStore

N = 700


@pytest.fixture
def store(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlStore]:
    monkeypatch.setattr(audit_sql, "PARALLEL_MIN", 1)  # workers even for this small log
    monkeypatch.setattr(audit_mod, "CHUNK", 64)
    monkeypatch.setattr(audit_mod, "AHEAD", 256)
    built = build(tmp_path, N, db_url if db_url.startswith("postgresql") else None)
    yield built
    built.close()


def _drop_triggers(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in APPEND_ONLY:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            for name in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars().all():
                conn.exec_driver_sql(f'DROP TRIGGER "{name}"')


def _forge_signature(store: SqlStore, index: int) -> None:
    """Flip a bit of entry ``index``'s signature; the leaf hash is recomputed to match."""
    with store.engine.connect() as conn:
        leaf = bytes(conn.execute(sa.text("SELECT leaf FROM entries WHERE idx = :i"),
                                  {"i": index}).scalar_one())
    entry = ev.Entry.from_leaf(leaf)
    sig = bytearray(entry.signed.signature)
    sig[3] ^= 1
    forged = ev.Entry(entry.index, entry.ledger_time,
                      ev.SignedEvent(entry.signed.event, bytes(sig))).leaf_bytes()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE entries SET leaf = :l, leaf_hash = :h WHERE idx = :i"),
                     {"l": forged, "h": merkle.leaf_hash(forged), "i": index})


def test_workers_give_the_one_process_report(store: SqlStore) -> None:
    seen: list[int] = []
    parallel = audit_store(store, workers=2, progress=seen.append)
    assert parallel.ok, parallel
    assert parallel == audit_store(store, workers=0)
    assert seen[-1] == N
    _drop_triggers(store)
    for k in random.Random(5).sample(range(N), 3):
        _forge_signature(store, k)
    first = audit_store(store, workers=0)
    assert (first.kind, first.first_bad_index) == ("signature", first.entries_checked)
    assert audit_store(store, workers=2) == first


def test_a_forged_signature_deep_in_the_log_is_named_at_its_index(store: SqlStore) -> None:
    _drop_triggers(store)
    _forge_signature(store, 611)
    report = audit_store(store, workers=2)
    assert (report.ok, report.kind, report.first_bad_index) == (False, "signature", 611)
    assert report.detail.startswith("entry 611 is refused by rule 'signature'")
