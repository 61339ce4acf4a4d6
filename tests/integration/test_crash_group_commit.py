"""T14 for large group commits: a writer killed with SIGKILL in the middle of batches of
64 to 400 events loses nothing it acknowledged, and leaves no half-written batch.

Such a batch (``PARALLEL_VERIFY_MIN`` events or more) has its signatures checked in
worker processes while the rules run, and writes its entries, Merkle nodes, refs,
state, state history, state-map nodes and its ONE checkpoint with one multi-row
statement per table, in one transaction, on the store's raw DBAPI cursor. A forked
child appends such batches and prints each acknowledged index; the parent kills it
after a seeded random delay (the kill lands in the rules, in the row writes, in the
commit's fsync or between commit and acknowledgement). After every kill: every
acknowledged index is present, indices are contiguous, the root equals the latest
checkpoint's, SQLite's integrity check passes; at the end the full audit (leaves,
signatures, checkpoints, every Merkle node, the state, its history and the map nodes)
passes, so no kill left any table ahead of or behind the others.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from ledger.core import events as ev
from ledger.service import Custody
from ledger.store import sql as sqlstore
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore
from tests.conftest import LOG_NAME, CountingRandom, FakeClock, actor_key, log_signer
from tests.integration.conftest import build_world
from tests.integration.test_crash import _check, _run_trial

TRIALS = 12
SEED = 20_261_130

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")]


def _child(url: str, label: str, start_ms: int, _batchy: bool, out_fd: int) -> None:
    """Runs in the forked child (the ``_child`` of test_crash, with large batches)."""
    try:
        os.dup2(out_fd, 1)
        clock = FakeClock(start_ms)
        store = SqlStore.open(url, signer=log_signer(), clock=clock)
        svc = Custody(store, origin=LOG_NAME, clock=clock, random=CountingRandom(label))
        admin, court = actor_key("admin"), actor_key("de-court")
        rng = random.Random(label)
        payload = {"artefact": "art-1", "action": "view", "purpose": label,
                   "outcome": "success"}
        while True:
            n = rng.randrange(sqlstore.PARALLEL_VERIFY_MIN, 400)
            batch = [svc.event(ev.ACCESS, admin if i % 3 else court, payload)
                     for i in range(n)]
            for result in store.append_many(batch):
                assert not isinstance(result, BaseException), result
                os.write(1, f"{result.index}\n".encode())
    except BaseException:  # pragma: no cover - reported through the exit status
        os._exit(3)


def test_sigkill_during_large_group_commits_loses_nothing_acknowledged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.integration.test_crash as crash

    monkeypatch.setattr(crash, "_child", _child)
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    build_world(url).close()
    size, last_time = _check(url, set())
    rng = random.Random(SEED)
    acked: set[int] = set()
    for trial in range(TRIALS):
        got = _run_trial(url, f"batch-crash-{trial}", last_time + 1, True,
                         rng.uniform(0.0, 0.6))
        assert got, "the writer acknowledged nothing before it was killed"
        assert got == list(range(size, size + len(got))), "acks not contiguous"
        acked.update(got)
        size, last_time = _check(url, acked)
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()
    assert size >= len(acked) >= TRIALS * sqlstore.PARALLEL_VERIFY_MIN
    store = SqlStore.open(url, signer=None, clock=lambda: 0)
    try:
        report = audit_store(store, log_verifier_key=log_signer().verifier_key)
    finally:
        store.close()
    assert report.ok, report
    assert report.entries_checked == size
