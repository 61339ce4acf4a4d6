"""Run the API with uvicorn: ``serve(host, port, settings)`` (used by ``custody serve``).

With ``tls_cert``/``tls_key`` the server speaks TLS 1.2+ only (``api.tls``); with
``tls_client_ca`` every client must present a certificate from that CA, and each request
carries the connection's certificate so that login can check its organisation. In
production, listening on anything but a loopback address without TLS is refused.
"""

from __future__ import annotations

import ssl
from typing import Any

import uvicorn

from api.app import create_app
from api.settings import Settings
from api.tls import TlsFiles, describe, http_protocol, is_loopback, server_context
from ledger.errors import InvalidInput


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
                   log_level: str = "info") -> uvicorn.Config:
    """uvicorn's configuration; with ``files``, TLS by :func:`api.tls.server_context`
    (and, with a client CA, the protocol that hands each request its client certificate)."""
    kwargs: dict[str, Any] = {}
    if files is not None:
        context = server_context(files)  # refuses a readable key, a bad pair, in one sentence

        def factory(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
            return context

        kwargs = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key),
                  "ssl_context_factory": factory}
        if files.client_ca is not None:
            kwargs["http"] = http_protocol()
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, proxy_headers=False,
                          server_header=False, **kwargs)


def serve(host: str = "127.0.0.1", port: int = 8600, settings: Settings | None = None,
          *, log_level: str = "info") -> None:
    """Serve the ledger API on ``host:port`` (one process; group commit inside)."""
    settings = settings or Settings()  # type: ignore[call-arg]
    check_exposure(host, settings)
    config = uvicorn_config(host, port, None, tls_files(settings), log_level)  # TLS first
    config.app = create_app(settings)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:  # as uvicorn.run does: could not bind, or startup failed
        raise SystemExit(3)
