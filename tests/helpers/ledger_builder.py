"""Build a realistic small ledger through the real service and SQL store, for tests.

``build_ledger(directory, seed=...)`` returns a :class:`BuiltLedger` — a named tuple
``(store, custody, actors, tmpdir, clock)`` — after appending ~45 entries through
:class:`ledger.service.Custody` on SQLite: three organisations in DE/NL/FR plus one
outside the case, eight actors, a case, two legal bases (MLAT, EIO), eight artefacts,
cross-border dispatches, accepted and rejected receipts, successful and denied
accesses, and a key revocation. Everything is deterministic for a given seed.

Insider helpers (they need the append-only triggers dropped first, as an attacker with
database access would): :func:`drop_triggers`, :func:`execute`, :func:`rewrite_log`
(rewrite entries, Merkle nodes and re-signed checkpoints from a list of leaves, the way
someone holding the log key would cover their tracks), :func:`replay_state`.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from ledger.core import _sodium, merkle, vmap
from ledger.core.canonical import canonical
from ledger.core.checkpoint import Checkpoint, sign_checkpoint
from ledger.core.errors import LedgerError
from ledger.core.events import Entry
from ledger.core.note import NoteSigner
from ledger.core.rules import Context, MemoryState, apply
from ledger.evidence import Digests
from ledger.service import AccessDenied, ActorKey, Custody
from ledger.store import schema as t
from ledger.store.sql import SqlStore

ORIGIN = "example.org/custody"
START_MS = 1_790_000_000_000
APPEND_ONLY = t.APPEND_ONLY  # every append-only table, new ones included


class StepClock:
    """A deterministic clock in ms: every call advances by ``step`` ms."""

    def __init__(self, start: int = START_MS, step: int = 1000) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


class BuiltLedger(NamedTuple):
    store: SqlStore
    custody: Custody
    actors: dict[str, ActorKey]
    tmpdir: Path
    clock: StepClock


def digests_of(data: bytes) -> Digests:
    return Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
                   None, len(data))


def db_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'ledger.db'}"


def build_ledger(directory: Path, *, seed: int = 0, artefacts: int = 8,
                 log_key_seed: bytes | None = None) -> BuiltLedger:
    """Append the scenario described in the module docstring; return the open store."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    clock = StepClock()
    log_key = NoteSigner(ORIGIN, log_key_seed or rng.randbytes(32))
    store = SqlStore.open(db_url(directory), signer=log_key, clock=clock, create=True)
    svc = Custody(store, origin=ORIGIN, clock=clock, random=rng.randbytes)

    def key(actor_id: str) -> ActorKey:
        return ActorKey(actor_id, _sodium.Signer(rng.randbytes(32)))

    actors = {name: key(name) for name in (
        "admin-de", "ex-de", "cust-de", "cust-nl", "ex-nl", "pros-nl", "cust-fr", "ext-1")}
    admin = actors["admin-de"]
    svc.genesis(admin, org_id="bka", org_name="BKA", jurisdiction="DE", actor_name="Anna",
                roles=["admin", "prosecutor"], log_key=log_key.verifier_key)
    svc.add_org(admin, "nfi", "NFI", "NL")
    svc.add_org(admin, "gend", "Gendarmerie", "FR")
    svc.add_org(admin, "ext", "Outside Org", "BE")
    for actor_id, org, roles in (
        ("ex-de", "bka", ["examiner"]), ("cust-de", "bka", ["custodian"]),
        ("cust-nl", "nfi", ["custodian"]), ("ex-nl", "nfi", ["examiner"]),
        ("pros-nl", "nfi", ["prosecutor"]), ("cust-fr", "gend", ["custodian"]),
        ("ext-1", "ext", ["examiner"]),
    ):
        svc.enrol(admin, actor_id=actor_id, org=org, name=actor_id.upper(), roles=roles,
                  public_key=actors[actor_id].signer.public_key)
    svc.open_case(admin, "CASE-1", "Operation Test")
    svc.add_member(admin, "CASE-1", "nfi")
    svc.add_member(admin, "CASE-1", "gend")
    mlat = svc.add_legal_basis(admin, instrument="mlat", reference="MLA-2026-1",
                               issuing_state="NL", executing_state="DE",
                               valid_until="2099-01-01", case="CASE-1").result["legal_basis"]
    eio = svc.add_legal_basis(admin, instrument="eio", reference="EIO-2026-7",
                              issuing_state="FR", executing_state="DE",
                              valid_until="2099-01-01", case="CASE-1").result["legal_basis"]
    for i in range(artefacts):
        data = rng.randbytes(64 + i)
        dg = digests_of(data)
        art = svc.register(actors["ex-de"], case="CASE-1", digests=dg,
                           exhibit=f"EX-{i}").result["artefact"]
        to_org, lb, receiver = (("nfi", mlat, "cust-nl") if i % 2 == 0
                                else ("gend", eio, "cust-fr"))
        tr = svc.dispatch(actors["ex-de"], artefact=art, to_org=to_org, purpose="analysis",
                          legal_basis=lb).result["transfer"]
        if i == 3:  # bytes changed in transit: the receipt records a rejection
            svc.receive(actors[receiver], transfer=tr, digests=digests_of(data + b"!"))
        else:
            svc.receive(actors[receiver], transfer=tr, digests=dg)
        if to_org == "nfi":
            svc.access(actors["ex-nl"], artefact=art, action="view", purpose="review")
    with contextlib.suppress(AccessDenied):  # the denied attempt is on the log
        svc.access(actors["ext-1"], artefact=art, action="view", purpose="curious")
    svc.revoke(admin, "cust-de", "left the unit")
    return BuiltLedger(store, svc, actors, directory, clock)


def copy_ledger(source: Path, dest: Path, signer: NoteSigner | None) -> SqlStore:
    """Open a copy of a closed ledger directory (fast per-trial fixtures). The copy's
    clock continues one second after the last entry."""
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = source / f"ledger.db{suffix}"
        if src.exists():
            shutil.copyfile(src, dest / f"ledger.db{suffix}")
    clock = StepClock()
    store = SqlStore.open(db_url(dest), signer=signer, clock=clock)
    with store.engine.connect() as conn:
        clock.now = int(conn.execute(sa.select(t.head.c.last_time)).scalar_one())
    return store


# ---- insider tools -------------------------------------------------------------------


def execute(store: SqlStore, sql: str, params: dict[str, Any] | None = None) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql), params or {})


def drop_triggers(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def leaves(store: SqlStore) -> list[tuple[int, bytes, bytes, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.entries.c.idx, t.entries.c.leaf, t.entries.c.leaf_hash,
                                      t.entries.c.ledger_time).order_by(t.entries.c.idx)).all()
    return [(int(i), bytes(leaf), bytes(h), int(tm)) for i, leaf, h, tm in rows]


def replay_state(entries: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    """The world state the rules give for these entries (raises if one is refused)."""
    state = MemoryState()
    for e in entries:
        state.commit(apply(state, e.signed, Context(e.index, e.ledger_time)))
    return state.records


def rewrite_log(store: SqlStore, entries: Sequence[Entry], *,
                checkpoint_sizes: Sequence[int] | None = None,
                rewrite_state: bool = False) -> None:
    """Replace entries, Merkle nodes and checkpoints with ones recomputed from
    ``entries`` and re-signed with the store's log key (triggers must be dropped).
    Checkpoints are re-signed at ``checkpoint_sizes`` (default: every size), each with
    the state-map root of the replayed state at that size. ``rewrite_state``: the
    insider also rewrites the state cache, its history and the map nodes to match."""
    assert store.signer is not None
    frontier = merkle.Frontier.empty()
    rows, node_rows, cps = [], [], []
    sizes = set(checkpoint_sizes if checkpoint_sizes is not None
                else range(1, len(entries) + 1))
    state, smap = MemoryState(), vmap.MemoryMap()
    for e in entries:
        leaf = e.leaf_bytes()
        h = merkle.leaf_hash(leaf)
        try:  # a log the rules refuse gets stale map roots from there on (never judged)
            effects = apply(state, e.signed, Context(e.index, e.ledger_time, h))
        except LedgerError:
            effects = None
        if effects is not None:
            state.commit(effects)
            for k, v in effects.writes.items():
                smap.set(k, v)
        rows.append({"idx": e.index, "leaf": leaf, "leaf_hash": h,
                     "event_id": e.signed.event_id, "ledger_time": e.ledger_time})
        node_rows += [{"level": lv, "idx": i, "hash": v} for lv, i, v in frontier.add_leaf(h)]
        if frontier.size in sizes:
            note = sign_checkpoint(Checkpoint(store.signer.name, frontier.size, frontier.root(),
                                              (vmap.extension_line(smap.root()),)),
                                   store.signer)
            cps.append({"size": frontier.size, "note": note})
    with store.engine.begin() as conn:
        for table in (t.entries, t.nodes, t.checkpoints):
            conn.execute(table.delete())
        conn.execute(t.entries.insert(), rows)
        conn.execute(t.nodes.insert(), node_rows)
        if cps:
            conn.execute(t.checkpoints.insert(), cps)
        last = entries[-1].ledger_time if entries else 0
        conn.execute(t.head.update().values(size=len(entries), last_time=last))
        if rewrite_state:
            for table in (t.state, t.state_log, t.map_nodes):
                conn.execute(table.delete())
            records = state.records
            if records:
                conn.execute(t.state.insert(), [
                    {"key": k, "value": canonical(v).decode(), "idx": 0,
                     "bucket": vmap.bucket_of(k) if vmap.mapped(k) else None}
                    for k, v in records.items()])
                conn.execute(t.state_log.insert(), [
                    {"key": k, "size": len(entries), "bucket": vmap.bucket_of(k),
                     "value": canonical(v).decode()}
                    for k, v in records.items() if vmap.mapped(k)])
            smap.root()
            nodes = [{"level": lv, "idx": i, "size": len(entries), "hash": h}
                     for (lv, i), h in smap.nodes.items() if h != vmap.ZERO]
            if nodes:
                conn.execute(t.map_nodes.insert(), nodes)
    store._frontier = store._map = None  # the store's caches are stale now
