"""Threats T9 (path traversal), T10 (SQL injection) and T11 (denial of service) against
the API, through the real app on a genesis'd SQLite ledger (``tests/api/conftest.py``).

* T9: Hypothesis-generated hostile names and ids (``../``, absolute paths, NUL,
  percent-encoded and double-encoded dots, backslashes, unicode dots, very long names,
  symlink-ish names) go wherever the API takes a digest or an id in a path, a query or a
  body, both percent-encoded and raw (sent straight to the ASGI app, as a server passes
  them: an HTTP client would normalise the dot segments away), and into
  :class:`api.evidence_store.EvidenceStore` directly. Pass: every answer is a 4xx (never
  a 5xx) and no file appears anywhere under the test's temporary tree except blobs at
  ``evidence/sha256/<2 hex>/<64 hex>`` named by their own SHA-256.
* T10: classic SQL injection payloads in every string parameter (path, query, header)
  of every GET route, enumerated from the app's routes (a new GET route with a string
  parameter is covered automatically), and in signed event payload fields through
  ``POST /v1/events``. Pass: no 5xx; the content of every table is unchanged by the
  reads; writes grow the log by exactly the accepted events, the audit passes, and the
  payload text is stored verbatim.
* T11: page sizes over the cap and huge integers → 422; a flood of concurrent writes
  against a write queue of 2 → only 200/201/409/429/503 (503 with Retry-After), nothing
  acknowledged is lost; oversized and deeply nested bodies → 413/422 fast.

Figures (payloads tried, requests sent, status histogram) are printed at the end of the
module (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.dependencies.utils import get_flat_params
from fastapi.params import Header, Query
from fastapi.params import Path as PathParam
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.evidence_store import EvidenceStore
from api.routes.artefacts import ACCESS_HEADER
from ledger.core import events as ev
from ledger.core.canonical import canonical
from ledger.core.errors import InvalidInput, LedgerError, NotFound
from ledger.core.events import Entry
from ledger.store import schema as t
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore
from tests.api import world as w
from tests.api.conftest import TestClient

TABLES = ("entries", "merkle_nodes", "checkpoints", "refs", "state", "head")
FIGURES: dict[str, Counter[str]] = {}


def tally(threat: str, what: str, n: int = 1) -> None:
    FIGURES.setdefault(threat, Counter())[what] += n


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    for threat, counts in sorted(FIGURES.items()):
        print(f"\n[{threat}] " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


# ---- helpers ---------------------------------------------------------------------------

TABLE_OBJECTS = {"entries": t.entries, "merkle_nodes": t.nodes, "checkpoints": t.checkpoints,
                 "refs": t.refs, "state": t.state, "head": t.head}


def table_rows(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {name: int(conn.execute(sa.select(sa.func.count()).select_from(table))
                          .scalar_one()) for name, table in TABLE_OBJECTS.items()}


def table_digest(store: SqlStore) -> dict[str, str]:
    """A digest of every row of every ledger table (an UPDATE would show, not only a
    DELETE or DROP)."""
    out = {}
    with store.engine.connect() as conn:
        for name, table in TABLE_OBJECTS.items():
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            out[name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


def files_under(root: Path) -> set[Path]:
    return {Path(d) / f for d, _, fs in os.walk(root) for f in fs}


def asgi_request(app: FastAPI, method: str, raw_path: str, headers: dict[str, str],
                 body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send one request straight to the ASGI app with ``raw_path`` untouched (dot
    segments, backslashes...), percent-decoding the path as uvicorn does."""
    path_part, _, query = raw_path.partition("?")

    async def run() -> tuple[int, dict[str, str], bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "server": ("testserver", 80),
                 "client": ("127.0.0.1", 1234), "root_path": "",
                 "path": unquote(path_part),  # as uvicorn does (errors="replace")
                 "raw_path": path_part.encode("latin-1"),
                 "query_string": query.encode("latin-1"),
                 "headers": [(k.lower().encode(), v.encode("latin-1"))
                             for k, v in {**headers,
                                          "content-length": str(len(body))}.items()]}
        sent = False
        status = 0
        out_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(0)
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers.update({k.decode(): v.decode("latin-1")
                                    for k, v in message.get("headers", [])})
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return status, out_headers, b"".join(chunks)

    return asyncio.run(run())


def post_signed(client: TestClient, signed: ev.SignedEvent, actor: str) -> httpx.Response:
    return client.post("/v1/events", content=signed.canonical_bytes(),
                       headers={**HEADERS_CACHE[actor], "Content-Type": "application/json"})


HEADERS_CACHE: dict[str, dict[str, str]] = {}


def auth(world: w.World, *actors: str) -> None:
    HEADERS_CACHE.clear()
    for actor in actors:
        HEADERS_CACHE[actor] = world.headers(actor)


# =======================================================================================
# T9: path traversal
# =======================================================================================

HOSTILE = [
    "../../../../etc/passwd", "..", ".", "../", "/etc/passwd", "/tmp/pwned",
    "..\\..\\windows\\win.ini", "C:\\evil", "\\\\server\\share\\x",
    "a\x00b", "\x00", "%00", "%2e%2e%2f%2e%2e%2fpwned", "%2e%2e/%2e%2e/pwned",
    "%252e%252e%252fpwned", "..%2fpwned", "..%5cpwned", "%c0%ae%c0%ae/", "....//....//x",
    "..;/x", "\u2024\u2024/x", "\uff0e\uff0e\uff0fx", "\u2025/pwned", "\u2215etc\u2215x",
    "sha256/../../pwned", "tmp/../../pwned", "~/.ssh/authorized_keys", "~root",
    "/proc/self/fd/0", "/dev/null", "link -> /etc/passwd", "evil.lnk", "x/./././y",
    "con", "NUL", "aux.txt", "a" * 5000, "../" * 300 + "pwned", "é" * 300,
    "ab" * 31 + "/..", "A" * 64, "0" * 63 + "/", "0" * 64 + "/../../pwned",
    "0" * 62 + "..", "0" * 64 + "\x00", "0" * 64 + "%00.txt", " " + "0" * 64,
]
SEGMENTS = ["..", ".", "/", "\\", "%2e", "%2f", "%5c", "%00", "\x00", "\uff0e", "\u2024",
            "pwned", "etc", "sha256", "tmp", "ab", "0" * 62, "~", ";", ":", "..%2f", "\n"]
hostile_names = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=12).map("".join),
    st.text(alphabet=st.sampled_from("./\\%\x00abcdef0123456789\uff0e~:"),
            min_size=1, max_size=80),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40),
).filter(lambda n: re.fullmatch(r"[0-9a-f]{64}", n) is None)  # a real digest is not hostile


def encodings(name: str) -> list[str]:
    """The name fully percent-encoded (one path segment) and 'raw': separators and dots
    left literal, only what cannot travel in a request line encoded."""
    return [quote(name, safe=""), quote(name, safe="/.%\\~;:")]


def traversal_targets(name: str, access: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, raw path, extra) for every place the API takes a digest or id."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for enc in encodings(name):
        q = quote(name, safe="")
        out += [
            ("PUT", f"/v1/evidence/{enc}", {"body": b"evil bytes"}),
            ("PUT", f"/v1/verify/upload?artefact={q}", {"body": b"evil bytes"}),
            ("GET", f"/v1/artefacts/{enc}/content", {"access": access}),
            ("GET", f"/v1/artefacts/{enc}", {"access": access}),
            ("GET", f"/v1/artefacts/{enc}/history", {}),
            ("GET", f"/v1/artefacts?case={q}", {"search": True}),
            ("GET", f"/v1/artefacts?sha256={q}", {"search": True}),
            ("GET", f"/v1/state/{enc}", {}),
            ("GET", f"/v1/state?prefix={q}", {"search": True}),
            ("GET", f"/v1/refs/{enc}", {"search": True}),
            ("GET", f"/v1/events/{enc}", {}),
            ("GET", f"/v1/orgs/{enc}", {}),
            ("GET", f"/v1/actors/{enc}", {}),
            ("GET", f"/v1/cases/{enc}", {}),
            ("GET", f"/v1/legal-bases/{enc}", {}),
            ("GET", f"/v1/transfers/{enc}", {}),
        ]
    return out


@pytest.fixture
def more_world(world: w.World) -> w.World:
    return w.build_more(world)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=hostile_names)
def test_t9_hostile_names_never_create_a_file_outside_the_evidence_dir(
        name: str, app: FastAPI, client: TestClient, more_world: w.World,
        tmp_path: Path, store: SqlStore) -> None:
    evidence = tmp_path / "evidence"
    watched = tmp_path.parent  # this run's whole temporary tree
    outside_before = {p for p in files_under(watched) if evidence not in p.parents}
    rows_before = table_rows(store)
    headers = more_world.headers("exam-de")
    statuses: Counter[int] = Counter()
    access = w.access_header("art-1", "exam-de", action="download")
    for method, raw, extra in traversal_targets(name, access):
        h = dict(headers)
        if extra.get("body"):
            h["content-type"] = "application/octet-stream"
        if "access" in extra:
            h[ACCESS_HEADER] = extra["access"]
        status, resp_headers, answer = asgi_request(app, method, raw, h, extra.get("body", b""))
        statuses[status] += 1
        tally("T9", f"status {status}")
        if status in (307, 308):  # Starlette's trailing-slash redirect, same origin
            assert resp_headers["location"].startswith("http://testserver/v1/"), resp_headers
            continue
        if status == 200 and extra.get("search"):  # a search: only literal matches
            found = json.loads(answer)
            if "prefix=" in raw:
                assert all(i["key"].startswith(name) for i in found["items"]), name
            elif "case=" in raw:
                assert all(i["case"] == name for i in found["items"]), name
            else:
                assert not found.get("items"), (name, raw)
                assert not found.get("indices"), (name, raw)
            continue
        assert 400 <= status < 500, (method, raw[:200], status)
    # The same names in JSON bodies: POST /v1/verify and a receipt with uploaded=true.
    for body in ({"sha256": name}, {"sha256": "0" * 64, "artefact": name}):
        r = client.post("/v1/verify", json=body, headers=headers)
        tally("T9", f"status {r.status_code}")
        assert 400 <= r.status_code < 500, (body, r.status_code)
    receipt = w.sign(ev.RECEIPT, "cust-nl", {
        "transfer": more_world.transfer, "artefact": "art-2", "outcome": "accepted",
        "recomputed": {"sha256": name}})
    r = client.post(f"/v1/transfers/{more_world.transfer}/receipt?uploaded=true",
                    content=canonical(receipt.to_json()),
                    headers={**more_world.headers("cust-nl"),
                             "Content-Type": "application/json"})
    tally("T9", f"status {r.status_code}")
    assert 400 <= r.status_code < 500, r.status_code
    tally("T9", "names tried")
    # Nothing new outside the evidence dir (the SQLite WAL/SHM files existed before).
    outside_after = {p for p in files_under(watched) if evidence not in p.parents}
    assert outside_after <= outside_before, sorted(map(str, outside_after - outside_before))
    # Inside it: only content-addressed blobs named by their own digest, no orphan.
    assert not any((evidence / "tmp").iterdir())
    for p in files_under(evidence):
        rel = p.relative_to(evidence).parts
        assert rel[0] == "sha256", p
        assert len(rel) == 3, p
        assert hashlib.sha256(p.read_bytes()).hexdigest() == rel[2]
        assert rel[1] == rel[2][:2]
    rows_after = table_rows(store)
    # No hostile request appended anything (not even an access event).
    assert rows_after == rows_before


@settings(max_examples=200, deadline=None)
@given(name=hostile_names)
def test_t9_evidence_store_refuses_hostile_digests(name: str, tmp_path_factory:
                                                   pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("ev")
    root = base / "evidence"
    store = EvidenceStore(root)
    before = files_under(base)
    chunks = iter([b"evil", None])
    for call in (lambda: store.path_for(name), lambda: store.has(name),
                 lambda: store.open(name),
                 lambda: store.put(name, lambda: next(chunks), 1 << 20)):
        with pytest.raises(InvalidInput):
            call()
        tally("T9", "EvidenceStore calls refused")
    assert files_under(base) == before
    assert list(store.tmp.iterdir()) == []


def test_t9_evidence_store_paths_stay_inside_root(tmp_path: Path) -> None:
    """A valid digest maps to exactly ROOT/sha256/<2>/<64>; a mismatching upload under a
    valid digest leaves nothing behind; NotFound for an absent blob."""
    store = EvidenceStore(tmp_path / "evidence")
    data = b"exhibit"
    digest = hashlib.sha256(data).hexdigest()
    path = store.path_for(digest)
    assert path.resolve().parent.parent.parent == (tmp_path / "evidence").resolve()
    with pytest.raises(NotFound):
        store.open(digest)
    chunks = iter([b"other bytes", None])
    with pytest.raises(LedgerError):
        store.put(digest, lambda: next(chunks), 1 << 20)
    assert files_under(tmp_path) == set()
    chunks = iter([data, None])
    store.put(digest, lambda: next(chunks), 1 << 20)
    assert files_under(tmp_path) == {path}


# =======================================================================================
# T10: SQL injection
# =======================================================================================

SQLI = [
    "' OR '1'='1", "' OR 1=1 --", "'; DROP TABLE entries; --", "\" OR \"\"=\"",
    "1; DELETE FROM state", "%' --", "%", "_", "art/%", "*/ SELECT * FROM state /*",
    "1' UNION SELECT key, value, idx FROM state --", "x'); DELETE FROM refs; --",
    "' OR ''='", "admin'--", "\\'; TRUNCATE head; --", "art/' OR '1'='1",
    "\u2019 OR \u20181\u2019=\u20181", "\uff07 OR 1=1 --", "\u02bc; DROP TABLE checkpoints; --",
    "1 AND (SELECT count(*) FROM merkle_nodes) > 0", "'||(SELECT sqlite_version())||'",
    "0x27; PRAGMA writable_schema=1; --",
]
#: Values for the parameters that are not being attacked.
FILL = {"prefix": "art/", "index": "0", "size": "1", "old": "1", "new": "1",
        "start": "0", "limit": "10", "after": "", "event_id": "0" * 64}


def _types(ann: Any) -> set[Any]:
    """The plain types inside an annotation (Annotated and unions unwrapped)."""
    args = typing.get_args(ann)
    if not args:
        return {ann}
    if typing.get_origin(ann) is typing.Annotated:
        return _types(args[0])
    return set().union(*(_types(a) for a in args))


def _is_str(field: Any) -> bool:
    return str in _types(field.field_info.annotation) or str in _types(
        getattr(field, "type_", None))


def get_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(path, route) of every GET operation, included routers flattened."""
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute) and "GET" in (ctx.methods or ()):
            yield ctx.path_format or route.path, route


def get_routes_with_strings(app: FastAPI) -> list[tuple[str, str, str, list[Any]]]:
    """(path, param name, where, all params) for every string param of every GET."""
    out = []
    for path, route in get_routes(app):
        params = get_flat_params(route.dependant)
        for f in params:
            if not _is_str(f):
                continue
            where = ("path" if isinstance(f.field_info, PathParam) else
                     "header" if isinstance(f.field_info, Header) else
                     "query" if isinstance(f.field_info, Query) else "other")
            if where == "other":
                continue
            out.append((path, f.alias, where, params))
    return out


def injected_request(path: str, target: str, where: str, params: list[Any], payload: str,
                     access: str) -> tuple[str, dict[str, str], dict[str, str]]:
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    url = path
    for f in params:
        is_target = f.alias == target
        value = payload if is_target else FILL.get(f.alias, "art-1")
        if isinstance(f.field_info, PathParam):
            url = url.replace("{" + f.alias + "}", quote(value, safe="")).replace(
                "{" + f.alias + ":path}", quote(value, safe=""))
        elif isinstance(f.field_info, Header):
            headers[f.alias] = value if is_target else access
        elif isinstance(f.field_info, Query) and (is_target or f.field_info.is_required()):
            query[f.alias] = value
    return url, query, headers


def test_t10_injection_in_every_get_string_parameter_changes_nothing(
        app: FastAPI, client: TestClient, more_world: w.World, store: SqlStore) -> None:
    targets = get_routes_with_strings(app)
    covered = {(p, n) for p, n, _, _ in targets}
    must = {("/v1/state/{key}", "key"), ("/v1/state", "prefix"), ("/v1/state", "after"),
            ("/v1/refs/{ref}", "ref"), ("/v1/artefacts", "sha256"), ("/v1/artefacts", "case"),
            ("/v1/artefacts", "after"), ("/v1/orgs/{org_id}", "org_id"),
            ("/v1/cases/{case_id}", "case_id"), ("/v1/events/{event_id}", "event_id"),
            ("/v1/artefacts/{artefact_id}", "X-Custody-Access-Event")}
    assert must <= covered, must - covered
    digest_before, rows_before = table_digest(store), table_rows(store)
    auth(more_world, "aud", "exam-de")
    access = w.access_header("art-1", "exam-de")
    statuses: Counter[int] = Counter()
    for actor in ("aud", "exam-de"):
        for path, name, where, params in targets:
            for payload in SQLI:
                if where == "header" and not payload.isascii():
                    continue
                url, query, headers = injected_request(path, name, where, params, payload,
                                                       access)
                r = client.get(url, params=query, headers={**HEADERS_CACHE[actor], **headers})
                statuses[r.status_code] += 1
                tally("T10", f"GET status {r.status_code}")
                assert r.status_code in (200, 403, 404, 422), (url, query, r.status_code,
                                                               r.text[:300])
                if r.status_code == 200 and path == "/v1/state" and name == "prefix":
                    assert all(i["key"].startswith(payload) for i in r.json()["items"])
                    assert r.json()["items"] == [], (payload, "LIKE wildcard not escaped")
                if r.status_code == 200 and path == "/v1/refs/{ref}":
                    assert r.json()["indices"] == [], payload
    tally("T10", "GET (route, param) pairs", len(targets))
    tally("T10", "payloads", len(SQLI))
    assert table_rows(store) == rows_before
    assert table_digest(store) == digest_before
    assert statuses[200] > 0
    assert statuses[422] > 0


def test_t10_injection_in_signed_event_fields_is_stored_verbatim(
        client: TestClient, world: w.World, store: SqlStore) -> None:
    auth(world, "admin-de", "exam-de")
    rows_before, size_before = table_rows(store), store.size()
    accepted = refused = 0
    for i, payload in enumerate(SQLI):
        case_id = f"CASE-SQLI-{i}"
        r = post_signed(client, w.sign(ev.CASE_OPEN, "admin-de",
                                       {"id": case_id, "title": payload}), "admin-de")
        assert r.status_code == 201, r.text
        assert client.get(f"/v1/cases/{case_id}", headers=HEADERS_CACHE["admin-de"]
                          ).json()["record"]["title"] == payload
        data = f"sqli evidence {i}".encode()
        art = f"art-sqli-{i}"
        r = post_signed(client, w.sign(ev.ARTEFACT_REGISTER, "exam-de", {
            "id": art, "case": "CASE-1", "exhibit": payload[:100], "type": "file",
            "description": payload, "size": len(data),
            "digests": {"sha256": hashlib.sha256(data).hexdigest(),
                        "sha512": hashlib.sha512(data).hexdigest()}, "parents": []}),
            "exam-de")
        assert r.status_code == 201, r.text
        assert store.state("art/" + art) is not None
        stored = Entry.from_leaf(store.entry(r.json()["index"]).leaf).signed.event.payload
        assert stored["description"] == payload
        assert stored["exhibit"] == payload[:100]
        r = post_signed(client, w.sign(ev.ACCESS, "exam-de", {
            "artefact": art, "action": "view", "purpose": payload, "authorisation": payload,
            "outcome": "success", "source": "api"}), "exam-de")
        assert r.status_code == 201, r.text
        stored = Entry.from_leaf(store.entry(r.json()["index"]).leaf).signed.event.payload
        assert stored["purpose"] == payload
        assert stored["authorisation"] == payload
        accepted += 3
        # As an id the payload is refused by the strict parser: nothing is written.
        r = post_signed(client, w.sign(ev.CASE_OPEN, "admin-de", {"id": payload}), "admin-de")
        assert r.status_code == 422, r.text
        refused += 1
        tally("T10", "POST /v1/events", 4)
    rows_after = table_rows(store)
    assert store.size() == size_before + accepted
    assert rows_after["entries"] == rows_before["entries"] + accepted
    assert rows_after["checkpoints"] == rows_before["checkpoints"] + accepted
    assert rows_after["head"] == 1
    assert all(rows_after[k] >= rows_before[k] for k in TABLES)
    report = audit_store(store)
    assert report.ok, report
    tally("T10", "events accepted verbatim", accepted)
    tally("T10", "events refused (payload as id)", refused)


# =======================================================================================
# T11: denial of service
# =======================================================================================

def int_query_params(app: FastAPI) -> list[tuple[str, str, Any]]:
    out = []
    for path, route in get_routes(app):
        for f in get_flat_params(route.dependant):
            if isinstance(f.field_info, Query) and int in _types(f.field_info.annotation):
                out.append((path, f.alias, route))
    return out


HUGE = [str(2**63), str(2**64), "-" + "9" * 30, "9" * 30, "9" * 5000, "1" + "0" * 4301,
        "1e9", "0x10", "inf", "NaN", "1.5", ""]


def bounds(field: Any) -> tuple[int | None, int | None]:
    ge = le = None
    for m in field.field_info.metadata:
        ge = getattr(m, "ge", ge)
        le = getattr(m, "le", le)
    return ge, le


def test_t11_page_caps_and_huge_integers_are_422(app: FastAPI, client: TestClient,
                                                 world: w.World) -> None:
    headers = world.headers("aud")
    targets = int_query_params(app)
    assert {(p, n) for p, n, _ in targets} >= {
        ("/v1/log/entries", "limit"), ("/v1/log/entries", "start"),
        ("/v1/state", "limit"), ("/v1/log/checkpoints", "limit"), ("/v1/log/check", "limit"),
        ("/v1/refs/{ref}", "limit"), ("/v1/artefacts", "limit"), ("/v1/cases", "limit")}
    for path, name, route in targets:
        params = get_flat_params(route.dependant)
        field = next(f for f in params if f.alias == name)
        ge, le = bounds(field)
        assert le is not None, f"{path} {name}: an integer query parameter without a cap"
        if name == "limit":
            assert le <= 10_000, (path, le)
        values = [str(le + 1), *HUGE] + ([str(ge - 1)] if ge is not None else [])
        url = path
        for f in params:
            if isinstance(f.field_info, PathParam):
                url = url.replace("{" + f.alias + "}", "art-1")
        query = {f.alias: FILL.get(f.alias, "art/") for f in params
                 if isinstance(f.field_info, Query) and f.field_info.is_required()}
        for value in values:
            t0 = time.perf_counter()
            r = client.get(url, params={**query, name: value}, headers=headers)
            elapsed = time.perf_counter() - t0
            tally("T11", f"page/int status {r.status_code}")
            assert r.status_code == 422, (url, name, value[:40], r.status_code, r.text[:200])
            assert elapsed < 2.0, (url, name, value[:40], elapsed)


@pytest.fixture
def tiny_queue_app(store: SqlStore, tmp_path: Path) -> FastAPI:
    return create_app(store, evidence_dir=tmp_path / "evidence", write_queue=2,
                      group_commit_max=2)


FLOOD = 300


def test_t11_write_flood_against_a_tiny_queue_gets_503_never_500(
        tiny_queue_app: FastAPI, store: SqlStore) -> None:
    with TestClient(tiny_queue_app) as client:
        world = w.build(w.World(str(client.base_url), client=client))
        auth(world, "admin-de", "exam-de")
        size_before = store.size()
        # Pre-signed: cases (independent), access events, and conflicting dispatches of
        # one artefact from the same head (at most one can win), plus replays.
        head = store.state("art/art-1")
        assert head is not None
        bodies: list[tuple[str, bytes, str]] = []
        for i in range(FLOOD):
            if i % 3 == 0:
                s, actor = w.sign(ev.CASE_OPEN, "admin-de", {"id": f"FLOOD-{i}"}), "admin-de"
            elif i % 3 == 1:
                s, actor = w.sign(ev.ACCESS, "exam-de", {
                    "artefact": "art-1", "action": "view", "purpose": "flood",
                    "outcome": "success", "source": "api"}), "exam-de"
            else:
                s, actor = w.sign(ev.DISPATCH, "exam-de", {
                    "transfer": f"tr-flood-{i}", "artefact": "art-1", "to_org": "nfi",
                    "purpose": "analysis", "legal_basis": "lb-1",
                    "transport": {"method": "", "reference": ""}, "seals": []},
                    prev=head["head"]), "exam-de"
            bodies.append(("/v1/events", s.canonical_bytes(), actor))
        bodies += [bodies[i] for i in range(0, FLOOD, 10)]  # replays of the same bytes

    app = tiny_queue_app

    async def flood() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            return await asyncio.gather(*(
                ac.post(path, content=body, headers={**HEADERS_CACHE[actor],
                                                     "Content-Type": "application/json"})
                for path, body, actor in bodies))

    try:
        responses = asyncio.run(flood())
    finally:
        app.state.runtime.committer.stop()
    hist = Counter(r.status_code for r in responses)
    for status, n in hist.items():
        tally("T11", f"flood status {status}", n)
    tally("T11", "flood requests", len(responses))
    assert set(hist) <= {200, 201, 409, 429, 503}, hist
    assert hist[503] > 0, f"a queue of 2 never pushed back under {len(bodies)} writers: {hist}"
    for r in responses:
        if r.status_code == 503:
            assert r.headers.get("Retry-After", "").isdigit(), r.headers
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["code"] == "backpressure" or "retry_after" in r.json()
    # Nothing acknowledged is lost and the log holds nothing unacknowledged.
    acked = {r.json()["index"] for r in responses if r.status_code == 201}
    assert store.size() == size_before + len(acked)
    for r in responses:
        if r.status_code in (200, 201):
            idx = r.json()["index"]
            assert store.entry(idx).leaf_hash.hex() == r.json()["leaf_hash"]
    dispatches = sum(1 for (p, b, a), r in zip(bodies, responses, strict=True)
                     if r.status_code == 201 and b"custody.dispatch" in b)
    assert dispatches <= 1  # compare-and-swap on the head even under load
    report = audit_store(store)
    assert report.ok, report


def test_t11_large_and_deep_bodies_are_refused_fast(client: TestClient,
                                                    world: w.World) -> None:
    headers = {**world.headers("admin-de"), "Content-Type": "application/json"}
    big = b'{"event": {"payload": {"x": "' + b"A" * (20 * 1024 * 1024) + b'"}}, "sig": ""}'
    cases: list[tuple[str, str, Any, set[int]]] = [
        ("POST", "/v1/events", big, {413}),
        ("POST", "/v1/events/batch", big, {413}),
        ("POST", "/v1/auth/challenge", big, {413}),
        ("POST", "/v1/cases", big, {413}),
        ("POST", "/v1/verify", big, {413}),
        ("POST", "/v1/events", (b"[" * 100_000) + (b"]" * 100_000), {413, 422}),
        ("POST", "/v1/events", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, {413, 422}),
        ("POST", "/v1/events", b'{"event": {"payload": ' + b'{"a":' * 5000 + b"1"
         + b"}" * 5000 + b'}, "sig": "x"}', {422}),
        ("POST", "/v1/events", b'{"a": "' + b"\\u0000" * 40_000 + b'"}', {422}),
        ("POST", "/v1/events", b"\xff" * 200_000, {422}),
    ]
    for method, path, body, ok in cases:
        t0 = time.perf_counter()
        r = client.request(method, path, content=body, headers=headers)
        elapsed = time.perf_counter() - t0
        tally("T11", f"body status {r.status_code}")
        assert r.status_code in ok, (path, len(body), r.status_code, r.text[:200])
        assert elapsed < 2.0, (path, len(body), elapsed)

    # Chunked (no Content-Length): cut off at cap + 1 byte, fast, whatever the status.
    for path in ("/v1/events", "/v1/events/batch", "/v1/cases"):
        t0 = time.perf_counter()
        r = client.post(path, content=_chunks(64), headers=headers)
        tally("T11", f"chunked body status {r.status_code}")
        assert r.status_code in (413, 422), r.status_code
        assert time.perf_counter() - t0 < 5.0


def _chunks(mib: int) -> Iterator[bytes]:
    for _ in range(mib):
        yield b"A" * (1024 * 1024)


def test_t11_chunked_body_over_the_cap_is_413(client: TestClient, world: w.World) -> None:
    headers = {**world.headers("admin-de"), "Content-Type": "application/json"}
    r = client.post("/v1/events", content=_chunks(2), headers=headers)
    assert r.status_code == 413, (r.status_code, r.text[:200])


def test_t11_unknown_and_repeated_query_parameters(client: TestClient, world: w.World) -> None:
    headers = world.headers("aud")
    many = "&".join(f"p{i}=x" for i in range(2000))
    r = client.get(f"/v1/log/entries?{many}", headers=headers)
    assert r.status_code == 422
    r = client.get("/v1/log/entries?" + "&".join(["limit=5"] * 2000), headers=headers)
    assert r.status_code in (200, 422)
    tally("T11", "query flood requests", 2)

