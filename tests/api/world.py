"""A two-country (plus an outsider) custody world for the API tests.

DE: org ``bka`` (lead of CASE-1): admin-de (admin, prosecutor), exam-de (examiner,
custodian), court-de (court). NL: org ``nfi`` (member of CASE-1): admin-nl (admin),
cust-nl (custodian, examiner), court-nl (court). US: org ``fbi`` (not in the case):
admin-us (admin, prosecutor), exam-us (examiner, custodian), court-us (court).
Operator: org ``ops`` (DE): aud (auditor).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ledger.core import _sodium
from ledger.core import events as ev
from ledger.core.canonical import canonical
from ledger.core.note import NoteSigner
from ledger.evidence import Digests
from ledger.service import ActorKey, Custody
from ledger.store.base import LedgerStore
from ledger.store.remote import ActorLogin, RemoteStore
from tests.conftest import digests_of, seed_of

ORIGIN = "api.test.example/custody"
EVIDENCE = b"disk image bytes " * 1000
ROLES = {
    "admin-de": ("bka", ["admin", "prosecutor"]),
    "exam-de": ("bka", ["examiner", "custodian"]),
    "court-de": ("bka", ["court"]),
    "admin-nl": ("nfi", ["admin", "prosecutor"]),
    "cust-nl": ("nfi", ["custodian", "examiner"]),
    "court-nl": ("nfi", ["court"]),
    "admin-us": ("fbi", ["admin", "prosecutor"]),
    "exam-us": ("fbi", ["examiner", "custodian"]),
    "court-us": ("fbi", ["court"]),
    "aud": ("ops", ["auditor"]),
    "aud-nl": ("nfi", ["auditor"]),
    "aud-us": ("fbi", ["auditor"]),
    "victim-bka": ("bka", ["examiner"]),
    "victim-nfi": ("nfi", ["examiner"]),
    "victim-fbi": ("fbi", ["examiner"]),
}
ORGS = {"bka": ("BKA", "DE"), "nfi": ("NFI", "NL"), "fbi": ("FBI", "US"),
        "ops": ("Ledger operations", "DE"), "spare": ("Spare agency", "FR")}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def key(actor_id: str) -> ActorKey:
    return ActorKey(actor_id, _sodium.Signer(seed_of("api-actor:" + actor_id)))


def log_signer() -> NoteSigner:
    return NoteSigner(ORIGIN, seed_of("api-log"))


def local_custody(store: LedgerStore) -> Custody:
    return Custody(store, origin=ORIGIN, clock=now_ms, random=os.urandom)


def genesis(store: LedgerStore) -> None:
    """Entry 0, appended locally on the database (the server needs an admin to exist)."""
    local_custody(store).genesis(
        key("admin-de"), org_id="bka", org_name="BKA", jurisdiction="DE",
        actor_name="Anna Admin", roles=["admin", "prosecutor"],
        log_key=log_signer().verifier_key)


@dataclass
class World:
    base_url: str
    client: httpx.Client | None = None
    logins: dict[str, ActorLogin] = field(default_factory=dict)
    artefact: str = ""
    transfer: str = ""
    digests: Digests = field(default_factory=lambda: digests_of(EVIDENCE))
    owns_client: bool = False

    def __post_init__(self) -> None:
        if self.client is None:  # a real server: one pooled client for the whole world
            self.client = httpx.Client(base_url=self.base_url, timeout=60)
            self.owns_client = True

    def close(self) -> None:
        if self.owns_client and self.client is not None:
            self.client.close()

    def token(self, actor_id: str) -> str:
        if actor_id not in self.logins:
            self.logins[actor_id] = ActorLogin(self.base_url, key(actor_id), client=self.client)
        return self.logins[actor_id]()

    def headers(self, actor_id: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token(actor_id)}

    def store(self, actor_id: str = "admin-de") -> RemoteStore:
        return RemoteStore(self.base_url, token=lambda: self.token(actor_id),
                           signer_tokens=self.token, client=self.client)

    def custody(self, actor_id: str = "admin-de") -> Custody:
        return local_custody(self.store(actor_id))


def build(world: World) -> World:
    """Organisations, actors, CASE-1 with NL as member, an MLAT, artefact ``art-1``
    registered by exam-de — every step through :class:`RemoteStore`."""
    c = world.custody("admin-de")
    admin = key("admin-de")
    for org, (name, country) in ORGS.items():
        if org != "bka":
            c.add_org(admin, org, name, country)
    for actor_id, (org, roles) in ROLES.items():
        if actor_id == "admin-de":
            continue
        enroller = {"bka": "admin-de", "ops": "admin-de"}.get(org, "admin-de")
        if org in ("nfi", "fbi") and not actor_id.startswith("admin"):
            enroller = "admin-" + {"nfi": "nl", "fbi": "us"}[org]
        world.custody(enroller).enrol(
            key(enroller), actor_id=actor_id, org=org, name=actor_id.title(), roles=roles,
            public_key=key(actor_id).signer.public_key)
    c.open_case(admin, "CASE-1", "Joint investigation DE/NL")
    c.add_member(admin, "CASE-1", "nfi")
    c.add_legal_basis(admin, instrument="mlat", reference="MLA-2026-0042",
                      issuing_state="NL", executing_state="DE", valid_until="2099-12-31",
                      case="CASE-1", basis_id="lb-1")
    world.custody("exam-de").register(key("exam-de"), case="CASE-1", digests=world.digests,
                                      kind="disk-image", exhibit="E-1", artefact_id="art-1")
    world.artefact = "art-1"
    return world


def build_more(world: World) -> World:
    """Also: ``art-2`` with an open dispatch ``tr-1`` to nfi, and art-1's bytes stored."""
    exam = world.custody("exam-de")
    other = digests_of(EVIDENCE + b"2")
    exam.register(key("exam-de"), case="CASE-1", digests=other, artefact_id="art-2")
    d = exam.dispatch(key("exam-de"), artefact="art-2", to_org="nfi", purpose="analysis",
                      legal_basis="lb-1")
    world.transfer = d.result["transfer"]
    assert world.client is not None
    resp = world.client.put(f"/v1/evidence/{world.digests.sha256}", content=EVIDENCE,
                            headers=world.headers("exam-de"))
    assert resp.status_code == 201, resp.text
    return world


def sign(kind: str, actor_id: str, payload: dict[str, Any], prev: str | None = None,
         claimed_time: int | None = None, origin: str = ORIGIN) -> ev.SignedEvent:
    k = key(actor_id)
    body = ev.Event(kind=kind, origin=origin, nonce=os.urandom(16).hex(),
                    claimed_time=now_ms() if claimed_time is None else claimed_time,
                    signer=actor_id, key_id=k.key_id, payload=payload, prev=prev)
    return ev.sign_event(body, k.signer)


def access_header(artefact: str, actor_id: str, action: str = "view",
                  outcome: str = "success") -> str:
    signed = sign(ev.ACCESS, actor_id, {"artefact": artefact, "action": action,
                                        "purpose": "test", "outcome": outcome,
                                        "source": "api"})
    return base64.urlsafe_b64encode(canonical(signed.to_json())).decode().rstrip("=")


Json = Callable[..., Any]


def spy_behind(app: Any, lane: type) -> tuple[list[str], Callable[[], None]]:
    """Record the paths of the HTTP requests that ``app``'s fast-path middleware ``lane``
    hands on to the routes behind it; returns the list and a function that removes the
    spy."""
    stack: Any = app.middleware_stack
    while not isinstance(stack, lane):
        stack = stack.app
    seen: list[str] = []
    inner = stack.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await inner(scope, receive, send)

    stack.app = spy

    def remove() -> None:
        stack.app = inner

    return seen, remove

