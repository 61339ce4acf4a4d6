"""The database goes away (issue #14, part 3): the API on PostgreSQL while the PostgreSQL
server is stopped and restarted under write load.

One private PostgreSQL cluster (:mod:`.pgcluster`, never the shared test server), one
ledger, ONE real API server (:mod:`.apiserver`: uvicorn, group commit) for the whole
run — it is never restarted. Writer threads (HTTP clients) append signed access events
through ``POST /v1/events`` as fast as they are answered. Each cycle:

1. writing with the database up for ``up_s`` seconds;
2. the PostgreSQL server is stopped — ``pg_ctl stop -m fast`` (sessions terminated, a
   shutdown checkpoint) or SIGKILL of the postmaster and every backend (no checkpoint;
   the next start runs crash recovery), alternately;
3. the writers keep writing for ``down_s`` seconds (drawn at random within bounds);
4. the server is started again; the cycle ends once EVERY writer has had a write
   accepted since the restart (the API reconnected by itself).

A writer that gets ``503`` checks that it is problem+json with a ``Retry-After``, and
sends the SAME signed event again (after a short pause) until it is answered: ``201``
(appended now) or ``200`` (it had been appended already — the COMMIT reached the
database but the connection broke before the answer: the original receipt comes back).
Only a 200/201 receipt is an acknowledgement; it is kept with its index and leaf hash.

The check (at the end, and every ``audit_every`` cycles): every acknowledged event is in
the log at its receipt's index with its leaf hash; no event id is there twice; the log
holds nothing the writers were not acknowledged (each writer ends by resolving the
event it was retrying); the full audit passes; the API server is the same process and
takes a new write. Counted: requests, answers by status (any 5xx other than 503 is a
failure, so is a 503 without Retry-After, or an answer slower than ``max_latency_s``),
and the answers to retried events.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ledger.core import events as ev
from ledger.core.events import SignedEvent
from ledger.service import Custody
from tests.reliability import apiserver, pgcluster
from tests.reliability import world as W

#: Seconds a cycle waits for every writer to get a write through after the restart.
RECOVERY_TIMEOUT_S = 60.0
#: No answer may take longer than this (fail fast: the store gives up connecting after
#: 3 s; a refused connection fails at once).
MAX_LATENCY_S = 5.0


@dataclass(frozen=True)
class Ack:
    event_id: str
    index: int
    leaf_hash: str
    status: int  # 201, or 200 for a retried event that had been appended already


@dataclass
class Tally:
    """What the writers saw; shared by the threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes_503: Counter[str] = field(default_factory=Counter)
    no_retry_after: int = 0
    not_problem_json: int = 0
    transport_errors: int = 0
    retries: int = 0  # requests that re-sent an event after a 503 or a transport error
    retried_201: int = 0  # a retried event appended by the retry
    retried_200: int = 0  # a retried event that had been appended before (original receipt)
    unexpected_200: int = 0  # a 200 for an event never sent before: must not happen
    ambiguous_503: int = 0  # 503s saying the append may or may not have been committed
    acks: dict[str, Ack] = field(default_factory=dict)
    ack_conflicts: list[str] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    max_latency_503: float = 0.0
    successes: Counter[int] = field(default_factory=Counter)  # per writer

    def sample(self, key: str, text: str) -> None:
        if key not in self.samples and len(self.samples) < 40:
            self.samples[key] = " ".join(text.split())[:400]


def new_event(custody: Custody, rng: random.Random, writer: int) -> SignedEvent:
    return custody.event(ev.ACCESS, W.key("admin"), {
        "artefact": W.BASE_ARTEFACT, "action": "view", "purpose": f"outage writer {writer}",
        "outcome": "success", "authorisation": f"w{writer}-{rng.randrange(1 << 40):x}"})


class Writer(threading.Thread):
    """Appends signed events through the API; re-sends the same event until answered."""

    def __init__(self, number: int, base: str, token: str, tally: Tally, stop: threading.Event,
                 seed: int, pause_s: float = 0.05) -> None:
        super().__init__(name=f"outage-writer-{number}", daemon=True)
        self.number = number
        self.base = base
        self.token = token
        self.tally = tally
        self.stop = stop
        self.rng = random.Random(seed)
        self.pause_s = pause_s
        self.custody = Custody(None, origin=W.ORIGIN, clock=W.now_ms,  # type: ignore[arg-type]
                               random=os.urandom)
        self.unresolved: SignedEvent | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                self._loop(client)
        except BaseException as exc:  # reported by the campaign
            self.error = exc

    def _loop(self, client: httpx.Client) -> None:
        headers = {"Authorization": f"Bearer {self.token}",
                   "Content-Type": "application/json"}
        pending: SignedEvent | None = None
        drain_until: float | None = None
        while True:
            if self.stop.is_set():
                if pending is None:
                    return
                if drain_until is None:
                    drain_until = time.monotonic() + RECOVERY_TIMEOUT_S
                elif time.monotonic() > drain_until:
                    self.unresolved = pending
                    return
            retry = pending is not None
            signed = pending or new_event(self.custody, self.rng, self.number)
            t0 = time.monotonic()
            try:
                resp = client.post(self.base + "/v1/events", content=signed.canonical_bytes(),
                                   headers=headers)
            except httpx.HTTPError as exc:
                with self.tally.lock:
                    self.tally.requests += 1
                    self.tally.transport_errors += 1
                    self.tally.retries += retry
                    self.tally.sample("transport:" + type(exc).__name__, str(exc))
                pending = signed
                time.sleep(self.pause_s)
                continue
            took = time.monotonic() - t0
            self._record(signed, retry, resp, took)
            if resp.status_code in (200, 201):
                pending = None
            elif resp.status_code == 503:
                pending = signed
                time.sleep(self.pause_s)
            else:  # anything else is counted as a failure; move on with a new event
                pending = None
                time.sleep(self.pause_s)

    def _record(self, signed: SignedEvent, retry: bool, resp: httpx.Response,
                took: float) -> None:
        t = self.tally
        status = resp.status_code
        body: Any = None
        with contextlib.suppress(ValueError):
            body = resp.json()
        with t.lock:
            t.requests += 1
            t.retries += retry
            t.statuses[status] += 1
            t.latencies.append(took)
            if status in (200, 201):
                data = body if isinstance(body, dict) else {}
                ack = Ack(str(data.get("event_id")), int(data.get("index", -1)),
                          str(data.get("leaf_hash")), status)
                if ack.event_id != signed.event_id:
                    t.ack_conflicts.append(f"receipt for {ack.event_id}, sent {signed.event_id}")
                old = t.acks.get(signed.event_id)
                if old is not None and (old.index, old.leaf_hash) != (ack.index, ack.leaf_hash):
                    t.ack_conflicts.append(f"{signed.event_id}: two receipts {old} / {ack}")
                t.acks.setdefault(signed.event_id, ack)
                t.successes[self.number] += 1
                if status == 200:
                    if retry:
                        t.retried_200 += 1
                    else:
                        t.unexpected_200 += 1
                elif retry:
                    t.retried_201 += 1
            elif status == 503:
                t.max_latency_503 = max(t.max_latency_503, took)
                retry_after = resp.headers.get("retry-after", "")
                if not retry_after.isdigit() or int(retry_after) < 1:
                    t.no_retry_after += 1
                if resp.headers.get("content-type", "").split(";")[0] != \
                        "application/problem+json":
                    t.not_problem_json += 1
                code = str(body.get("code")) if isinstance(body, dict) else "?"
                t.codes_503[code] += 1
                detail = str(body.get("detail", "")) if isinstance(body, dict) else resp.text
                if "may or may not" in detail:
                    t.ambiguous_503 += 1
                t.sample(f"503:{code}:{'ambiguous' if 'may or may not' in detail else 'plain'}",
                         detail)
            else:
                t.sample(f"{status}", resp.text)


@dataclass
class Config:
    cycles: int
    writers: int = 4
    up_s: float = 1.0
    down_s: tuple[float, float] = (1.0, 3.0)
    modes: tuple[str, ...] = ("fast", "kill")
    seed: int = 14
    audit_every: int = 10
    pause_s: float = 0.05
    workdir: Path | None = None
    keep: bool = False
    progress: Callable[[str], None] | None = None


def run(c: Config) -> dict[str, Any]:
    """Run the outage campaign; returns the summary (``ok``: every target met)."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="custody-outage.", dir=c.workdir))
    rng = random.Random(c.seed)
    say = c.progress or (lambda _line: None)
    tally = Tally()
    stop = threading.Event()
    writers: list[Writer] = []
    cycles: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    server: apiserver.ApiServer | None = None
    cluster: pgcluster.Cluster | None = None
    summary: dict[str, Any] = {}
    try:
        cluster = pgcluster.Cluster()
        url = cluster.create_database("outage")
        initial = W.build(url)
        server = apiserver.start(url, root)
        pid = server.pid
        with httpx.Client(timeout=10) as client:
            token = apiserver.login(client, server.url, W.key("admin"))
        writers = [Writer(i, server.url, token, tally, stop, rng.randrange(1 << 62), c.pause_s)
                   for i in range(c.writers)]
        for w in writers:
            w.start()
        _wait_for(lambda: all(tally.successes[w.number] for w in writers), 30,
                  "the writers' first writes")
        for n in range(c.cycles):
            mode = c.modes[n % len(c.modes)]
            time.sleep(c.up_s)
            before = tally.requests
            t_down = time.monotonic()
            if mode == "kill":
                cluster.crash()
            else:
                cluster.shutdown(mode)
            down_for = rng.uniform(*c.down_s)
            time.sleep(max(0.0, down_for - (time.monotonic() - t_down)))
            with tally.lock:
                marks = {w.number: tally.successes[w.number] for w in writers}
                during = tally.requests - before
                s503 = tally.statuses[503]
            recovery = cluster.start()
            t_up = time.monotonic()
            recovered = _wait_for(functools.partial(_all_through, tally, writers, marks),
                                  RECOVERY_TIMEOUT_S, None)
            back_after = time.monotonic() - t_up
            cycle = {"cycle": n + 1, "mode": mode, "down_s": round(t_up - t_down, 2),
                     "requests_while_down": during, "postgres_start_s": round(recovery, 2),
                     "writes_through_after_s": round(back_after, 2), "recovered": recovered,
                     "api_same_process": server.alive() and server.pid == pid}
            cycles.append(cycle)
            say(f"cycle {n + 1}/{c.cycles} ({mode}): down {cycle['down_s']} s, "
                f"{during} requests meanwhile ({s503} 503s so far), PostgreSQL back in "
                f"{recovery:.2f} s, every writer through {back_after:.2f} s later; "
                f"{len(tally.acks)} acknowledged so far")
            if not recovered or not cycle["api_same_process"]:
                break
            if c.audit_every and (n + 1) % c.audit_every == 0 and n + 1 < c.cycles:
                with tally.lock:
                    acks = dict(tally.acks)
                checks.append(check(url, acks, initial, final=False))
        stop.set()
        for w in writers:
            w.join(RECOVERY_TIMEOUT_S + 30)
        final = check(url, dict(tally.acks), initial, final=True)
        checks.append(final)
        # A new write through the same API server process, after everything.
        with httpx.Client(timeout=10) as client:
            signed = new_event(Custody(None, origin=W.ORIGIN, clock=W.now_ms,  # type: ignore
                                       random=os.urandom), rng, -1)
            resp = client.post(server.url + "/v1/events", content=signed.canonical_bytes(),
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"})
        next_ok = resp.status_code == 201 and resp.json().get("index") == final["size"]
        server_log = server.log_text()
        summary = _summary(c, tally, cycles, checks, writers, next_ok,
                           server.alive() and server.pid == pid, server_log,
                           time.monotonic() - started)
    finally:
        stop.set()
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.close()
        if not c.keep:
            shutil.rmtree(root, ignore_errors=True)
    return summary


def _all_through(tally: Tally, writers: list[Writer], marks: dict[int, int]) -> bool:
    """Every writer has had a write accepted since ``marks`` (its count then)."""
    with tally.lock:
        return all(tally.successes[w.number] > marks[w.number] for w in writers)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str | None) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if what is not None:
                raise RuntimeError(f"timed out waiting for {what}")
            return False
        time.sleep(0.01)
    return True


def check(url: str, acks: dict[str, Ack], initial: int, *, final: bool) -> dict[str, Any]:
    """Every acknowledged event at its index with its leaf hash; no event id twice; (at
    the end) nothing in the log that no writer was acknowledged; the full audit."""
    import sqlalchemy as sa

    from ledger.store import schema as t
    from ledger.store.audit_sql import audit_store
    from ledger.store.sql import SqlStore, blob

    store = SqlStore.open(url, signer=None, clock=W.now_ms, verify_key=W.log_key())
    try:
        with store.reader.connect() as conn:
            rows = conn.execute(sa.select(t.entries.c.idx, t.entries.c.leaf_hash,
                                          t.entries.c.event_id)).all()
        by_index = {int(i): (blob(h).hex(), str(e)) for i, h, e in rows}
        ids = Counter(str(e) for _, _, e in rows)
        lost = []
        for event_id, ack in acks.items():
            if by_index.get(ack.index) != (ack.leaf_hash, event_id):
                lost.append(f"{event_id} acknowledged at index {ack.index}: "
                            f"{by_index.get(ack.index)}")
        duplicates = sorted(e for e, n in ids.items() if n > 1)
        unacknowledged = sorted(e for i, (_, e) in by_index.items()
                                if i >= initial and e not in acks)
        report = audit_store(store, log_verifier_key=W.log_key(), workers=1)
        # While writers run (not ``final``), the audit reads later than the table did.
        audit_ok = report.ok and (report.tree_size == len(rows) if final
                                  else report.tree_size >= len(rows))
        detail = "" if audit_ok else f"{report.kind} at {report.first_bad_index}: " \
            f"{report.detail} (audited {report.tree_size}, table {len(rows)})"
    finally:
        store.close()
    return {"final": final, "size": len(rows), "acknowledged": len(acks), "lost": len(lost),
            "lost_samples": lost[:10], "duplicates": len(duplicates),
            "duplicate_samples": duplicates[:10],
            "committed_unacknowledged": len(unacknowledged) if final else None,
            "unacknowledged_samples": unacknowledged[:10] if final else [],
            "audit_ok": audit_ok, "audit_detail": detail}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(c: Config, t: Tally, cycles: list[dict[str, Any]], checks: list[dict[str, Any]],
             writers: list[Writer], next_ok: bool, same_process: bool, server_log: str,
             duration: float) -> dict[str, Any]:
    final = checks[-1]
    other_5xx = sum(n for s, n in t.statuses.items() if s >= 500 and s != 503)
    other_status = {str(s): n for s, n in sorted(t.statuses.items())
                    if s not in (200, 201, 503)}
    unresolved = [w.unresolved.event_id for w in writers if w.unresolved is not None]
    writer_errors = [f"{w.name}: {w.error!r}" for w in writers if w.error is not None]
    # A 500 (a bug) is logged as "unexpected error on …"; a database error the store did
    # not translate, caught by the API's safety net (still a 503 with Retry-After), as
    # "… escaped the store …": reported, not a failure (the answer is right; the
    # embedded test holds the store itself to StoreUnavailable).
    unexpected_logged = server_log.count("unexpected error on")
    escaped = server_log.count("escaped the store")
    tracebacks = server_log.count("Traceback")
    faults = Counter(cy["mode"] for cy in cycles)
    summary = {
        "campaign": "outage", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "command": command_line(c), "seed": c.seed,
        "cycles": len(cycles), "faults_injected": len(cycles),
        "faults": {"pg_ctl stop -m fast": faults.get("fast", 0),
                   "SIGKILL postmaster and backends": faults.get("kill", 0),
                   **{k: v for k, v in faults.items() if k not in ("fast", "kill")}},
        "writers": c.writers, "requests": t.requests,
        "status_201": t.statuses[201], "status_200_retry_found_committed": t.retried_200,
        "status_503": t.statuses[503], "status_503_codes": dict(t.codes_503),
        "status_503_ambiguous": t.ambiguous_503,
        "other_5xx": other_5xx, "other_statuses": other_status,
        "transport_errors": t.transport_errors,
        "retries": t.retries, "retried_then_201": t.retried_201,
        "unexpected_200": t.unexpected_200,
        "missing_retry_after": t.no_retry_after, "not_problem_json": t.not_problem_json,
        "acknowledged": len(t.acks), "lost": max(ch["lost"] for ch in checks),
        "duplicates": max(ch["duplicates"] for ch in checks),
        "committed_unacknowledged": final["committed_unacknowledged"],
        "unresolved_at_end": len(unresolved),
        "receipt_conflicts": len(t.ack_conflicts),
        "audits": len(checks), "audit_failures": sum(not ch["audit_ok"] for ch in checks),
        "log_size": final["size"],
        "next_write_after_all_ok": next_ok, "api_server_restarts": 0 if same_process else 1,
        "cycles_not_recovered": sum(not cy["recovered"] for cy in cycles),
        "writes_through_after_restart_s_max": max(
            (cy["writes_through_after_s"] for cy in cycles), default=None),
        "postgres_start_s_max": max((cy["postgres_start_s"] for cy in cycles), default=None),
        "latency_p50_s": round(_pct(t.latencies, 0.50), 4),
        "latency_p99_s": round(_pct(t.latencies, 0.99), 4),
        "latency_max_s": round(max(t.latencies, default=0.0), 3),
        "latency_503_max_s": round(t.max_latency_503, 3),
        "server_unexpected_errors_logged": unexpected_logged,
        "server_untranslated_database_errors": escaped,
        "server_tracebacks": tracebacks,
        "writer_errors": writer_errors,
        "samples": dict(sorted(t.samples.items())),
        "lost_samples": final["lost_samples"], "audit_details": [
            ch["audit_detail"] for ch in checks if not ch["audit_ok"]],
        "receipt_conflict_samples": t.ack_conflicts[:10],
        "duration_s": round(duration, 1),
    }
    summary["ok"] = (
        summary["cycles"] == c.cycles and other_5xx == 0 and not other_status
        and t.transport_errors == 0 and t.unexpected_200 == 0 and t.no_retry_after == 0
        and t.not_problem_json == 0 and summary["lost"] == 0 and summary["duplicates"] == 0
        and final["committed_unacknowledged"] == 0 and not unresolved
        and not t.ack_conflicts and summary["audit_failures"] == 0 and next_ok
        and same_process and not summary["cycles_not_recovered"] and not writer_errors
        and unexpected_logged == 0 and summary["latency_max_s"] < MAX_LATENCY_S)
    return summary


def command_line(c: Config) -> str:
    parts = ["python -m tests.reliability outage", f"--cycles {c.cycles}",
             f"--seed {c.seed}"]
    if c.writers != Config.writers:
        parts.append(f"--writers {c.writers}")
    if c.up_s != Config.up_s:
        parts.append(f"--up {c.up_s:g}")
    if c.down_s != Config.down_s:
        parts.append(f"--down {c.down_s[0]:g} {c.down_s[1]:g}")
    if c.modes != Config.modes:
        parts.append("--modes " + ",".join(c.modes))
    return " ".join(parts)


def main_outage(args: Any) -> int:
    modes = tuple(m.strip() for m in str(args.modes).split(",") if m.strip())
    config = Config(cycles=args.cycles, writers=args.writers, up_s=args.up,
                    down_s=(args.down[0], args.down[1]), modes=modes, seed=args.seed,
                    audit_every=args.audit_every, workdir=args.workdir, keep=args.keep,
                    progress=None if args.quiet else
                    (lambda line: print(line, file=sys.stderr, flush=True)))
    summary = run(config)
    print(json.dumps(summary, sort_keys=True) if args.json else
          json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary.get("ok") else 1
