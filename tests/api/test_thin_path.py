"""The thin path: RemoteStore + Custody over the API, idempotency, signer binding."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ledger.core import events as ev
from ledger.core.checkpoint import verify_checkpoint
from ledger.core.errors import Conflict, Forbidden, NotFound, RuleViolation
from tests.api import world as w


def test_custody_story_through_remote_store(world: w.World) -> None:
    c = world.custody("exam-de")
    d = c.dispatch(w.key("exam-de"), artefact="art-1", to_org="nfi", purpose="analysis",
                   legal_basis="lb-1")
    assert d.result["artefact"] == "art-1"
    r = world.custody("cust-nl").receive(w.key("cust-nl"), transfer=d.result["transfer"],
                                         digests=world.digests)
    assert r.result == {"outcome": "accepted", "mismatched": [], "custodian": "nfi"}
    acc = world.custody("cust-nl").access(w.key("cust-nl"), artefact="art-1", action="view",
                                          purpose="analysis", source="api")
    assert acc.result == {"outcome": "success"}
    store = world.store("cust-nl")
    cp = verify_checkpoint(store.latest_checkpoint(), w.log_signer().verifier_key)
    assert cp.size == store.size() == acc.index + 1
    assert store.root(cp.size) == cp.root
    refs = store.refs("art-1")
    assert d.index in refs
    assert r.index in refs


def test_same_signed_event_twice_grows_log_once(world: w.World, client: TestClient) -> None:
    signed = w.sign(ev.CASE_OPEN, "admin-de", {"id": "CASE-2", "title": ""})
    h = {**world.headers("admin-de"), "Content-Type": "application/json"}
    first = client.post("/v1/events", content=signed.canonical_bytes(), headers=h)
    size = client.get("/v1/log").json()["size"]
    again = client.post("/v1/events", content=signed.canonical_bytes(), headers=h)
    assert (first.status_code, again.status_code) == (201, 200)
    # The store answers a duplicate with the original receipt: index, leaf, checkpoint
    # and (since the ledger keeps it) the original ``result``.
    assert again.json() == {**first.json(), "duplicate": True}
    assert client.get("/v1/log").json()["size"] == size


def test_event_signed_by_someone_else_is_403(world: w.World) -> None:
    signed = w.sign(ev.CASE_OPEN, "admin-de", {"id": "CASE-3", "title": ""})
    store = world.store("admin-nl")
    store._signer_tokens = None  # send it with admin-nl's token
    with pytest.raises(Forbidden, match="signed by admin-de"):
        store.append(signed)


def test_rule_violation_round_trips_as_same_exception(world: w.World) -> None:
    c = world.custody("exam-de")
    with pytest.raises(RuleViolation) as info:
        c.dispatch(w.key("exam-de"), artefact="art-1", to_org="fbi", purpose="x")
    assert info.value.rule == "legal-basis-required"
    assert not isinstance(info.value, Conflict)


def test_invisible_artefact_is_not_found_for_outsider(world: w.World) -> None:
    store = world.store("exam-us")
    assert store.state("art/art-1") is None
    with pytest.raises(NotFound):
        w.local_custody(store).dispatch(w.key("exam-us"), artefact="art-1", to_org="bka",
                                        purpose="x")
