"""Run the API with uvicorn: ``serve(host, port, settings, workers=N)`` (used by
``custody serve``); one process, or N worker processes on one socket.

With ``tls_cert``/``tls_key`` the server speaks TLS 1.2+ only (``api.tls``); with
``tls_client_ca`` every client must present a certificate from that CA, and each request
carries the connection's certificate so that login can check its organisation. In
production, listening on anything but a loopback address without TLS is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from api import challenges
from api.app import create_app, open_store
from api.auth import now_ms
from api.settings import Settings
from api.tls import TlsFiles, describe, http_protocol, is_loopback, server_context
from ledger.core.errors import InvalidInput


def tls_files(settings: Settings) -> TlsFiles | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def check_exposure(host: str, settings: Settings) -> None:
    """Production on a non-loopback address needs TLS (one sentence, exit 2)."""
    if settings.environment == "production" and tls_files(settings) is None \
            and not is_loopback(host):
        raise InvalidInput(f"refusing to serve plain HTTP on {host} in production: give "
                           "--tls-cert and --tls-key (or listen on 127.0.0.1 behind a TLS "
                           "proxy)")


def url(host: str, port: int, settings: Settings) -> str:
    scheme = "https" if tls_files(settings) else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def startup_line(host: str, port: int, settings: Settings) -> str:
    """What is on, in one line: TLS, mTLS, rate limits, login throttling, CORS, uploads."""
    from api.app import security_from

    files = tls_files(settings)
    security = security_from(settings, load_actor=False)
    return (f"Serving {settings.origin} on {url(host, port, settings)}: {describe(files)}; "
            f"{security.summary(uploads=settings.evidence_dir is not None)}")


def uvicorn_config(host: str, port: int, app: Any, files: TlsFiles | None,
                   log_level: str = "info", *, workers: int = 1) -> uvicorn.Config:
    """uvicorn's configuration; with ``files``, TLS by :func:`api.tls.server_context`
    (and, with a client CA, the protocol that hands each request its client certificate).

    With ``workers`` > 1, ``app`` is an import string of an app factory (the worker
    processes build their own app: :func:`worker_app`), and everything in the
    configuration can be pickled for them."""
    kwargs: dict[str, Any] = {}
    if files is not None:
        factory = TlsContext(files)
        factory.context = server_context(files)  # refuses a readable key, a bad pair, now
        kwargs = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key),
                  "ssl_context_factory": factory}
        if files.client_ca is not None:
            kwargs["http"] = http_protocol() if workers == 1 else f"{__name__}:PeerCertProtocol"
    if workers > 1:
        if not isinstance(app, str):
            raise TypeError("several workers need the app as an import string")
        kwargs |= {"workers": workers, "factory": True}
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, proxy_headers=False,
                          server_header=False, **kwargs)


class TlsContext:
    """uvicorn's ``ssl_context_factory``: the context of :func:`api.tls.server_context`.
    Picklable (a worker process builds its own context from the files)."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.context: ssl.SSLContext | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "context": None}

    def __call__(self, _config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        if self.context is None:
            self.context = server_context(self.files)
        return self.context


def __getattr__(name: str) -> Any:
    # ``PeerCertProtocol``: the import string a worker process's uvicorn resolves to
    # the HTTP protocol with client certificates (the class is made on demand).
    if name == "PeerCertProtocol":
        return http_protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(host: str = "127.0.0.1", port: int = 8600, settings: Settings | None = None,
          *, log_level: str = "info", workers: int = 1) -> None:
    """Serve the ledger API on ``host:port``: one process with its group committer, or
    with ``workers`` > 1 that many worker processes sharing the listening socket (SQL
    ledgers only: the database serialises their writers; see :func:`serve_workers`)."""
    settings = settings or Settings()  # type: ignore[call-arg]
    if workers > 1:
        serve_workers(host, port, settings, workers=workers, log_level=log_level)
        return
    check_exposure(host, settings)
    config = uvicorn_config(host, port, None, tls_files(settings), log_level)  # TLS first
    config.app = create_app(settings)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:  # as uvicorn.run does: could not bind, or startup failed
        raise SystemExit(3)


#: The environment variable that hands a worker process the parent's settings (JSON).
SETTINGS_ENV = "CUSTODY_SERVE_SETTINGS"


def worker_app() -> FastAPI:
    """The app of one worker process (``uvicorn --factory api.server:worker_app``): built
    from the settings :func:`serve_workers` put in ``CUSTODY_SERVE_SETTINGS``, else from
    the ``CUSTODY_*`` variables like ``api.app:create_app``."""
    raw = os.environ.get(SETTINGS_ENV)
    return create_app(Settings(**json.loads(raw)) if raw else None)


def worker_settings(settings: Settings, workers: int) -> Settings:
    """``settings`` checked for ``workers`` processes, with the one token secret they all
    need (a token or challenge issued by one worker is checked by another): the given one,
    else (development) a random one for this run of the server."""
    if workers < 1:
        raise InvalidInput("the number of workers must be at least 1")
    if workers == 1:
        return settings
    if settings.fabric_network is not None:
        raise InvalidInput("a consortium (Fabric) server runs one worker: its derived log "
                           "has one writer")
    url = settings.database_url
    if not url.startswith(("sqlite:///", "postgresql")) or ":memory:" in url \
            or "mode=memory" in url:
        raise InvalidInput(f"several workers need a ledger database that several processes "
                           f"can open (a SQLite file or PostgreSQL), not {url.split(':')[0]}")
    if settings.token_secret is None:
        settings = settings.model_copy(
            update={"token_secret": SecretStr(secrets.token_urlsafe(32))})
    return settings


def settings_json(settings: Settings) -> str:
    """Every setting as JSON, secrets included (for the worker processes only)."""
    data = settings.model_dump(mode="json")
    for name in ("token_secret", "log_key_passphrase"):
        secret = getattr(settings, name)
        data[name] = None if secret is None else secret.get_secret_value()
    return json.dumps(data)


def prepare_database(settings: Settings) -> None:
    """Open the ledger once before the workers start: the settings are checked (durability,
    key file) and a ledger older than the spent-challenges table is brought up to date
    by one process, not by every worker at once."""
    store = open_store(settings)
    try:
        challenges.for_store(store, now_ms)
    finally:
        store.close()


def serve_workers(host: str, port: int, settings: Settings, *, workers: int,
                  log_level: str = "info") -> None:
    """``workers`` uvicorn worker processes on one listening socket, each with its own
    app and group committer. What makes that safe: the store serialises writers across
    processes (SQLite's write lock, PostgreSQL's head row lock), every request reads the
    log size from the database (:mod:`api.runtime`), and spent login challenges are kept
    in the database (:mod:`api.challenges`). Rate limits and login throttling stay per
    process."""
    from uvicorn.config import STARTUP_FAILURE

    settings = worker_settings(settings, workers)
    check_exposure(host, settings)
    prepare_database(settings)
    config = uvicorn_config(host, port, f"{__name__}:worker_app", tls_files(settings),
                            log_level, workers=workers)
    previous = os.environ.get(SETTINGS_ENV)
    os.environ[SETTINGS_ENV] = settings_json(settings)  # inherited by the spawned workers
    try:
        exit_codes = run_workers(config)
    finally:
        if previous is None:
            os.environ.pop(SETTINGS_ENV, None)
        else:
            os.environ[SETTINGS_ENV] = previous
    if STARTUP_FAILURE in exit_codes:
        raise SystemExit(3)


def run_workers(config: uvicorn.Config) -> list[int | None]:
    """uvicorn's supervisor for ``config.workers`` processes on one listening socket bound
    here (:func:`listening_socket`); returns the workers' exit codes."""
    from uvicorn.supervisors import Multiprocess

    sock = listening_socket(config)
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
    return [p.exitcode for p in supervisor.processes]


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """``config``'s socket, bound, and named a TCP socket (``IPPROTO_TCP``).

    uvicorn binds the socket of its worker processes with protocol 0, so asyncio does not
    recognise the connections accepted on it as TCP and never sets ``TCP_NODELAY`` on
    them: every answer written in two parts (headers, then body) waits for the client's
    delayed ACK. Measured here: a hello world over 32 connections on 2 workers answered in
    44 ms (median) at about 700 requests/s, against 6 ms and 4,900/s with the protocol
    given."""
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock
