"""Evidence packages through the API (issue #11): resumable uploads into the
content-addressed package store, probes, ranged downloads and who may fetch what; the
RemoteStore client that resumes both directions.

The world (tests/api/world.py): bka (DE) dispatches ``art-3`` to nfi (NL) with a package
(tests/api/package_world.py); fbi (US) is outside the case and the transfer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from api.package_store import PackageStore
from api.settings import Settings
from ledger.core.errors import Conflict, NotFound, VerificationError
from tests.api import world as w
from tests.api.package_world import sealed_dispatch

DATA = os.urandom(300_000) + b"end"
SHA = hashlib.sha256(DATA).hexdigest()


def url(sha: str = SHA) -> str:
    return f"/v1/packages/{sha}"


def put(client: TestClient, world: w.World, body: bytes, *, length: int = len(DATA),
        offset: int | None = None, actor: str = "exam-de", sha: str = SHA) -> Any:
    headers = {**world.headers(actor), "Upload-Length": str(length)}
    if offset is not None:
        headers["Upload-Offset"] = str(offset)
    return client.put(url(sha), content=body, headers=headers)


def packages(app: FastAPI) -> PackageStore:
    store = app.state.runtime.packages
    assert isinstance(store, PackageStore)
    return store


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def asgi_put(app: FastAPI, path: str, headers: dict[str, str],
             messages: list[dict[str, Any]]) -> tuple[int, dict[str, str], int]:
    """One PUT straight to the ASGI app with the body as the given receive messages (a
    client that goes away is ``http.disconnect``); returns (status, headers, how many
    messages the app asked for)."""
    asked = 0

    async def run() -> tuple[int, dict[str, str]]:
        nonlocal asked
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "PUT", "scheme": "http", "server": ("testserver", 80),
                 "client": ("127.0.0.1", 1234), "root_path": "", "path": path,
                 "raw_path": path.encode(), "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        status, out = 0, {}

        async def receive() -> dict[str, Any]:
            nonlocal asked
            asked += 1
            if asked <= len(messages):
                return messages[asked - 1]
            await asyncio.sleep(0)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out.update({k.decode(): v.decode() for k, v in message.get("headers", [])})

        with contextlib.suppress(ClientDisconnect):  # no answer reaches a client that left
            await app(scope, receive, send)
        return status, out

    status, out = asyncio.run(run())
    return status, out, asked


# ---- uploads ---------------------------------------------------------------------------

def test_upload_in_one_go(app: FastAPI, client: TestClient, world: w.World) -> None:
    r = put(client, world, DATA)
    assert r.status_code == 201, r.text
    assert r.json() == {"sha256": SHA, "length": len(DATA), "offset": len(DATA),
                        "complete": True}
    final = packages(app).path_for(SHA)
    assert final.read_bytes() == DATA
    assert final == packages(app).root / "sha256" / SHA[:2] / SHA
    stat = final.stat()
    # Already complete: 200, nothing read or rewritten.
    again = put(client, world, DATA)
    assert again.status_code == 200
    assert again.json()["complete"] is True
    assert final.stat().st_ino == stat.st_ino
    assert final.stat().st_mtime_ns == stat.st_mtime_ns
    assert files(packages(app).root) == {f"sha256/{SHA[:2]}/{SHA}"}


def test_upload_interrupted_and_resumed(app: FastAPI, client: TestClient,
                                        world: w.World) -> None:
    half = len(DATA) // 2
    first = put(client, world, DATA[:half])
    assert first.status_code == 202, first.text
    assert first.headers["Upload-Offset"] == str(half)
    assert first.json()["complete"] is False
    assert not packages(app).has(SHA)  # nothing at the final path before it is complete
    probe = client.head(url(), headers=world.headers("exam-de"))
    assert probe.status_code == 204
    assert (probe.headers["Upload-Offset"], probe.headers["Upload-Length"]) == (
        str(half), str(len(DATA)))
    second = put(client, world, DATA[half:], offset=half)
    assert second.status_code == 201, second.text
    assert packages(app).open(SHA).read_bytes() == DATA
    assert files(packages(app).root) == {f"sha256/{SHA[:2]}/{SHA}"}  # no partial left


def test_a_client_that_goes_away_leaves_what_arrived_to_continue_from(
        app: FastAPI, client: TestClient, world: w.World) -> None:
    headers = {**world.headers("cust-nl"), "Upload-Length": str(len(DATA)),
               "Content-Length": str(len(DATA))}
    status, _, _ = asgi_put(app, url(), headers, [
        {"type": "http.request", "body": DATA[:70_000], "more_body": True},
        {"type": "http.request", "body": DATA[70_000:100_000], "more_body": True},
        {"type": "http.disconnect"}])
    assert status == 202  # (an answer that reaches nobody: the client left)
    assert not packages(app).has(SHA)
    probe = client.head(url(), headers=world.headers("cust-nl"))
    assert (probe.status_code, probe.headers["Upload-Offset"]) == (204, "100000")
    # The partial is the organisation's: another one neither sees nor continues it.
    assert client.head(url(), headers=world.headers("exam-de")).status_code == 404
    other = put(client, world, DATA[100_000:], offset=100_000)
    assert (other.status_code, other.json()["rule"]) == (409, "upload-in-progress")
    done = put(client, world, DATA[100_000:], offset=100_000, actor="cust-nl")
    assert done.status_code == 201, done.text
    assert packages(app).open(SHA).read_bytes() == DATA


def test_a_wrong_offset_is_refused_with_the_current_one(app: FastAPI, client: TestClient,
                                                        world: w.World) -> None:
    fresh = put(client, world, DATA[1000:], offset=1000)
    assert fresh.status_code == 409
    assert fresh.json()["rule"] == "upload-offset"
    assert "start at Upload-Offset 0" in fresh.json()["detail"]
    assert files(packages(app).root) == set()
    assert put(client, world, DATA[:5000]).status_code == 202
    for offset in (0, 4999, 5001):
        r = put(client, world, DATA[offset:], offset=offset)
        assert r.status_code == 409, offset
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["rule"] == "upload-offset"
        assert "at offset 5000" in r.json()["detail"]
        assert "Upload-Offset: 5000" in r.json()["detail"]
    other_length = put(client, world, DATA[5000:] + b"x", length=len(DATA) + 1, offset=5000)
    assert (other_length.status_code, other_length.json()["rule"]) == (409, "upload-length")
    assert put(client, world, DATA[5000:], offset=5000).status_code == 201


def test_over_the_cap_is_refused_before_the_body_is_read(app: FastAPI, client: TestClient,
                                                         world: w.World) -> None:
    app.state.runtime.limits.max_upload_bytes = 100_000
    headers = {**world.headers("exam-de"), "Upload-Length": str(len(DATA)),
               "Content-Length": str(len(DATA))}
    status, out, asked = asgi_put(app, url(), headers, [
        {"type": "http.request", "body": DATA, "more_body": False}])
    assert status == 413
    assert out["content-type"] == "application/problem+json"
    assert asked == 0  # the body was never read
    # Within the cap, a body longer than the announced length: 413, nothing kept.
    small = DATA[:1000]
    sha = hashlib.sha256(small).hexdigest()
    status, _, asked = asgi_put(app, url(sha), {**headers, "Upload-Length": "1000",
                                                "Content-Length": "2000"}, [])
    assert (status, asked) == (413, 0)
    r = client.put(url(sha), content=iter([small, b"more"]),
                   headers={**world.headers("exam-de"), "Upload-Length": "1000"})
    assert r.status_code == 413, r.text
    assert files(packages(app).root) == set()
    # A body past the announced length on a resumed upload keeps what was there.
    assert put(client, world, small[:400], length=1000, sha=sha).status_code == 202
    r = client.put(url(sha), content=iter([small[400:], b"more"]),
                   headers={**world.headers("exam-de"), "Upload-Length": "1000",
                            "Upload-Offset": "400"})
    assert r.status_code == 413
    probe = client.head(url(sha), headers=world.headers("exam-de"))
    assert probe.headers["Upload-Offset"] == "400"


def test_a_digest_mismatch_keeps_nothing(app: FastAPI, client: TestClient,
                                         world: w.World) -> None:
    wrong = bytearray(DATA)
    wrong[-1] ^= 1
    r = put(client, world, bytes(wrong))
    assert r.status_code == 422
    assert r.json()["code"] == "verification-failed"
    assert files(packages(app).root) == set()
    assert client.head(url(), headers=world.headers("exam-de")).status_code == 404
    # The same when the last byte arrives in a resumed request (the file is re-hashed).
    assert put(client, world, bytes(wrong[:1000])).status_code == 202
    assert put(client, world, bytes(wrong[1000:]), offset=1000).status_code == 422
    assert files(packages(app).root) == set()


def test_uploads_need_a_custodial_role_and_a_package_store(
        app: FastAPI, client: TestClient, world: w.World) -> None:
    assert put(client, world, DATA, actor="court-de").status_code == 403
    assert put(client, world, DATA, actor="admin-nl").status_code == 403
    assert client.put(url(), content=DATA, headers={"Upload-Length": "9"}).status_code == 401
    missing = client.put(url(), content=DATA, headers=world.headers("exam-de"))
    assert missing.status_code == 422  # Upload-Length is required
    assert put(client, world, DATA, offset=len(DATA) + 1).status_code == 422
    app.state.runtime.packages = None
    off = put(client, world, DATA)
    assert off.status_code == 404
    assert "no package store" in off.json()["detail"]


@pytest.mark.parametrize("name", ["..", "%2e%2e%2fetc", "A" * 64, SHA[:63], SHA + "0",
                                  SHA.upper(), "sha256", "partial", SHA[:60] + ".json"])
def test_only_a_sha256_names_a_package(app: FastAPI, client: TestClient, world: w.World,
                                       name: str) -> None:
    headers = {**world.headers("exam-de"), "Upload-Length": str(len(DATA))}
    for method in ("PUT", "HEAD", "GET"):
        r = client.request(method, f"/v1/packages/{name}", headers=headers,
                           content=DATA if method == "PUT" else None)
        assert 400 <= r.status_code < 500, (method, name, r.status_code)
    assert files(packages(app).root) == set()


# ---- probes, downloads, access --------------------------------------------------------

def test_head_tells_where_an_upload_stands(app: FastAPI, client: TestClient,
                                           world: w.World) -> None:
    h = world.headers("exam-de")
    assert client.head(url(), headers=h).status_code == 404
    assert client.head(url(), headers={}).status_code == 401
    put(client, world, DATA[:10])
    partial = client.head(url(), headers=h)
    assert partial.status_code == 204
    assert partial.headers["Upload-Offset"] == "10"
    put(client, world, DATA[10:], offset=10)
    done = client.head(url(), headers=h)
    assert done.status_code == 200
    assert done.headers["Content-Length"] == str(len(DATA))
    assert done.content == b""
    # A complete package answers custodial roles (they could upload it and be told);
    # others see it only once a transfer of theirs names it.
    assert client.head(url(), headers=world.headers("exam-us")).status_code == 200
    for outsider in ("court-de", "admin-nl", "court-us", "aud"):
        assert client.head(url(), headers=world.headers(outsider)).status_code == 404


def test_get_streams_ranges_to_the_transfers_organisations(
        app: FastAPI, client: TestClient, world: w.World) -> None:
    sha = sealed_dispatch(world, "art-3", DATA)
    assert sha == SHA
    for actor in ("cust-nl", "admin-nl", "exam-de", "court-de"):
        r = client.get(url(), headers=world.headers(actor))
        assert r.status_code == 200, (actor, r.text)
        assert r.content == DATA
        assert r.headers["content-type"] == "application/octet-stream"
    h = world.headers("cust-nl")
    tail = client.get(url(), headers={**h, "Range": "bytes=123456-"})
    assert tail.status_code == 206
    assert tail.headers["Content-Range"] == f"bytes 123456-{len(DATA) - 1}/{len(DATA)}"
    assert tail.content == DATA[123456:]
    middle = client.get(url(), headers={**h, "Range": "bytes=10-19"})
    assert (middle.status_code, middle.content) == (206, DATA[10:20])
    for bad in (f"bytes={len(DATA)}-", "bytes=20-10", "bytes=0-1,5-6", "items=0-", "bytes=-5"):
        r = client.get(url(), headers={**h, "Range": bad})
        assert r.status_code == 422, bad
        assert r.headers["content-type"] == "application/problem+json"
    # The party organisations also probe it, custodial or not.
    assert client.head(url(), headers=world.headers("court-de")).status_code == 200


def test_another_agency_sees_no_package(app: FastAPI, client: TestClient,
                                        world: w.World) -> None:
    sealed_dispatch(world, "art-3", DATA)
    absent = hashlib.sha256(b"no such package").hexdigest()
    for actor in ("exam-us", "admin-us", "court-us", "aud-us", "aud"):
        hidden = client.get(url(), headers=world.headers(actor))
        unknown = client.get(url(absent), headers=world.headers(actor))
        assert hidden.status_code == unknown.status_code == 404, actor
        assert hidden.json()["code"] == unknown.json()["code"] == "not-found"
        assert hidden.json()["title"] == unknown.json()["title"]
    # Uploaded but named by no transfer: nobody downloads it, not even its uploader.
    put(client, world, b"loose bytes", length=11, sha=hashlib.sha256(b"loose bytes").hexdigest())
    loose = client.get(url(hashlib.sha256(b"loose bytes").hexdigest()),
                       headers=world.headers("exam-de"))
    assert loose.status_code == 404


def test_packages_dir_defaults_under_the_evidence_dir(tmp_path: Path) -> None:
    base = {"database_url": "sqlite:///x.db", "log_key_path": tmp_path / "k",
            "origin": "o.example/custody"}
    assert Settings(**base).package_root() is None  # type: ignore[arg-type]
    with_evidence = Settings(**base, evidence_dir=tmp_path / "ev")  # type: ignore[arg-type]
    assert with_evidence.package_root() == tmp_path / "ev" / "packages"
    own = Settings(**base, evidence_dir=tmp_path / "ev",  # type: ignore[arg-type]
                   packages_dir=tmp_path / "pk")
    assert own.package_root() == tmp_path / "pk"


# ---- the client: RemoteStore.upload_package / download_package ------------------------

def test_remote_store_resumes_an_upload_and_a_download(
        app: FastAPI, client: TestClient, world: w.World, tmp_path: Path) -> None:
    src = tmp_path / "pkg.age"
    src.write_bytes(DATA)
    assert put(client, world, DATA[:77_777]).status_code == 202
    seen: list[tuple[int, int]] = []
    sender = world.store("exam-de")
    result = sender.upload_package(src, SHA, progress=lambda d, t: seen.append((d, t)))
    assert result == {"sha256": SHA, "size": len(DATA), "status": "uploaded",
                      "resumed_from": 77_777}
    assert seen[0] == (77_777, len(DATA))
    assert seen[-1] == (len(DATA), len(DATA))
    again = sender.upload_package(src, SHA)
    assert again["status"] == "present"

    sealed_dispatch(world, "art-3", DATA, upload=False)
    receiver = world.store("cust-nl")
    dest = tmp_path / "got" / "tr-art-3.age"
    dest.parent.mkdir()
    (dest.parent / "tr-art-3.age.part").write_bytes(DATA[:50_000])
    got = receiver.download_package(SHA, dest)
    assert got == {"sha256": SHA, "size": len(DATA), "path": str(dest),
                   "resumed_from": 50_000}
    assert dest.read_bytes() == DATA
    assert not (dest.parent / "tr-art-3.age.part").exists()
    # A part that is already whole is checked and published without another byte.
    dest.rename(dest.parent / "tr-art-3.age.part")
    assert receiver.download_package(SHA, dest)["resumed_from"] == len(DATA)
    assert dest.read_bytes() == DATA


def test_a_download_that_does_not_hash_right_is_deleted(
        app: FastAPI, client: TestClient, world: w.World, tmp_path: Path) -> None:
    sealed_dispatch(world, "art-3", DATA)
    dest = tmp_path / "p.age"
    part = tmp_path / "p.age.part"
    part.write_bytes(b"X" * 1000)  # a corrupt beginning from an earlier attempt
    with pytest.raises(VerificationError, match="it was deleted"):
        world.store("cust-nl").download_package(SHA, dest)
    assert not part.exists()
    assert not dest.exists()
    with pytest.raises(NotFound):
        world.store("exam-us").download_package(SHA, dest)
    assert not dest.exists()


def test_remote_store_refuses_to_resume_an_upload_of_another_length(
        client: TestClient, world: w.World, tmp_path: Path) -> None:
    assert put(client, world, DATA[:100], length=len(DATA) + 5).status_code == 202
    src = tmp_path / "pkg.age"
    src.write_bytes(DATA)
    with pytest.raises(Conflict, match="announced with"):
        world.store("exam-de").upload_package(src, SHA)
