"""Writer processes of the crash campaign and their acknowledgement journals.

A writer is a forked child that writes to the ledger through the real use cases
(:class:`ledger.service.Custody`) over the real store: the embedded
:class:`~ledger.store.sql.SqlStore`, or a :class:`~ledger.store.remote.RemoteStore`
talking to the API server. Each call that RETURNED a receipt is then written to the
writer's journal — event id, log index, leaf hash — with ``write`` + ``fsync``: that is
the acknowledgement the campaign holds the ledger to. A SIGKILL can land anywhere:
before the commit, between the commit and the journal line (an unacknowledged entry
that is nevertheless in the log: allowed), or anywhere else.

Kinds:

``access``    single appends (``Custody.access``)
``group``     group commits (``store.append_many`` of 2-40 access events)
``register``  artefact registrations (``Custody.register``)
``transfer``  dispatch/receipt pairs of the writer's own artefact between BKA, LKA and
              NFI (``Custody.dispatch`` / ``Custody.receive``), re-reading the artefact
              before each step so a kill between the two is resumed correctly
``lying``     the checker's self-test: writes the acknowledgement BEFORE it commits
              (predicting index and leaf hash), then sleeps, then commits; a kill in
              between must be reported as a lost event
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ledger.core import events as ev
from ledger.core import merkle
from ledger.core.errors import Backpressure, LedgerError, UpstreamError
from ledger.service import Custody
from ledger.store.base import AppendResult, LedgerStore
from tests.reliability import world as W

KINDS = ("access", "group", "register", "transfer")
#: A writer left alone (its parent gone) stops after this long.
MAX_LIFETIME_S = 120.0


@dataclass(frozen=True)
class Ack:
    """One acknowledged event, as its writer journaled it."""

    event_id: str
    index: int
    leaf_hash: str  # hex
    writer: str
    kind: str


class Journal:
    """Append-only acknowledgement journal: one JSON line per receipt, fsynced."""

    def __init__(self, path: Path, writer: str) -> None:
        self.writer = writer
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def ack(self, kind: str, results: list[AppendResult]) -> None:
        if not results:
            return
        data = "".join(json.dumps({"e": r.event_id, "i": r.index, "h": r.leaf_hash.hex(),
                                   "w": self.writer, "k": kind}) + "\n"
                       for r in results).encode()
        os.write(self.fd, data)  # one write: a kill leaves it whole or absent
        os.fsync(self.fd)

    def ack_raw(self, kind: str, event_id: str, index: int, leaf_hash: bytes) -> None:
        os.write(self.fd, (json.dumps({"e": event_id, "i": index, "h": leaf_hash.hex(),
                                       "w": self.writer, "k": kind}) + "\n").encode())
        os.fsync(self.fd)


def read_journal(path: Path) -> list[Ack]:
    """The complete lines of a journal (a torn last line was never acknowledged)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    acks = []
    for line in data.split(b"\n")[:-1]:
        try:
            row = json.loads(line)
            acks.append(Ack(str(row["e"]), int(row["i"]), str(row["h"]), str(row["w"]),
                            str(row["k"])))
        except (ValueError, KeyError, TypeError):
            continue
    return acks


@dataclass(frozen=True)
class WriterSpec:
    name: str
    kind: str
    target: str  # a database URL (embedded) or the API server's base URL
    via: str  # embedded | api
    journal: Path
    errors: Path
    seed: int
    parent: int


def run_writer(spec: WriterSpec) -> NoReturn:
    """The body of a forked writer process; never returns."""
    code = 0
    try:
        fd = os.open(spec.errors, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        _loop(spec)
    except BaseException:  # pragma: no cover - reported through the errors file
        os.write(1, b"WRITER-CRASHED\n")
        traceback.print_exc()
        code = 3
    finally:
        os._exit(code)


class _Errors:
    """Counts refusals and failures by type, in the writer's errors file."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def note(self, exc: BaseException) -> None:
        name = type(exc).__module__.split(".")[0] + "." + type(exc).__name__
        if "an unexpected error occurred" in str(exc):  # the API's 500 problem
            name = "api.http-500"
        elif "cannot reach the ledger server" in str(exc):  # the API server is down
            name += "(server-unreachable)"
        first = name not in self.seen
        self.seen[name] = self.seen.get(name, 0) + 1
        # One line per error (a killed writer leaves its counts in the file).
        message = " ".join(str(exc).split())[:300] if first else ""
        os.write(1, f"ERROR {name} {message}\n".encode())


def _open(spec: WriterSpec) -> tuple[LedgerStore, Callable[[], None]]:
    if spec.via == "api":
        import httpx

        from ledger.store.remote import ActorLogin, RemoteStore

        client = httpx.Client(base_url=spec.target, timeout=10)
        logins = {a: ActorLogin(spec.target, W.key(a), client=client) for a in W.ACTORS}
        store: LedgerStore = RemoteStore(spec.target, token=lambda: logins["admin"](),
                                         signer_tokens=lambda a: logins[a](), client=client)
        return store, client.close
    from ledger.store.sql import SqlStore

    sql = SqlStore.open(spec.target, signer=W.signer(), clock=W.now_ms)
    return sql, sql.close


def _loop(spec: WriterSpec) -> None:
    rng = random.Random(spec.seed)
    journal = Journal(spec.journal, spec.name)
    errors = _Errors()
    started = time.monotonic()
    store: LedgerStore | None = None
    step: Callable[[], None] | None = None
    while time.monotonic() - started < MAX_LIFETIME_S and os.getppid() == spec.parent:
        try:
            if store is None:
                store, _close = _open(spec)
                svc = W.custody(store)
                step = _steps(spec, store, svc, journal, rng)
            assert step is not None
            step()
        except LedgerError as exc:
            errors.note(exc)
            if isinstance(exc, UpstreamError | Backpressure):
                time.sleep(0.01)
        except Exception as exc:  # counted as an unexpected error type
            errors.note(exc)
            time.sleep(0.01)


def _access_payload(rng: random.Random) -> dict[str, Any]:
    return {"artefact": W.BASE_ARTEFACT, "action": "view", "purpose": "crash campaign",
            "outcome": "success", "authorisation": f"r{rng.randrange(1 << 30)}"}


def _steps(spec: WriterSpec, store: LedgerStore, svc: Custody, journal: Journal,
           rng: random.Random) -> Callable[[], None]:
    admin = W.key("admin")
    kind = spec.kind

    if kind == "access":
        def access() -> None:
            r = svc.access(admin, artefact=W.BASE_ARTEFACT, action="view",
                           purpose="crash campaign", authorisation=f"r{rng.randrange(1 << 30)}")
            journal.ack(kind, [r])
        return access

    if kind == "group":
        def group() -> None:
            n = rng.choice([2, 3, 5, 8, 16, 40])
            batch = [svc.event(ev.ACCESS, admin, _access_payload(rng)) for _ in range(n)]
            outcomes = store.append_many(batch)
            journal.ack(kind, [o for o in outcomes if isinstance(o, AppendResult)])
            refused = [o for o in outcomes if not isinstance(o, AppendResult)]
            if refused:
                raise refused[0]
        return group

    if kind == "register":
        def register() -> None:
            actor = rng.choice(list(W.ACTORS))
            label = f"{spec.name}/{rng.randrange(1 << 62)}".encode()
            r = svc.register(W.key(actor), case=W.CASE, digests=W.digests(label),
                             kind="file", exhibit="X-1", description="crash campaign")
            journal.ack(kind, [r])
        return register

    if kind == "transfer":
        mine = f"art-{spec.name}-{rng.randrange(1 << 40):x}"
        data = W.digests(mine.encode())

        def transfer() -> None:
            art = store.state("art/" + mine)
            if art is None:
                r = svc.register(admin, case=W.CASE, digests=data, artefact_id=mine)
            elif art["open_transfer"] is not None:
                tr = store.state("tr/" + art["open_transfer"])
                assert tr is not None
                recipient = W.key(W.CUSTODIAN[tr["to_org"]])
                r = svc.receive(recipient, transfer=tr["id"], digests=data)
            else:
                holder = art["custodian"]
                to_org = rng.choice([o for o in W.CUSTODIAN if o != holder])
                r = svc.dispatch(W.key(W.CUSTODIAN[holder]), artefact=mine, to_org=to_org,
                                 purpose="analysis", legal_basis=W.LEGAL_BASIS)
            journal.ack(kind, [r])
        return transfer

    if kind == "lying":
        return _lying(spec, store, svc, journal, rng)

    raise ValueError(f"unknown writer kind {kind!r}")


def _lying(spec: WriterSpec, store: LedgerStore, svc: Custody, journal: Journal,
           rng: random.Random) -> Callable[[], None]:
    """Acknowledge BEFORE committing: the checker must catch this writer."""
    from ledger.store.sql import SqlStore

    admin = W.key("admin")
    fixed = [W.now_ms()]
    # Its own store whose clock is the predicted ledger time, so the leaf is known.
    own = SqlStore.open(spec.target, signer=W.signer(), clock=lambda: fixed[0])

    def lie() -> None:
        size = own.size()
        last = own.entry(size - 1).ledger_time if size else 0
        fixed[0] = max(W.now_ms(), last)
        signed = svc.event(ev.ACCESS, admin, _access_payload(rng))
        leaf_hash = merkle.leaf_hash(ev.Entry(size, fixed[0], signed).leaf_bytes())
        journal.ack_raw("lying", signed.event_id, size, leaf_hash)  # the lie
        time.sleep(rng.uniform(0.02, 0.06))
        r = own.append(signed)
        if (r.index, r.leaf_hash) != (size, leaf_hash):  # pragma: no cover - alone, exact
            os.write(1, f"ERROR lying.mispredicted {r.index} != {size}\n".encode())

    return lie


def error_counts(path: Path) -> dict[str, int]:
    """``{error type: count}`` from a writer's errors file."""
    counts: dict[str, int] = {}
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return counts
    for line in text.splitlines():
        if line.startswith("ERROR "):
            name = line.split()[1]
            counts[name] = counts.get(name, 0) + 1
        elif line.startswith("WRITER-CRASHED"):
            counts["writer-crashed"] = counts.get("writer-crashed", 0) + 1
    return counts


def error_samples(path: Path) -> dict[str, str]:
    """The first message of each error type (for the report)."""
    samples: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return samples
    for line in text.splitlines():
        if line.startswith("ERROR "):
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[2] and parts[1] not in samples:
                samples[parts[1]] = parts[2]
    return samples
