"""Endpoint behaviour through TestClient: login, problem mapping, limits, logged reads,
history, verify, log endpoints, settings that refuse unsafe configurations."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from api import problems
from api.app import create_app
from api.auth import auth_message
from api.settings import Settings, check_sqlite_durability
from ledger import keys
from ledger.core import errors as e
from ledger.core import events as ev
from ledger.core.checkpoint import verify_checkpoint
from ledger.core.merkle_verify import verify_consistency, verify_inclusion
from ledger.store.remote import to_exception
from ledger.store.sql import SqlStore
from tests.api import world as w
from tests.api.conftest import TestClient

JSON = {"Content-Type": "application/json"}


def login(client: TestClient, actor: str, signer: str | None = None) -> Any:
    ch = client.post("/v1/auth/challenge", json={"actor": actor}).json()["challenge"]
    sig = w.key(signer or actor).signer.sign(auth_message(ch))
    return client.post("/v1/auth/token", json={
        "actor": actor, "challenge": ch, "signature": base64.b64encode(sig).decode()})


# ---- the one problem mapping -----------------------------------------------------------

@pytest.mark.parametrize(("exc", "status"), [
    (e.InvalidInput("x"), 422), (e.PayloadTooLarge("x"), 413), (e.NotFound("x"), 404),
    (e.Unauthenticated("x"), 401), (e.Forbidden("x"), 403),
    (e.RuleViolation("stale", "x"), 409), (e.Conflict("replay", "x"), 409),
    (e.VerificationError("x"), 422), (e.InvalidSignature("x"), 422),
    (e.Backpressure("x", 2.5), 503), (e.UpstreamError("x"), 502),
    (e.IntegrityFault("x", 7), 500),
])
def test_every_ledger_error_maps_and_round_trips(exc: e.LedgerError, status: int) -> None:
    got, body, headers = problems.problem_body(exc)
    assert got == status
    assert body["type"].endswith("/" + body["code"])
    back = to_exception(got, json.loads(json.dumps(body)))
    assert type(back) is type(exc)
    assert back.message == exc.message
    if isinstance(exc, e.RuleViolation):
        assert back.rule == exc.rule  # type: ignore[attr-defined]
    if isinstance(exc, e.Backpressure):
        assert headers["Retry-After"] == "3"
        assert back.retry_after == 2.5  # type: ignore[attr-defined]
    if isinstance(exc, e.Unauthenticated):
        assert headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_route_and_validation_errors_are_problems(client: TestClient) -> None:
    r = client.get("/v1/nope")
    assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
    r = client.get("/v1/log/checkpoints", params={"limit": 10**9})  # T11: page caps
    assert r.status_code == 422
    assert r.json()["code"] == "invalid-input"
    assert r.json()["errors"][0]["loc"] == ["query", "limit"]
    assert client.get("/v1/log/root", params={"size": 1, "x": 1}).status_code == 422


# ---- login -----------------------------------------------------------------------------

def test_login_flow(world: w.World, client: TestClient) -> None:
    tok = login(client, "exam-de")
    assert tok.status_code == 200
    me = client.get("/v1/auth/me", headers={"Authorization": "Bearer "
                                            + tok.json()["access_token"]})
    assert me.json()["record"]["org"] == "bka"


def test_challenge_is_single_use_and_bound(world: w.World, client: TestClient) -> None:
    ch = client.post("/v1/auth/challenge", json={"actor": "exam-de"}).json()["challenge"]
    sig = base64.b64encode(w.key("exam-de").signer.sign(auth_message(ch))).decode()
    body = {"actor": "exam-de", "challenge": ch, "signature": sig}
    assert client.post("/v1/auth/token", json=body).status_code == 200
    again = client.post("/v1/auth/token", json=body)
    assert again.status_code == 401
    assert "already used" in again.json()["detail"]
    other = client.post("/v1/auth/token", json={**body, "actor": "court-de"})
    assert other.status_code == 401
    tampered = client.post("/v1/auth/token", json={**body, "challenge": ch[:-2] + "AA"})
    assert tampered.status_code == 401


def test_wrong_key_and_unknown_actor_are_401(world: w.World, client: TestClient) -> None:
    assert login(client, "exam-de", signer="exam-us").status_code == 401
    assert login(client, "ghost").status_code == 401
    assert client.get("/v1/auth/me", headers={"Authorization": "Bearer junk"}).status_code \
        == 401


def test_expired_challenge_and_token(store: SqlStore, tmp_path: Path) -> None:
    now = [w.now_ms()]
    app = create_app(store, clock=lambda: now[0], token_ttl_s=60)
    with TestClient(app) as client:
        ch = client.post("/v1/auth/challenge", json={"actor": "admin-de"}).json()["challenge"]
        sig = base64.b64encode(w.key("admin-de").signer.sign(auth_message(ch))).decode()
        now[0] += 61_000
        r = client.post("/v1/auth/token", json={"actor": "admin-de", "challenge": ch,
                                                 "signature": sig})
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]
        tok = login(client, "admin-de").json()["access_token"]
        now[0] += 61_000
        assert client.get("/v1/auth/me", headers={"Authorization": "Bearer " + tok}
                          ).status_code == 401


def test_revoked_actor_token_stops_working(world: w.World, client: TestClient) -> None:
    h = world.headers("victim-bka")
    assert client.get("/v1/auth/me", headers=h).status_code == 200
    world.custody("admin-de").revoke(w.key("admin-de"), "victim-bka", "left the agency")
    assert client.get("/v1/auth/me", headers=h).status_code == 401
    assert login(client, "victim-bka").status_code == 401


# ---- writes ----------------------------------------------------------------------------

def test_oversized_and_deep_event_bodies(world: w.World, client: TestClient) -> None:
    h = {**world.headers("admin-de"), **JSON}
    big = client.post("/v1/events", content=b"{" + b" " * (300 * 1024) + b"}", headers=h)
    assert big.status_code == 413
    deep = client.post("/v1/events", content=b"[" * 5000 + b"]" * 5000, headers=h)
    assert deep.status_code == 422


def test_replay_into_another_ledger_is_refused(world: w.World, client: TestClient) -> None:
    signed = w.sign(ev.CASE_OPEN, "admin-de", {"id": "C-X", "title": ""},
                    origin="other.example/ledger")
    r = client.post("/v1/events", content=signed.canonical_bytes(),
                    headers={**world.headers("admin-de"), **JSON})
    assert (r.status_code, r.json()["rule"]) == (409, "origin")


def test_clock_skew_is_refused(world: w.World, client: TestClient) -> None:
    signed = w.sign(ev.CASE_OPEN, "admin-de", {"id": "C-Y", "title": ""},
                    claimed_time=w.now_ms() - 2 * 3600 * 1000)
    r = client.post("/v1/events", content=signed.canonical_bytes(),
                    headers={**world.headers("admin-de"), **JSON})
    assert (r.status_code, r.json()["rule"]) == (409, "clock-skew")


def test_typed_endpoint_checks_kind_and_path(world: w.World, client: TestClient) -> None:
    h = {**world.headers("admin-de"), **JSON}
    signed = w.sign(ev.CASE_OPEN, "admin-de", {"id": "C-Z", "title": ""})
    r = client.post("/v1/artefacts", content=signed.canonical_bytes(), headers=h)
    assert r.status_code == 422
    add = w.sign(ev.CASE_ADD_MEMBER, "admin-de", {"case": "CASE-1", "org": "spare"})
    r = client.post("/v1/cases/OTHER/members", content=add.canonical_bytes(), headers=h)
    assert r.status_code == 422
    r = client.post("/v1/cases/CASE-1/members", content=add.canonical_bytes(), headers=h)
    assert r.status_code == 201


def test_batch_mixes_outcomes(world: w.World, client: TestClient) -> None:
    good = w.sign(ev.CASE_OPEN, "admin-de", {"id": "C-B1", "title": ""})
    dup_id = w.sign(ev.CASE_OPEN, "admin-de", {"id": "C-B1", "title": ""})
    r = client.post("/v1/events/batch", json={"events": [good.to_json(), dup_id.to_json()]},
                    headers=world.headers("admin-de"))
    assert [o["status"] for o in r.json()["outcomes"]] == [201, 409]
    store = world.store("admin-de")
    again = store.append_many([good])
    assert again[0].duplicate  # type: ignore[union-attr]


# ---- logged reads, history, verify -----------------------------------------------------

def test_artefact_details_require_a_fresh_signed_access_event(world: w.World,
                                                              client: TestClient) -> None:
    h = world.headers("court-nl")
    assert client.get("/v1/artefacts/art-1", headers=h).status_code == 422
    size = client.get("/v1/log").json()["size"]
    header = w.access_header("art-1", "court-nl")
    r = client.get("/v1/artefacts/art-1", headers={**h, "X-Custody-Access-Event": header})
    assert r.status_code == 200
    assert r.json()["artefact"]["id"] == "art-1"
    assert r.json()["access"]["index"] == size
    replay = client.get("/v1/artefacts/art-1", headers={**h, "X-Custody-Access-Event": header})
    assert (replay.status_code, replay.json()["rule"]) == (409, "replay")
    foreign = w.access_header("art-1", "court-de")  # someone else's event
    assert client.get("/v1/artefacts/art-1", headers={
        **h, "X-Custody-Access-Event": foreign}).status_code == 403
    wrong = w.access_header("art-1", "court-nl", action="download")
    assert client.get("/v1/artefacts/art-1", headers={
        **h, "X-Custody-Access-Event": wrong}).status_code == 422
    assert client.get("/v1/artefacts/art-1", headers={
        **h, "X-Custody-Access-Event": "!!"}).status_code == 422


def test_history_and_filtered_reads(world: w.World, client: TestClient) -> None:
    d = world.custody("exam-de").dispatch(w.key("exam-de"), artefact="art-1", to_org="nfi",
                                          purpose="analysis", legal_basis="lb-1")
    hist = client.get("/v1/artefacts/art-1/history", headers=world.headers("court-nl")).json()
    kinds = [s["kind"] for s in hist["steps"]]
    assert kinds == ["artefact.register", "custody.dispatch"]
    assert hist["steps"][1]["jurisdiction"] == "DE"
    assert hist["steps"][1]["index"] == d.index
    us = world.headers("exam-us")
    assert client.get("/v1/artefacts/art-1/history", headers=us).status_code == 404
    assert client.get("/v1/refs/art-1", headers=us).json()["indices"] == []
    assert client.get("/v1/artefacts", headers=us).json()["items"] == []
    assert [c["id"] for c in client.get("/v1/cases", headers=us).json()["items"]] == []
    found = client.get("/v1/artefacts", params={"sha256": world.digests.sha256},
                       headers=world.headers("cust-nl")).json()["items"]
    assert [a["id"] for a in found] == ["art-1"]
    tr = client.get(f"/v1/transfers/{d.result['transfer']}", headers=world.headers("cust-nl"))
    assert tr.json()["record"]["to_org"] == "nfi"


def test_verify_digest_and_upload(world: w.World, client: TestClient) -> None:
    h = world.headers("court-nl")
    ok = client.post("/v1/verify", json={"sha256": world.digests.sha256}, headers=h).json()
    assert ok["verdict"] == "authentic"
    assert ok["complete"] is True
    assert ok["faults"] == []
    cp = verify_checkpoint(ok["checkpoint"]["note"], w.log_signer().verifier_key)
    assert ok["custody"]
    for step in ok["custody"]:
        verify_inclusion(bytes.fromhex(step["leaf_hash"]), step["index"], cp.size,
                         [bytes.fromhex(x) for x in step["inclusion_proof"]], cp.root)
    bundle = client.get("/v1/bundles", params={"artefact": "art-1"}, headers=h).json()
    assert bundle["cache_faults"] == []
    assert bundle["bundle"]["format"] == "custody-bundle/v1"
    assert bundle["bundle"]["checkpoint"] == ok["checkpoint"]["note"]
    bad = client.post("/v1/verify", json={"sha256": "0" * 64, "artefact": "art-1"},
                      headers=h).json()
    assert bad["verdict"] == "mismatch"
    up = client.put("/v1/verify/upload", content=w.EVIDENCE, headers=h).json()
    assert up["verdict"] == "authentic"
    outsider = client.post("/v1/verify", json={"sha256": world.digests.sha256},
                           headers=world.headers("exam-us")).json()
    assert outsider["verdict"] == "not-registered"


# ---- log endpoints ---------------------------------------------------------------------

def test_public_log_and_proofs(world: w.World, client: TestClient) -> None:
    info = client.get("/v1/log").json()
    cp = verify_checkpoint(info["checkpoint"], info["verifier_key"])
    assert cp.size == info["size"]
    old = client.get("/v1/log/checkpoints", params={"limit": 1}).json()["items"][0]
    old_cp = verify_checkpoint(old["note"], info["verifier_key"])
    proof = client.get("/v1/log/proofs/consistency",
                       params={"old": old_cp.size, "new": cp.size}).json()["proof"]
    verify_consistency(old_cp.size, cp.size, old_cp.root, cp.root,
                       [bytes.fromhex(x) for x in proof])
    assert client.get("/v1/log/root", params={"size": cp.size + 1}).status_code == 404
    assert client.get("/v1/log/proofs/inclusion",
                      params={"index": 5, "size": 5}).status_code == 422


def test_auditor_reads_the_whole_log_remotely(world: w.World, client: TestClient) -> None:
    store = world.store("aud")
    entries = list(store.entries())
    assert [x.index for x in entries] == list(range(store.size()))
    check = client.get("/v1/log/check", headers=world.headers("aud")).json()
    assert check["checkpoint_verified"]
    assert check["root_matches"]
    assert check["leaf_hashes_match"]
    with pytest.raises(e.Forbidden):
        list(world.store("exam-de").entries())


# ---- settings --------------------------------------------------------------------------

def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base = {"database_url": f"sqlite:///{tmp_path}/l.db", "log_key_path": tmp_path / "k",
            "origin": w.ORIGIN, "environment": "production", "token_secret": "s" * 40}
    return Settings(**{**base, **kw})


def test_production_refuses_unsafe_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="token_ttl_s"):
        _settings(tmp_path, token_ttl_s=7200)
    with pytest.raises(ValidationError, match="token_secret"):
        _settings(tmp_path, token_secret=None)
    with pytest.raises(ValidationError, match="in-memory"):
        _settings(tmp_path, database_url="sqlite:///:memory:")
    _settings(tmp_path, environment="development", token_ttl_s=7200, token_secret=None)
    with pytest.raises(e.InvalidInput, match="synchronous"):
        check_sqlite_durability({"synchronous": 1, "journal_mode": "wal"}, "production")
    with pytest.raises(e.InvalidInput, match="WAL"):
        check_sqlite_durability({"synchronous": 2, "journal_mode": "delete"}, "production")
    check_sqlite_durability({"synchronous": 2, "journal_mode": "wal"}, "production")


def test_app_from_settings_checks_key_file_and_durability(tmp_path: Path) -> None:
    key = tmp_path / "k"
    keys.write_key(key, w.ORIGIN, os.urandom(32), None)
    SqlStore.open(f"sqlite:///{tmp_path}/l.db", signer=None, clock=w.now_ms,
                  create=True).close()
    app: FastAPI = create_app(_settings(tmp_path))
    with TestClient(app) as client:
        assert client.get("/v1/health").json()["status"] == "ok"
    key.chmod(0o644)
    with pytest.raises(e.InvalidInput, match="group or others"):
        create_app(_settings(tmp_path))
