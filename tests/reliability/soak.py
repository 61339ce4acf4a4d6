"""Soak (issue #14, part 5): the API at its measured capacity for a while, loopback only.

One real API server (:mod:`.apiserver`: uvicorn, group commit; SQLite by default,
PostgreSQL — a private cluster — with ``backend="postgres"``) on a ledger of the
reliability world. Client threads (keep-alive HTTP connections, all on 127.0.0.1) send a
mix of writes and reads:

writes  ``POST /v1/events`` (a signed access event) and ``POST /v1/events/batch`` (5 of
        them), one batch for every four single events;
reads   ``GET /v1/log``, ``/v1/state/art/…``, ``/v1/log/entries/{i}``, ``/v1/events/{id}``,
        ``/v1/log/proofs/inclusion``, ``/v1/artefacts/{id}/history`` and ``/v1/refs/{id}``
        for entries written earlier in the run;

spread over ``artefacts`` artefacts of one case (32 by default).

1. **Capacity**: the clients send as fast as they are answered (closed loop) for
   ``measure_s`` seconds; the capacity is the requests answered per second after a
   warm-up.
2. **Soak**: for ``soak_s`` seconds the same clients send at that rate (an open
   schedule, request k at ``t0 + k / rate``; a client that falls behind sends at once),
   so the server is held at the capacity it showed, not beyond.

Reported: requests done, answers by status (any 5xx fails the run), p50/p99/max
latency (all, writes, reads), the achieved rate, the server process's RSS at the start
and end of the soak and its maximum (sampled every second), then every acknowledged
write is checked in the log at its index with its leaf hash, and the full audit runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
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
from tests.reliability.outage import Ack, check

#: Seconds of the capacity measurement not counted (connections, caches warming up).
WARMUP_S = 2.0
BATCH = 5


@dataclass
class Config:
    soak_s: float
    backend: str = "sqlite"
    clients: int = 8
    write_share: float = 0.5
    measure_s: float = 20.0
    rate: float | None = None  # requests per second; None: the measured capacity
    artefacts: int = 32  # accesses and reads spread over this many artefacts
    seed: int = 14
    workdir: Path | None = None
    progress: Callable[[str], None] | None = None
    command: str = ""


@dataclass
class Phase:
    """What the clients saw in one phase (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    write_latency: list[float] = field(default_factory=list)
    read_latency: list[float] = field(default_factory=list)
    #: (sent at, route, seconds) of every request: latency by route, early and late
    timeline: list[tuple[float, str, float]] = field(default_factory=list)
    transport_errors: int = 0
    samples: dict[str, str] = field(default_factory=dict)
    late: int = 0  # requests sent more than 100 ms after their scheduled time
    t0: float = 0.0
    t1: float = 0.0
    counted_from: float = 0.0
    counted: int = 0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.transport_errors


class Shared:
    """What the clients share: acknowledged writes, and where reads may look."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acks: dict[str, Ack] = {}
        self.recent: list[tuple[str, int]] = []  # (event id, index), a bounded window
        self.size = 0

    def add(self, event_id: str, index: int, leaf_hash: str, status: int) -> None:
        with self.lock:
            self.acks[event_id] = Ack(event_id, index, leaf_hash, status)
            self.recent.append((event_id, index))
            if len(self.recent) > 4096:
                del self.recent[:2048]
            self.size = max(self.size, index + 1)

    def pick(self, rng: random.Random) -> tuple[str, int, int] | None:
        with self.lock:
            if not self.recent:
                return None
            event_id, index = self.recent[rng.randrange(len(self.recent))]
            return event_id, index, self.size


class Client(threading.Thread):
    def __init__(self, number: int, base: str, token: str, shared: Shared, seed: int,
                 write_share: float, artefacts: list[str]) -> None:
        super().__init__(name=f"soak-client-{number}", daemon=True)
        self.number = number
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.shared = shared
        self.rng = random.Random(seed)
        self.write_share = write_share
        self.artefacts = artefacts
        self.custody = Custody(None, origin=W.ORIGIN, clock=W.now_ms,  # type: ignore[arg-type]
                               random=os.urandom)
        self.phase: Phase | None = None
        self.schedule: Callable[[], float | None] | None = None  # next send time, or None
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=60, headers=self.headers) as client:
                while not self.stop.is_set():
                    phase, schedule = self.phase, self.schedule
                    if phase is None:
                        time.sleep(0.01)
                        continue
                    if schedule is not None:
                        at = schedule()
                        if at is None:  # the soak's schedule is over
                            time.sleep(0.01)
                            continue
                        delay = at - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        elif delay < -0.1:
                            with phase.lock:
                                phase.late += 1
                    self._one(client, phase)
        except BaseException as exc:  # reported
            self.error = exc

    def _event(self) -> SignedEvent:
        return self.custody.event(ev.ACCESS, W.key("admin"), {
            "artefact": self.rng.choice(self.artefacts), "action": "view", "purpose": "soak",
            "outcome": "success", "authorisation": f"s{self.rng.randrange(1 << 48):x}"})

    def _request(self) -> tuple[str, str, str, dict[str, Any]]:
        """(kind, route name, method, httpx arguments)."""
        rng = self.rng
        picked = self.shared.pick(rng)
        if picked is None or rng.random() < self.write_share:
            if rng.random() < 0.2:
                events = [self._event() for _ in range(BATCH)]
                return "write", "POST /v1/events/batch", "POST", {
                    "url": "/v1/events/batch", "json": {"events": [e.to_json() for e in events]}}
            signed = self._event()
            return "write", "POST /v1/events", "POST", {
                "url": "/v1/events", "content": signed.canonical_bytes(),
                "headers": {"Content-Type": "application/json"}}
        event_id, index, size = picked
        route = rng.choice(("log", "state", "entry", "event", "inclusion", "history", "refs"))
        art = rng.choice(self.artefacts)
        url = {"log": "/v1/log", "state": f"/v1/state/art/{art}",
               "entry": f"/v1/log/entries/{index}", "event": f"/v1/events/{event_id}",
               "inclusion": f"/v1/log/proofs/inclusion?index={index}&size={size}",
               "history": f"/v1/artefacts/{art}/history?limit=20",
               "refs": f"/v1/refs/{art}?after={max(-1, index - 50)}&limit=50",
               }[route]
        return "read", f"GET {route}", "GET", {"url": url}

    def _one(self, client: httpx.Client, phase: Phase) -> None:
        kind, route, method, kwargs = self._request()
        t0 = time.monotonic()
        try:
            resp = client.request(method, **kwargs)
        except httpx.HTTPError as exc:
            with phase.lock:
                phase.transport_errors += 1
                phase.samples.setdefault("transport:" + type(exc).__name__, str(exc)[:300])
            time.sleep(0.05)
            return
        took = time.monotonic() - t0
        status = resp.status_code
        if kind == "write" and status in (200, 201):
            body = resp.json()
            receipts = [o.get("receipt") for o in body.get("outcomes", [])] \
                if "outcomes" in body else [body]
            for receipt in receipts:
                if receipt:
                    self.shared.add(str(receipt["event_id"]), int(receipt["index"]),
                                    str(receipt["leaf_hash"]), 201)
            for outcome in body.get("outcomes", []):
                if int(outcome.get("status", 0)) >= 300:
                    status = int(outcome["status"])  # a refused event inside a batch
        with phase.lock:
            phase.statuses[status] += 1
            phase.by_route[route] += 1
            (phase.write_latency if kind == "write" else phase.read_latency).append(took)
            phase.timeline.append((t0, route, took))
            if status >= 300:
                phase.samples.setdefault(f"{status} {route}", resp.text[:300])
            if t0 >= phase.counted_from:
                phase.counted += 1


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float) -> float:
    return round(value * 1000, 2)


def prepare(url: str, artefacts: int) -> tuple[list[str], int]:
    """The reliability world's ledger at ``url`` with ``artefacts`` artefacts in its case
    (the world's own and more registered by its admin); returns their ids and the log
    size."""
    from ledger.store.sql import SqlStore

    W.build(url)
    store = SqlStore.open(url, signer=W.signer(), clock=W.now_ms)
    try:
        svc = W.custody(store)
        ids = [W.BASE_ARTEFACT]
        for n in range(1, artefacts):
            art = f"soak-art-{n}"
            svc.register(W.key("admin"), case=W.CASE, digests=W.digests(art.encode()),
                         artefact_id=art)
            ids.append(art)
        return ids, store.size()
    finally:
        store.close()


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        super().__init__(name="soak-rss", daemon=True)
        self.pid = pid
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append((time.monotonic(), apiserver.rss_kib(self.pid)))
            self.stop.wait(self.every_s)


def run(c: Config) -> dict[str, Any]:
    say = c.progress or (lambda _line: None)
    root = Path(tempfile.mkdtemp(prefix="custody-soak.", dir=c.workdir))
    rng = random.Random(c.seed)
    cluster: pgcluster.Cluster | None = None
    server: apiserver.ApiServer | None = None
    clients: list[Client] = []
    started = time.monotonic()
    try:
        if c.backend == "postgres":
            cluster = pgcluster.Cluster()
            url = cluster.create_database("soak")
        else:
            url = f"sqlite:///{root / 'ledger.db'}"
        artefacts, initial = prepare(url, c.artefacts)
        server = apiserver.start(url, root)
        pid = server.pid
        rss_boot = server.rss_kib()
        with httpx.Client(timeout=10) as client:
            token = apiserver.login(client, server.url, W.key("admin"))
        shared = Shared()
        clients = [Client(i, server.url, token, shared, rng.randrange(1 << 62), c.write_share,
                          artefacts) for i in range(c.clients)]
        for cl in clients:
            cl.start()

        # 1. capacity: closed loop
        measure = Phase()
        measure.t0 = time.monotonic()
        measure.counted_from = measure.t0 + min(WARMUP_S, c.measure_s / 2)
        for cl in clients:
            cl.phase = measure
        time.sleep(c.measure_s)
        for cl in clients:
            cl.phase = None
        measure.t1 = time.monotonic()
        time.sleep(0.2)  # requests in flight finish
        capacity = measure.counted / max(1e-9, measure.t1 - measure.counted_from)
        rate = c.rate or capacity
        say(f"capacity: {capacity:.1f} requests/s ({measure.requests} requests in "
            f"{c.measure_s:g} s, {c.clients} clients); soaking at {rate:.1f}/s for "
            f"{c.soak_s:g} s")

        # 2. soak: an open schedule at ``rate``
        soak = Phase()
        counter = itertools.count()
        soak.t0 = time.monotonic()
        soak.counted_from = soak.t0
        end = soak.t0 + c.soak_s

        def schedule() -> float | None:
            at = soak.t0 + next(counter) / rate
            return at if at < end else None

        sampler = RssSampler(pid)
        sampler.start()
        for cl in clients:
            cl.schedule = schedule
            cl.phase = soak
        last_report = soak.t0
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                rss = sampler.samples[-1][1] if sampler.samples else 0
                with soak.lock:
                    done, five = soak.requests, sum(n for s, n in soak.statuses.items()
                                                    if s >= 500)
                say(f"{last_report - soak.t0:.0f} s: {done} requests, {five} 5xx, "
                    f"RSS {rss / 1024:.1f} MiB")
        time.sleep(0.5)
        for cl in clients:
            cl.phase = None
            cl.stop.set()
        for cl in clients:
            cl.join(60)
        soak.t1 = time.monotonic()
        sampler.stop.set()
        sampler.join(5)
        rss_end = server.rss_kib()
        same_process = server.alive() and server.pid == pid
        server_log = server.log_text()
        with shared.lock:
            acks = dict(shared.acks)
        final = check(url, acks, initial, final=True)
        summary = _summary(c, measure, soak, capacity, rate, sampler.samples, rss_boot,
                           rss_end, final, same_process, server_log, clients,
                           time.monotonic() - started)
    finally:
        for cl in clients:
            cl.stop.set()
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    return summary


def _summary(c: Config, measure: Phase, soak: Phase, capacity: float, rate: float,
             samples: list[tuple[float, int]], rss_boot: int, rss_end: int,
             final: dict[str, Any], same_process: bool, server_log: str,
             clients: list[Client], duration: float) -> dict[str, Any]:
    rss = [kib for _, kib in samples] or [rss_end]
    # The first minute warms caches and pools; "flat" is judged after it.
    t_start = samples[0][0] if samples else 0.0
    warm = [kib for t, kib in samples if t - t_start >= min(60.0, c.soak_s / 4)] or rss
    both = measure.write_latency + measure.read_latency
    latency = soak.write_latency + soak.read_latency
    five = sum(n for s, n in soak.statuses.items() if s >= 500) + \
        sum(n for s, n in measure.statuses.items() if s >= 500)
    other = {str(s): n for s, n in sorted((soak.statuses + measure.statuses).items())
             if s not in (200, 201) and s < 500}
    elapsed = max(1e-9, soak.t1 - soak.t0)
    summary = {
        "campaign": "soak", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "command": c.command or f"python -m tests.reliability soak --minutes {c.soak_s / 60:g}",
        "backend": c.backend, "clients": c.clients, "write_share": c.write_share,
        "capacity_rps": round(capacity, 1),
        "capacity_measure_s": c.measure_s,
        "capacity_p99_ms": _ms(_pct(both, 0.99)),
        "target_rps": round(rate, 1),
        "soak_s": round(elapsed, 1),
        "requests": soak.requests, "achieved_rps": round(soak.requests / elapsed, 1),
        "requests_late_100ms": soak.late,
        "requests_incl_measurement": soak.requests + measure.requests,
        "writes": len(soak.write_latency), "reads": len(soak.read_latency),
        "by_route": dict(sorted(soak.by_route.items())),
        "statuses": {str(s): n for s, n in sorted(soak.statuses.items())},
        "status_5xx": five, "other_non_2xx": other,
        "transport_errors": soak.transport_errors + measure.transport_errors,
        "latency_p50_ms": _ms(_pct(latency, 0.50)), "latency_p99_ms": _ms(_pct(latency, 0.99)),
        "latency_max_ms": _ms(max(latency, default=0.0)),
        "write_p50_ms": _ms(_pct(soak.write_latency, 0.50)),
        "write_p99_ms": _ms(_pct(soak.write_latency, 0.99)),
        "read_p50_ms": _ms(_pct(soak.read_latency, 0.50)),
        "read_p99_ms": _ms(_pct(soak.read_latency, 0.99)),
        "rss_boot_mib": round(rss_boot / 1024, 1),
        "rss_start_mib": round(rss[0] / 1024, 1), "rss_end_mib": round(rss_end / 1024, 1),
        "rss_max_mib": round(max(rss) / 1024, 1),
        "rss_after_warmup_mib": round(warm[0] / 1024, 1),
        "rss_growth_mib": round((rss_end - rss[0]) / 1024, 1),
        "rss_growth_after_warmup_mib": round((rss_end - warm[0]) / 1024, 1),
        "log_size": final["size"], "acknowledged": final["acknowledged"],
        "lost": final["lost"], "duplicates": final["duplicates"],
        "committed_unacknowledged": final["committed_unacknowledged"],
        "audit_ok": final["audit_ok"], "audit_detail": final["audit_detail"],
        "api_server_restarts": 0 if same_process else 1,
        "server_unexpected_errors_logged": server_log.count("unexpected error on"),
        "client_errors": [f"{cl.name}: {cl.error!r}" for cl in clients if cl.error],
        "samples": dict(sorted((measure.samples | soak.samples).items())),
        "duration_s": round(duration, 1),
    }
    # Latency by route over the first and the last tenth of the soak: a route whose cost
    # grows with the log shows here.
    tenth = elapsed / 10
    for label, lo, hi in (("first_tenth", soak.t0, soak.t0 + tenth),
                          ("last_tenth", soak.t1 - tenth, soak.t1)):
        routes: dict[str, list[float]] = {}
        for t, route, took in soak.timeline:
            if lo <= t < hi:
                routes.setdefault(route, []).append(took)
        summary[f"by_route_{label}_p50_p99_ms"] = {
            route: [_ms(_pct(v, 0.5)), _ms(_pct(v, 0.99))] for route, v in sorted(routes.items())}
        summary[f"rps_{label}"] = round(sum(len(v) for v in routes.values()) / tenth, 1)
    summary["ok"] = (five == 0 and not summary["transport_errors"] and not other
                     and final["lost"] == 0 and final["duplicates"] == 0 and final["audit_ok"]
                     and same_process and not summary["client_errors"]
                     and summary["server_unexpected_errors_logged"] == 0)
    return summary


def main_soak(args: Any) -> int:
    parts = ["python -m tests.reliability soak", f"--minutes {args.minutes:g}"]
    if args.backend != "sqlite":
        parts.append(f"--backend {args.backend}")
    if args.clients != 8:
        parts.append(f"--clients {args.clients}")
    if args.write_share != 0.5:
        parts.append(f"--write-share {args.write_share:g}")
    if args.rate is not None:
        parts.append(f"--rate {args.rate:g}")
    if args.artefacts != 32:
        parts.append(f"--artefacts {args.artefacts}")
    config = Config(soak_s=args.minutes * 60, backend=args.backend, clients=args.clients,
                    write_share=args.write_share, measure_s=args.measure, rate=args.rate,
                    artefacts=args.artefacts,
                    seed=args.seed, workdir=args.workdir, command=" ".join(parts),
                    progress=None if args.quiet else
                    (lambda line: print(line, file=sys.stderr, flush=True)))
    summary = run(config)
    print(json.dumps(summary, sort_keys=True) if args.json else
          json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary.get("ok") else 1
