"""Audit throughput versus raw Ed25519 verification, measured in the same run.

Builds a ledger of N events on SQLite (quick: 2,000; full: 50,000) through
``SqlStore.append_many`` in batches, then times ``audit_store`` over it (every step on:
leaf hashes, canonical parsing, signatures and custody rules replayed, checkpoints,
consistency proofs, stored nodes, state). Each audited entry costs at least one Ed25519
verification, so the physical reference is PyNaCl's verify rate on the same machine:

* ``audit_entries_per_s``: entries audited per second, with one worker process per core
  (``audit_store(workers=cores)``: leaf parsing and signatures in the workers).
* ``audit_vs_verify_x_cores``: that rate / (``bench.refs.pynacl_verify_rate`` × cores),
  the target ratio: 1.0 would mean the audit costs no more than its signature checks
  spread over every core.
* ``audit_vs_verify``: the rate / one core's verify rate (the figure of earlier runs).
* ``audit_one_process_entries_per_s``: the same audit with ``workers=0`` (everything in
  one process), measured in the same run.
* ``references.parallel_verify``: raw triples through ``ledger.parallel_verify`` over
  every core: what the machine gives for signatures alone.
* ``cpu_us_per_entry``: CPU time per entry of the replaying process (its threads
  included) and of the worker processes, and their total (``_one_process``: the audit
  with ``workers=0``). Unlike the rates, it hardly moves with other work on the
  machine. ``cpu_bound_vs_verify_x_cores`` is ``references.verify_cpu`` (the CPU time of
  one verification) / that total: the ratio to verify × cores the audit reaches when
  every core is its own, whatever the load during the run.
* ``loadavg``: the 1-minute load average before and after the audits (other work on a
  shared machine moves the figures; compare ratios from quiet runs), and
  ``default_workers``: what ``audit_store`` would pick by default at that load (workers
  only when at least half a core is idle).

With ``BENCH_PG_URL`` set to a PostgreSQL admin URL (e.g. ``CUSTODY_TEST_PG_URL`` of
``.ci/postgres.sh``), the same ledger is also built in a throwaway database there and
audited (``postgresql`` in the result; the database is dropped afterwards).

Standalone: ``python -m bench audit [--quick]``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import refs
from ledger.core import _sodium
from ledger.core import events as ev
from ledger.core.note import NoteSigner
from ledger.parallel_verify import VerifyPool, available_cores, idle_cores
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore

ORIGIN = "bench.example/custody"
T0 = 1_790_000_000_000
BATCH = 1000


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 7
        return self.now


def _signed(rng: random.Random, clock: _Clock, kind: str, actor: str, key: _sodium.Signer,
            payload: dict[str, Any], prev: str | None = None) -> ev.SignedEvent:
    body = ev.Event(kind=kind, origin=ORIGIN, nonce=rng.randbytes(16).hex(),
                    claimed_time=clock.now, signer=actor,
                    key_id=ev.actor_key_id(actor, key.public_key), payload=payload, prev=prev)
    return ev.sign_event(body, key)


def build(directory: Path, n: int, url: str | None = None) -> SqlStore:
    """A ledger of ``n`` events: set-up, then artefact registrations, domestic
    dispatch/receipt pairs and accesses in a repeating mix (in SQLite under
    ``directory``, or at the database ``url``)."""
    rng = random.Random(1)
    clock = _Clock()
    log_key = NoteSigner(ORIGIN, rng.randbytes(32))
    store = SqlStore.open(url or f"sqlite:///{directory / 'bench.db'}", signer=log_key,
                          clock=clock, create=True)
    admin, cust = _sodium.Signer(rng.randbytes(32)), _sodium.Signer(rng.randbytes(32))
    b64 = lambda k: base64.b64encode(k.public_key).decode()  # noqa: E731
    setup = [
        _signed(rng, clock, ev.GENESIS, "admin", admin, {
            "log_key": log_key.verifier_key, "skew_ms": 300_000,
            "org": {"id": "bka", "name": "BKA", "jurisdiction": "DE"},
            "actor": {"id": "admin", "org": "bka", "name": "A",
                      "roles": ["admin", "prosecutor", "examiner"], "public_key": b64(admin)}}),
        _signed(rng, clock, ev.ORG_REGISTER, "admin", admin,
                {"id": "lka", "name": "LKA", "jurisdiction": "DE"}),
        _signed(rng, clock, ev.ACTOR_ENROL, "admin", admin, {
            "id": "cust", "org": "lka", "name": "C", "roles": ["custodian"],
            "public_key": b64(cust)}),
        _signed(rng, clock, ev.CASE_OPEN, "admin", admin, {"id": "C1", "title": "bench"}),
        _signed(rng, clock, ev.CASE_ADD_MEMBER, "admin", admin, {"case": "C1", "org": "lka"}),
    ]
    for signed in setup:
        store.append(signed)
    done = len(setup)
    i = 0
    while done < n:
        batch: list[ev.SignedEvent] = []
        while len(batch) < BATCH and done + len(batch) < n:
            i += 1
            art = f"art-{i}"
            reg = _signed(rng, clock, ev.ARTEFACT_REGISTER, "admin", admin, {
                "id": art, "case": "C1", "size": 4,
                "digests": {"sha256": hashlib.sha256(art.encode()).hexdigest()}})
            disp = _signed(rng, clock, ev.DISPATCH, "admin", admin, {
                "transfer": f"tr-{i}", "artefact": art, "to_org": "lka", "purpose": "lab"},
                prev=reg.event_id)
            rec = _signed(rng, clock, ev.RECEIPT, "cust", cust, {
                "transfer": f"tr-{i}", "artefact": art, "outcome": "rejected",
                "recomputed": {"sha256": "0" * 64}, "reason": "bench"}, prev=disp.event_id)
            acc = _signed(rng, clock, ev.ACCESS, "cust", cust, {
                "artefact": art, "action": "view", "purpose": "bench", "outcome": "success"})
            batch += [reg, disp, rec, acc][: n - done - len(batch)]
        outcomes = store.append_many(batch)
        refused = [o for o in outcomes if isinstance(o, Exception)]
        if refused:
            raise RuntimeError(f"bench ledger build refused an event: {refused[0]}")
        done += len(batch)
        if done % 10_000 < BATCH:
            _log(f"bench audit: built {done}/{n}")
    return store


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def parallel_verify_rate(n: int) -> dict[str, Any]:
    """Raw ``(key, 500-byte message, signature)`` triples through
    :class:`ledger.parallel_verify.VerifyPool` (one worker per core), workers started."""
    rng = random.Random(2)
    key = _sodium.Signer(rng.randbytes(32))
    triples = []
    for _ in range(n):
        msg = rng.randbytes(500)
        triples.append((key.public_key, msg, key.sign(msg)))
    with VerifyPool(start_after=0) as pool:
        pool.start()
        pool.wait_ready()
        pool.verify(triples[:200])
        start = time.perf_counter()
        bad = pool.verify(triples)
        elapsed = time.perf_counter() - start
    if bad:
        raise RuntimeError("the parallel verify reference refused a valid signature")
    return {"value": n / elapsed, "unit": "verifications/s", "n": n, "workers": pool.workers,
            "method": "ledger.parallel_verify.VerifyPool.verify of n 500-byte messages, "
            "one worker process per core"}


def verify_cpu_us(n: int) -> dict[str, Any]:
    """CPU time of one Ed25519 verification (``ledger.core._sodium.valid``, the audit's own
    check, on a 450-byte message like an event's signing bytes), best of three rounds of
    ``n``: the load-independent form of the PyNaCl reference."""
    rng = random.Random(3)
    key = _sodium.Signer(rng.randbytes(32))
    triples = []
    for _ in range(n):
        msg = rng.randbytes(450)
        triples.append((key.public_key, msg, key.sign(msg)))
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        if _sodium.failing(triples):
            raise RuntimeError("the verify reference refused a valid signature")
        best = min(best, time.thread_time() - start)
    return {"value": round(best / n * 1e6, 2), "unit": "CPU us per verification", "n": n,
            "method": "ledger.core._sodium.valid of n 450-byte messages in this thread, "
            "thread CPU time, best of 3"}


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its waited-for children."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def _audit(store: SqlStore, workers: int | None) -> tuple[float, int, dict[str, float]]:
    """Wall seconds, entries, and CPU microseconds per entry: in this (the replaying)
    process, threads included, and in the worker processes (they have exited when
    ``audit_store`` returns, so the children's usage counts them)."""
    cpu0 = _cpu()
    start = time.perf_counter()
    report = audit_store(store, workers=workers)
    elapsed = time.perf_counter() - start
    cpu1 = _cpu()
    if not report.ok:
        raise RuntimeError(f"bench ledger did not audit clean: {report.detail}")
    n = max(report.entries_checked, 1)
    main, workers_us = (cpu1[0] - cpu0[0]) / n * 1e6, (cpu1[1] - cpu0[1]) / n * 1e6
    return elapsed, report.entries_checked, {
        "replaying_process": round(main, 1), "workers": round(workers_us, 1),
        "total": round(main + workers_us, 1)}


def _measure(store: SqlStore, verify: float, cores: int,
             verify_us: float | None = None) -> dict[str, Any]:
    load_before = _loadavg()
    idle = idle_cores()
    audit_s, entries, cpu = _audit(store, cores)
    one_s, _, one_cpu = _audit(store, 0)
    rate = entries / audit_s
    out = {
        "entries": entries,
        "checkpoints": sum(1 for _ in store.checkpoints()),
        "audit_s": round(audit_s, 3),
        "audit_entries_per_s": round(rate, 1),
        "audit_vs_verify_x_cores": round(rate / (verify * cores), 3),
        "audit_vs_verify": round(rate / verify, 3),
        "audit_one_process_s": round(one_s, 3),
        "audit_one_process_entries_per_s": round(entries / one_s, 1),
        "cpu_us_per_entry": cpu,
        "cpu_us_per_entry_one_process": one_cpu,
        "loadavg": [load_before, _loadavg()],
        "default_workers": f"{cores} (idle cores {idle:.1f})" if idle >= 0.5 else
        f"0: one process (idle cores {idle:.1f})",
    }
    if verify_us is not None:
        # What the audit's CPU use allows with every core to itself: entries/s per core
        # is 1e6 / total, against 1e6 / verify_us verifications/s per core.
        out["cpu_bound_vs_verify_x_cores"] = round(verify_us / cpu["total"], 3)
    return out


def _postgres(admin_url: str, n: int, verify: float, cores: int,
              verify_us: float) -> dict[str, Any]:
    import uuid

    import sqlalchemy as sa

    sa_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = "custody_bench_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(sa_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        start = time.perf_counter()
        store = build(Path("."), n, url)
        build_s = time.perf_counter() - start
        try:
            out = _measure(store, verify, cores, verify_us)
        finally:
            store.close()
        return {"build_s": round(build_s, 2), **out}
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else 50_000
    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="bench-audit-",
                                     dir=os.environ.get("BENCH_TMPDIR")) as d:
        start = time.perf_counter()
        store = build(Path(d), n)
        build_s = time.perf_counter() - start
        try:
            verify = refs.pynacl_verify_rate(2_000 if quick else 20_000)
            verify_cpu = verify_cpu_us(2_000 if quick else 10_000)
            parallel = parallel_verify_rate(2_000 if quick else 20_000)
            sqlite = _measure(store, verify["value"], cores, verify_cpu["value"])
            db_bytes = sum(p.stat().st_size for p in Path(d).iterdir())
        finally:
            store.close()
    pg_url = os.environ.get("BENCH_PG_URL")
    return {
        **{k: v for k, v in sqlite.items()},
        "build_s": round(build_s, 2),
        "build_entries_per_s": round(n / build_s, 1),
        "db_bytes": db_bytes,
        "cores": cores,
        "references": {"pynacl_verify": verify, "verify_cpu": verify_cpu,
                       "parallel_verify": parallel,
                       "pynacl_verify_x_cores": round(verify["value"] * cores, 1),
                       "parallel_vs_verify_x_cores":
                           round(parallel["value"] / (verify["value"] * cores), 3)},
        "postgresql": _postgres(pg_url, n, verify["value"], cores, verify_cpu["value"])
        if pg_url else
        "not measured: set BENCH_PG_URL to a PostgreSQL admin URL",
        "method": "ledger.store.audit_sql.audit_store over a SQLite ledger built with "
        f"SqlStore.append_many in batches of {BATCH}, all audit steps on; signatures in one "
        "worker process per core (and, for the one-process figure, workers=0)",
    }
