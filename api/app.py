"""The application factory: ``create_app(settings | store)``.

``create_app()`` with no argument reads :class:`api.settings.Settings` from the
environment (``uvicorn --factory api.app:create_app``). Passing a store (tests, the
benchmarks) serves that store as is.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import challenges, problems
from api.auth import Authenticator, Clock, now_ms
from api.committer import GroupCommitter
from api.docs_ui import install_offline_docs
from api.evidence_store import EvidenceStore
from api.limits import STREAMED, BodyLimit
from api.package_store import PackageStore
from api.routes import (
    artefacts,
    auth,
    events,
    fast,
    log,
    objects,
    packages,
    reports,
    witness,
)
from api.runtime import Limits, Runtime
from api.security import Limits as RateLimits
from api.security import (
    LoginThrottle,
    RateLimit,
    SecurityConfig,
    SecurityHeaders,
    actor_of_token,
)
from api.settings import Settings, check_sqlite_durability
from ledger import keys
from ledger.core.note import ALG_COSIGNATURE_V1, NoteSigner, parse_verifier_key
from ledger.core.state import LEDGER
from ledger.store.base import LedgerStore

API_VERSION = "1.0.0"


def open_store(settings: Settings, clock: Clock = now_ms) -> LedgerStore:
    """Open the SQL ledger named by the settings, refusing unsafe durability, or the
    organisation's view of a Fabric network (consortium mode)."""
    from ledger.store.sql import SqlStore

    if settings.fabric_network is not None:
        from ledger.fabric.store import FabricStore

        return FabricStore.open(settings.fabric_network, str(settings.fabric_org), clock=clock)
    assert settings.log_key_path is not None  # noqa: S101 - checked by the settings

    passphrase = (settings.log_key_passphrase.get_secret_value().encode()
                  if settings.log_key_passphrase else None)
    seed = keys.load_seed(settings.log_key_path, passphrase)  # refuses 0o077 modes (T20)
    signer = NoteSigner(settings.origin, seed)
    store = SqlStore.open(settings.database_url, signer=signer, clock=clock)
    if settings.database_url.startswith("sqlite"):
        check_sqlite_durability(sqlite_pragmas(store.engine), settings.environment)
    return store


def sqlite_pragmas(engine: Any) -> dict[str, object]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        sync = cur.execute("PRAGMA synchronous").fetchone()[0]
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        cur.close()
    finally:
        raw.close()
    return {"synchronous": sync, "journal_mode": mode}


def create_app(config: Settings | LedgerStore | None = None, *, token_key: bytes | None = None,
               evidence_dir: Path | None = None, packages_dir: Path | None = None,
               limits: Limits | None = None,
               clock: Clock = now_ms, origin: str | None = None,
               token_ttl_s: int = 900, challenge_ttl_s: int = 60,
               group_commit_max: int = 256, write_queue: int = 4096,
               group_commit_wait_ms: float = 3.0, fast_lanes: bool = True,
               witness_keys: Sequence[str] = (),
               security: SecurityConfig | None = None) -> FastAPI:
    """Build the API for a settings object (production) or an open store (tests)."""
    if config is None:
        config = Settings()  # type: ignore[call-arg]  # from CUSTODY_* variables
    if isinstance(config, Settings):
        s = config
        store, owns = open_store(s, clock), True
        token_key = s.token_key()
        evidence_dir, packages_dir, origin = s.evidence_dir, s.package_root(), s.origin
        token_ttl_s, challenge_ttl_s = s.token_ttl_s, s.challenge_ttl_s
        group_commit_max, write_queue = s.group_commit_max, s.write_queue
        witness_keys = tuple(s.witness_keys)
        limits = Limits(max_event_bytes=s.max_event_bytes,
                        max_batch_bytes=s.max_event_bytes * 32,
                        max_upload_bytes=s.max_upload_bytes)
        security = security_from(s)
    else:
        store, owns = config, False
        if token_key is None:
            token_key = _random_key()
        if packages_dir is None and evidence_dir is not None:
            packages_dir = evidence_dir / "packages"
    limits = limits or Limits()
    security = security or SecurityConfig()
    ledger_rec = store.state(LEDGER)
    origin = str(ledger_rec["origin"]) if ledger_rec else origin
    runtime = Runtime(
        store=store,
        auth=Authenticator(token_key, origin or "", challenge_ttl_ms=challenge_ttl_s * 1000,
                           token_ttl_ms=token_ttl_s * 1000, clock=clock,
                           spent=challenges.for_store(store, clock)),
        committer=GroupCommitter(store, max_queue=write_queue, max_batch=group_commit_max,
                                 max_wait=group_commit_wait_ms / 1000),
        evidence=EvidenceStore(evidence_dir) if evidence_dir is not None else None,
        limits=limits, fallback_origin=origin, owns_store=owns,
        witness_keys=_witness_keys(witness_keys),
        packages=PackageStore(packages_dir) if packages_dir is not None else None,
        security=security,
        login_throttle=LoginThrottle(per_actor=security.login_failures_per_actor,
                                     per_address=security.login_failures_per_address,
                                     window_s=security.login_window_s))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.committer.start()
        if runtime.owns_store:  # a server process (not a test's app over its own store)
            # What exists now (the app, the store, the libraries) lives as long as the
            # process: out of the garbage collector's sight, a full collection takes a
            # few ms instead of 50-100 ms (a stall of every request in flight).
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            runtime.committer.stop()
            runtime.reads.close()
            if runtime.owns_store:
                runtime.store.close()

    app = FastAPI(title="Custody Ledger API", version=API_VERSION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # served offline: install_offline_docs
                  description="Chain of custody for cross-border digital evidence: signed "
                  "events, Merkle proofs, jurisdiction-aware authorisation. Errors are RFC "
                  "9457 application/problem+json.")
    app.state.runtime = runtime
    problems.install(app)
    install_offline_docs(app)
    # Most requested first: FastAPI tries the routers in order (twice per request).
    for module in (events, log, artefacts, objects, auth, packages, reports, witness):
        app.include_router(module.router)

    def cap_for(path: str) -> int | None:
        if path.startswith((*STREAMED, packages.PREFIX)):
            return None
        if path == "/v1/events/batch":
            return limits.max_batch_bytes
        return limits.max_event_bytes

    # Fast lanes for the plain case of the hottest requests (api/routes/fast.py),
    # innermost: inside the body cap, the rate limits, CORS and the security headers.
    if fast_lanes:
        app.add_middleware(fast.FastReads, runtime=runtime)
        app.add_middleware(fast.FastAppend, runtime=runtime)
    app.add_middleware(BodyLimit, cap_for=cap_for)
    if security.rate.per_address or security.rate.per_actor:
        app.add_middleware(RateLimit, limits=security.rate,
                           actor_of=actor_of_token(runtime.auth.check))
    if security.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(security.cors_origins),
                           allow_credentials=False, allow_methods=["GET", "POST", "PUT", "HEAD"],
                           allow_headers=["Authorization", "Content-Type",
                                          "X-Custody-Access-Event"], max_age=600)
    app.add_middleware(SecurityHeaders, tls=security.tls)  # outermost: on every answer
    _stable_openapi(app)
    return app


def security_from(s: Settings, *, load_actor: bool = True) -> SecurityConfig:
    """The safe defaults a settings object asks for, with the security actor's key loaded."""
    actor = None
    if load_actor and s.security_actor and s.security_actor_key:
        from ledger.service import ActorKey

        passphrase = (s.log_key_passphrase.get_secret_value().encode()
                      if s.log_key_passphrase else None)
        actor = ActorKey(s.security_actor, keys.load_key(s.security_actor_key, passphrase))
    return SecurityConfig(
        tls=s.tls_cert is not None, mtls=s.tls_client_ca is not None,
        rate=RateLimits(s.rate_limit_per_address, s.rate_limit_per_actor, s.rate_limit_burst),
        login_failures_per_actor=s.login_failures_per_actor,
        login_failures_per_address=s.login_failures_per_address,
        login_window_s=float(s.login_window_s), cors_origins=tuple(s.cors_origins),
        security_actor=actor)


def _witness_keys(keys: Sequence[str]) -> frozenset[str]:
    """The accepted witnesses' verifier keys, each checked to be a cosignature key."""
    for key in keys:
        parse_verifier_key(key, ALG_COSIGNATURE_V1)  # InvalidInput names the problem
    return frozenset(keys)


def _random_key() -> bytes:
    import secrets

    return secrets.token_bytes(32)


def _stable_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {})
            schema["components"]["schemas"]["Problem"] = problems.Problem.model_json_schema(
                ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
