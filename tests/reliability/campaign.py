"""The crash campaign: writers killed with SIGKILL at random points, then checked.

Each cycle:

1. writer processes start (:mod:`tests.reliability.writers`: single appends, group
   commits, registrations, dispatch/receipt pairs), forked from this process so that a
   cycle costs milliseconds, not an interpreter start. With ``--via api`` the writers
   are API clients (``RemoteStore``) of a real API server (``api.server.serve``, i.e.
   what ``custody serve`` runs: uvicorn, group commit) forked on a free loopback port;
2. once the first acknowledgement is journaled, a random window (0-``window`` s) is
   drawn and every writer is SIGKILLed at its own random moment inside it; with
   ``--via api`` the API server too; on PostgreSQL, in a share of the cycles, the
   PostgreSQL server itself (postmaster and every backend) is SIGKILLed at a random
   moment, and restarted (crash recovery) once everything is dead;
3. the check: every acknowledged event of the ledger so far (all cycles) is present at
   its index with its leaf hash and event id; the full audit (``audit_store``: SQLite's
   integrity check, every leaf, signature, custody rule replayed, state table, refs,
   Merkle nodes, state map and checkpoints) passes, so no unacknowledged event is
   half-applied; and the next append works (it is then an acknowledged event too).

A fresh ledger is made every ``rotate`` cycles so each audit stays well under a
second. The summary counts cycles, faults injected, acknowledged events checked,
acknowledged events lost (target 0), audit failures (target 0) and the duration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability import pgcluster
from tests.reliability import world as W
from tests.reliability.writers import (
    KINDS,
    Ack,
    WriterSpec,
    error_counts,
    error_samples,
    read_journal,
    run_writer,
)

#: Seconds a cycle waits for its first acknowledgement before it kills anyway.
FIRST_ACK_TIMEOUT = 30.0


@dataclass
class Config:
    cycles: int
    backend: str = "sqlite"  # sqlite | postgres
    via: str = "embedded"  # embedded | api
    seed: int = 14
    rotate: int = 10  # a fresh ledger every this many cycles
    writers: int = 4  # writer processes per cycle (one of each kind, then random kinds)
    window: float = 0.35  # kills land within this many seconds after the first ack
    server_kill_rate: float = 0.3  # PostgreSQL: share of cycles that kill the server
    lying: bool = False  # self-test: one writer that acknowledges before it commits
    workdir: Path | None = None
    keep: bool = False
    progress: Callable[[str], None] | None = None


@dataclass
class Totals:
    cycles: int = 0
    ledgers: int = 0
    writers_started: int = 0
    writer_kills: int = 0
    writers_exited_early: int = 0
    api_server_kills: int = 0
    db_server_kills: int = 0
    acks: int = 0
    acks_by_kind: dict[str, int] = field(default_factory=dict)
    ack_checks: int = 0
    lost: set[str] = field(default_factory=set)
    audit_failures: int = 0
    audit_details: list[str] = field(default_factory=list)
    next_append_failures: int = 0
    next_append_details: list[str] = field(default_factory=list)
    committed_unacknowledged: int = 0
    entries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)
    lost_samples: list[str] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)


@dataclass
class Ledger:
    number: int
    url: str
    folder: Path
    database: str | None = None  # PostgreSQL database name
    acks: dict[str, Ack] = field(default_factory=dict)
    size: int = 0
    keyfile: Path | None = None


class Campaign:
    def __init__(self, config: Config) -> None:
        if config.backend not in ("sqlite", "postgres"):
            raise ValueError("backend must be sqlite or postgres")
        if config.via not in ("embedded", "api"):
            raise ValueError("via must be embedded or api")
        self.c = config
        self.rng = random.Random(config.seed)
        self.t = Totals()
        self.root = Path(tempfile.mkdtemp(prefix="custody-crash.", dir=config.workdir))
        self.cluster: pgcluster.Cluster | None = None
        self.ledger: Ledger | None = None
        self.me = os.getpid()

    # ---- lifecycle --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        pgcluster.become_subreaper()  # reap whatever a killed process leaves behind
        try:
            if self.c.backend == "postgres":
                self.cluster = pgcluster.Cluster()
            for n in range(self.c.cycles):
                if self.ledger is None or n % self.c.rotate == 0:
                    self._new_ledger()
                self._cycle(n)
        finally:
            self._drop_ledger()
            if self.cluster is not None:
                self.cluster.close()
            if not self.c.keep:
                shutil.rmtree(self.root, ignore_errors=True)
        return self.summary(time.monotonic() - started)

    def _say(self, text: str) -> None:
        if self.c.progress is not None:
            self.c.progress(text)

    def _new_ledger(self) -> None:
        self._drop_ledger()
        number = self.t.ledgers
        self.t.ledgers += 1
        folder = self.root / f"ledger-{number}"
        folder.mkdir()
        if self.cluster is not None:
            name = f"crash_{number}"
            url = self.cluster.create_database(name)
            ledger = Ledger(number, url, folder, name)
        else:
            ledger = Ledger(number, f"sqlite:///{folder / 'ledger.db'}", folder)
        ledger.size = W.build(ledger.url)
        if self.c.via == "api":
            from ledger import keys
            from tests.conftest import seed_of

            ledger.keyfile = folder / "log.key"
            keys.write_key(ledger.keyfile, W.ORIGIN, seed_of("log:" + W.ORIGIN), None)
        self.ledger = ledger

    def _drop_ledger(self) -> None:
        ledger, self.ledger = self.ledger, None
        if ledger is None:
            return
        self.t.entries += ledger.size
        if self.c.keep:
            return
        if self.cluster is not None and ledger.database is not None:
            with contextlib.suppress(Exception):
                self.cluster.drop_database(ledger.database)
        shutil.rmtree(ledger.folder, ignore_errors=True)

    # ---- one cycle ----------------------------------------------------------------------

    def _fork(self, body: Callable[[], None]) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setpgid(0, 0)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                body()
            finally:
                os._exit(5)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # the writer's group: its helpers die with it
        return pid

    def _cycle(self, n: int) -> None:
        assert self.ledger is not None
        ledger = self.ledger
        rng = self.rng
        cycle_dir = ledger.folder / f"cycle-{n}"
        cycle_dir.mkdir()
        before = ledger.size
        server_pid: int | None = None
        target = ledger.url
        if self.c.via == "api" and not self.c.lying:
            server_pid, target = self._start_api(ledger, cycle_dir)
        if self.c.lying:
            kinds = ["lying"]
        else:
            kinds = list(KINDS)
            rng.shuffle(kinds)
            while len(kinds) < self.c.writers:
                kinds.append(rng.choice(KINDS))
            kinds = kinds[:self.c.writers]
        via = "embedded" if self.c.lying else self.c.via
        writers: dict[int, WriterSpec] = {}
        for i, kind in enumerate(kinds):
            spec = WriterSpec(name=f"c{n}w{i}", kind=kind, target=target, via=via,
                              journal=cycle_dir / f"w{i}.journal",
                              errors=cycle_dir / f"w{i}.errors",
                              seed=rng.randrange(1 << 62), parent=self.me)
            writers[self._fork(lambda spec=spec: run_writer(spec))] = spec
        self.t.writers_started += len(writers)
        # Wait for the first acknowledgement, so every cycle kills busy writers.
        deadline = time.monotonic() + FIRST_ACK_TIMEOUT
        journals = [s.journal for s in writers.values()]
        while time.monotonic() < deadline and not any(
                p.exists() and p.stat().st_size > 0 for p in journals):
            time.sleep(0.002)
        window = rng.uniform(0.0, self.c.window)
        plan: list[tuple[float, str, int | None]] = [
            (rng.uniform(0.0, window), "writer", pid) for pid in writers]
        if server_pid is not None:
            plan.append((rng.uniform(0.0, window), "api", server_pid))
        kill_db = self.cluster is not None and not self.c.lying and \
            rng.random() < self.c.server_kill_rate
        if kill_db:
            plan.append((rng.uniform(0.0, window), "db", None))
        plan.sort(key=lambda item: item[0])
        t0 = time.monotonic()
        for at, what, pid in plan:
            delay = at - (time.monotonic() - t0)
            if delay > 0:
                time.sleep(delay)
            if what == "db":
                assert self.cluster is not None
                self.cluster.crash()
                self.t.db_server_kills += 1
            else:
                assert pid is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                if what == "api":
                    self.t.api_server_kills += 1
        for pid in [*writers, *([server_pid] if server_pid is not None else [])]:
            _, status = os.waitpid(pid, 0)
            if pid in writers:
                if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                    self.t.writer_kills += 1
                else:
                    self.t.writers_exited_early += 1
        pgcluster.reap_strays()
        if kill_db:
            assert self.cluster is not None
            self.t.recovery_s.append(self.cluster.start())
        # Collect the acknowledgements and the writers' error counts.
        new_acks = 0
        for spec in writers.values():
            for ack in read_journal(spec.journal):
                if ack.event_id not in ledger.acks:
                    ledger.acks[ack.event_id] = ack
                    new_acks += 1
                    self.t.acks_by_kind[ack.kind] = self.t.acks_by_kind.get(ack.kind, 0) + 1
            for name, count in error_counts(spec.errors).items():
                self.t.errors[name] = self.t.errors.get(name, 0) + count
            for name, sample in error_samples(spec.errors).items():
                self.t.error_samples.setdefault(name, sample)
        self.t.acks += new_acks
        outcome = self._check(ledger, n)
        committed = outcome["size"] - before  # entries the writers got into the log
        unacked = max(0, committed - new_acks) if outcome["audit_ok"] else 0
        self.t.committed_unacknowledged += unacked
        self.t.cycles += 1
        faults = len(writers) + (server_pid is not None) + kill_db
        self._say(f"cycle {n + 1}/{self.c.cycles} ledger {ledger.number}: {faults} kills"
                  f"{' (PostgreSQL server killed)' if kill_db else ''}, "
                  f"+{max(0, committed)} entries ({new_acks} acked, {unacked} committed "
                  f"unacked), {len(ledger.acks)} acks checked, lost {len(self.t.lost)}, "
                  f"audit {'ok' if outcome['audit_ok'] else 'FAILED'}, next append "
                  f"{'ok' if outcome['next_ok'] else 'FAILED'}")
        if not self.c.keep:
            shutil.rmtree(cycle_dir, ignore_errors=True)

    def _start_api(self, ledger: Ledger, cycle_dir: Path) -> tuple[int, str]:
        import httpx

        port = pgcluster.free_port()
        log = cycle_dir / "server.log"

        def serve() -> None:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            from api.server import serve as run_server
            from api.settings import Settings

            settings = Settings(database_url=ledger.url, log_key_path=ledger.keyfile,
                                origin=W.ORIGIN, environment="production",
                                token_secret="s" * 40)  # type: ignore[call-arg]
            run_server("127.0.0.1", port, settings, log_level="warning")

        pid = self._fork(serve)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as client:
            while True:
                try:
                    if client.get(base + "/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done or time.monotonic() > deadline:
                    raise RuntimeError("the API server did not start:\n"
                                       + log.read_text(errors="replace"))
                time.sleep(0.01)
        return pid, base

    # ---- the check ----------------------------------------------------------------------

    def _check(self, ledger: Ledger, n: int) -> dict[str, Any]:
        outcome = check_ledger(ledger.url, ledger.acks.values())
        self.t.ack_checks += outcome.checked
        for ack in outcome.lost:
            if ack.event_id not in self.t.lost:
                self.t.lost.add(ack.event_id)
                if len(self.t.lost_samples) < 10:
                    self.t.lost_samples.append(
                        f"cycle {n + 1}: {ack.kind} event {ack.event_id} acknowledged at "
                        f"index {ack.index} by {ack.writer}: {outcome.why[ack.event_id]}")
        if not outcome.audit_ok:
            self.t.audit_failures += 1
            if len(self.t.audit_details) < 10:
                self.t.audit_details.append(f"cycle {n + 1}: {outcome.audit_detail}")
        if outcome.next_ack is None:
            self.t.next_append_failures += 1
            if len(self.t.next_append_details) < 10:
                self.t.next_append_details.append(f"cycle {n + 1}: {outcome.next_detail}")
        else:
            ledger.acks[outcome.next_ack.event_id] = outcome.next_ack
            self.t.acks += 1
            self.t.acks_by_kind["next"] = self.t.acks_by_kind.get("next", 0) + 1
        ledger.size = outcome.size + (outcome.next_ack is not None)
        if not outcome.audit_ok and not self.c.lying:
            # Keep the damaged ledger for inspection; go on with a fresh one.
            self.c.keep = True
            self._new_ledger()
        return {"audit_ok": outcome.audit_ok, "next_ok": outcome.next_ack is not None,
                "size": outcome.size}

    # ---- summary ------------------------------------------------------------------------

    def summary(self, duration: float) -> dict[str, Any]:
        t = self.t
        faults = t.writer_kills + t.api_server_kills + t.db_server_kills
        unexpected = {k: v for k, v in t.errors.items()
                      if not k.startswith("ledger.") and k != "writer-crashed"}
        http_500 = t.errors.get("api.http-500", 0)
        return {
            "campaign": "crash", "backend": self.c.backend, "via": self.c.via,
            "seed": self.c.seed, "lying_writer": self.c.lying,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
            "command": command_line(self.c),
            "cycles": t.cycles, "ledgers": t.ledgers,
            "writer_processes": t.writers_started, "writer_kills": t.writer_kills,
            "writers_exited_early": t.writers_exited_early,
            "api_server_kills": t.api_server_kills,
            "postgres_server_kills": t.db_server_kills,
            "faults_injected": faults,
            "acknowledged_events_checked": t.acks,
            "acknowledged_by_kind": dict(sorted(t.acks_by_kind.items())),
            "ack_checks": t.ack_checks,
            "lost": len(t.lost), "lost_samples": t.lost_samples,
            "audit_failures": t.audit_failures, "audit_details": t.audit_details,
            "next_append_failures": t.next_append_failures,
            "next_append_details": t.next_append_details,
            "committed_unacknowledged": t.committed_unacknowledged,
            "entries_written": t.entries,
            "writer_errors": dict(sorted(t.errors.items())),
            "writer_error_samples": dict(sorted(t.error_samples.items())),
            "unexpected_error_types": sorted(unexpected),
            "writer_crashes": t.errors.get("writer-crashed", 0),
            "api_http_500": http_500,
            "postgres_recovery_s_max": round(max(t.recovery_s), 3) if t.recovery_s else None,
            "duration_s": round(duration, 1),
            "ok": not t.lost and not t.audit_failures and not t.next_append_failures
            and not t.errors.get("writer-crashed", 0),
        }


@dataclass
class CheckOutcome:
    size: int
    checked: int
    lost: list[Ack]
    why: dict[str, str]
    audit_ok: bool
    audit_detail: str
    next_ack: Ack | None
    next_detail: str = ""


def check_ledger(url: str, acks: Any) -> CheckOutcome:
    """Every ack present at its index with its leaf hash; the full audit passes; the
    next append works (and is returned as one more acknowledged event)."""
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
        size = len(by_index)
        lost: list[Ack] = []
        why: dict[str, str] = {}
        checked = 0
        for ack in acks:
            checked += 1
            found = by_index.get(ack.index)
            if found == (ack.leaf_hash, ack.event_id):
                continue
            lost.append(ack)
            why[ack.event_id] = ("no entry at that index" if found is None else
                                 f"index {ack.index} holds event {found[1]} "
                                 f"(leaf hash {found[0][:16]}…)")
        try:
            report = audit_store(store, log_verifier_key=W.log_key(), workers=1)
            audit_ok = report.ok and report.tree_size == size
            detail = "" if audit_ok else (
                f"{report.kind} at index {report.first_bad_index}: {report.detail}"
                if not report.ok else f"audit saw {report.tree_size} entries, table {size}")
        except Exception as exc:  # an audit that crashes has failed
            audit_ok, detail = False, f"the audit raised {type(exc).__name__}: {exc}"
    finally:
        store.close()
    next_ack: Ack | None = None
    next_detail = ""
    try:
        writer = SqlStore.open(url, signer=W.signer(), clock=W.now_ms)
        try:
            r = W.custody(writer).access(W.key("admin"), artefact=W.BASE_ARTEFACT,
                                         action="view", purpose="next append after a crash")
            if r.index != size:
                next_detail = f"the next append got index {r.index}, expected {size}"
            else:
                next_ack = Ack(r.event_id, r.index, r.leaf_hash.hex(), "checker", "next")
        finally:
            writer.close()
    except Exception as exc:  # reported
        next_detail = f"{type(exc).__name__}: {exc}"
    return CheckOutcome(size, checked, lost, why, audit_ok, detail, next_ack, next_detail)


def command_line(c: Config) -> str:
    parts = ["python -m tests.reliability crash", f"--cycles {c.cycles}",
             f"--backend {c.backend}", f"--via {c.via}", f"--seed {c.seed}"]
    if c.rotate != Config.rotate:
        parts.append(f"--rotate {c.rotate}")
    if c.writers != Config.writers:
        parts.append(f"--writers {c.writers}")
    if c.window != Config.window:
        parts.append(f"--window {c.window}")
    if c.server_kill_rate != Config.server_kill_rate:
        parts.append(f"--server-kill-rate {c.server_kill_rate}")
    if c.lying:
        parts.append("--lying-writer")
    return " ".join(parts)


def main_crash(args: Any) -> int:
    config = Config(cycles=args.cycles, backend=args.backend, via=args.via, seed=args.seed,
                    rotate=args.rotate, writers=args.writers, window=args.window,
                    server_kill_rate=args.server_kill_rate, lying=args.lying_writer,
                    workdir=args.workdir, keep=args.keep,
                    progress=None if args.quiet else
                    (lambda line: print(line, file=sys.stderr, flush=True)))
    summary = Campaign(config).run()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary["ok"] else 1
