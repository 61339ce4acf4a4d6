"""A small two-jurisdiction ledger on a real SQL backend, shared by the integration tests.

The world: BKA (DE, lead of CASE-1), NFI (NL, case member) and LKA (DE); actors ``admin``
(BKA: admin, examiner, custodian, prosecutor), ``nl-cust`` (NFI custodian), ``de-court``
(BKA court) and ``de-cust`` (LKA custodian); one registered artefact and an MLAT legal
basis DE↔NL covering the case. Keys and the clock are deterministic.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ledger.core import events as ev
from ledger.core.note import NoteSigner
from ledger.evidence import Digests
from ledger.service import ActorKey, Custody
from ledger.store.sql import SqlStore
from tests.conftest import LOG_NAME, CountingRandom, FakeClock, actor_key, digests_of, log_signer

EVIDENCE = b"evidence bytes " * 500


@dataclass
class World:
    url: str
    store: SqlStore
    svc: Custody
    clock: FakeClock
    log: NoteSigner
    admin: ActorKey
    nl: ActorKey
    court: ActorKey
    de_cust: ActorKey
    digests: Digests
    art: str = ""
    lb: str = ""
    extra_stores: list[SqlStore] = field(default_factory=list)

    def open_store(self, clock: Any = None) -> SqlStore:
        """Another SqlStore (own engine and pool) on the same database: a 'process'."""
        s = SqlStore.open(self.url, signer=self.log, clock=clock or self.clock)
        self.extra_stores.append(s)
        return s

    def event(self, kind: str, actor: ActorKey, payload: dict[str, Any],
              prev: str | None = None) -> ev.SignedEvent:
        return self.svc.event(kind, actor, payload, prev)

    def head(self, artefact: str | None = None) -> str:
        rec = self.store.state("art/" + (artefact or self.art))
        assert rec is not None
        return str(rec["head"])

    def dispatch_event(self, actor: ActorKey | None = None, *, artefact: str | None = None,
                       to_org: str = "nfi", transfer: str | None = None,
                       legal_basis: str | None = "default",
                       prev: str | None = None) -> ev.SignedEvent:
        artefact = artefact or self.art
        payload = {"transfer": transfer or self.svc.new_id("tr"), "artefact": artefact,
                   "to_org": to_org, "to_actor": None, "purpose": "analysis",
                   "legal_basis": self.lb if legal_basis == "default" else legal_basis,
                   "transport": {"method": "", "reference": ""}, "seals": []}
        return self.event(ev.DISPATCH, actor or self.admin, payload,
                          prev=self.head(artefact) if prev is None else prev)

    def access_event(self, actor: ActorKey | None = None, outcome: str = "success",
                     claimed_time: int | None = None) -> ev.SignedEvent:
        actor = actor or self.admin
        body = ev.Event(kind=ev.ACCESS, origin=self.svc.origin,
                        nonce=self.svc.random(16).hex(),
                        claimed_time=self.clock() if claimed_time is None else claimed_time,
                        signer=actor.actor_id, key_id=actor.key_id,
                        payload={"artefact": self.art, "action": "view", "purpose": "review",
                                 "outcome": outcome})
        return ev.sign_event(body, actor.signer)

    def register_event(self, artefact_id: str, data: bytes = EVIDENCE) -> ev.SignedEvent:
        d = digests_of(data)
        return self.event(ev.ARTEFACT_REGISTER, self.admin, {
            "id": artefact_id, "case": "CASE-1", "size": d.size, "digests": d.as_dict()})

    def close(self) -> None:
        for s in self.extra_stores:
            s.close()
        self.store.close()


def build_world(url: str, clock: FakeClock | None = None, *, random_label: str = "world",
                origin: str = LOG_NAME, create: bool = True, store: Any = None,
                admin_roles: tuple[str, ...] = ("admin", "examiner", "custodian",
                                                "prosecutor")) -> World:
    clock = clock or FakeClock()
    log = log_signer(origin)
    if store is None:
        store = SqlStore.open(url, signer=log, clock=clock, create=create)
    svc = Custody(store, origin=origin, clock=clock, random=CountingRandom(random_label))
    w = World(url, store, svc, clock, log, actor_key("admin"), actor_key("nl-cust"),
              actor_key("de-court"), actor_key("de-cust"), digests_of(EVIDENCE))
    svc.genesis(w.admin, org_id="bka", org_name="BKA", jurisdiction="DE", actor_name="Anna",
                roles=list(admin_roles), log_key=log.verifier_key)
    svc.add_org(w.admin, "nfi", "NFI", "NL")
    svc.add_org(w.admin, "lka", "LKA", "DE")
    svc.enrol(w.admin, actor_id="nl-cust", org="nfi", name="Jan", roles=["custodian"],
              public_key=w.nl.signer.public_key)
    svc.enrol(w.admin, actor_id="de-court", org="bka", name="Richter", roles=["court"],
              public_key=w.court.signer.public_key)
    svc.enrol(w.admin, actor_id="de-cust", org="lka", name="Lena", roles=["custodian"],
              public_key=w.de_cust.signer.public_key)
    svc.open_case(w.admin, "CASE-1", "test case")
    svc.add_member(w.admin, "CASE-1", "nfi")
    w.art = svc.register(w.admin, case="CASE-1", digests=w.digests,
                         artefact_id="art-1").result["artefact"]
    w.lb = svc.add_legal_basis(w.admin, instrument="mlat", reference="MLA-1",
                               issuing_state="NL", executing_state="DE",
                               valid_from="2020-01-01", valid_until="2099-01-01",
                               case="CASE-1", basis_id="lb-1").result["legal_basis"]
    return w


#: Entries written by :func:`build_world`.
WORLD_SIZE = 10
#: Counter value a reopened world's random starts from (past anything build_world drew).
_REOPEN_COUNTER = 1_000_000


def reopen_world(url: str, clock: FakeClock, template: World) -> World:
    """A World over a database copied from ``template``'s (same keys, ids and origin)."""
    store = SqlStore.open(url, signer=template.log, clock=clock)
    svc = Custody(store, origin=template.svc.origin, clock=clock,
                  random=CountingRandom("world", start=_REOPEN_COUNTER))
    return dataclasses.replace(template, url=url, store=store, svc=svc, clock=clock,
                               extra_stores=[])


def copy_database(src_url: str, dst_url: str) -> None:
    """Copy a SQLite ledger file (and its WAL) from one URL's path to another's."""
    src, dst = sa.make_url(src_url).database, sa.make_url(dst_url).database
    assert src
    assert dst
    for suffix in ("", "-wal"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, dst + suffix)


@pytest.fixture(scope="session")
def sqlite_world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    """SQLite: build the world once per session; each test copies the file (faster than
    rebuilding with one fsync per event). PostgreSQL builds per test: a TEMPLATE copy of
    a database is no faster there than the ten appends."""
    url = f"sqlite:///{tmp_path_factory.mktemp('template') / 'ledger.db'}"
    tpl = build_world(url, FakeClock())
    tpl.close()
    return tpl


@pytest.fixture(scope="session")
def remote_world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The served world's template: the same world, with the admin also an auditor, since
    reading the whole log through the API (as the suite does) is an auditor's right."""
    url = f"sqlite:///{tmp_path_factory.mktemp('remote-template') / 'ledger.db'}"
    tpl = build_world(url, FakeClock(), admin_roles=("admin", "examiner", "custodian",
                                                     "prosecutor", "auditor"))
    tpl.close()
    return tpl


@pytest.fixture
def world(backend: str, db_url: str, clock: FakeClock,
          request: pytest.FixtureRequest) -> Iterator[World]:
    """A fresh standard world on ``backend``."""
    if backend == "fabric":
        yield from _fabric_world(request, clock)
        return
    if backend == "remote":
        yield from _remote_world(request, clock, db_url)
        return
    if backend == "sqlite":
        tpl: World = request.getfixturevalue("sqlite_world_template")
        copy_database(tpl.url, db_url)
        clock.now = tpl.clock.now
        w = reopen_world(db_url, clock, tpl)
    else:
        w = build_world(db_url, clock)
    assert w.store.size() == WORLD_SIZE
    yield w
    w.close()


def _fabric_world(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[World]:
    """The standard world on a fresh Fabric network of its two jurisdictions (DE, NL; one
    orderer): the store is the German organisation's, whose node signs checkpoints with
    the world's log key."""
    import network
    from ledger import keys
    from ledger.fabric.store import FabricStore
    from tests.conftest import seed_of

    folder = request.getfixturevalue("tmp_path") / "fabric-net"
    profile = network.up(["DE", "NL"], folder, orderers=1, origin=LOG_NAME).profile
    store = None
    try:
        keys.write_key(Path(profile["orgs"]["DE"]["node_dir"]) / "log.key", LOG_NAME,
                       seed_of("log:" + LOG_NAME), None)
        store = FabricStore.open(folder, "DE", clock=clock)
        w = build_world(str(folder), clock, store=store)
        assert w.store.size() == WORLD_SIZE
        yield w
    finally:
        if store is not None:
            store.close()
        network.down(folder, purge=True)


def _remote_world(request: pytest.FixtureRequest, clock: FakeClock,
                  url: str) -> Iterator[World]:
    """The standard world served by the API: a SQLite store behind the ASGI app, reached
    through :class:`~ledger.store.remote.RemoteStore` (the client every joined home uses),
    which logs in as each signer with its own key. ``world.sql`` is the store behind it."""
    import warnings

    with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; RemoteStore uses httpx
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from api.app import create_app
    from ledger.store.remote import ActorLogin, RemoteStore

    tpl: World = request.getfixturevalue("remote_world_template")
    copy_database(tpl.url, url)
    clock.now = tpl.clock.now
    served = reopen_world(url, clock, tpl)
    with TestClient(create_app(served.store, clock=clock)) as client:
        base = str(client.base_url)
        logins: dict[str, ActorLogin] = {}

        def token(actor: str | None) -> str:  # each signer logs in with its own key
            login = logins.setdefault(actor or "admin",
                                      ActorLogin(base, actor_key(actor or "admin"),
                                                 client=client))
            return login()

        remote = RemoteStore(base, token=lambda: token("admin"), signer_tokens=token,
                             client=client)
        svc = Custody(remote, origin=served.svc.origin, clock=clock,
                      random=CountingRandom("world", start=_REOPEN_COUNTER))
        w = dataclasses.replace(served, store=remote, svc=svc, extra_stores=[])
        w.sql = served.store  # type: ignore[attr-defined]
        assert w.store.size() == WORLD_SIZE
        try:
            yield w
        finally:
            remote.close()
    served.close()
