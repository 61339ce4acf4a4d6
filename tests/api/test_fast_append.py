"""``POST /v1/events`` answered by :class:`api.routes.events.FastAppend` (the ordinary
path, without FastAPI's per-request machinery) gives exactly the route's answers.

Each case is sent twice: as ``application/json`` (the fast path takes it, or hands it
to the route) and as ``application/json; charset=utf-8`` (the fast path never takes it:
the route alone answers). Status, problem bodies and receipts must agree. A spy shows
that the plain case really skips the route, and that every other case reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes.fast import FastAppend
from ledger.core import events as ev
from tests.api import world as w

FAST = "application/json"
ROUTE = "application/json; charset=utf-8"
#: Receipt fields that differ between two appends of equivalent events.
PER_EVENT = {"index", "leaf_hash", "event_id", "ledger_time", "checkpoint"}


@pytest.fixture
def routed(app: FastAPI, client: TestClient) -> Iterator[list[str]]:
    """Paths of the requests that reached the app behind the fast path (the route)."""
    seen, remove = w.spy_behind(app, FastAppend)
    yield seen
    remove()


def _access(actor: str, artefact: str = "art-1", outcome: str = "success") -> ev.SignedEvent:
    return w.sign(ev.ACCESS, actor, {"artefact": artefact, "action": "view", "purpose": "t",
                                     "outcome": outcome, "source": "api"})


def _post(client: TestClient, body: bytes, content_type: str,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    r = client.post("/v1/events", content=body,
                    headers={**(headers or {}), "Content-Type": content_type})
    try:
        data = r.json()
    except ValueError:
        data = r.text
    if isinstance(data, dict) and "checkpoint" in data:
        data = {k: v for k, v in data.items() if k not in PER_EVENT}
    return r.status_code, data


def _same(client: TestClient, make: Callable[[], bytes],
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    fast = _post(client, make(), FAST, headers)
    route = _post(client, make(), ROUTE, headers)
    assert fast == route
    return fast


def test_the_plain_case_skips_the_route_and_answers_as_it_does(
        client: TestClient, world: w.World, routed: list[str]) -> None:
    h = world.headers("cust-nl")
    routed.clear()
    status, receipt = _same(client, lambda: _access("cust-nl").canonical_bytes(), h)
    assert status == 201
    assert receipt["duplicate"] is False
    assert routed == ["/v1/events"]  # only the second request (charset) went through it
    # The same signed event again: 200 and the original receipt, both ways.
    again = _access("cust-nl").canonical_bytes()
    first = client.post("/v1/events", content=again, headers={**h, "Content-Type": FAST})
    assert first.status_code == 201
    routed.clear()
    for content_type in (FAST, ROUTE):
        dup = client.post("/v1/events", content=again, headers={**h, "Content-Type": content_type})
        assert dup.status_code == 200
        assert dup.json() == {**first.json(), "duplicate": True}
    assert routed == ["/v1/events"]


def test_every_other_case_is_answered_by_the_route(client: TestClient, world: w.World,
                                                    routed: list[str]) -> None:
    h = world.headers("cust-nl")
    body = _access("cust-nl").canonical_bytes
    cases: list[tuple[str, Callable[[], bytes], dict[str, str], int]] = [
        ("no token", body, {}, 401),
        ("a forged token", body, {"Authorization": "Bearer x.y"}, 401),
        ("signed by someone else", lambda: _access("exam-de").canonical_bytes(), h, 403),
        ("not JSON", lambda: b"{not json", h, 422),
        ("not the model (extra member)", lambda: body()[:-1] + b',"x":1}', h, 422),
        ("an artefact it may not see", lambda: _access("exam-us").canonical_bytes(),
         world.headers("exam-us"), 404),
        ("an unknown artefact", lambda: _access("cust-nl", "nope").canonical_bytes(), h, 404),
    ]
    for what, make, headers, expected in cases:
        routed.clear()
        status, answer = _same(client, make, headers)
        assert status == expected, (what, answer)
        assert answer["status"] == expected, what
        assert routed == ["/v1/events", "/v1/events"], what


def test_a_hidden_denial_is_still_recorded(client: TestClient, world: w.World,
                                           routed: list[str]) -> None:
    """exam-us may not see art-1: its denied access is appended and answered 404."""
    h = world.headers("exam-us")
    size = client.get("/v1/log").json()["size"]
    routed.clear()
    status, answer = _same(client, lambda: _access("exam-us", outcome="denied")
                           .canonical_bytes(), h)
    assert status == 404
    assert routed == ["/v1/events", "/v1/events"]  # recorded by the route, both times
    assert "art-1" in answer["detail"]
    assert client.get("/v1/log").json()["size"] == size + 2  # both attempts are on the log


def test_a_refusal_by_the_rules_is_the_same_problem(client: TestClient, world: w.World,
                                                   routed: list[str]) -> None:
    """Admitted, then refused in the transaction: a denied outcome the policy grants."""
    h = world.headers("cust-nl")
    routed.clear()
    status, answer = _same(client, lambda: _access("cust-nl", outcome="denied")
                           .canonical_bytes(), h)
    assert status == 409
    assert answer["rule"] == "access-outcome"
    assert routed == ["/v1/events"]  # the fast one was answered without the route


def test_the_body_cap_applies_before_it(client: TestClient, world: w.World,
                                        routed: list[str]) -> None:
    big = b'{"event": "' + b"x" * (300 * 1024) + b'"}'
    h = world.headers("cust-nl")
    routed.clear()
    status, _answer = _same(client, lambda: big, h)
    assert status == 413
    assert routed == []  # refused by the cap, outside both
