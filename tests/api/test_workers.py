"""Several server processes on one ledger (``api.server.serve(workers=N)``).

* A login challenge is redeemed exactly once across processes: the spent ids are in the
  ledger database (``api.challenges``, migration 0005). Two real uvicorn servers on one
  database (SQLite and PostgreSQL) are each handed the same signed challenge at the same
  moment: one token is issued, the other answer is 401.
* A revocation appended through one server is seen by the other at its next request.
* ``serve(workers=2)`` really runs two worker processes that share the token secret
  (generated once when none is given), and their concurrent writes give one consistent
  log that passes the audit.
* Spent ids are pruned once expired; a ledger that predates the table gets it.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api import challenges
from api.auth import AUTH_DOMAIN
from api.server import SETTINGS_ENV, settings_json, worker_settings
from api.settings import Settings
from ledger.core import events as ev
from ledger.core.errors import InvalidInput, Unauthenticated
from ledger.store.sql import SqlStore
from tests.api import server_proc
from tests.api import world as w
from tests.procfs import child_pids

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 40
#: Failed logins are what this test provokes: throttling them would answer 429 instead.
NO_THROTTLE = {"CUSTODY_LOGIN_FAILURES_PER_ACTOR": "0", "CUSTODY_LOGIN_FAILURES_PER_ADDRESS": "0"}


def _environ(url: str, key_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CUSTODY_DATABASE_URL": url, "CUSTODY_LOG_KEY_PATH": str(key_path),
            "CUSTODY_ORIGIN": w.ORIGIN, "CUSTODY_ENVIRONMENT": "production",
            "CUSTODY_TOKEN_SECRET": SECRET, **NO_THROTTLE, **extra}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def uvicorn_server(tmp: Path, name: str, environ: dict[str, str]) -> Iterator[str]:
    """One real ``uvicorn --factory api.app:create_app`` process; yields its base URL."""
    port = server_proc.free_port()
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        server_proc.wait_healthy(base, proc, log)
        yield base
    finally:
        _stop(proc)


def _challenge(base: str, actor: str) -> tuple[str, str]:
    resp = httpx.post(base + "/v1/auth/challenge", json={"actor": actor}, timeout=10)
    assert resp.status_code == 200, resp.text
    challenge = resp.json()["challenge"]
    sig = w.key(actor).signer.sign(AUTH_DOMAIN + challenge.encode("ascii"))
    return challenge, base64.b64encode(sig).decode()


def _redeem_at_once(bases: list[str], actor: str, challenge: str, signature: str
                    ) -> list[httpx.Response]:
    """POST the same signed challenge to every server at the same moment."""
    barrier = threading.Barrier(len(bases))
    answers: list[httpx.Response | None] = [None] * len(bases)
    body = {"actor": actor, "challenge": challenge, "signature": signature}

    def redeem(i: int) -> None:
        with httpx.Client(base_url=bases[i], timeout=30) as client:
            barrier.wait()
            answers[i] = client.post("/v1/auth/token", json=body)

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(len(bases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_one_challenge_is_redeemed_once_across_two_servers(tmp_path: Path, db_url: str) -> None:
    url, key_path = server_proc.prepare(tmp_path, db_url)
    environ = _environ(url, key_path)
    with ExitStack() as stack:
        a = stack.enter_context(uvicorn_server(tmp_path, "a", environ))
        b = stack.enter_context(uvicorn_server(tmp_path, "b", environ))
        for round_ in range(8):
            issuer = (a, b)[round_ % 2]
            challenge, signature = _challenge(issuer, "admin-de")
            answers = _redeem_at_once([a, b], "admin-de", challenge, signature)
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [200, 401], [r.text for r in answers]
            refused = next(r for r in answers if r.status_code == 401)
            assert "already used" in refused.json()["detail"]
            token = next(r for r in answers if r.status_code == 200).json()["access_token"]
            for base in (a, b):  # one secret: the token works on both
                me = httpx.get(base + "/v1/auth/me", headers={"Authorization": "Bearer " + token})
                assert me.status_code == 200
                assert me.json()["id"] == "admin-de"
        # Redeemed again later, one server after the other: refused by both.
        for base in (a, b):
            again = httpx.post(base + "/v1/auth/token", json={
                "actor": "admin-de", "challenge": challenge, "signature": signature})
            assert again.status_code == 401
        # A revocation appended through A is seen by B at its next request.
        world = w.World(a)
        auditors = [w.World(base) for base in (a, b)]
        try:
            c = world.custody("admin-de")
            c.add_org(w.key("admin-de"), "ops", "Ledger operations", "DE")
            c.enrol(w.key("admin-de"), actor_id="aud", org="ops", name="Aud",
                    roles=["auditor"], public_key=w.key("aud").signer.public_key)
            tokens = {aw.base_url: aw.token("aud") for aw in auditors}
            for base, tok in tokens.items():
                assert httpx.get(base + "/v1/auth/me",
                                 headers={"Authorization": "Bearer " + tok}).status_code == 200
            revoke = w.sign(ev.ACTOR_REVOKE, "admin-de", {"actor": "aud", "reason": "t"})
            r = httpx.post(a + "/v1/actors/aud/revocation", json=revoke.to_json(),
                           headers=world.headers("admin-de"))
            assert r.status_code == 201, r.text
            for base, tok in tokens.items():
                assert httpx.get(base + "/v1/auth/me",
                                 headers={"Authorization": "Bearer " + tok}).status_code == 401
        finally:
            for each in (world, *auditors):
                each.close()


def _serve_two_workers(tmp: Path, settings: str = "",
                       *args: str) -> tuple[subprocess.Popen[bytes], int, Path, str]:
    """``api.server.serve(workers=2)`` (what ``custody serve --workers 2`` calls) in its
    own process on a new ledger, with ``settings`` added to its Settings (reading
    ``args`` as ``sys.argv[5:]``): the process, its port, its log and the ledger's URL."""
    url, key_path = server_proc.prepare(tmp)
    port = server_proc.free_port()
    code = ("import sys; from pathlib import Path; from api.server import serve; "
            "from api.settings import Settings; serve('127.0.0.1', int(sys.argv[1]), "
            "Settings(database_url=sys.argv[2], log_key_path=sys.argv[3], "
            f"origin=sys.argv[4]{settings}), workers=2, log_level='warning')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, str(port), url, str(key_path),
                                 w.ORIGIN, *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, port, log, url


def test_serve_with_two_workers(tmp_path: Path) -> None:
    """``api.server.serve(workers=2)`` (what ``custody serve --workers 2`` calls), in
    development without a token secret: the workers share a generated one."""
    proc, port, log, url = _serve_two_workers(tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        server_proc.wait_healthy(base, proc, log)
        deadline = time.monotonic() + 30
        while len(child_pids(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = child_pids(proc.pid)
        assert len(workers) >= 2, log.read_text()
        # Logins and writes on fresh connections land on either worker.
        challenge, signature = _challenge(base, "admin-de")
        body = {"actor": "admin-de", "challenge": challenge, "signature": signature}
        first = httpx.post(base + "/v1/auth/token", json=body)
        assert first.status_code == 200, first.text
        token = first.json()["access_token"]
        # New connections: whichever worker answers refuses the spent challenge. A worker
        # that has seen five failed logins of this actor throttles the next (429, also a
        # refusal); which worker accepts a connection is the kernel's choice.
        replays = [httpx.post(base + "/v1/auth/token", json=body).status_code
                   for _ in range(6)]
        assert replays[0] == 401, replays
        assert set(replays) <= {401, 429}, replays
        h = {"Authorization": "Bearer " + token}
        size = httpx.get(base + "/v1/log").json()["size"]
        n_threads, per_thread = 8, 6
        statuses: list[int] = []
        indices: list[int] = []
        lock = threading.Lock()

        def writer() -> None:
            for _ in range(per_thread):
                signed = w.sign(ev.CASE_OPEN, "admin-de", {"id": "C-" + os.urandom(6).hex(),
                                                           "title": "opened by a worker"})
                with httpx.Client(timeout=60) as client:  # a new connection each time
                    r = client.post(base + "/v1/events", json=signed.to_json(), headers=h)
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 201:
                        indices.append(r.json()["index"])

        threads = [threading.Thread(target=writer) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [201] * (n_threads * per_thread), statuses
        assert sorted(indices) == list(range(size, size + n_threads * per_thread))
        assert httpx.get(base + "/v1/log").json()["size"] == size + n_threads * per_thread
        # The token works whichever worker answers (one shared secret).
        for _ in range(10):
            assert httpx.get(base + "/v1/auth/me", headers=h).status_code == 200
    finally:
        _stop(proc)
    from ledger.store.audit_sql import audit_store

    store = SqlStore.open(url, signer=None, clock=w.now_ms, verify_key=w.log_signer().verifier_key)
    try:
        assert audit_store(store).ok
    finally:
        store.close()


def test_worker_settings_share_one_secret_and_refuse_what_cannot_be_shared(
        tmp_path: Path) -> None:
    base = {"origin": w.ORIGIN, "log_key_path": tmp_path / "k"}
    dev = Settings(database_url=f"sqlite:///{tmp_path}/l.db", **base)  # type: ignore[arg-type]
    assert dev.token_secret is None
    shared = worker_settings(dev, 2)
    assert shared.token_secret is not None
    assert len(shared.token_secret.get_secret_value()) >= 32
    assert worker_settings(dev, 1) is dev
    # What the worker processes rebuild from the environment is the same.
    import json

    again = Settings(**json.loads(settings_json(shared)))
    assert again == shared
    assert again.token_key() == shared.token_key()
    for bad in (f"sqlite:///{tmp_path}/x.db?mode=memory", "sqlite://"):
        with pytest.raises(InvalidInput, match="several workers"):
            worker_settings(Settings(database_url=bad, **base), 2)  # type: ignore[arg-type]
    fabric = Settings(fabric_network=tmp_path, fabric_org="DE", **base)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="one worker"):
        worker_settings(fabric, 2)
    assert SETTINGS_ENV not in os.environ


def test_spent_ids_are_kept_in_the_database_and_pruned(db_url: str) -> None:
    store = SqlStore.open(db_url, signer=w.log_signer(), clock=w.now_ms, create=True)
    try:
        now = [1_000_000]
        spent = challenges.for_store(store, lambda: now[0])
        other = challenges.for_store(store, lambda: now[0])  # another worker's view
        assert isinstance(spent, challenges.DatabaseChallenges)
        spent.spend("c1", now[0] + 60_000)
        with pytest.raises(Unauthenticated, match="already used"):
            other.spend("c1", now[0] + 60_000)
        other.spend("c2", now[0] + 120_000)
        assert spent.count() == 2
        now[0] += 90_000  # c1 expired, c2 not yet
        spent.spend("c3", now[0] + 60_000)
        assert spent.count() == 2  # c1 pruned
        with pytest.raises(Unauthenticated):
            spent.spend("c2", now[0] + 60_000)
    finally:
        store.close()


def test_a_ledger_from_before_the_table_gets_it(db_url: str) -> None:
    store = SqlStore.open(db_url, signer=w.log_signer(), clock=w.now_ms, create=True)
    try:
        with store.engine.begin() as conn:  # as revision 0004 left it
            conn.execute(sa.text("DROP TABLE spent_challenges"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0004'"))
        assert not sa.inspect(store.engine).has_table("spent_challenges")
        spent = challenges.for_store(store, w.now_ms)
        assert isinstance(spent, challenges.DatabaseChallenges)
        spent.spend("c1", w.now_ms() + 60_000)
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")
                                ).scalar_one() == "0005"
    finally:
        store.close()


def test_two_workers_over_tls(tmp_path: Path) -> None:
    """TLS with several workers: each worker process builds its own context from the
    files (the configuration is pickled for it)."""
    import ssl

    from tests.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    proc, port, log, _url = _serve_two_workers(
        tmp_path, ", tls_cert=Path(sys.argv[5]), tls_key=Path(sys.argv[6])",
        str(pki.server_cert), str(pki.server_key))
    try:
        server_proc.wait_healthy(f"https://127.0.0.1:{port}", proc, log,
                                 verify=ssl.create_default_context(cafile=str(pki.ca)))
        assert len(child_pids(proc.pid)) >= 2
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
    finally:
        _stop(proc)


def test_the_worker_configuration_pickles_with_client_certificates(tmp_path: Path) -> None:
    import pickle
    import ssl

    from uvicorn.importer import import_from_string
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from api.server import TlsContext, uvicorn_config
    from api.tls import TlsFiles
    from tests.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    files = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
    config = uvicorn_config("127.0.0.1", 1, "api.server:worker_app", files, workers=2)
    copy = pickle.loads(pickle.dumps(config))  # noqa: S301 - what a spawned worker gets
    assert (copy.workers, copy.factory, copy.app) == (2, True, "api.server:worker_app")
    factory = copy.ssl_context_factory
    assert isinstance(factory, TlsContext)
    context = factory(copy, lambda: None)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    protocol = import_from_string(copy.http)
    assert "PeerCert" in protocol.__name__
    assert issubclass(protocol, H11Protocol) or "HttpTools" in protocol.__name__
    with pytest.raises(TypeError):
        uvicorn_config("127.0.0.1", 1, object(), None, workers=2)


def test_worker_connections_are_sent_without_delay() -> None:
    """The shared socket of the workers is a TCP socket by name, so asyncio sets
    ``TCP_NODELAY`` on every accepted connection (uvicorn's own binding does not)."""
    import asyncio
    import socket

    import uvicorn

    from api.server import listening_socket

    def nodelay(sock: socket.socket) -> int:
        async def accept_one() -> int:
            seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            class Probe(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    conn = transport.get_extra_info("socket")
                    seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    transport.close()

            server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
            port = sock.getsockname()[1]
            _r, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(seen, 10)
            finally:
                writer.close()
                server.close()

        return asyncio.run(accept_one())

    config = uvicorn.Config("api.server:worker_app", host="127.0.0.1",
                            port=server_proc.free_port(), workers=2)
    assert nodelay(listening_socket(config)) == 1
    plain = uvicorn.Config("api.server:worker_app", host="127.0.0.1",
                           port=server_proc.free_port(), workers=2)
    assert nodelay(plain.bind_socket()) == 0  # what the fix is for
