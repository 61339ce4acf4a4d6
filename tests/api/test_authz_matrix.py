"""The authorisation matrix (threat T7), generated from the app's routes.

Every route × persona has an expected status in ``EXPECTED``. Personas cover the roles
(examiner/custodian, court, admin, auditor) in the SAME jurisdiction as the case lead
(DE, org bka), in a partner jurisdiction that is a case MEMBER (NL, org nfi), and in an
OTHER jurisdiction outside the case (US, org fbi), plus an anonymous caller. A route
that appears in ``app.routes`` without a row FAILS the test, so a new endpoint cannot
ship without a decision on who may call it.

Columns, in order::

    anon | exam-de court-de admin-de aud | cust-nl court-nl admin-nl aud-nl |
           exam-us court-us admin-us aud-us
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.auth import auth_message
from ledger.core import events as ev
from ledger.store.sql import SqlStore
from tests.api import world as w
from tests.api.package_world import sealed_dispatch

PERSONAS = ("anon", "exam-de", "court-de", "admin-de", "aud", "cust-nl", "court-nl",
            "admin-nl", "aud-nl", "exam-us", "court-us", "admin-us", "aud-us")
ORG_OF = {p: w.ROLES[p][0] for p in PERSONAS if p != "anon"}
ALL_200 = "200 " * 13

#: (METHOD, path) -> 13 expected statuses, one per persona (see the module docstring).
EXPECTED: dict[tuple[str, str], str] = {
    # ---- public ------------------------------------------------------------------------
    ("GET", "/openapi.json"): ALL_200,
    ("GET", "/docs"): ALL_200,
    ("HEAD", "/docs"): ALL_200,
    ("GET", "/docs/oauth2-redirect"): ALL_200,
    ("HEAD", "/docs/oauth2-redirect"): ALL_200,
    ("GET", "/redoc"): ALL_200,
    ("HEAD", "/redoc"): ALL_200,
    ("HEAD", "/openapi.json"): ALL_200,
    ("GET", "/v1/health"): ALL_200,
    ("GET", "/v1/log"): ALL_200,
    ("GET", "/v1/log/verifier-key"): ALL_200,
    ("GET", "/v1/log/checkpoints"): ALL_200,
    ("GET", "/v1/log/root"): ALL_200,
    ("GET", "/v1/log/proofs/inclusion"): ALL_200,
    ("GET", "/v1/log/proofs/consistency"): ALL_200,
    ("POST", "/v1/auth/challenge"): ALL_200,
    # Witnesses hold no account: each request posts a NEW witness's valid cosignature.
    ("POST", "/v1/log/cosignatures"): "201 " * 13,
    ("GET", "/v1/log/checkpoints/witnessed"): ALL_200,
    ("GET", "/v1/log/checkpoints/{size}/cosigned"): ALL_200,
    # ---- login and identity ------------------------------------------------------------
    ("POST", "/v1/auth/token"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/v1/auth/me"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    # ---- raw log: the stream is auditor-only; one entry follows what it is about ------
    ("GET", "/v1/log/entries"): "401 403 403 403 200 403 403 403 200 403 403 403 200",
    ("GET", "/v1/log/entries/{index}"):
        "401 200 200 200 200 200 200 200 200 404 404 404 200",
    ("GET", "/v1/log/check"): "401 403 403 403 200 403 403 403 200 403 403 403 200",
    # ---- protocol reads ----------------------------------------------------------------
    ("GET", "/v1/events/{event_id}"): "401 200 200 200 200 200 200 200 200 404 404 404 200",
    ("GET", "/v1/state/{key}"): "401 200 200 200 200 200 200 200 200 404 404 404 200",
    ("GET", "/v1/state"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/v1/refs/{ref}"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    # ---- writes (signed by the persona itself) ----------------------------------------
    # case.open: prosecutor/admin roles only (every admin here is also a prosecutor).
    ("POST", "/v1/events"): "401 409 409 201 409 409 409 201 409 409 409 201 409",
    ("POST", "/v1/events/batch"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("POST", "/v1/orgs"): "401 409 409 201 409 409 409 201 409 409 409 201 409",
    ("POST", "/v1/actors"): "401 409 409 201 409 409 409 201 409 409 409 201 409",
    ("POST", "/v1/actors/{actor_id}/revocation"):
        "401 409 409 201 409 409 409 201 409 409 409 201 409",
    ("POST", "/v1/cases"): "401 409 409 201 409 409 409 201 409 409 409 201 409",
    # Add a member to CASE-1: only the lead org's admin; the US does not even see it.
    ("POST", "/v1/cases/{case_id}/members"):
        "401 409 409 201 409 409 409 409 409 404 404 404 409",
    # A DE/NL legal basis for CASE-1: prosecutors of either state; the US sees no case.
    ("POST", "/v1/legal-bases"): "401 409 409 201 409 409 409 201 409 404 404 404 409",
    # Register in CASE-1: examiners of member orgs.
    ("POST", "/v1/artefacts"): "401 201 409 409 409 201 409 409 409 404 404 404 409",
    # Dispatch art-1 to the US without a legal basis: refused by a rule, or invisible.
    ("POST", "/v1/transfers"): "401 409 409 409 409 409 409 409 409 404 404 404 409",
    # Receipt of tr-1 (art-2 → nfi) claiming acceptance with wrong digests.
    ("POST", "/v1/transfers/{transfer_id}/receipt"):
        "401 409 409 409 409 409 409 409 409 404 404 404 409",
    # A successful view of art-1: the ledger's access policy (custodian + case orgs).
    ("POST", "/v1/access-events"): "401 201 201 201 409 201 201 201 201 404 404 404 409",
    # ---- resources ---------------------------------------------------------------------
    ("GET", "/v1/orgs"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/v1/orgs/{org_id}"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/v1/actors/{actor_id}"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/v1/cases"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/v1/cases/{case_id}"): "401 200 200 200 200 200 200 200 200 404 404 404 200",
    ("GET", "/v1/legal-bases/{basis_id}"):
        "401 200 200 200 200 200 200 200 200 404 404 404 200",
    ("GET", "/v1/transfers/{transfer_id}"):
        "401 200 200 200 200 200 200 200 200 404 404 404 200",
    ("GET", "/v1/artefacts"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    # Details and content need a committed access event, so the ledger policy decides:
    # an auditor outside the case may read the record via /v1/state, not the details.
    ("GET", "/v1/artefacts/{artefact_id}"):
        "401 200 200 200 409 200 200 200 200 404 404 404 409",
    ("GET", "/v1/artefacts/{artefact_id}/content"):
        "401 200 200 200 409 200 200 200 200 404 404 404 409",
    ("GET", "/v1/artefacts/{artefact_id}/history"):
        "401 200 200 200 200 200 200 200 200 404 404 404 200",
    # The court bundle: whoever may see the artefact's history.
    ("GET", "/v1/bundles"): "401 200 200 200 200 200 200 200 200 404 404 404 200",
    # The court report reads the same bundle: the same visibility.
    ("GET", "/v1/reports"): "401 200 200 200 200 200 200 200 200 404 404 404 200",
    # Uploads: custodial roles only.
    ("PUT", "/v1/evidence/{sha256}"): "401 201 403 403 403 201 403 403 403 201 403 403 403",
    ("POST", "/v1/verify"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
    # Evidence packages (a dispatch of art-3 from bka to nfi names the package): uploads
    # (fresh bytes each) by custodial roles; a probe by custodial roles or the transfer's
    # organisations; the bytes only to the transfer's organisations (sender, receiver).
    ("PUT", "/v1/packages/{sha256}"): "401 201 403 403 403 201 403 403 403 201 403 403 403",
    ("HEAD", "/v1/packages/{sha256}"):
        "401 200 200 200 404 200 200 200 200 200 404 404 404",
    ("GET", "/v1/packages/{sha256}"): "401 200 200 200 404 200 200 200 200 404 404 404 404",
    ("PUT", "/v1/verify/upload"): "401 200 200 200 200 200 200 200 200 200 200 200 200",
}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, included routers flattened."""
    out = []
    for ctx in iter_route_contexts(app.routes):
        path = ctx.path_format or ctx.path or ""
        out.extend((method, path) for method in sorted(ctx.methods or ()))
    return out


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, ctx.path_format) for ctx in iter_route_contexts(app.routes)
            if isinstance(ctx.original_route, APIRoute) for m in ctx.methods or ()}


class Requests:
    """Builds, per route and persona, a request that exercises exactly that cell."""

    def __init__(self, world: w.World, store: SqlStore) -> None:
        self.world = world
        self.store = store
        self.n = 0
        self.sealed = ""

    def uid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def body(self, signed: ev.SignedEvent) -> dict[str, Any]:
        return {"content": signed.canonical_bytes(),
                "headers": {"Content-Type": "application/json"}}

    def signer(self, persona: str) -> str:
        return "admin-de" if persona == "anon" else persona

    def build(self, method: str, path: str, persona: str) -> dict[str, Any]:
        p, me = persona, self.signer(persona)
        art1 = self.store.state("art/art-1")
        assert art1 is not None
        reg_id = self.store.entry(self.store.refs("art-1")[0]).leaf
        reg_event = ev.Entry.from_leaf(reg_id).signed
        sha = self.world.digests.sha256
        simple: dict[str, dict[str, Any]] = {
            "/v1/log/root": {"params": {"size": 1}},
            "/v1/log/proofs/inclusion": {"params": {"index": 0, "size": 2}},
            "/v1/log/proofs/consistency": {"params": {"old": 1, "new": 2}},
            "/v1/log/entries/{index}": {"url": f"/v1/log/entries/{self.store.refs('art-1')[0]}"},
            "/v1/events/{event_id}": {"url": f"/v1/events/{reg_event.event_id}"},
            "/v1/state/{key}": {"url": "/v1/state/art/art-1"},
            "/v1/state": {"params": {"prefix": "art/"}},
            "/v1/refs/{ref}": {"url": "/v1/refs/art-1"},
            "/v1/orgs/{org_id}": {"url": "/v1/orgs/bka"},
            "/v1/actors/{actor_id}": {"url": "/v1/actors/exam-de"},
            "/v1/cases/{case_id}": {"url": "/v1/cases/CASE-1"},
            "/v1/legal-bases/{basis_id}": {"url": "/v1/legal-bases/lb-1"},
            "/v1/transfers/{transfer_id}": {"url": f"/v1/transfers/{self.world.transfer}"},
            "/v1/artefacts/{artefact_id}/history": {"url": "/v1/artefacts/art-1/history"},
            "/v1/verify": {"json": {"sha256": sha}},
            "/v1/bundles": {"params": {"artefact": "art-1"}},
            "/v1/reports": {"params": {"artefact": "art-1", "format": "bundle"}},
            "/v1/verify/upload": {"content": w.EVIDENCE},
            "/v1/auth/challenge": {"json": {"actor": me}},
        }
        if path in simple:
            return simple[path]
        if path == "/v1/auth/token":
            actor = "ghost" if p == "anon" else me
            ch = self.world.client.post(  # type: ignore[union-attr]
                "/v1/auth/challenge", json={"actor": actor}).json()["challenge"]
            sig = w.key(actor).signer.sign(auth_message(ch))
            return {"json": {"actor": actor, "challenge": ch,
                             "signature": base64.b64encode(sig).decode()}}
        if path in ("/v1/events", "/v1/cases"):
            return self.body(w.sign(ev.CASE_OPEN, me, {"id": self.uid("C"), "title": ""}))
        if path == "/v1/events/batch":
            signed = w.sign(ev.CASE_OPEN, me, {"id": self.uid("C"), "title": ""})
            return {"json": {"events": [signed.to_json()]}}
        if path == "/v1/orgs":
            return self.body(w.sign(ev.ORG_REGISTER, me, {"id": self.uid("org"), "name": "X",
                                                          "jurisdiction": "FR"}))
        if path == "/v1/actors":
            pub = base64.b64encode(os.urandom(32)).decode()
            return self.body(w.sign(ev.ACTOR_ENROL, me, {
                "id": self.uid("a"), "org": ORG_OF.get(me, "bka"), "name": "N",
                "roles": ["examiner"], "public_key": pub}))
        if path == "/v1/actors/{actor_id}/revocation":
            target = "victim-" + ORG_OF.get(me, "bka")
            return {"url": f"/v1/actors/{target}/revocation", **self.body(w.sign(
                ev.ACTOR_REVOKE, me, {"actor": target, "reason": "matrix"}))}
        if path == "/v1/cases/{case_id}/members":
            return {"url": "/v1/cases/CASE-1/members", **self.body(w.sign(
                ev.CASE_ADD_MEMBER, me, {"case": "CASE-1", "org": "spare"}))}
        if path == "/v1/legal-bases":
            return self.body(w.sign(ev.LEGAL_BASIS, me, {
                "id": self.uid("lb"), "instrument": "jit", "reference": "JIT-1",
                "issuing_state": "DE", "issuing_authority": "", "executing_state": "NL",
                "executing_authority": "", "valid_from": "2026-01-01",
                "valid_until": "2099-01-01", "case": "CASE-1", "artefacts": [],
                "restrictions": [], "document_sha256": None}))
        if path == "/v1/artefacts":
            return self.body(w.sign(ev.ARTEFACT_REGISTER, me, {
                "id": self.uid("art"), "case": "CASE-1", "size": 1,
                "digests": {"sha256": hashlib.sha256(self.uid("bytes").encode()).hexdigest()}}))
        if path == "/v1/transfers":
            return self.body(w.sign(ev.DISPATCH, me, {
                "transfer": self.uid("tr"), "artefact": "art-1", "to_org": "fbi",
                "purpose": "matrix"}, prev=art1["head"]))
        if path == "/v1/transfers/{transfer_id}/receipt":
            tr = self.world.transfer
            art2 = self.store.state("art/art-2")
            assert art2 is not None
            return {"url": f"/v1/transfers/{tr}/receipt", **self.body(w.sign(
                ev.RECEIPT, me, {"transfer": tr, "artefact": "art-2", "outcome": "accepted",
                                 "recomputed": {"sha256": "cd" * 32}}, prev=art2["head"]))}
        if path == "/v1/access-events":
            return self.body(w.sign(ev.ACCESS, me, {
                "artefact": "art-1", "action": "view", "purpose": "matrix",
                "outcome": "success", "source": "api"}))
        if path in ("/v1/artefacts/{artefact_id}", "/v1/artefacts/{artefact_id}/content"):
            action = "download" if path.endswith("content") else "view"
            return {"url": path.replace("{artefact_id}", "art-1"),
                    "headers": {"X-Custody-Access-Event": w.access_header("art-1", me,
                                                                          action)}}
        if path == "/v1/evidence/{sha256}":
            return {"url": f"/v1/evidence/{sha}", "content": w.EVIDENCE}
        if path == "/v1/packages/{sha256}" and method == "PUT":
            data = os.urandom(1000)
            return {"url": f"/v1/packages/{hashlib.sha256(data).hexdigest()}",
                    "content": data, "headers": {"Upload-Length": str(len(data))}}
        if path == "/v1/packages/{sha256}":
            return {"url": f"/v1/packages/{self.package()}"}
        if path.startswith(("/v1/log/cosignatures", "/v1/log/checkpoints/")):
            return self.witness(path)
        return {}

    def package(self) -> str:
        """A package, uploaded, that a dispatch of ``art-3`` from bka to nfi names."""
        if not self.sealed:
            self.sealed = sealed_dispatch(self.world, "art-3")
        return self.sealed

    def witness(self, path: str) -> dict[str, Any]:
        """Witness routes: a fresh witness's cosignature over an early checkpoint (one
        size per route, so no checkpoint reaches the cap on witnesses)."""
        from ledger.core.checkpoint import cosign
        from ledger.core.witness import witness_verifier_key

        size = {"/v1/log/cosignatures": 1, "/v1/log/checkpoints/witnessed": 2}.get(path, 3)
        note = dict(self.store.checkpoints())[size]
        name = self.uid("witness") + ".example"
        seed = os.urandom(32)
        body = {"size": size, "witness_key": witness_verifier_key(name, seed),
                "cosignature": cosign(note, name, seed, 1_790_000_000)}
        if path == "/v1/log/cosignatures":
            return {"json": body}
        self.store.add_cosignature(size, str(body["witness_key"]), str(body["cosignature"]))
        if path == "/v1/log/checkpoints/{size}/cosigned":
            return {"url": f"/v1/log/checkpoints/{size}/cosigned"}
        return {}


@pytest.fixture
def matrix_world(world: w.World) -> w.World:
    return w.build_more(world)


def test_every_route_has_an_entry(app: FastAPI) -> None:
    missing = sorted(set(routes(app)) - set(EXPECTED))
    assert not missing, f"routes without an authorisation decision: {missing}"
    stale = sorted(set(EXPECTED) - set(routes(app)))
    assert not stale, f"matrix rows for routes that no longer exist: {stale}"
    for key, row in EXPECTED.items():
        assert len(row.split()) == len(PERSONAS), key


def test_authorisation_matrix(app: FastAPI, client: TestClient, matrix_world: w.World,
                              store: SqlStore) -> None:
    reqs = Requests(matrix_world, store)
    ours = api_routes(app)
    failures = []
    for method, path in routes(app):
        expected = EXPECTED[(method, path)].split()
        for persona, want in zip(PERSONAS, expected, strict=True):
            spec = reqs.build(method, path, persona) if (method, path) in ours else {}
            url = spec.pop("url", path)
            headers = dict(spec.pop("headers", {}))
            if persona != "anon":
                headers.update(matrix_world.headers(persona))
            resp = client.request(method, url, headers=headers, **spec)
            if str(resp.status_code) != want:
                failures.append(f"{method} {path} as {persona}: {resp.status_code} "
                                f"(expected {want}) {resp.text[:160]}")
    assert not failures, "\n".join(failures)

