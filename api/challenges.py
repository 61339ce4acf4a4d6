"""Spent login challenges, where every worker process of the server sees them.

A login challenge (:mod:`api.auth`) is stateless and sealed, so any worker can check it;
what makes it single use is remembering its id once redeemed. With several worker
processes that memory must be shared: the ids live in the ledger's own database, in the
``spent_challenges`` table (migration 0005), written with SQLAlchemy Core on the store's
engine. The insert of the id is the decision: of two workers redeeming one challenge at
the same moment, one inserts it and the other finds the key taken, whatever the
interleaving (SQLite serialises writers; PostgreSQL's primary key does the same).

Rows are deleted once their challenge has expired (a challenge lives a minute by
default), at most every :data:`PRUNE_EVERY_MS` per process, in the transaction of a
login. A store without an SQL engine (a Fabric network's view) keeps them per process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import sqlalchemy as sa

from ledger.core.errors import Backpressure, Unauthenticated
from ledger.store.base import LedgerStore
from ledger.store.schema import spent_challenges as table

#: Delete expired ids at most this often per process (ms).
PRUNE_EVERY_MS = 10_000
#: Per-process memory (stores without a database): most ids kept.
MAX_OUTSTANDING = 100_000
log = logging.getLogger("custody.api.challenges")


class SpentChallenges(Protocol):
    def spend(self, challenge_id: str, expires_at: int) -> None:
        """Remember ``challenge_id`` as redeemed until ``expires_at`` (ms); raise
        :class:`Unauthenticated` if it already was."""
        ...


def _already_used() -> Unauthenticated:
    return Unauthenticated("this challenge was already used; ask for a new one")


class DatabaseChallenges:
    """Spent challenge ids in the ledger database (shared by all worker processes)."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.clock = clock
        self._last_prune = 0
        self._lock = threading.Lock()

    def ensure_table(self) -> None:
        """Bring a ledger created before revision 0005 up to date (the table is created
        by the migration, serialised against other processes doing the same)."""
        if sa.inspect(self.engine).has_table(table.name):
            return
        upgrade_schema(self.engine)

    def spend(self, challenge_id: str, expires_at: int) -> None:
        now = self.clock()
        with self._lock:
            prune = now - self._last_prune >= PRUNE_EVERY_MS
            if prune:
                self._last_prune = now
        try:
            with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE (the write lock)
                if prune:
                    conn.execute(table.delete().where(table.c.expires_at < now))
                conn.execute(table.insert().values(id=challenge_id, expires_at=expires_at))
        except sa.exc.IntegrityError:
            raise _already_used() from None

    def count(self) -> int:
        """Ids currently remembered (for tests and diagnostics)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


class ProcessChallenges:
    """Spent challenge ids in this process only (a store without a database)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self._spent: dict[str, int] = {}
        self._lock = threading.Lock()

    def spend(self, challenge_id: str, expires_at: int) -> None:
        now = self.clock()
        with self._lock:
            if len(self._spent) > MAX_OUTSTANDING // 2:
                self._spent = {k: v for k, v in self._spent.items() if v >= now}
            if len(self._spent) >= MAX_OUTSTANDING:
                raise Backpressure("too many logins in flight; retry shortly", 5.0)
            if challenge_id in self._spent:
                raise _already_used()
            self._spent[challenge_id] = expires_at


def for_store(store: LedgerStore, clock: Callable[[], int]) -> SpentChallenges:
    """Where the server keeps spent challenge ids: the ledger database of a SQL store
    (the table created if the ledger predates it), else this process's memory."""
    engine: Any = getattr(store, "engine", None)
    if isinstance(engine, sa.Engine) and engine.dialect.name in ("sqlite", "postgresql"):
        spent = DatabaseChallenges(engine, clock)
        spent.ensure_table()
        return spent
    return ProcessChallenges(clock)


#: PostgreSQL advisory lock key taken while upgrading the schema (any constant).
_MIGRATION_LOCK = 0x637573746F6479  # "custody"


def upgrade_schema(engine: sa.Engine) -> None:
    """Alembic ``upgrade head`` on ``engine``, one process at a time: on SQLite the
    migration's transaction holds the write lock; on PostgreSQL an advisory lock is taken
    first. A process that waited finds the schema current and changes nothing."""
    from alembic import command
    from alembic.config import Config

    from ledger.store.sql import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("the ledger schema was brought up to date (spent login challenges table)")
