"""What one running API server holds: the store, the group committer, the authenticator,
the evidence and package stores, the limits and the read cache. Built by
:func:`api.app.create_app`.

The read cache (:class:`ReadCache`) keeps, per process, what requests keep asking for:
the caller's actor record, the records the authorisation policy looks at, a custody
history page. Everything in it belongs to ONE log size (a :class:`Snapshot`): every
request first reads the log's size from the database (one primary-key read, a few
microseconds on SQLite), and a size other than the snapshot's starts an empty one. The
state changes only by appends and every append grows the log, so a record cached at a
size is the record at that size: a revocation or a role change appended by any process
(another worker included) is seen by the next request that starts after its commit.
Records come from :meth:`LedgerStore.state`, which verifies them against the state map
signed in the latest checkpoint, exactly as without the cache.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from api.auth import Authenticator
from api.committer import GroupCommitter
from api.evidence_store import EvidenceStore
from api.package_store import PackageIndex, PackageStore
from api.security import LoginThrottle, SecurityConfig
from ledger.core.state import LEDGER
from ledger.store.base import LedgerStore

_T = TypeVar("_T")
#: Most records one snapshot keeps (beyond that, reads go to the store uncached).
MAX_RECORDS = 50_000
#: Most memoised answers (history pages...) one snapshot keeps.
MAX_MEMO = 2_000
#: Most immutable answers (proofs by index and size) kept across snapshots.
MAX_IMMUTABLE = 8_192


@dataclass
class Limits:
    max_event_bytes: int = 256 * 1024
    max_batch_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 64 << 30


class Snapshot:
    """The state records and per-size answers read at ONE log size (a :class:`StateView`).

    Requests that saw the same size share it; a request never puts anything into a
    snapshot of another size, so an older size's record can never be served at a newer
    size. (A record read just after the size may be from a newer state: that request
    raced an append, and the next request reads the new size and a new snapshot.)"""

    __slots__ = ("_memo", "_records", "size", "store")

    def __init__(self, store: LedgerStore, size: int) -> None:
        self.store = store
        self.size = size
        self._records: dict[str, dict[str, Any] | None] = {}
        self._memo: dict[Hashable, Any] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return self._records[key]
        except KeyError:
            record = self.store.state(key)
            if len(self._records) < MAX_RECORDS:
                self._records[key] = record
            return record

    def memoised(self, key: Hashable) -> bool:
        return key in self._memo

    def peek(self, key: Hashable) -> Any:
        """The memoised answer for ``key``, or ``None``."""
        return self._memo.get(key)

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()`` once per snapshot (answers that depend only on the log's
        contents at this size, not on who asks)."""
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            value = compute()
            if len(self._memo) < MAX_MEMO:
                self._memo[key] = value
            return value


class ReadCache:
    """The current :class:`Snapshot`, checked against the log size on every request, and
    a bounded cache of answers that never change (a proof for a given index and size)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._head = head_reader(store)
        self._size = store.size if self._head is None else self._head.size
        self._snapshot = Snapshot(store, -1)
        self._immutable: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        #: SQLite point reads are local and take microseconds: they run on the event
        #: loop instead of a hop through the thread pool. Other stores read in threads.
        self.inline = _is_sqlite(store)

    def snapshot(self) -> Snapshot:
        """The snapshot of the log size read now, from the database."""
        size = self._size()
        snap = self._snapshot
        if snap.size != size:
            snap = self._snapshot = Snapshot(self.store, size)
        return snap

    def close(self) -> None:
        """Close the connection kept for size reads (before the store closes)."""
        if self._head is not None:
            self._head.close()

    def cached_immutable(self, key: Hashable) -> Any:
        """The answer :meth:`immutable` keeps for ``key``, or ``None``."""
        with self._lock:
            return self._immutable.get(key)

    def immutable(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()`` once for answers that never change once they exist."""
        with self._lock:
            try:
                value = self._immutable[key]
                self._immutable.move_to_end(key)
                return value  # type: ignore[no-any-return]
            except KeyError:
                pass
        value = compute()
        with self._lock:
            self._immutable[key] = value
            while len(self._immutable) > MAX_IMMUTABLE:
                self._immutable.popitem(last=False)
        return value


def _is_sqlite(store: LedgerStore) -> bool:
    reader = getattr(store, "reader", None)
    return getattr(getattr(reader, "dialect", None), "name", None) == "sqlite"


def head_reader(store: LedgerStore) -> HeadReader | None:
    """The fastest way to read the log size of a SQL store (SQLAlchemy's statement and
    pool machinery cost ten times more than the read itself); ``None`` for other stores
    (their :meth:`LedgerStore.size` then)."""
    engine = getattr(store, "reader", None)
    if getattr(getattr(engine, "dialect", None), "name", None) not in ("sqlite", "postgresql"):
        return None
    return HeadReader(engine, store.size)


class HeadReader:
    """``SELECT size FROM head`` on one connection of the store's engine, detached from
    its pool and kept, in autocommit (each read sees the latest commit, and no
    transaction stays open). A failing connection is dropped and the read retried on a
    fresh one; if that fails too, ``fallback`` (the store's own read, which reports
    database failures in its own words) answers."""

    def __init__(self, engine: Any, fallback: Callable[[], int]) -> None:
        self.engine = engine
        self.fallback = fallback
        self._raw: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        raw = self.engine.raw_connection()
        raw.detach()  # ours alone (closed when dropped), never handed back to the pool
        if self.engine.dialect.name == "postgresql":
            raw.rollback()
            raw.driver_connection.autocommit = True
        return raw

    def close(self) -> None:
        with self._lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()

    def size(self) -> int:
        with self._lock:
            for _attempt in (1, 2):
                raw = self._raw
                try:
                    if raw is None:
                        raw = self._raw = self._connect()
                    cur = raw.cursor()
                    try:
                        cur.execute("SELECT size FROM head")
                        row = cur.fetchone()
                    finally:
                        cur.close()
                    return int(row[0])
                except Exception:
                    self._raw = None
                    if raw is not None:
                        with contextlib.suppress(Exception):
                            raw.close()
        return self.fallback()


@dataclass
class Runtime:
    store: LedgerStore
    auth: Authenticator
    committer: GroupCommitter
    evidence: EvidenceStore | None
    limits: Limits
    fallback_origin: str | None = None
    owns_store: bool = False
    #: Witnesses allowed to post cosignatures (empty: any witness may).
    witness_keys: frozenset[str] = frozenset()
    #: Evidence packages (encrypted files between agencies); None: package uploads off.
    packages: PackageStore | None = None
    #: Which organisations are party to the transfers naming each package.
    package_index: PackageIndex = field(default_factory=PackageIndex)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    login_throttle: LoginThrottle | None = None
    reads: ReadCache = field(init=False)

    def __post_init__(self) -> None:
        self.reads = ReadCache(self.store)

    async def run_read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a short read: on the event loop for SQLite (no thread-pool hop), in a
        worker thread for a store whose reads wait on the network."""
        if self.reads.inline:
            return fn(*args)
        import anyio.to_thread

        return await anyio.to_thread.run_sync(fn, *args)

    def ledger(self) -> dict[str, Any] | None:
        return self.store.state(LEDGER)

    @property
    def origin(self) -> str | None:
        rec = self.ledger()
        return str(rec["origin"]) if rec else self.fallback_origin

    @property
    def verifier_key(self) -> str | None:
        """The key that signs this server's checkpoints: the genesis log key, or on a
        Fabric network this organisation's node key."""
        node_key = getattr(self.store, "log_key", None)
        if isinstance(node_key, str):
            return node_key
        rec = self.ledger()
        return str(rec["log_key"]) if rec else None
