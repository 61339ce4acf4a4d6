"""Reads answered by :class:`api.routes.fast.FastReads` (an answer already computed by the
route, looked up after the caller's token and right to see are checked) are exactly the
route's answers, for every caller, before and after the log changes.

Two apps serve ONE store with one token secret: one with the fast lanes, one without.
Every request goes to both; status, body and content type must agree. A spy shows that
repeated reads really skip the route.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():  # as tests/api/conftest.py
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.fast import FastReads
from ledger.core import events as ev
from ledger.store.sql import SqlStore
from tests.api import world as w

KEY = b"k" * 32


@pytest.fixture
def pair(store: SqlStore, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    fast = create_app(store, token_key=KEY, evidence_dir=tmp_path / "evidence")
    slow = create_app(store, token_key=KEY, evidence_dir=tmp_path / "evidence",
                      fast_lanes=False)
    with TestClient(fast) as f, TestClient(slow) as s:
        yield f, s


@pytest.fixture
def world(pair: tuple[TestClient, TestClient]) -> w.World:
    fast, _slow = pair
    return w.build(w.World(str(fast.base_url), client=fast))


@pytest.fixture
def routed(pair: tuple[TestClient, TestClient]) -> list[str]:
    """Paths of the requests the fast app's lane handed to its routes."""
    fast, _slow = pair
    return w.spy_behind(fast.app, FastReads)[0]


def _both(pair: tuple[TestClient, TestClient], path: str,
          headers: dict[str, str] | None = None) -> int:
    fast, slow = pair
    answers = [c.get(path, headers=headers or {}) for c in (fast, slow)]
    a, b = ((r.status_code, r.headers.get("content-type"), r.content) for r in answers)
    assert a == b, path
    return answers[0].status_code


def _reads(size: int) -> list[str]:
    return ["/v1/state/art/art-1", "/v1/state/case/CASE-1", "/v1/state/ledger",
            "/v1/state/actor/exam-us", "/v1/state/nope/x", "/v1/artefacts/art-1/history",
            "/v1/artefacts/art-1/history?limit=1", "/v1/artefacts/nope/history",
            f"/v1/log/proofs/inclusion?index=2&size={size}",
            f"/v1/log/proofs/inclusion?size={size}&index=2",
            f"/v1/log/proofs/inclusion?index=2&size={size + 5}",
            f"/v1/log/proofs/inclusion?index={size}&size={size}",
            f"/v1/log/proofs/inclusion?index=2&size={size}&x=1",
            f"/v1/log/proofs/inclusion?index={size - 1}&size={size}",
            "/v1/log/proofs/inclusion?index=2&size=9999999999999999999",
            "/v1/log/proofs/inclusion?index=4611686018427387905&size=4611686018427387906",
            "/v1/log/proofs/inclusion?index=0&size=0", "/v1/log/proofs/inclusion?index=0&size=1"]


def test_fast_answers_equal_the_routes_for_every_caller(
        pair: tuple[TestClient, TestClient], world: w.World, store: SqlStore) -> None:
    callers: dict[str, dict[str, str]] = {
        a: world.headers(a) for a in ("cust-nl", "exam-us", "aud", "court-de")}
    callers["nobody"] = {}
    callers["forged"] = {"Authorization": "Bearer a.b"}
    statuses = set()
    for _ in range(2):  # the second time from the caches
        for headers in callers.values():
            for path in _reads(store.size()):
                statuses.add(_both(pair, path, headers))
    assert statuses >= {200, 401, 404, 422}


def test_a_cached_answer_is_refused_to_who_may_no_longer_see_it(
        pair: tuple[TestClient, TestClient], world: w.World, store: SqlStore) -> None:
    fast, _slow = pair
    h = world.headers("cust-nl")
    for path in ("/v1/state/art/art-1", "/v1/artefacts/art-1/history"):
        assert _both(pair, path, h) == 200
        assert _both(pair, path, world.headers("exam-us")) == 404  # cached, not for it
    revoke = w.sign(ev.ACTOR_REVOKE, "admin-nl", {"actor": "cust-nl", "reason": "t"})
    assert fast.post("/v1/actors/cust-nl/revocation", json=revoke.to_json(),
                     headers=world.headers("admin-nl")).status_code == 201
    for path in ("/v1/state/art/art-1", "/v1/artefacts/art-1/history"):
        assert _both(pair, path, h) == 401
        assert _both(pair, path, world.headers("exam-de")) == 200


def test_repeated_reads_skip_the_route(pair: tuple[TestClient, TestClient], world: w.World,
                                       store: SqlStore, routed: list[str]) -> None:
    fast, _slow = pair
    h, other = world.headers("cust-nl"), world.headers("exam-de")
    size = store.size()
    paths = ["/v1/state/art/art-1", "/v1/artefacts/art-1/history",
             f"/v1/log/proofs/inclusion?index=2&size={size}"]
    routed.clear()
    first = [fast.get(p, headers=h) for p in paths]
    assert [r.status_code for r in first] == [200, 200, 200]
    # The state and history are computed by the routes; a proof (public, fixed once the
    # log has its size) by the lane itself when the store reads on the event loop.
    inline = fast.app.state.runtime.reads.inline  # type: ignore[attr-defined]
    assert routed == [p.split("?")[0] for p in paths[:2 if inline else 3]]
    routed.clear()
    for _ in range(3):
        assert [fast.get(p, headers=h).content for p in paths] == [r.content for r in first]
    assert routed == []
    # Another caller who may see them: answered from the same bytes, checked for it.
    assert fast.get(paths[0], headers=other).content == first[0].content
    assert routed == []
    # A new log size: the state and history are computed again, the proof is not.
    access = w.sign(ev.ACCESS, "cust-nl", {"artefact": "art-1", "action": "view",
                                           "purpose": "t", "outcome": "success",
                                           "source": "api"})
    assert fast.post("/v1/events", json=access.to_json(), headers=h).status_code == 201
    routed.clear()
    again = [fast.get(p, headers=h) for p in paths]
    assert routed == [p.split("?")[0] for p in paths[:2]]
    assert again[2].content == first[2].content
    assert again[1].content != first[1].content  # one step more
