"""The writer's WAL is copied back into the database file off the append path.

A writing SqlStore on SQLite wakes its ``WalCheckpointer`` thread after each commit;
the thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection, so appends no
longer run SQLite's automatic checkpoint (page writes and an fsync of the database file)
inside their commit, whose threshold is raised to ``WAL_AUTOCHECKPOINT`` as a bound.
Checked here: the thread does checkpoint, a reader store starts none, ``close`` stops
it, and a process forked while it works gets a usable SQLite (fork waits for the
thread to leave SQLite, so no lock of a vanished thread is inherited). Durability
under SIGKILL is the crash tests' job (tests/integration/test_crash*.py).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from ledger.store.sql import WAL_AUTOCHECKPOINT, SqlStore
from tests.integration.conftest import World, build_world


@pytest.fixture
def sqlite_world(tmp_path: Path) -> World:
    w = build_world(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield w  # type: ignore[misc]
    w.close()


def _wal_frames(db: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database file)."""
    conn = sqlite3.connect(db)
    try:
        _busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log), int(done)
    finally:
        conn.close()


def test_the_checkpointer_copies_the_wal_after_appends(sqlite_world: World,
                                                       tmp_path: Path) -> None:
    store = sqlite_world.store
    assert store._wal is not None
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == \
            WAL_AUTOCHECKPOINT
    for _ in range(60):
        store.append(sqlite_world.access_event())
    deadline = time.monotonic() + 10
    while store._wal.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store._wal.runs > 0
    thread = store._wal._thread
    assert thread is not None
    assert thread.is_alive()
    store.close()
    assert not thread.is_alive()
    log, done = _wal_frames(tmp_path / "ledger.db")
    assert log == done


def test_a_reading_store_starts_no_checkpointer(sqlite_world: World) -> None:
    reader = SqlStore.open(sqlite_world.url, signer=None, clock=lambda: 0)
    try:
        assert reader._wal is None
        assert reader.size() == sqlite_world.store.size()
    finally:
        reader.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.timeout(120)
def test_a_child_forked_while_it_checkpoints_can_use_sqlite(sqlite_world: World,
                                                            tmp_path: Path) -> None:
    """Each fork follows a commit at once, i.e. while the woken thread checkpoints. (Only
    this thread may be in SQLite at the fork: a fork beside a thread of the caller's own
    that is inside SQLite is unsafe whatever the store does.)"""
    store = sqlite_world.store
    assert store._wal is not None
    store._wal.interval = 0.0
    for _ in range(60):
        for _ in range(3):
            store.append(sqlite_world.access_event())
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                conn = sqlite3.connect(tmp_path / "ledger.db", timeout=5)
                code = 0 if conn.execute("SELECT count(*) FROM entries").fetchone() else 2
                conn.close()
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("a forked child hung in SQLite")
            time.sleep(0.002)
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0
    assert store._wal.runs > 0


def test_an_idle_checkpointer_lets_go_of_the_file(sqlite_world: World, tmp_path: Path) -> None:
    """Idle, the thread closes its connection: the store's own connections are then the
    last ones, and closing them checkpoints and removes the WAL as SQLite always did (a
    CLI command that never closes its store leaves no WAL behind)."""
    store = sqlite_world.store
    assert store._wal is not None
    store._wal.idle = 0.05
    for _ in range(5):
        store.append(sqlite_world.access_event())
    thread = store._wal._thread
    assert thread is not None
    time.sleep(0.5)
    assert thread.is_alive()  # still there, without a connection
    store.engine.dispose()
    store.reader.dispose()
    assert not (tmp_path / "ledger.db-wal").exists()
    store.append(sqlite_world.access_event())  # and it wakes up again
    assert store.size() == 16
