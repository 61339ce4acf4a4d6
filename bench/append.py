"""Durable append, group commit and proof latency of the SQL store (SQLite), with references.

Figures (every one next to a reference measured moments before in the same run):

* ``single``: durable single-event ``SqlStore.append`` on SQLite (WAL, synchronous=FULL),
  events pre-signed so only the store path is timed; rate, p50/p99 latency, and the
  ratio to ``refs.fsync_loop`` (target >= 0.50, p99 <= 2 ms).
* ``group``: ``append_many`` in batches of 500 versus raw batched ``sqlite3`` inserts
  (``refs.sqlite_raw_durable_commit``'s batched figure). Target >= 10k events/s.
* ``proofs``: ``inclusion_proof`` / ``consistency_proof`` p50/p99 at 1M entries (quick:
  20k), on a log built directly (synthetic leaves, nodes from ``merkle.Frontier``,
  ``executemany`` in big transactions). Target p50 <= 1 ms.

Standalone: ``python -m bench append [--quick]``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import refs
from ledger import _sodium, merkle, merkle_verify
from ledger import events as ev
from ledger.evidence import Digests
from ledger.note import NoteSigner
from ledger.service import ActorKey, Custody
from ledger.store.sql import SqlStore, make_engine, migrate

ORIGIN = "bench.example/custody"
TARGET_SINGLE_VS_FSYNC = 0.50
TARGET_P99_MS = 2.0
TARGET_GROUP_RATE = 10_000
TARGET_PROOF_P50_MS = 1.0
BATCH = 500


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _clock() -> int:
    return time.time_ns() // 1_000_000


def _ledger(directory: Path, name: str) -> tuple[SqlStore, Custody, ActorKey]:
    log = NoteSigner(ORIGIN, os.urandom(32))
    store = SqlStore.open(f"sqlite:///{directory / name}", signer=log, clock=_clock,
                          create=True)
    svc = Custody(store, origin=ORIGIN, clock=_clock, random=os.urandom)
    admin = ActorKey("admin", _sodium.Signer(os.urandom(32)))
    svc.genesis(admin, org_id="bka", org_name="BKA", jurisdiction="DE", actor_name="A",
                roles=["admin", "examiner", "custodian", "prosecutor"],
                log_key=log.verifier_key)
    svc.open_case(admin, "CASE-1")
    data = os.urandom(64)
    import hashlib

    digests = Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
                      None, len(data))
    svc.register(admin, case="CASE-1", digests=digests, artefact_id="art-1")
    return store, svc, admin


def _events(svc: Custody, admin: ActorKey, n: int) -> list[ev.SignedEvent]:
    payload = {"artefact": "art-1", "action": "view", "purpose": "benchmark",
               "outcome": "success"}
    return [svc.event(ev.ACCESS, admin, payload) for _ in range(n)]


def single(directory: Path, n: int) -> dict[str, Any]:
    store, svc, admin = _ledger(directory, "single.db")
    try:
        events = _events(svc, admin, n)
        for e in events[:20]:  # warm-up: caches, frontier, statement compilation
            store.append(e)
        latencies: list[float] = []
        start = time.perf_counter()
        for e in events[20:]:
            t0 = time.perf_counter()
            store.append(e)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return {"value": len(latencies) / elapsed, "unit": "events/s",
            "p50_ms": _ms(statistics.median(latencies)), "p99_ms": _ms(_pct(latencies, 0.99)),
            "n": len(latencies),
            "method": "SqlStore.append of pre-signed access events, one transaction and one "
            "signed checkpoint each, SQLite WAL synchronous=FULL"}


def group(directory: Path, batches: int) -> dict[str, Any]:
    store, svc, admin = _ledger(directory, "group.db")
    try:
        prepared = [_events(svc, admin, BATCH) for _ in range(batches + 1)]
        store.append_many(prepared[0])  # warm-up
        latencies: list[float] = []
        start = time.perf_counter()
        for batch in prepared[1:]:
            t0 = time.perf_counter()
            out = store.append_many(batch)
            latencies.append(time.perf_counter() - t0)
            assert all(not isinstance(o, Exception) for o in out)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return {"value": batches * BATCH / elapsed, "unit": "events/s",
            "batch_p50_ms": _ms(statistics.median(latencies)), "batches": batches,
            "method": f"SqlStore.append_many of {BATCH} pre-signed events per transaction "
            "(rules, Merkle nodes, refs, state, one checkpoint), SQLite WAL synchronous=FULL"}


def build_big_log(path: Path, size: int) -> bytes:
    """A migrated ledger DB with ``size`` synthetic entries and all their Merkle nodes.

    Leaves are synthetic (proofs need only nodes); inserted with raw sqlite3
    ``executemany`` in large transactions, synchronous=OFF during the build only.
    Returns the root.
    """
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    frontier = merkle.Frontier.empty()
    chunk = 100_000
    for lo in range(0, size, chunk):
        entries, nodes = [], []
        for i in range(lo, min(size, lo + chunk)):
            leaf = b"synthetic leaf %d" % i
            lh = merkle.leaf_hash(leaf)
            entries.append((i, leaf, lh, f"{i:064x}", 0))
            nodes.extend(frontier.append(lh))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO entries (idx, leaf, leaf_hash, event_id, ledger_time) "
                         "VALUES (?, ?, ?, ?, ?)", entries)
        conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
        conn.execute("COMMIT")
    conn.execute("UPDATE head SET size = ? WHERE id = 1", (size,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return frontier.root()


def proofs(directory: Path, size: int, samples: int, budget_s: float = 60.0) -> dict[str, Any]:
    path = directory / "big.db"
    t0 = time.perf_counter()
    root = build_big_log(path, size)
    build_s = time.perf_counter() - t0
    _log(f"bench append: built a {size}-entry log in {build_s:.1f} s")
    store = SqlStore.open(f"sqlite:///{path}", signer=None, clock=_clock)
    rng = random.Random(6962)
    try:
        assert store.root(size) == root
        inc: list[float] = []
        con: list[float] = []
        deadline = time.perf_counter() + budget_s  # bounded even if proofs are O(n)
        for _ in range(samples):
            if len(inc) >= 20 and time.perf_counter() > deadline:
                break
            i = rng.randrange(size)
            t = time.perf_counter()
            proof = store.inclusion_proof(i, size)
            inc.append(time.perf_counter() - t)
            if len(inc) <= 20:
                merkle_verify.verify_inclusion(store.entry(i).leaf_hash, i, size, proof, root)
            old = rng.randrange(1, size)
            t = time.perf_counter()
            cproof = store.consistency_proof(old, size)
            con.append(time.perf_counter() - t)
            if len(con) <= 20:
                merkle_verify.verify_consistency(old, size, store.root(old), root, cproof)
    finally:
        store.close()
    return {
        "size": size, "samples": len(inc), "build_s": round(build_s, 2),
        "inclusion": {"p50_ms": _ms(statistics.median(inc)), "p99_ms": _ms(_pct(inc, 0.99))},
        "consistency": {"p50_ms": _ms(statistics.median(con)), "p99_ms": _ms(_pct(con, 0.99))},
        "method": "SqlStore.inclusion_proof/consistency_proof at random indices/old sizes "
        "against the full tree (one node query each); first 20 of each verified",
        "target_p50_ms": TARGET_PROOF_P50_MS,
    }


def run(quick: bool) -> dict[str, Any]:
    n_single = 300 if quick else 3000
    batches = 2 if quick else 20
    big = 20_000 if quick else 1_000_000
    samples = 300 if quick else 2000
    with tempfile.TemporaryDirectory(prefix="bench-append-",
                                     dir=os.environ.get("BENCH_TMPDIR")) as tmp:
        d = Path(tmp)
        _log("bench append: fsync-loop reference ...")
        fsync = refs.fsync_loop(d, n_single)
        _log("bench append: single durable appends ...")
        one = single(d, n_single)
        _log("bench append: raw sqlite reference ...")
        raw = refs.sqlite_raw_durable_commit(d, n_single)
        _log("bench append: group commit ...")
        grp = group(d, batches)
        _log("bench append: proofs ...")
        prf = proofs(d, big, samples)
    return {
        "single_vs_fsync": round(one["value"] / fsync["value"], 3),
        "single_p99_ms": one["p99_ms"],
        "group_vs_raw_batched": round(grp["value"] / raw["batched"]["value"], 3),
        "group_events_per_s": round(grp["value"]),
        "inclusion_p50_ms": prf["inclusion"]["p50_ms"],
        "consistency_p50_ms": prf["consistency"]["p50_ms"],
        "targets": {"single_vs_fsync": TARGET_SINGLE_VS_FSYNC, "single_p99_ms": TARGET_P99_MS,
                    "group_events_per_s": TARGET_GROUP_RATE,
                    "proof_p50_ms": TARGET_PROOF_P50_MS},
        "single": one, "group": grp, "proofs": prf,
        "references": {"fsync_loop": fsync, "sqlite_raw_durable_commit": raw},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
