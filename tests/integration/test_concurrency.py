"""T13: racing custody transfers and concurrent writers.

16 threads each hold a dispatch of the SAME artefact signed against the SAME head; a
barrier releases them together. Exactly one may win; the other 15 must get
:class:`Conflict` (``stale-head`` or ``open-dispatch``), the log grows by one and the
artefact's chain stays linear. Run with one shared SqlStore and with one store (own
engine and pool) per thread, on SQLite (file) and PostgreSQL. Then two OS processes
append 200 events each to one SQLite file.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from ledger.core import events as ev
from ledger.core import merkle
from ledger.core.checkpoint import verify_checkpoint
from ledger.core.errors import Conflict
from ledger.service import Custody
from ledger.store.base import AppendResult
from ledger.store.sql import SqlStore
from tests.conftest import LOG_NAME, CountingRandom, FakeClock, actor_key, log_signer
from tests.integration.conftest import WORLD_SIZE, World, build_world

THREADS = 16

pytestmark = pytest.mark.timeout(120)


def _race(world: World, separate_stores: bool) -> list[AppendResult | BaseException]:
    head = world.head()
    prepared = [world.dispatch_event(prev=head) for _ in range(THREADS)]
    assert len({s.event_id for s in prepared}) == THREADS
    stores = [world.open_store() if separate_stores else world.store for _ in range(THREADS)]
    for s in stores:  # warm every pool so the race is about the append, not connecting
        s.size()
    barrier = threading.Barrier(THREADS)
    outcomes: list[AppendResult | BaseException] = [RuntimeError("not run")] * THREADS

    def worker(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[i] = stores[i].append(prepared[i])
        except BaseException as exc:  # collected and asserted on below
            outcomes[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
        assert not t.is_alive()
    return outcomes


def _chain(world: World, artefact: str) -> list[ev.Entry]:
    """The artefact's custody chain, walked back from its head through ``prev``."""
    by_id = {}
    for stored in world.store.entries():
        entry = ev.Entry.from_leaf(stored.leaf)
        by_id[entry.signed.event_id] = entry
    chain = []
    cursor: str | None = world.head(artefact)
    while cursor:
        entry = by_id[cursor]
        chain.append(entry)
        cursor = entry.signed.event.prev
    chain.reverse()
    return chain


@pytest.mark.parametrize("separate_stores", [False, True], ids=["shared-store", "store-per-thread"])
def test_sixteen_racing_dispatches_exactly_one_wins(world: World, separate_stores: bool) -> None:
    before = world.store.size()
    outcomes = _race(world, separate_stores)
    winners = [o for o in outcomes if isinstance(o, AppendResult)]
    losers = [o for o in outcomes if not isinstance(o, AppendResult)]
    assert len(winners) == 1, outcomes
    assert len(losers) == THREADS - 1
    for exc in losers:
        assert isinstance(exc, Conflict), repr(exc)
        assert exc.rule in {"stale-head", "open-dispatch"}
    assert world.store.size() == before + 1
    (win,) = winners
    assert win.index == before
    assert not win.duplicate
    art = world.store.state("art/" + world.art)
    assert art is not None
    assert art["open_transfer"] == win.result["transfer"]
    assert art["head"] == win.event_id
    open_transfers = [k for k, v in world.store.state_items("tr/") if v["status"] == "open"]
    assert open_transfers == ["tr/" + win.result["transfer"]]
    chain = _chain(world, world.art)
    assert [e.signed.event.kind for e in chain] == [ev.ARTEFACT_REGISTER, ev.DISPATCH]
    assert chain[-1].index == win.index
    # The checkpoint returned to the winner covers exactly the new log.
    cp = verify_checkpoint(win.checkpoint, world.log.verifier_key)
    assert cp.size == before + 1
    assert cp.root == world.store.root(cp.size)


# ---- two OS processes on one SQLite file --------------------------------------------------------


def _writer(url: str, label: str, n: int, start_ms: int) -> list[int]:
    """Child process: append ``n`` access events through its own store; return indices."""
    clock = FakeClock(start_ms)
    store = SqlStore.open(url, signer=log_signer(), clock=clock)
    svc = Custody(store, origin=LOG_NAME, clock=clock, random=CountingRandom(label))
    admin = actor_key("admin")
    try:
        return [svc.access(admin, artefact="art-1", action="view", purpose=label).index
                for _ in range(n)]
    finally:
        store.close()


def test_two_processes_append_200_each_to_one_sqlite_file(tmp_path: Path) -> None:
    world = build_world(f"sqlite:///{tmp_path / 'ledger.db'}")
    world.store.close()
    per_process = 200
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(_writer, (world.url, f"proc-{p}", per_process, world.clock.now))
                for p in range(2)]
        got: list[list[int]] = [j.get(timeout=100) for j in jobs]
    assert all(len(g) == per_process for g in got)
    assert all(g == sorted(g) for g in got)
    assert set(got[0]).isdisjoint(got[1])
    total = WORLD_SIZE + 2 * per_process
    assert sorted(got[0] + got[1]) == list(range(WORLD_SIZE, total))
    _audit(world, total)


def _audit(world: World, expected_size: int) -> None:
    """Audit-style recomputation: leaves, contiguity, root vs the signed checkpoint."""
    store = world.store
    hashes: list[bytes] = []
    last_time = 0
    for i, stored in enumerate(store.entries()):
        assert stored.index == i
        entry = ev.Entry.from_leaf(stored.leaf)
        assert entry.index == i
        assert merkle.leaf_hash(stored.leaf) == stored.leaf_hash
        assert entry.ledger_time >= last_time
        last_time = entry.ledger_time
        hashes.append(stored.leaf_hash)
    assert len(hashes) == store.size() == expected_size
    note = store.latest_checkpoint()
    assert note is not None
    cp = verify_checkpoint(note, world.log.verifier_key)
    assert cp.size == expected_size
    assert merkle.root(hashes) == cp.root




def test_sqlite_reader_is_not_blocked_by_a_writer(tmp_path: Path) -> None:
    """Found by this suite: every SQLite transaction, reads included, used to start with
    BEGIN IMMEDIATE, so readers waited for the writer lock (WAL snapshots unused)."""
    import sqlite3

    world = build_world(f"sqlite:///{tmp_path / 'ledger.db'}")
    writer = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process is mid-append
        done = threading.Event()
        result: list[int] = []

        def read() -> None:
            result.append(world.store.size())
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(2.0), "a reader waited for the writer's lock"
        assert result == [WORLD_SIZE]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        world.close()
