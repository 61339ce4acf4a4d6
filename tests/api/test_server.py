"""Against a real uvicorn server process: the custody story through RemoteStore, the
double-dispatch race (T13), streamed uploads with hard caps (T8), PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.core import events as ev
from ledger.core.checkpoint import verify_checkpoint
from tests.api import server_proc
from tests.api import world as w

pytestmark = pytest.mark.timeout(180)
CAP = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server_proc.Server]:
    tmp = tmp_path_factory.mktemp("server")
    with server_proc.running(tmp, CUSTODY_MAX_UPLOAD_BYTES=str(CAP)) as srv:
        yield srv


@pytest.fixture(scope="module")
def world(server: server_proc.Server) -> Iterator[w.World]:
    built = w.build(w.World(server.url))
    yield built
    built.close()


def story(world: w.World) -> None:
    d = world.custody("exam-de").dispatch(w.key("exam-de"), artefact=world.artefact,
                                          to_org="nfi", purpose="analysis", legal_basis="lb-1")
    r = world.custody("cust-nl").receive(w.key("cust-nl"), transfer=d.result["transfer"],
                                         digests=world.digests)
    assert r.result["outcome"] == "accepted"
    store = world.store("cust-nl")
    assert store.state("art/" + world.artefact)["custodian"] == "nfi"
    cp = verify_checkpoint(store.latest_checkpoint(), w.log_signer().verifier_key)
    assert cp.size == store.size()
    # An outsider in another jurisdiction sees nothing of it.
    outsider = world.store("exam-us")
    assert outsider.state("art/" + world.artefact) is None
    assert outsider.refs(world.artefact) == []


def test_custody_story_on_sqlite(world: w.World) -> None:
    story(world)


def test_sixteen_concurrent_dispatches_one_wins(world: w.World) -> None:
    c = world.custody("exam-de")
    reg = c.register(w.key("exam-de"), case="CASE-1", digests=world.digests,
                     artefact_id="art-race", duplicate_of="art-1")
    head = reg.event_id
    token = world.token("exam-de")
    events = [w.sign(ev.DISPATCH, "exam-de", {
        "transfer": f"tr-race-{i}", "artefact": "art-race", "to_org": "nfi",
        "to_actor": None, "purpose": "race", "legal_basis": "lb-1",
        "transport": {"method": "", "reference": ""}, "seals": []}, prev=head)
        for i in range(16)]
    statuses: list[int] = []
    barrier = threading.Barrier(16)

    def go(signed: ev.SignedEvent) -> None:
        with httpx.Client(base_url=world.base_url, timeout=30) as client:
            barrier.wait()
            resp = client.post("/v1/events", content=signed.canonical_bytes(), headers={
                "Authorization": "Bearer " + token, "Content-Type": "application/json"})
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=go, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 15
    store = world.store("exam-de")
    dispatches = [i for i in store.refs("art-race")
                  if store.entry(i).leaf.find(b'"custody.dispatch"') >= 0]
    assert len(dispatches) == 1


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_upload_round_trip_and_logged_download(world: w.World,
                                               server: server_proc.Server) -> None:
    h = world.headers("exam-de")
    sha = world.digests.sha256
    resp = httpx.put(f"{world.base_url}/v1/evidence/{sha}", content=w.EVIDENCE, headers=h)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"sha256": sha, "sha512": world.digests.sha512,
                           "size": len(w.EVIDENCE)}
    # Custody of art-1 moved to nfi in the story; nfi's custodian downloads (logged).
    before = world.store("cust-nl").size()
    got = httpx.get(f"{world.base_url}/v1/artefacts/{world.artefact}/content", headers={
        **world.headers("cust-nl"),
        "X-Custody-Access-Event": w.access_header(world.artefact, "cust-nl", "download")})
    assert got.status_code == 200
    assert got.content == w.EVIDENCE
    assert world.store("cust-nl").size() == before + 1


def test_oversized_upload_is_413_and_leaves_nothing(world: w.World,
                                                   server: server_proc.Server) -> None:
    h = world.headers("exam-de")
    data = os.urandom(CAP + 1)
    sha = hashlib.sha256(data).hexdigest()
    before = _files(server.evidence)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap is found while streaming
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]

    resp = httpx.put(f"{world.base_url}/v1/evidence/{sha}", content=chunks(), headers=h)
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    declared = httpx.put(f"{world.base_url}/v1/evidence/{sha}", content=data, headers=h)
    assert declared.status_code == 413
    assert _files(server.evidence) == before


def test_digest_mismatch_upload_is_refused_and_nothing_stored(
        world: w.World, server: server_proc.Server) -> None:
    h = world.headers("exam-de")
    before = _files(server.evidence)
    resp = httpx.put(f"{world.base_url}/v1/evidence/{'0' * 64}", content=b"not it", headers=h)
    assert resp.status_code == 422
    assert resp.json()["code"] == "verification-failed"
    assert _files(server.evidence) == before


def test_custody_story_on_each_backend(tmp_path: Path, db_url: str) -> None:
    """SQLite always; PostgreSQL when CUSTODY_TEST_PG_URL is set (``backend`` fixture)."""
    with server_proc.running(tmp_path, database_url=db_url) as srv:
        built = w.build(w.World(srv.url))
        try:
            story(built)
        finally:
            built.close()
