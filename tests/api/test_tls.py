"""The API across borders: a real TLS server (uvicorn, in a thread, on loopback) with
certificates made here with ``cryptography``; mutual TLS per agency; safe defaults."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import Limits, SecurityConfig
from api.server import check_exposure, uvicorn_config
from api.settings import Settings
from api.tls import TlsFiles, server_context
from ledger.core import errors as e
from ledger.core import events as ev
from ledger.core.events import Entry
from ledger.service import Custody
from ledger.store.remote import ActorLogin, ClientTls, RemoteStore, check_transport
from ledger.store.sql import SqlStore
from tests.api import world as w
from tests.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def tls_server(app: FastAPI, files: TlsFiles) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config("127.0.0.1", port, app, files, "warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the TLS server did not start"
        assert thread.is_alive(), "the TLS server stopped at startup"
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def remote(url: str, actor: str, tls: ClientTls) -> RemoteStore:
    return RemoteStore(url, token=ActorLogin(url, w.key(actor), tls=tls), tls=tls,
                       signer_tokens=lambda a: ActorLogin(url, w.key(a), tls=tls)())


def security(**kw: object) -> SecurityConfig:
    return SecurityConfig(tls=True, **kw)  # type: ignore[arg-type]


# ---- TLS ---------------------------------------------------------------------------------


def test_the_server_story_over_https(world: w.World, store: SqlStore, pki: Pki) -> None:
    app = create_app(store, security=security())
    with tls_server(app, TlsFiles(pki.server_cert, pki.server_key)) as url:
        tls = ClientTls(ca=pki.ca)
        exam = remote(url, "exam-de", tls)
        custody = Custody(exam, origin=w.ORIGIN, clock=w.now_ms, random=os.urandom)
        got = custody.register(w.key("exam-de"), case="CASE-1",
                               digests=w.digests_of(b"over tls"), kind="file",
                               exhibit="E-TLS", artefact_id="art-tls")
        assert got.index > 0
        court = remote(url, "court-nl", tls)
        bundle, faults = court.bundle(artefact_id="art-tls")
        assert faults == []
        assert bundle.subject == {"artefact": "art-tls"}
        # Every answer carries the safe headers, HSTS included (TLS is on).
        r = httpx.get(url + "/v1/log", verify=tls.context())
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "access-control-allow-origin" not in r.headers
        for c in (exam, court):
            c.close()


def test_a_client_without_the_ca_refuses_the_server_in_one_sentence(
        world: w.World, store: SqlStore, pki: Pki) -> None:
    with tls_server(create_app(store, security=security()),
                    TlsFiles(pki.server_cert, pki.server_key)) as url:
        client = RemoteStore(url, tls=ClientTls())  # the system store: our CA is not in it
        with pytest.raises(e.VerificationError) as got:
            client.log_info()
        assert "127.0.0.1" in got.value.message
        assert "not trusted" in got.value.message
        assert "\n" not in got.value.message
        client.close()
        # A plain-HTTP client on the TLS port gets nothing useful.
        try:
            r = httpx.get(url.replace("https://", "http://") + "/v1/log", timeout=5)
            assert r.status_code >= 400
            assert "origin" not in r.text
        except httpx.HTTPError:
            pass


def test_there_is_no_plain_http_to_another_host() -> None:
    with pytest.raises(e.InvalidInput, match=r"refusing plain HTTP to ledger\.example"):
        check_transport("http://ledger.example:8600", None)
    with pytest.raises(e.InvalidInput, match="use https"):
        check_transport("http://127.0.0.1:8600", ClientTls(ca=Path("ca.pem")))
    assert check_transport("http://127.0.0.1:8600", None) == "127.0.0.1"
    assert check_transport("https://ledger.example", None) == "ledger.example"


# ---- mutual TLS --------------------------------------------------------------------------


def denied(store: SqlStore) -> list[Entry]:
    size = store.size()
    return [Entry.from_leaf(s.leaf) for s in store.entries(0, size)
            if Entry.from_leaf(s.leaf).signed.event.kind == ev.AUTH_DENIED]


def test_mutual_tls_binds_the_certificate_to_the_actors_organisation(
        world: w.World, store: SqlStore, pki: Pki) -> None:
    app = create_app(store, security=security(mtls=True, security_actor=w.key("aud")))
    files = TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca)
    with tls_server(app, files) as url:
        bka = ClientTls(ca=pki.ca, cert=pki.clients["bka"][0], key=pki.clients["bka"][1])
        # Agency A's certificate, agency A's actor: allowed.
        ok = remote(url, "exam-de", bka)
        assert ok.state("actor/exam-de") is not None
        ok.close()
        before = len(denied(store))
        # Agency A's certificate with agency B's actor: 403, and a denied entry on the log.
        wrong = remote(url, "cust-nl", bka)
        with pytest.raises(e.Forbidden, match="organisation 'bka', not 'nfi'"):
            wrong.state("actor/cust-nl")
        wrong.close()
        entries = denied(store)
        assert len(entries) == before + 1
        p = entries[-1].signed.event.payload
        assert entries[-1].signed.event.signer == "aud"
        assert p["actor"] == "cust-nl"
        assert p["certificate_org"] == "bka"
        assert "bka client" in p["certificate_subject"]
        # No certificate, or one from another CA: refused at the handshake, no HTTP.
        for tls in (ClientTls(ca=pki.ca),
                    ClientTls(ca=pki.ca, cert=pki.clients["rogue"][0],
                              key=pki.clients["rogue"][1])):
            anon = RemoteStore(url, tls=tls)
            with pytest.raises((e.UpstreamError, e.VerificationError)) as got:
                anon.log_info()
            assert "127.0.0.1" in got.value.message
            anon.close()
    assert len(denied(store)) == before + 1  # handshake refusals never reach the app


# ---- settings that refuse ----------------------------------------------------------------


def test_a_readable_key_and_plain_http_in_production_are_refused(pki: Pki,
                                                                 tmp_path: Path) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(pki.server_key.read_bytes())
    loose.chmod(0o644)
    with pytest.raises(e.InvalidInput, match=r"readable by group or others .*chmod 600"):
        server_context(TlsFiles(pki.server_cert, loose))
    with pytest.raises(e.InvalidInput, match="not found"):
        server_context(TlsFiles(tmp_path / "missing.pem", pki.server_key))
    key_file = tmp_path / "log.key"
    base = {"origin": "o.example", "database_url": f"sqlite:///{tmp_path}/l.db",
            "log_key_path": key_file, "environment": "production", "token_secret": "x" * 40}
    prod = Settings(**base)  # type: ignore[arg-type]
    for host in ("0.0.0.0", "192.0.2.10", "::"):  # noqa: S104 - the addresses under test
        with pytest.raises(e.InvalidInput, match=f"refusing to serve plain HTTP on {host}"):
            check_exposure(host, prod)
    check_exposure("127.0.0.1", prod)
    check_exposure("0.0.0.0", Settings(**base, tls_cert=pki.server_cert,  # noqa: S104
                                       tls_key=pki.server_key))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="security_actor"):
        Settings(**base, tls_cert=pki.server_cert, tls_key=pki.server_key,  # type: ignore[arg-type]
                 tls_client_ca=pki.ca)


def test_only_tls_1_2_and_newer_with_forward_secret_aead_ciphers(world: w.World,
                                                                   store: SqlStore,
                                                                   pki: Pki) -> None:
    files = TlsFiles(pki.server_cert, pki.server_key)
    assert server_context(files).minimum_version == ssl.TLSVersion.TLSv1_2
    with tls_server(create_app(store, security=security()), files) as url:
        port = int(url.rsplit(":", 1)[1])
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            ctx.maximum_version = version
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                name, protocol, _bits = tls.cipher()  # type: ignore[misc]
                assert protocol == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                    ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
                assert "GCM" in name or "CHACHA20" in name
                if version == ssl.TLSVersion.TLSv1_2:
                    assert name.startswith("ECDHE-")
        # A TLS 1.2 client offering only CBC (non-AEAD) suites finds nothing in common.
        weak = ssl.create_default_context(cafile=str(pki.ca))
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
        with pytest.raises(ssl.SSLError), \
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                weak.wrap_socket(raw, server_hostname="127.0.0.1"):
            pass


# ---- rate limits, login throttling, CORS ---------------------------------------------------


def test_a_burst_beyond_the_rate_limit_gets_429s_never_5xx_and_the_limit_resets(
        world: w.World, store: SqlStore) -> None:
    app = create_app(store, security=SecurityConfig(rate=Limits(5.0, 0.0, 5)))
    with TestClient(app) as c:
        codes = [c.get("/v1/log").status_code for _ in range(30)]
        assert codes.count(200) >= 5
        assert 429 in codes
        assert all(code < 500 for code in codes)
        r = c.get("/v1/log")
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert int(r.headers["retry-after"]) >= 1
        time.sleep(1.1)
        assert c.get("/v1/log").status_code == 200


def test_the_per_actor_limit_follows_the_token_not_the_address(world: w.World,
                                                               store: SqlStore) -> None:
    app = create_app(store, security=SecurityConfig(rate=Limits(0.0, 3.0, 3)))
    with TestClient(app) as c:
        h = bearer(c, "court-nl")
        codes = [c.get("/v1/auth/me", headers=h).status_code for _ in range(12)]
        assert codes[:3] == [200, 200, 200]
        assert 429 in codes
        assert all(code < 500 for code in codes)
        # Another actor from the same address is not slowed down.
        assert c.get("/v1/auth/me", headers=bearer(c, "aud")).status_code == 200


def bearer(c: TestClient, actor: str) -> dict[str, str]:
    """Log in to THIS app (its own token key) by signing its challenge."""
    ch = c.post("/v1/auth/challenge", json={"actor": actor}).json()["challenge"]
    sig = base64.b64encode(w.key(actor).signer.sign(b"custody-ledger/v1/auth\n" + ch.encode()))
    tok = c.post("/v1/auth/token", json={"actor": actor, "challenge": ch,
                                         "signature": sig.decode()})
    assert tok.status_code == 200, tok.text
    return {"Authorization": "Bearer " + tok.json()["access_token"]}


def test_failed_logins_are_throttled_per_actor(world: w.World, store: SqlStore) -> None:
    app = create_app(store, security=SecurityConfig(login_failures_per_actor=3,
                                                    login_failures_per_address=100,
                                                    login_window_s=1.0))
    with TestClient(app) as c:
        def attempt(good: bool) -> int:
            ch = c.post("/v1/auth/challenge", json={"actor": "exam-de"}).json()["challenge"]
            signer = w.key("exam-de" if good else "exam-us").signer
            sig = base64.b64encode(signer.sign(b"custody-ledger/v1/auth\n" + ch.encode()))
            return c.post("/v1/auth/token", json={"actor": "exam-de", "challenge": ch,
                                                  "signature": sig.decode()}).status_code
        assert [attempt(False) for _ in range(3)] == [401, 401, 401]
        assert attempt(True) == 429  # even the right key waits
        assert attempt(False) == 429
        time.sleep(1.1)
        assert attempt(True) == 200


def test_cors_only_for_configured_origins(world: w.World, store: SqlStore) -> None:
    with TestClient(create_app(store)) as c:
        r = c.get("/v1/log", headers={"Origin": "https://portal.example"})
        assert "access-control-allow-origin" not in r.headers
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    app = create_app(store, security=SecurityConfig(cors_origins=("https://portal.example",)))
    with TestClient(app) as c:
        ok = c.options("/v1/log", headers={"Origin": "https://portal.example",
                                           "Access-Control-Request-Method": "GET"})
        assert ok.headers["access-control-allow-origin"] == "https://portal.example"
        other = c.get("/v1/log", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_only_an_auditor_or_admin_records_a_refused_login(world: w.World) -> None:
    payload = {"actor": "cust-nl", "reason": "certificate of another organisation"}
    with pytest.raises(e.RuleViolation) as got:
        world.custody("exam-de").submit(ev.AUTH_DENIED, w.key("exam-de"), payload)
    assert got.value.rule == "role"
    done = world.custody("aud").submit(ev.AUTH_DENIED, w.key("aud"), payload)
    assert done.result == {"outcome": "denied"}
    with pytest.raises(e.InvalidInput, match="certificate_sha256"):
        world.custody("aud").submit(ev.AUTH_DENIED, w.key("aud"),
                                    {**payload, "certificate_sha256": "zz"})
