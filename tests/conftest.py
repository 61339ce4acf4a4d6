"""Shared fixtures: deterministic keys and clocks, and the ``backend`` matrix.

``backend`` runs a test once per SQL backend. PostgreSQL needs a running server named
by ``CUSTODY_TEST_PG_URL`` (``eval "$(bash .ci/postgres.sh start)"``); every test gets a
fresh database created through that URL and dropped afterwards. Without the variable the
PostgreSQL cases are skipped, except when ``CI=true``: then they FAIL, so CI can never
silently skip PostgreSQL. A future backend (e.g. Fabric) is one more entry in
``BACKENDS`` plus one branch in :func:`db_url`. The store conformance suite adds
``remote`` (a SQLite store behind the API) and ``fabric``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# gRPC (the Fabric client) installs fork handlers that abort a child forked while its
# threads run; the crash tests fork writers that never use gRPC. Set before any import.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest
from hypothesis import HealthCheck, settings

from ledger.core import _sodium
from ledger.core.note import NoteSigner
from ledger.evidence import Digests
from ledger.service import ActorKey

settings.register_profile(
    "ci", max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

PG_ENV = "CUSTODY_TEST_PG_URL"
BACKENDS = ("sqlite", "postgres")
LOG_NAME = "test.example/custody"
#: 2026-09-21T...Z: a fixed, plausible "now" for every deterministic clock.
T0 = 1_790_000_000_000


def seed_of(label: str) -> bytes:
    """A deterministic 32-byte seed per label (tests never depend on os.urandom keys)."""
    return hashlib.sha256(b"custody-ledger/tests/" + label.encode()).digest()


def actor_key(actor_id: str) -> ActorKey:
    return ActorKey(actor_id, _sodium.Signer(seed_of("actor:" + actor_id)))


def log_signer(name: str = LOG_NAME) -> NoteSigner:
    return NoteSigner(name, seed_of("log:" + name))


def digests_of(data: bytes) -> Digests:
    return Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), None,
                   len(data))


class FakeClock:
    """A thread-safe millisecond clock that advances ``step`` ms per reading."""

    def __init__(self, start: int = T0, step: int = 1) -> None:
        self.now = start
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.now += self.step
            return self.now

    def advance(self, ms: int) -> None:
        with self._lock:
            self.now += ms


class CountingRandom:
    """Deterministic stand-in for ``os.urandom``: distinct bytes on every call."""

    def __init__(self, label: str = "random", start: int = 0) -> None:
        self.label = label
        self.counter = start
        self._lock = threading.Lock()

    def __call__(self, n: int) -> bytes:
        with self._lock:
            self.counter += 1
            c = self.counter
        out = b""
        block = 0
        while len(out) < n:
            out += hashlib.sha256(f"{self.label}/{c}/{block}".encode()).digest()
            block += 1
        return out[:n]


# ---- backends ---------------------------------------------------------------------


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(f"{PG_ENV} is not set but CI=true: PostgreSQL tests must not be skipped "
                    "in CI (start one with: eval \"$(bash .ci/postgres.sh start)\")")
    pytest.skip(f"PostgreSQL not configured: set {PG_ENV} "
                "(eval \"$(bash .ci/postgres.sh start)\")")
    return None  # pragma: no cover


def _sa_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _with_database(url: str, database: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(database=database).render_as_string(hide_password=False)


class PgDatabases:
    """Creates and drops throwaway databases on the server named by the admin URL."""

    def __init__(self, admin_url: str) -> None:
        import sqlalchemy as sa

        self.admin_url = admin_url
        self.engine = sa.create_engine(_sa_url(admin_url), isolation_level="AUTOCOMMIT",
                                       poolclass=sa.pool.NullPool)

    def create(self, template: str | None = None) -> str:
        """A new database, empty or copied from the database URL ``template``."""
        import sqlalchemy as sa

        name = "custody_t_" + uuid.uuid4().hex[:16]
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            sql += f' TEMPLATE "{sa.make_url(template).database}"'
        with self.engine.connect() as conn:
            conn.exec_driver_sql(sql)
        return _with_database(self.admin_url, name)

    def drop(self, url: str) -> None:
        import sqlalchemy as sa

        name = sa.make_url(url).database
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    admin = _pg_admin_url()
    assert admin is not None
    dbs = PgDatabases(admin)
    yield dbs
    dbs.engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test; PostgreSQL cases carry the ``postgres`` marker."""
    name: str = request.param
    if name == "postgres":
        request.applymarker(pytest.mark.postgres)
        _pg_admin_url()  # skip or fail early, before any other fixture work
    return name


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database URL for ``backend`` (migrated by whoever opens it)."""
    if backend in ("sqlite", "remote"):  # remote: the SQLite file behind the API
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    elif backend == "fabric":  # the network is made by the world fixture itself
        yield str(tmp_path / "fabric-net")
    elif backend == "postgres":
        dbs: PgDatabases = request.getfixturevalue("pg_databases")
        url = dbs.create()
        yield url
        dbs.drop(url)
    else:  # pragma: no cover - a new backend must add its branch here
        raise AssertionError(f"no database factory for backend {backend!r}")


@pytest.fixture
def new_db_url(backend: str, tmp_path: Path,
               request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of further fresh databases on the same backend (e.g. a second ledger)."""
    made: list[str] = []

    def make() -> str:
        if backend in ("sqlite", "remote", "fabric"):  # a second ledger on SQLite
            url = f"sqlite:///{tmp_path / f'extra-{len(made)}.db'}"
        else:
            url = request.getfixturevalue("pg_databases").create()
        made.append(url)
        return url

    yield make
    if backend == "postgres":
        dbs: PgDatabases = request.getfixturevalue("pg_databases")
        for url in made:
            dbs.drop(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ---- the pure rules without a database --------------------------------------------------


class PureLedger:
    """Drives :func:`ledger.core.rules.apply` over a :class:`MemoryState` (no store, no I/O).

    ``submit`` signs and applies an event and commits its effects, as a store would;
    a refused event raises and commits nothing.
    """

    def __init__(self, origin: str = LOG_NAME, skew_ms: int = 300_000, start: int = T0) -> None:
        from ledger.core.rules import MemoryState

        self.origin = origin
        self.skew_ms = skew_ms
        self.state = MemoryState()
        self.index = 0
        self.time = start
        self.random = CountingRandom("pure:" + origin)

    def sign(self, kind: str, actor: ActorKey, payload: dict[str, Any], *,
             prev: str | None = None, claimed_time: int | None = None,
             origin: str | None = None, nonce: str | None = None) -> Any:
        from ledger.core import events as ev

        body = ev.Event(kind=kind, origin=origin or self.origin,
                        nonce=nonce or self.random(16).hex(),
                        claimed_time=self.time if claimed_time is None else claimed_time,
                        signer=actor.actor_id, key_id=actor.key_id, payload=payload, prev=prev)
        return ev.sign_event(body, actor.signer)

    def apply(self, signed: Any, ledger_time: int | None = None) -> Any:
        from ledger.core.rules import Context, apply

        effects = apply(self.state, signed, Context(self.index, ledger_time or self.time))
        self.state.commit(effects)
        self.index += 1
        self.time += 1000
        return effects

    def submit(self, kind: str, actor: ActorKey, payload: dict[str, Any], **kw: Any) -> Any:
        return self.apply(self.sign(kind, actor, payload, **kw))

    def head(self, artefact: str) -> str:
        rec = self.state.get("art/" + artefact)
        assert rec is not None
        return str(rec["head"])

    # -- use-case shorthands --

    def genesis(self, admin: ActorKey, org: str = "bka", jurisdiction: str = "DE",
                roles: tuple[str, ...] = ("admin", "examiner", "custodian", "prosecutor"),
                **kw: Any) -> Any:
        from ledger.core import events as ev

        payload = {"log_key": log_signer(self.origin).verifier_key, "skew_ms": self.skew_ms,
                   "rules": 2,
                   "org": {"id": org, "name": org.upper(), "jurisdiction": jurisdiction},
                   "actor": {"id": admin.actor_id, "org": org, "name": "Admin",
                             "roles": list(roles), "public_key": b64(admin.signer.public_key)}}
        return self.submit(ev.GENESIS, admin, payload, **kw)

    def org(self, admin: ActorKey, org: str, jurisdiction: str) -> Any:
        from ledger.core import events as ev

        return self.submit(ev.ORG_REGISTER, admin,
                           {"id": org, "name": org.upper(), "jurisdiction": jurisdiction})

    def enrol(self, admin: ActorKey, actor: ActorKey, org: str, roles: list[str]) -> Any:
        from ledger.core import events as ev

        return self.submit(ev.ACTOR_ENROL, admin, {
            "id": actor.actor_id, "org": org, "name": actor.actor_id, "roles": roles,
            "public_key": b64(actor.signer.public_key)})

    def case(self, admin: ActorKey, case: str, members: tuple[str, ...] = ()) -> None:
        from ledger.core import events as ev

        self.submit(ev.CASE_OPEN, admin, {"id": case, "title": ""})
        for org in members:
            self.submit(ev.CASE_ADD_MEMBER, admin, {"case": case, "org": org})

    def legal_basis(self, actor: ActorKey, lb: str, issuing: str, executing: str, **kw: Any) -> Any:
        from ledger.core import events as ev

        payload = {"id": lb, "instrument": "mlat", "reference": "REF-" + lb,
                   "issuing_state": issuing, "executing_state": executing,
                   "valid_from": "2020-01-01", "valid_until": "2099-12-31", **kw}
        return self.submit(ev.LEGAL_BASIS, actor, payload)

    def register(self, actor: ActorKey, art: str, case: str, data: bytes = b"evidence",
                 **kw: Any) -> Any:
        from ledger.core import events as ev

        d = digests_of(data)
        return self.submit(ev.ARTEFACT_REGISTER, actor, {
            "id": art, "case": case, "size": d.size, "digests": d.as_dict(), **kw})

    def dispatch_payload(self, art: str, to_org: str, transfer: str,
                         legal_basis: str | None = None, **kw: Any) -> dict[str, Any]:
        return {"transfer": transfer, "artefact": art, "to_org": to_org, "purpose": "analysis",
                "legal_basis": legal_basis, **kw}

    def dispatch(self, actor: ActorKey, art: str, to_org: str, transfer: str,
                 legal_basis: str | None = None, **kw: Any) -> Any:
        from ledger.core import events as ev

        return self.submit(ev.DISPATCH, actor,
                           self.dispatch_payload(art, to_org, transfer, legal_basis, **kw),
                           prev=self.head(art))

    def receipt_payload(self, art: str, transfer: str, data: bytes = b"evidence",
                        outcome: str = "accepted", reason: str = "") -> dict[str, Any]:
        d = digests_of(data)
        return {"transfer": transfer, "artefact": art, "outcome": outcome,
                "recomputed": d.as_dict(), "reason": reason}

    def receive(self, actor: ActorKey, art: str, transfer: str, **kw: Any) -> Any:
        from ledger.core import events as ev

        return self.submit(ev.RECEIPT, actor, self.receipt_payload(art, transfer, **kw),
                           prev=self.head(art))


def b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()
