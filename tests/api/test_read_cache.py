"""The API's per-process read cache (``api.runtime``): records and answers are kept per
log size, and the size is read from the database on every request.

What must hold, and fails here if the cache breaks it:

* a revoked actor is refused at its very next request, whoever appended the revocation
  (this server, or another process writing to the same database);
* a change of what a caller may see (its organisation added to a case) is seen at the
  next request;
* the cache is really used: a repeated read at the same log size reads no state from the
  store, and a proof for a given index and size is computed once; after an append the
  records are read again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.core import events as ev
from ledger.store.sql import SqlStore
from tests.api import world as w


def _count_calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    original = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


@pytest.fixture
def other_writer(store: SqlStore) -> Iterator[SqlStore]:
    """A second writer on the same database file, as another worker process or a
    ``custody`` command would be: its own engine, connections and caches."""
    other = SqlStore.open(str(store.engine.url), signer=w.log_signer(), clock=w.now_ms)
    yield other
    other.close()


def test_revoked_actor_is_refused_at_the_next_request(client: TestClient,
                                                      world: w.World) -> None:
    h = world.headers("exam-us")
    for _ in range(3):  # cached at this log size
        assert client.get("/v1/auth/me", headers=h).status_code == 200
        assert client.get("/v1/actors/exam-us", headers=h).status_code == 200
    revoke = w.sign(ev.ACTOR_REVOKE, "admin-us", {"actor": "exam-us", "reason": "lost key"})
    r = client.post("/v1/actors/exam-us/revocation", json=revoke.to_json(),
                    headers=world.headers("admin-us"))
    assert r.status_code == 201, r.text
    for path in ("/v1/auth/me", "/v1/actors/exam-us", "/v1/state/ledger"):
        refused = client.get(path, headers=h)
        assert refused.status_code == 401, (path, refused.text)
    # Others are unaffected, and see the revocation.
    seen = client.get("/v1/actors/exam-us", headers=world.headers("admin-us")).json()
    assert seen["record"]["status"] == "revoked"


def test_revocation_appended_by_another_process_is_seen(
        client: TestClient, world: w.World, other_writer: SqlStore) -> None:
    h = world.headers("exam-us")
    assert client.get("/v1/auth/me", headers=h).status_code == 200
    revoke = w.sign(ev.ACTOR_REVOKE, "admin-us", {"actor": "exam-us", "reason": "left"})
    other_writer.append(revoke)  # not through this server: its committer never saw it
    assert client.get("/v1/auth/me", headers=h).status_code == 401
    # A write by the revoked actor is refused too (the token no longer authenticates).
    access = w.sign(ev.ACCESS, "exam-us", {"artefact": "art-1", "action": "view",
                                           "purpose": "t", "outcome": "denied",
                                           "source": "api"})
    assert client.post("/v1/events", json=access.to_json(), headers=h).status_code == 401


def test_case_membership_change_is_seen_at_the_next_request(
        client: TestClient, world: w.World, other_writer: SqlStore) -> None:
    """What a caller may see changes with the log: fbi is not in CASE-1, then is."""
    h = world.headers("exam-us")
    for _ in range(2):
        assert client.get("/v1/cases/CASE-1", headers=h).status_code == 404
        assert client.get("/v1/state/art/art-1", headers=h).status_code == 404
        assert client.get("/v1/artefacts/art-1/history", headers=h).status_code == 404
    add = w.sign(ev.CASE_ADD_MEMBER, "admin-de", {"case": "CASE-1", "org": "fbi"})
    other_writer.append(add)
    assert client.get("/v1/cases/CASE-1", headers=h).status_code == 200
    assert client.get("/v1/state/art/art-1", headers=h).status_code == 200
    history = client.get("/v1/artefacts/art-1/history", headers=h)
    assert history.status_code == 200
    assert [s["kind"] for s in history.json()["steps"]] == [ev.ARTEFACT_REGISTER]


def test_repeated_reads_at_one_log_size_read_no_state(
        client: TestClient, world: w.World, store: SqlStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = world.headers("cust-nl")
    first = client.get("/v1/state/art/art-1", headers=h)
    assert first.status_code == 200
    history = client.get("/v1/artefacts/art-1/history", headers=h).json()
    state_reads = _count_calls(monkeypatch, store, "state")
    refs = _count_calls(monkeypatch, store, "refs")
    for _ in range(5):
        again = client.get("/v1/state/art/art-1", headers=h)
        assert again.json() == first.json()
        assert client.get("/v1/artefacts/art-1/history", headers=h).json() == history
    assert state_reads == []
    assert refs == []
    # One append later (another access to the artefact), everything is read again.
    access = w.sign(ev.ACCESS, "cust-nl", {"artefact": "art-1", "action": "view",
                                           "purpose": "t", "outcome": "success",
                                           "source": "api"})
    assert client.post("/v1/events", json=access.to_json(), headers=h).status_code == 201
    newer = client.get("/v1/artefacts/art-1/history", headers=h).json()
    assert [s["kind"] for s in newer["steps"]] == [ev.ARTEFACT_REGISTER, ev.ACCESS]
    assert state_reads
    assert refs


def test_a_proof_is_computed_once_and_a_refusal_never_cached(
        client: TestClient, world: w.World, store: SqlStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    size = store.size()
    proofs = _count_calls(monkeypatch, store, "inclusion_proof")
    q = {"index": 3, "size": size}
    first = client.get("/v1/log/proofs/inclusion", params=q)
    assert first.status_code == 200
    assert [client.get("/v1/log/proofs/inclusion", params=q).json() for _ in range(3)] == \
        [first.json()] * 3
    assert len(proofs) == 1
    assert first.json()["proof"] == [p.hex() for p in store.inclusion_proof(3, size)]
    # A size the log does not have yet: 404, and 200 once the log has grown to it.
    ahead = {"index": 3, "size": size + 1}
    assert client.get("/v1/log/proofs/inclusion", params=ahead).status_code == 404
    access = w.sign(ev.ACCESS, "exam-de", {"artefact": "art-1", "action": "view",
                                           "purpose": "t", "outcome": "success",
                                           "source": "api"})
    assert client.post("/v1/events", json=access.to_json(),
                       headers=world.headers("exam-de")).status_code == 201
    assert client.get("/v1/log/proofs/inclusion", params=ahead).status_code == 200


def test_an_unknown_query_parameter_is_still_refused(client: TestClient,
                                                     world: w.World) -> None:
    """Strict query parameters (T8), now checked by the routes' class."""
    h = world.headers("cust-nl")
    r = client.get("/v1/artefacts/art-1/history", params={"limit": 5, "sort": "desc"},
                   headers=h)
    assert r.status_code == 422
    assert "sort" in r.json()["detail"]
    assert client.get("/v1/log/proofs/inclusion",
                      params={"index": 1, "size": 2, "x": 1}).status_code == 422


def test_store_without_sql_engine_uses_its_own_size(tmp_path: Path) -> None:
    """The fast size read is for SQL stores only; any other store is asked."""
    from api.runtime import ReadCache

    class Sized:
        def __init__(self) -> None:
            self.n = 3

        def size(self) -> int:
            return self.n

        def state(self, key: str) -> dict[str, Any] | None:
            return {"key": key, "n": self.n}

    fake = Sized()
    cache = ReadCache(fake)  # type: ignore[arg-type]
    snap = cache.snapshot()
    assert snap.size == 3
    assert snap.get("k") == {"key": "k", "n": 3}
    assert cache.snapshot() is snap
    fake.n = 4
    assert cache.snapshot().get("k") == {"key": "k", "n": 4}
