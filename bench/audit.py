"""Audit throughput versus raw Ed25519 verification, measured in the same run.

Builds a ledger of N events on SQLite (quick: 2,000; full: 50,000) through
``SqlStore.append_many`` in batches, then times ``audit_store`` over it (every step on:
leaf hashes, canonical parsing, signatures and custody rules replayed, checkpoints,
consistency proofs, stored nodes, state). Each audited entry costs at least one Ed25519
verification, so the physical reference is PyNaCl's verify rate on the same machine:

* ``audit_entries_per_s``: entries audited per second (one core).
* ``audit_vs_verify``: that rate / ``bench.refs.pynacl_verify_rate`` (1.0 would mean
  the audit costs no more than the signature check alone).

Standalone: ``python -m bench audit [--quick]``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import refs
from ledger import _sodium
from ledger import events as ev
from ledger.note import NoteSigner
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


def build(directory: Path, n: int) -> SqlStore:
    """A ledger of ``n`` events: set-up, then artefact registrations, domestic
    dispatch/receipt pairs and accesses in a repeating mix."""
    rng = random.Random(1)
    clock = _Clock()
    log_key = NoteSigner(ORIGIN, rng.randbytes(32))
    store = SqlStore.open(f"sqlite:///{directory / 'bench.db'}", signer=log_key, clock=clock,
                          create=True)
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


def run(quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else 50_000
    with tempfile.TemporaryDirectory(prefix="bench-audit-",
                                     dir=os.environ.get("BENCH_TMPDIR")) as d:
        start = time.perf_counter()
        store = build(Path(d), n)
        build_s = time.perf_counter() - start
        try:
            verify = refs.pynacl_verify_rate(2_000 if quick else 20_000)
            start = time.perf_counter()
            report = audit_store(store)
            audit_s = time.perf_counter() - start
            db_bytes = sum(p.stat().st_size for p in Path(d).iterdir())
            checkpoints = sum(1 for _ in store.checkpoints())
        finally:
            store.close()
    if not report.ok:
        raise RuntimeError(f"bench ledger did not audit clean: {report.detail}")
    rate = report.entries_checked / audit_s
    return {
        "entries": report.entries_checked,
        "checkpoints": checkpoints,
        "build_s": round(build_s, 2),
        "build_entries_per_s": round(n / build_s, 1),
        "audit_s": round(audit_s, 3),
        "audit_entries_per_s": round(rate, 1),
        "audit_vs_verify": round(rate / verify["value"], 3),
        "db_bytes": db_bytes,
        "references": {"pynacl_verify": verify},
        "method": "ledger.store.audit_sql.audit_store over a SQLite ledger built with "
        f"SqlStore.append_many in batches of {BATCH}, one core, all audit steps on",
    }
