"""SQL backend (SQLite by default, PostgreSQL supported): engines and reads on SQLAlchemy 2
Core, the append path on the pooled connection's DBAPI cursor (constant SQL).

Writers are serialised: ``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` on the
single ``head`` row on PostgreSQL. Inside that lock the custody rules run against the
``state`` table; the batch's entries, Merkle nodes, refs, state writes, state history and
state-map nodes are inserted with one multi-row statement per table, and ONE checkpoint
over the new root is signed, all in one transaction. Only after the commit returns is
anything acknowledged. A large batch has its signatures checked ahead in worker
processes (the rules still decide, in order); on SQLite the WAL is copied back into the
database file by a thread of the writing store, not inside an append's commit.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.core import merkle, vmap
from ledger.core.bundle import Bundle, Fault
from ledger.core.canonical import canonical
from ledger.core.checkpoint import Checkpoint, sign_checkpoint
from ledger.core.errors import (
    Backpressure,
    Conflict,
    IntegrityFault,
    InvalidInput,
    LedgerError,
    NotFound,
    StorageFull,
    StoreUnavailable,
    UpstreamError,
)
from ledger.core.events import Entry, SignedEvent
from ledger.core.note import NoteSigner
from ledger.core.rules import Context, apply
from ledger.core.state import Record, actor_key, nonce_key
from ledger.store import schema as t
from ledger.store.base import AppendResult, StoredEntry
from ledger.store.sqlmap import (
    STATE_VALUE,
    Exec,
    MapCache,
    Sql,
    bucket_of,
    insert_sql,
    map_proof,
    signed_checkpoint,
    verified_record,
)

if TYPE_CHECKING:
    from ledger.core.audit import AuditReport
    from ledger.store.repair import Repair

Clock = Callable[[], int]
_T = TypeVar("_T")
MIGRATIONS = Path(__file__).parent / "migrations"
#: Most entries one group commit takes (bounded queue, threat T11).
MAX_BATCH = 1000
#: A group commit of at least this many events has its signatures checked ahead of the
#: rules in worker processes (:mod:`ledger.parallel_verify`); smaller ones (a single
#: append, the API's batches of a few events) would wait longer for the pipe than for
#: the check itself.
PARALLEL_VERIFY_MIN = 64
#: Signatures per job sent to a worker: small enough that the rules rarely wait for
#: the first answer, large enough that the pipe is not the cost.
VERIFY_CHUNK = 32


#: WAL pages after which a committing writer copies the WAL into the database file itself
#: (SQLite's automatic checkpoint, 1000 by default), inside its commit. A writing store
#: does that sooner and off the append path (:class:`WalCheckpointer`); this bounds the
#: WAL (about 40 MiB) when nobody does.
WAL_AUTOCHECKPOINT = 10_000
#: Held by a checkpointer while it is inside SQLite; ``fork`` waits for it, so a child
#: never inherits SQLite locks held by a thread that does not exist in the child.
_IN_SQLITE = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_IN_SQLITE.acquire, after_in_parent=_IN_SQLITE.release,
                        after_in_child=_IN_SQLITE.release)


class WalCheckpointer:
    """Copies a SQLite WAL back into the database file on its own thread and connection.

    SQLite's automatic checkpoint runs inside the commit that crosses the threshold: that
    append waits for up to a thousand page writes and an fsync of the database file. Here
    a writing store wakes this thread after its commits instead; it runs
    ``PRAGMA wal_checkpoint(PASSIVE)`` (never blocks a writer or a reader) at most every
    ``interval`` seconds, on the machine's other core. Durability is unchanged: a commit
    is durable once its WAL frames are fsynced, before any checkpoint; a checkpoint cut
    short by a crash is finished by SQLite's recovery, as an automatic one would be."""

    def __init__(self, path: Path, interval: float = 0.05, idle: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.idle = idle
        self.runs = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._start = threading.Lock()

    def kick(self) -> None:
        """Ask for a checkpoint soon (cheap: called after every commit)."""
        if self._closed:
            return
        if self._thread is None or self._pid != os.getpid():  # none yet, or a forked child
            with self._start:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._wake = threading.Event()
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="custody-wal-checkpoint")
                    self._thread.start()
                    atexit.register(_close_at_exit, weakref.ref(self))  # a store never closed
        self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        conn: sqlite3.Connection | None = None
        try:
            while True:
                # Idle for a while: let go of the file (its last connection to close then
                # checkpoints and removes the WAL, as without this thread).
                if not wake.wait(None if conn is None else self.idle):
                    with _IN_SQLITE:
                        conn.close()  # type: ignore[union-attr]
                    conn = None
                    continue
                if self._closed:
                    return
                wake.clear()
                with _IN_SQLITE:
                    if conn is None:
                        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0,
                                               check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.runs += 1
                time.sleep(self.interval)  # gather the next commits' frames
        except sqlite3.Error:
            return  # the writers' automatic checkpoint (WAL_AUTOCHECKPOINT) still bounds it
        finally:
            if conn is not None:
                with _IN_SQLITE:
                    conn.close()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() \
                and thread is not threading.current_thread():
            thread.join(timeout=10)


def _close_at_exit(ref: weakref.ref[WalCheckpointer]) -> None:
    checkpointer = ref()
    if checkpointer is not None:
        checkpointer.close()


def make_engine(url: str, *, reader: bool = False) -> Engine:
    """Create an engine with the durability settings the contract needs.

    On SQLite a writer engine starts every transaction with ``BEGIN IMMEDIATE`` (the
    write lock, so rule checks and the append see one state); a ``reader`` engine uses a
    plain deferred ``BEGIN``, i.e. a WAL snapshot that never blocks writers."""
    if url.startswith("sqlite"):
        # Readers may be many threads at once (the API's thread pool); writers serialise
        # on SQLite's lock anyway.
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  pool_size=32 if reader else 5, max_overflow=16)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            if not reader:
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        # The database may go away (stopped, restarting, crashed) while we run: a pooled
        # connection is pinged before use and replaced when dead (``pool_pre_ping``), a
        # connection attempt or a wait for a free pooled connection gives up after a few
        # seconds, and a server that cannot be reached is StoreUnavailable (retry later)
        # rather than the driver's error (see :func:`store_unavailable`).
        parsed = sa.engine.make_url(url)
        connect_args: dict[str, Any] = {} if "connect_timeout" in parsed.query \
            else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        engine = sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True,
                                  pool_timeout=PG_POOL_TIMEOUT_S, connect_args=connect_args)
        where = pg_server(parsed)

        @sa.event.listens_for(engine, "do_connect")
        def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            # Every new connection, including those of ``raw_connection()`` (the append
            # path, fast readers) and the pool's replacement of a dead one.
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error as exc:
                gone = store_unavailable(exc, where)
                if gone is not None:
                    raise gone from exc
                raise

        @sa.event.listens_for(engine, "handle_error")
        def _unavailable(ctx: Any) -> LedgerError | None:
            if ctx.is_pre_ping:  # a dead pooled connection: the pool connects anew
                return None
            return store_unavailable(ctx.original_exception, where,
                                     disconnect=bool(ctx.is_disconnect))

        return engine
    raise InvalidInput(f"unsupported database URL {url.split(':', 1)[0]!r}: "
                       "use sqlite:///PATH or postgresql://…")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic is the only schema source).
    Alembic is imported here only: opening a ledger that exists never migrates."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None for other databases or in-memory)."""
    if not url.startswith("sqlite:///"):
        return None
    raw = url[len("sqlite:///"):]
    if raw.startswith("file:"):
        raw = raw[len("file:"):].split("?", 1)[0]
    return Path(raw) if raw and raw != ":memory:" else None


def _writable_dir(folder: Path) -> bool:
    # os.access also reports a read-only mount (EROFS) to root.
    return not folder.is_dir() or os.access(folder, os.W_OK | os.X_OK)


def _has_wal(path: Path) -> bool:
    wal = path.with_name(path.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


def integrity_check(engine: Engine, *, quick: bool = False,
                    raise_on_damage: bool = False) -> list[str]:
    """SQLite's own check of the file (``PRAGMA integrity_check``, or the cheaper
    ``quick_check`` that skips index-content comparison). Returns the problems it
    reports (empty when the file is sound; always empty on PostgreSQL). With
    ``raise_on_damage`` a damaged file raises :class:`IntegrityFault` instead."""
    if engine.dialect.name != "sqlite":
        return []
    pragma = "quick_check" if quick else "integrity_check"
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f"PRAGMA {pragma}(20)").all()
    except DBAPIError as exc:
        problems = [str(getattr(exc, "orig", exc))]
    else:
        problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
    if problems and raise_on_damage:
        raise IntegrityFault(damage_message(engine.url.database, problems), kind="database")
    return problems


def damage_message(database: str | None, problems: Sequence[str],
                   source: str = "SQLite's integrity check reports") -> str:
    first = " ".join(problems[0].split()) if problems else "damaged"
    more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    name = f"the ledger database {_shown(database)}".rstrip()
    return (f"{name} is damaged ({source}: {first}{more}); "
            "nothing is written to it: restore it from a backup")


def _shown(database: str | None) -> str:
    if not database:
        return ""
    return database[len("file:"):].split("?", 1)[0] if database.startswith("file:") \
        else database


_DAMAGE = ("file is not a database", "malformed", "disk image", "corrupt")
_READ_ONLY = ("readonly", "read-only", "unable to open database file")


#: What the drivers say when the disk is full: SQLite's SQLITE_FULL, the OS's ENOSPC text.
_FULL = ("database or disk is full", "no space left on device", "disk full", "disk quota")
#: Below this many free bytes, an I/O error of SQLite is taken to be a full disk (SQLite
#: reports a failed -shm/-wal extension as SQLITE_IOERR, not SQLITE_FULL).
_LOW_SPACE = 1 << 20


def storage_full(exc: BaseException, url: str | None = None) -> StorageFull | None:
    """A :class:`StorageFull` when ``exc`` is a database failure caused by a full disk
    (PostgreSQL: SQLSTATE 53100 disk_full)."""
    orig = getattr(exc, "orig", None) or exc
    low = " ".join(str(orig).split()).lower()
    full = any(word in low for word in _FULL) or getattr(orig, "sqlstate", None) == "53100"
    path = sqlite_path(url) if url else None
    if not full and path is not None and ("disk i/o error" in low or "ioerr" in low):
        with contextlib.suppress(OSError):
            st = os.statvfs(path.parent)
            full = st.f_bavail * st.f_frsize < _LOW_SPACE
    if not full:
        return None
    where = f" ({path.parent})" if path is not None else ""
    return StorageFull(f"the disk holding the ledger{where} is full, so nothing was written; "
                       "free some space and retry", retry_after=30)


#: Seconds a connection attempt to PostgreSQL may take (libpq's ``connect_timeout``; a
#: ``connect_timeout`` in the URL wins), and a wait for a free pooled connection.
PG_CONNECT_TIMEOUT_S = 3
PG_POOL_TIMEOUT_S = 5.0
#: The Retry-After of StoreUnavailable: about what a PostgreSQL restart takes.
UNAVAILABLE_RETRY_AFTER_S = 2.0
#: SQLSTATEs of a server that is gone or going (besides class 08, connection
#: exceptions): admin_shutdown, crash_shutdown, cannot_connect_now (starting up,
#: shutting down, recovering), too_many_connections.
_GONE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
#: What libpq and psycopg say when no server answers or the connection broke (their
#: connection errors carry no SQLSTATE).
_GONE = ("connection refused", "could not connect", "is the server running",
         "the database system is", "terminating connection", "closed the connection",
         "connection not open", "the connection is closed", "the connection is lost",
         "could not receive data", "could not send data", "consuming input failed",
         "connection reset", "broken pipe", "timeout expired", "no route to host",
         "network is unreachable", "too many clients", "remaining connection slots",
         "connection has been closed unexpectedly")


def pg_server(url: Any) -> str:
    """``PostgreSQL at HOST:PORT`` for a database URL (a string or a SQLAlchemy URL);
    empty for anything but PostgreSQL."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return ""
    if not parsed.drivername.startswith("postgresql"):
        return ""
    host = parsed.host or str(parsed.query.get("host") or "localhost")
    return f"PostgreSQL at {host}:{parsed.port or 5432}"


def store_unavailable(exc: BaseException, where: str = "", *, disconnect: bool = False,
                      appending: bool = False, before: bool = False
                      ) -> StoreUnavailable | None:
    """A :class:`StoreUnavailable` when ``exc`` (a PostgreSQL driver error, bare or
    wrapped by SQLAlchemy) says the database server cannot be reached or the connection
    to it broke; None for anything else (SQLite, a refused statement, a database that
    does not exist, a wrong password...). ``disconnect``: the connection is known dead.
    ``appending``: the failure hit an append transaction, so unless ``before`` (no
    statement was sent yet) it may or may not have been committed."""
    dbapi = sys.modules.get("psycopg")
    if dbapi is None:
        return None
    # The driver's errors in the chain: a server shutting down in the middle of a
    # pipeline raises AdminShutdown, then "cannot exit pipeline mode" while handling it.
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        orig = getattr(seen, "orig", None) or seen
        if isinstance(orig, dbapi.Error):
            chain.append(orig)
        seen = seen.__cause__ or seen.__context__

    def says_gone(err: BaseException) -> bool:
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str) and (state.startswith("08") or state in _GONE_STATES):
            return True
        low = " ".join(str(err).split()).lower()
        return isinstance(err, dbapi.OperationalError | dbapi.InterfaceError) \
            and any(word in low for word in _GONE)

    gone = next((err for err in chain if says_gone(err)), None)
    if gone is None and disconnect and chain:
        gone = chain[0]
    if gone is None:
        return None
    text = " ".join(str(gone).split())
    reason = text.rsplit("failed: ", 1)[-1]
    for cut in (" Is the server", " This probably means", " HINT:"):
        reason = reason.split(cut, 1)[0]
    reason = reason.removeprefix("FATAL: ").rstrip(" .") or type(gone).__name__
    server = f"the ledger database server ({where})" if where else \
        "the ledger database server"
    if appending and not before:
        return StoreUnavailable(
            f"the connection to {server} broke during the append ({reason}), so it may or "
            "may not be on the log: send the same signed event again, which returns its "
            "original receipt if it was appended", UNAVAILABLE_RETRY_AFTER_S)
    done = ", so nothing was appended" if appending else ""
    return StoreUnavailable(f"{server} is unavailable ({reason}){done}; retry in a few "
                            "seconds", UNAVAILABLE_RETRY_AFTER_S)


def describe_database_error(exc: Exception, url: str | None = None) -> LedgerError:
    """One sentence for a database failure: a damaged SQLite file (IntegrityFault, exit
    1), a file that cannot be opened or written (InvalidInput, exit 2), a busy database
    (Backpressure) or any other backend failure (UpstreamError)."""
    full = storage_full(exc, url)
    if full is not None:
        return full
    gone = store_unavailable(exc, pg_server(url) if url else "")
    if gone is not None:
        return gone
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
    low = reason.lower()
    path = sqlite_path(url) if url else None
    where = str(path) if path is not None else "the ledger database"
    if any(word in low for word in _DAMAGE):
        return IntegrityFault(damage_message(None if path is None else str(path), [reason],
                                             "SQLite says"), kind="database")
    if any(word in low for word in _READ_ONLY):
        return InvalidInput(f"cannot open {where} for writing ({reason}): the custody home "
                            "or the file is read-only")
    if "locked" in low or "busy" in low:
        return Backpressure(f"the ledger database is busy ({reason}); retry later")
    return UpstreamError(f"the ledger database failed: {reason}")


# The append path runs constant SQL on the DBAPI cursor of one pooled connection
# (:class:`ledger.store.sqlmap.Exec`): SQLAlchemy Core's per-statement and per-transaction
# bookkeeping cost more than the statements and most of the commit. Reads keep Core.
_HEAD = sa.select(t.head.c.size, t.head.c.last_time).where(t.head.c.id == 1)
#: The head row and the checkpoint of its size, in one statement (SQLite: the
#: transaction already holds the write lock).
_HEAD_AND_NOTE = Sql(
    "SELECT h.size, h.last_time, c.note FROM head AS h LEFT JOIN checkpoints AS c "
    "ON c.size = h.size WHERE h.id = 1")
#: PostgreSQL: lock the head row first (the writers' lock). Its checkpoint is read by a
#: second statement: under READ COMMITTED a statement that waited for the lock sees the
#: new head row but, in a join, the checkpoints of its own older snapshot.
_LOCK_HEAD_PG = Sql("SELECT size, last_time FROM head WHERE id = 1 FOR UPDATE")
#: PostgreSQL, after the lock: that checkpoint and the batch's nonce records, one trip.
_NOTE_AND_STATE_PG = Sql(
    "", "SELECT NULL, note FROM checkpoints WHERE size = %s UNION ALL "
    "SELECT key, value FROM state WHERE key = ANY(%s)")
#: The readers' snapshot (SqlStore._reading) and its point reads.
_BEGIN = Sql("BEGIN")
_ROLLBACK = Sql("ROLLBACK")
_SIZE = Sql("SELECT size FROM head WHERE id = 1")
_REFS = Sql("SELECT idx FROM refs WHERE ref = ? ORDER BY idx")
_ENTRIES_AT = Sql(
    "SELECT idx, leaf, leaf_hash, ledger_time FROM entries "
    "WHERE idx IN (SELECT value FROM json_each(?))",
    "SELECT idx, leaf, leaf_hash, ledger_time FROM entries WHERE idx = ANY(%s)")
#: The batch's nonce records in one statement (the replay/duplicate check reads them).
_STATE_VALUES = Sql("SELECT key, value FROM state WHERE key IN (SELECT value FROM json_each(?))",
                    "SELECT key, value FROM state WHERE key = ANY(%s)")
_ENTRY_AT = Sql("SELECT idx, leaf_hash, event_id, ledger_time FROM entries WHERE idx = ?")
_FIRST_CHECKPOINT_AFTER = Sql(
    "SELECT note FROM checkpoints WHERE size > ? ORDER BY size LIMIT 1")
_INSERT_ENTRIES = insert_sql("entries", ("idx", "leaf", "leaf_hash", "event_id", "ledger_time"),
                             ("bigint", "bytea", "bytea", "text", "bigint"))
_INSERT_NODES = insert_sql("merkle_nodes", ("level", "idx", "hash"),
                           ("smallint", "bigint", "bytea"))
_INSERT_REFS = insert_sql("refs", ("ref", "idx"), ("text", "bigint"))
_INSERT_CHECKPOINT = Sql("INSERT INTO checkpoints (size, note) VALUES (?, ?)")
_UPDATE_HEAD = Sql("UPDATE head SET size = ?, last_time = ? WHERE id = 1")
#: The same SQL on SQLite (>= 3.24) and PostgreSQL; one statement for a batch.
_UPSERT_STATE = insert_sql(
    "state", ("key", "value", "idx", "bucket"), ("text", "text", "bigint", "integer"),
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, idx = excluded.idx")
_NEWEST_BLOCK = Sql("SELECT max(number) FROM fabric_blocks")
_INSERT_BLOCK = Sql("INSERT INTO fabric_blocks (number, hash, size) VALUES (?, ?, ?)")
#: Proof nodes by primary key, the whole plan one bound parameter.
_NODES = Sql(
    "SELECT m.level, m.idx, m.hash FROM json_each(?) AS j JOIN merkle_nodes AS m "
    "ON m.level = json_extract(j.value, '$[0]') AND m.idx = json_extract(j.value, '$[1]')",
    "SELECT m.level, m.idx, m.hash FROM unnest(CAST(%s AS smallint[]), "
    "CAST(%s AS bigint[])) AS j(level, idx) JOIN merkle_nodes AS m "
    "ON m.level = j.level AND m.idx = j.idx")
_CHECKPOINT_AT = sa.select(t.checkpoints.c.note).where(
    t.checkpoints.c.size == sa.bindparam("size"))
_FIRST_CHECKPOINT_AFTER_CORE = (sa.select(t.checkpoints.c.note)
                                .where(t.checkpoints.c.size > sa.bindparam("idx"))
                                .order_by(t.checkpoints.c.size).limit(1))
#: RFC 8785 writes integers up to 2**53 - 1 as plain decimals.
_MAX_SAFE_INT = 2**53 - 1


def leaf_bytes(index: int, ledger_time: int, signed: SignedEvent) -> bytes:
    """``Entry(index, ledger_time, signed).leaf_bytes()`` without re-encoding the event.

    The leaf is the RFC 8785 form of ``{"event", "index", "ledger_time"}``: keys in that
    (sorted) order, the event as its own canonical bytes (RFC 8785 encodes a nested
    object exactly as on its own), and integers in the safe range as decimals.
    ``tests/unit/test_leaf_bytes.py`` checks the equality on generated events."""
    if 0 <= index <= _MAX_SAFE_INT and 0 <= ledger_time <= _MAX_SAFE_INT \
            and type(index) is int and type(ledger_time) is int:
        return b'{"event":%b,"index":%d,"ledger_time":%d}' % (
            signed.canonical_bytes(), index, ledger_time)
    return Entry(index, ledger_time, signed).leaf_bytes()


def blob(value: Any) -> bytes:
    """A BLOB column as bytes. A hand-edited SQLite row can hold TEXT where a BLOB was
    (``replace()`` on a BLOB returns TEXT): its bytes are then the UTF-8 text, which the
    hash checks reject like any other edit, instead of crashing the reader."""
    return value.encode() if isinstance(value, str) else bytes(value)


def stored_entry(idx: Any, leaf: Any, leaf_hash: Any, ledger_time: Any) -> StoredEntry:
    return StoredEntry(int(idx), blob(leaf), blob(leaf_hash), int(ledger_time))


def _nodes(x: Exec, plan: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    """Fetch the planned perfect-subtree nodes in ONE constant statement: the whole plan
    is one bound parameter, joined to ``merkle_nodes`` on its primary key (building an
    OR expression per call cost ~4 ms; a row-value IN made SQLite scan the table)."""
    if not plan:
        return {}
    if x.pg:
        params: tuple[Any, ...] = ([lv for lv, _ in plan], [i for _, i in plan])
    else:
        params = (json.dumps(list(plan)),)
    return {(int(lv), int(i)): blob(h) for lv, i, h in x.all(_NODES, params)}


class _SqlView:
    """The rules' StateView over the ``state`` table, with the batch's pending writes.

    A mapped record is read with its whole bucket, verified against the state-map root
    signed in the latest checkpoint (:class:`ledger.store.sqlmap.MapCache`): a state row
    edited outside the log is refused, never used. Unmapped bookkeeping (``nonce/``) is
    read directly; a replayed event still fails on the unique event id."""

    __slots__ = ("_read", "cache", "pending", "x")

    def __init__(self, x: Exec, cache: MapCache | None = None) -> None:
        self.x = x
        self.cache = cache
        self.pending: dict[str, Record] = {}
        self._read: dict[str, Record | None] = {}

    def get(self, key: str) -> Record | None:
        pending = self.pending
        if key in pending:
            return pending[key]
        read = self._read
        if key in read:  # the cache's buckets change only when the batch commits
            return read[key]
        if self.cache is not None and vmap.mapped(key):
            record = self.cache.bucket(self.x, bucket_of(key)).get(key)
        else:
            row = self.x.one(STATE_VALUE, (key,))
            record = None if row is None or row[0] is None else dict(json.loads(row[0]))
        read[key] = record
        return record


class _Head:
    """The head row as the locked read saw it: size, last ledger time, the note of the
    checkpoint of that size (None if there is none), and the raw state rows read with
    it for ``keys`` (a key of ``keys`` missing from ``state`` does not exist)."""

    __slots__ = ("keys", "last_time", "note", "size", "state")

    def __init__(self, row: Sequence[Any]) -> None:
        self.size = int(row[0])
        self.last_time = int(row[1])
        self.note = None if row[2] is None else str(row[2])
        self.keys: list[str] = []
        self.state: dict[str, Any] = {}


class SqlStore:
    """A ledger on one SQL database. Thread-safe; one instance per process is enough."""

    def __init__(self, engine: Engine, *, signer: NoteSigner | None, clock: Clock,
                 reader: Engine | None = None, verify_key: str | None = None) -> None:
        self.engine = engine
        #: The database URL (names the disk when it is full).
        self.url = engine.url.render_as_string(hide_password=True)
        #: Engine for reads: never takes SQLite's write lock.
        self.reader = reader or engine
        self.signer = signer
        self.clock = clock
        self._frontier: merkle.Frontier | None = None
        self._map: MapCache | None = None
        #: Reads: the key that signs checkpoints, verified buckets, verified roots.
        self._verify_key = verify_key or (signer.verifier_key if signer else None)
        self._rmap: MapCache | None = None
        self._checked: tuple[str, Checkpoint] | None = None
        self._lock = threading.Lock()  # guards the caches
        self._pg = engine.dialect.name == "postgresql"
        #: ``PostgreSQL at HOST:PORT`` (names the server when it cannot be reached).
        self._where = pg_server(engine.url) if self._pg else ""
        #: The driver's own exceptions (the append path runs on its DBAPI cursor).
        self._dbapi: Any = engine.dialect.dbapi
        self._pool: Any = None  # ledger.parallel_verify.VerifyPool, started when needed
        path = sqlite_path(str(engine.url)) if engine.dialect.name == "sqlite" else None
        self._wal = WalCheckpointer(path) if path is not None and signer is not None \
            and not str(engine.url).endswith("immutable=1&uri=true") else None
        self._pool_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, signer: NoteSigner | None, clock: Clock,
             create: bool = False, verify_key: str | None = None,
             check: bool = False) -> SqlStore:
        """Open the ledger at ``url``. A store without a ``signer`` only reads: in a
        read-only directory its SQLite file is opened immutable (no lock or WAL files can
        be made there, so no writer can be changing it). A store that writes refuses a
        read-only directory, and with ``check`` a SQLite file that fails
        ``PRAGMA quick_check``. Database failures are raised as one sentence
        (:func:`describe_database_error`)."""
        path = sqlite_path(url)
        if path is not None and not create:
            if path.is_dir():
                raise InvalidInput(f"the ledger database {path} is a directory")
            if not _writable_dir(path.parent):
                if signer is not None:
                    raise InvalidInput(f"the ledger database {path} is in a read-only "
                                       "directory, so nothing can be appended: make the "
                                       "custody home writable")
                if path.is_file() and not _has_wal(path):
                    url = f"sqlite:///file:{quote(str(path))}?immutable=1&uri=true"
        try:
            engine = make_engine(url)
            if create:
                migrate(engine)
            elif not sa.inspect(engine).has_table("entries"):
                raise NotFound(f"no ledger database at {url}; run 'custody init' first")
            if check and path is not None:
                integrity_check(engine, quick=True, raise_on_damage=True)
            reader = make_engine(url, reader=True) if url.startswith("sqlite") else None
        except DBAPIError as exc:
            raise describe_database_error(exc, url) from None
        return cls(engine, signer=signer, clock=clock, reader=reader, verify_key=verify_key)

    def audit(self, *, trusted_checkpoint: str | None = None,
              log_verifier_key: str | None = None,
              progress: Callable[[int], None] | None = None) -> AuditReport:
        """Every table: leaves, signatures, rules, checkpoints, stored nodes, state."""
        from ledger.store.audit_sql import audit_store

        return audit_store(self, trusted_checkpoint=trusted_checkpoint, progress=progress,
                           log_verifier_key=log_verifier_key)

    def rebuild_state(self, log_key: str) -> Repair:
        from ledger.store.repair import rebuild_state

        return rebuild_state(self, log_key)

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool:
            pool.close()
        self.engine.dispose()
        self.reader.dispose()

    # ---- writes -------------------------------------------------------------------

    def append(self, signed: SignedEvent) -> AppendResult:
        (outcome,) = self.append_many([signed])
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    def append_many(self, batch: Sequence[SignedEvent]) -> list[AppendResult | LedgerError]:
        if not batch:
            return []
        if len(batch) > MAX_BATCH:
            raise Backpressure(f"a batch holds at most {MAX_BATCH} events", retry_after=0.1)
        if self.signer is None:
            raise InvalidInput("this store was opened read-only (no log key)")
        try:
            return self._transaction(
                lambda x: self._append_locked(x, self._lock_head(x, batch), batch))
        except (DBAPIError, self._dbapi.Error) as exc:
            self._frontier = self._map = None
            raise self._append_failure(exc) from exc
        except BaseException:
            self._frontier = self._map = None
            raise

    def _append_failure(self, exc: BaseException) -> LedgerError:
        """What a database error during an append means for the caller: a full disk or
        an unreachable server first, a busy SQLite as back-pressure, else upstream."""
        known = storage_full(exc, self.url) or \
            store_unavailable(exc, self._where, appending=True)
        if known is not None:
            return known
        text = str(exc).lower()
        if isinstance(exc, (OperationalError, self._dbapi.OperationalError)) \
                and ("locked" in text or "busy" in text):
            return Backpressure("the ledger is busy; retry shortly", 1.0)
        reason = getattr(exc, "orig", None) or exc
        return UpstreamError(f"database error while appending: {reason}")

    def _transaction(self, work: Callable[[Exec], _T]) -> _T:
        """Run ``work`` in one write transaction on a pooled connection's DBAPI cursor:
        ``BEGIN IMMEDIATE`` on SQLite (the write lock; PostgreSQL's is the head row lock
        taken by the first statement), then COMMIT — the durable point, WAL fsynced with
        ``synchronous=FULL`` — or ROLLBACK on any failure. Nothing is acknowledged before
        the commit returns."""
        try:
            raw = self.engine.raw_connection()
        except (DBAPIError, self._dbapi.Error, StoreUnavailable) as exc:  # nothing was sent
            gone = store_unavailable(exc, self._where, appending=True, before=True)
            if gone is not None:
                raise gone from exc
            raise
        try:
            dbc: Any = raw.dbapi_connection
            x = Exec(dbc, self._pg)
            if not self._pg:
                x.cur.execute("BEGIN IMMEDIATE")
            try:
                # PostgreSQL: writes are queued (pipeline mode) and go out with the COMMIT,
                # in one round trip; a read still waits for its answer.
                with x.pipeline():
                    out = work(x)
                    dbc.commit()
            except BaseException as exc:
                try:
                    dbc.rollback()
                except Exception:  # the first error is the one to report
                    failed = True
                else:
                    failed = False
                if self._pg:
                    dead = bool(dbc.closed or dbc.broken)
                    if dead or failed:
                        # The server went away (or the connection broke, or is stuck in
                        # its pipeline) mid-transaction: drop this connection rather than
                        # hand it back to the pool. The COMMIT may have been applied
                        # before its answer was lost.
                        raw.invalidate(exc if isinstance(exc, Exception) else None)
                    gone = store_unavailable(exc, self._where, disconnect=dead,
                                             appending=True)
                    if gone is not None:
                        raise gone from exc
                raise
        finally:
            raw.close()  # back to the pool
        if self._wal is not None:
            with contextlib.suppress(RuntimeError):  # no thread: SQLite's own checkpoint
                self._wal.kick()
        return out

    def _lock_head(self, x: Exec, batch: Sequence[SignedEvent] = ()) -> _Head:
        """The head row (locked), the checkpoint of its size, and the batch's nonce
        records (in ``_Head.state``), in as few round trips as the backend allows."""
        keys = list(dict.fromkeys(nonce_key(e.event.nonce) for e in batch))
        if not x.pg:
            head = _Head(x.one(_HEAD_AND_NOTE))
            if len(keys) > 1:  # one key: the view's own read is as cheap
                head.state = {str(k): v for k, v in x.all(_STATE_VALUES, (json.dumps(keys),))}
                head.keys = keys
            return head
        size, last_time = x.one(_LOCK_HEAD_PG)
        note = None
        state = {}
        for key, value in x.all(_NOTE_AND_STATE_PG, (size, keys)):
            if key is None:
                note = value
            else:
                state[str(key)] = value
        head = _Head((size, last_time, note))
        head.state, head.keys = state, keys
        return head

    def append_derived(self, batch: Sequence[tuple[SignedEvent, int]], block: int,
                       block_hash: bytes) -> int:
        """Take in one block of a log whose order was decided elsewhere (consortium mode:
        the VALID custody transactions of a Fabric block, in block order, each with its
        transaction time). One transaction: the entries, their checkpoint and the block's
        row in ``fabric_blocks``, or nothing. Every event must be accepted; a refusal or
        a duplicate means this log and the chain disagree, and is an IntegrityFault of
        kind ``divergence`` (nothing is written). Returns the log size after the block."""
        if self.signer is None:
            raise InvalidInput("this store was opened read-only (no log key)")

        def work(x: Exec) -> int:
            head = self._lock_head(x)
            size = head.size
            row = x.one(_NEWEST_BLOCK)
            newest = None if row is None or row[0] is None else int(row[0])
            if newest is not None and block <= newest:
                return size  # another process took this block in first
            if block != (0 if newest is None else newest + 1):
                raise IntegrityFault(f"block {block} follows block {newest} in this log: "
                                     "blocks must be taken in one by one, in order",
                                     kind="divergence")
            if batch:
                outcomes = self._append_locked(x, head, [e for e, _ in batch],
                                               [ts for _, ts in batch])
                for (signed, _), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, LedgerError) or outcome.duplicate:
                        why = outcome if isinstance(outcome, LedgerError) else "a duplicate"
                        raise IntegrityFault(
                            f"block {block}: event {signed.event_id} is VALID on the chain "
                            f"but this log refuses it ({why}); the derived log and the "
                            "chain disagree", kind="divergence")
                size += len(batch)
            x.run(_INSERT_BLOCK, (block, block_hash, size))
            return size

        try:
            return self._transaction(work)
        except (DBAPIError, self._dbapi.Error) as exc:
            self._frontier = self._map = None
            if isinstance(exc, DBAPIError):
                raise describe_database_error(exc) from None
            raise describe_database_error(DBAPIError(None, None, exc)) from None
        except BaseException:
            self._frontier = self._map = None
            raise

    def fabric_height(self) -> tuple[int, bytes] | None:
        """The newest Fabric block this derived log took in, as (number, header hash)."""
        with self.reader.connect() as conn:
            row = conn.execute(sa.select(t.fabric_blocks.c.number, t.fabric_blocks.c.hash)
                               .order_by(t.fabric_blocks.c.number.desc()).limit(1)).first()
        return None if row is None else (int(row.number), blob(row.hash))

    def fabric_block_size(self, number: int) -> int | None:
        """The log size after Fabric block ``number`` (None if not taken in)."""
        with self.reader.connect() as conn:
            size = conn.execute(sa.select(t.fabric_blocks.c.size)
                                .where(t.fabric_blocks.c.number == number)).scalar()
        return None if size is None else int(size)

    def receipt(self, event_id: str, *, duplicate: bool = False) -> AppendResult | None:
        """The append receipt of a logged event (its entry, the first checkpoint that
        covers it, and the result kept with its nonce), or None when it is not logged."""
        with self.reader.connect() as conn:
            row = conn.execute(sa.select(t.entries).where(t.entries.c.event_id == event_id)
                               ).first()
            if row is None:
                return None
            note = conn.execute(_FIRST_CHECKPOINT_AFTER_CORE, {"idx": row.idx}).scalar_one()
        nonce = self.state(nonce_key(Entry.from_leaf(blob(row.leaf)).signed.event.nonce))
        return AppendResult(row.idx, blob(row.leaf_hash), row.event_id, row.ledger_time,
                            str(note), dict((nonce or {}).get("result", {})),
                            duplicate=duplicate)

    def _append_locked(self, x: Exec, head: _Head, batch: Sequence[SignedEvent],
                       times: Sequence[int] | None = None) -> list[AppendResult | LedgerError]:
        """Apply ``batch`` in order. The ledger time is the clock's, or with ``times`` the
        given time of each event, never below the time of the entry before it.

        Every row of the batch is written with one ``executemany`` per table after the
        rules have run: the entries, their Merkle nodes, refs, state, the state history
        and the state-map nodes, ONE signed checkpoint for the whole batch and the head.
        """
        size, last_time = head.size, head.last_time
        frontier = self._load_frontier(x, size)
        cache = self._map_cache(x, size, head.note)
        view = _SqlView(x, cache)
        for key in head.keys:  # unmapped (nonce/) records read with the head
            value = head.state.get(key)
            view._read[key] = None if value is None else dict(json.loads(value))
        now = max(self.clock(), last_time) if times is None else last_time
        # One outcome per event; accepted ones are filled in once the checkpoint is signed.
        outcomes: list[AppendResult | LedgerError | None] = []
        accepted: list[tuple[int, bytes, str, int, dict[str, Any]]] = []
        rows: list[tuple[int, bytes, bytes, str, int]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        ref_rows: list[tuple[str, int]] = []
        pending = view.pending
        with self._signatures_ahead(view, batch):
            for n, signed in enumerate(batch):
                index = size + len(accepted)
                if times is not None:
                    now = max(times[n], now)
                try:
                    dup = self._duplicate(x, view, signed, size)
                    if dup is not None:
                        outcomes.append(dup)
                        continue
                    if index == 0:
                        self._check_genesis_origin(signed)
                    leaf = leaf_bytes(index, now, signed)
                    leaf_hash = merkle.leaf_hash(leaf)
                    effects = apply(view, signed, Context(index, now, leaf_hash))
                except LedgerError as exc:
                    outcomes.append(exc)
                    continue
                pending.update(effects.writes)
                event_id = signed.event_id
                accepted.append((len(outcomes), leaf_hash, event_id, now, effects.result))
                outcomes.append(None)
                rows.append((index, leaf, leaf_hash, event_id, now))
                node_rows += frontier.add_leaf(leaf_hash)
                ref_rows += [(r, index) for r in dict.fromkeys(effects.refs)]
        note = None
        if accepted:
            new_size = size + len(accepted)
            encoded = {k: canonical(v).decode() for k, v in pending.items()}
            with x.pipeline():
                map_root = cache.commit(x, pending, new_size, encoded)
                cp = self._checkpoint(frontier, map_root)
                note = sign_checkpoint(cp, self.signer)  # type: ignore[arg-type]
                x.many(_INSERT_ENTRIES, rows)
                x.many(_INSERT_NODES, node_rows)
                x.many(_INSERT_REFS, ref_rows)
                x.many(_UPSERT_STATE, [(k, v, new_size - 1,
                                        bucket_of(k) if vmap.mapped(k) else None)
                                       for k, v in encoded.items()])
                x.run(_INSERT_CHECKPOINT, (new_size, note))
                x.run(_UPDATE_HEAD, (new_size, now))
            for n, (slot, leaf_hash, event_id, at, result) in enumerate(accepted):
                outcomes[slot] = AppendResult(size + n, leaf_hash, event_id, at, note, result)
            # The checkpoint this process signed needs no signature check later.
            self._checked = (note, cp)
        self._frontier, self._map = frontier, cache
        return [o for o in outcomes if o is not None]

    @contextlib.contextmanager
    def _signatures_ahead(self, view: _SqlView, batch: Sequence[SignedEvent]) -> Iterator[None]:
        """For a large batch, check its signatures in worker processes while the rules
        run, in order, over the events before them.

        Each event's key is guessed from the state before the batch (its signer's
        enrolled key); the rules still make every signature check themselves, in their
        order, and :func:`ledger.core._sodium.known_results` answers a check from a worker's
        result only for exactly the triple the worker checked (else, e.g. for a key
        enrolled earlier in the same batch, the check runs here). So the outcome of each
        event, refusals included, is the one of a serial check."""
        pool = self._verify_pool() if len(batch) >= PARALLEL_VERIFY_MIN else None
        if pool is None:
            yield
            return
        from ledger.core._sodium import known_results

        triples: list[tuple[bytes, bytes, bytes]] = []
        keys: dict[str, bytes | None] = {}
        for signed in batch:
            signer = signed.event.signer
            try:  # a guess only: whatever fails here fails again, in order, in the rules
                if signer not in keys:
                    actor = view.get(actor_key(signer))
                    keys[signer] = None if actor is None else \
                        base64.b64decode(actor["public_key"], validate=True)
                key = keys[signer]
                if key is not None:
                    triples.append((key, signed.event.signing_bytes(), signed.signature))
            except (LedgerError, KeyError, TypeError, ValueError):
                keys[signer] = None
        with self._pool_lock:
            chunks = [(triples[i:i + VERIFY_CHUNK], pool.submit(triples[i:i + VERIFY_CHUNK]))
                      for i in range(0, len(triples), VERIFY_CHUNK)]
            where = {(pk, sig): (msg, result, pos) for part, result in chunks
                     for pos, (pk, msg, sig) in enumerate(part)}

            def lookup(public_key: bytes, message: bytes, signature: bytes) -> bool | None:
                found = where.get((public_key, signature))
                if found is None or found[0] != message:
                    return None
                return found[2] not in found[1]()

            try:
                with known_results(lookup):
                    yield
            finally:
                for _, result in chunks:  # collect every answer: the pool is reused
                    result()

    def _verify_pool(self) -> Any:
        """The worker pool for :meth:`_signatures_ahead`, or None where it cannot help
        (one core) or does not exist."""
        with self._pool_lock:
            if self._pool is None:
                try:
                    from ledger.parallel_verify import VerifyPool, available_cores
                except ImportError:  # pragma: no cover - older tree
                    self._pool = False
                else:
                    self._pool = VerifyPool(start_after=0) if available_cores() > 1 \
                        else False
            return self._pool or None

    def _map_cache(self, x: Exec, size: int, note: str | None) -> MapCache:
        """The verified state-map cache for this batch, checked against the latest
        checkpoint's signature and its state-map root (``note``: the checkpoint of the
        log's size, read with the head)."""
        if size == 0:
            return MapCache(None)
        if note is None:
            raise IntegrityFault(f"the log has {size} entries but no checkpoint of that size; "
                                 "writes are refused (run 'custody audit')", kind="checkpoint")
        cp = self._verified(note)
        if cp.size != size:
            raise IntegrityFault(f"the latest checkpoint covers {cp.size} entries, the log has "
                                 f"{size}; writes are refused", kind="checkpoint")
        root = vmap.root_of(cp.extensions)
        cached = self._map
        if cached is not None and root is not None and cached.root == root:
            return cached
        cache = MapCache(root)
        if root is None:  # a ledger from before the state map: map its state once
            cache.bootstrap(x, size)
        return cache

    def _verified(self, note: str) -> Checkpoint:
        """``note`` verified with the log key, remembered for the next call (the latest
        checkpoint is the same note until the next append; a signature check per append
        or per read cost as much as the commit)."""
        known = self._checked
        if known is not None and known[0] == note:
            return known[1]
        assert self._verify_key is not None  # noqa: S101 - checked by the callers
        cp = signed_checkpoint(note, self._verify_key, "writes are refused")
        self._checked = (note, cp)
        return cp

    def _duplicate(self, x: Exec, view: _SqlView, signed: SignedEvent,
                   size: int) -> AppendResult | None:
        """Idempotent retry: the same signed event again returns the original receipt."""
        used = view.get(nonce_key(signed.event.nonce))
        if used is None or used["event_id"] != signed.event_id:
            return None  # unused nonce, or a replay the rules will refuse
        if used["index"] >= size:  # written by this very batch
            raise Conflict("duplicate-in-batch", f"event {signed.event_id} is twice "
                           f"in one batch (first at index {used['index']})")
        idx, leaf_hash, event_id, ledger_time = x.one(_ENTRY_AT, (used["index"],))
        (note,) = x.one(_FIRST_CHECKPOINT_AFTER, (idx,))
        return AppendResult(int(idx), blob(leaf_hash), str(event_id), int(ledger_time),
                            str(note), dict(used.get("result", {})), duplicate=True)

    def _check_genesis_origin(self, signed: SignedEvent) -> None:
        assert self.signer is not None  # noqa: S101 - checked by append_many
        if signed.event.origin != self.signer.name:
            raise InvalidInput(f"the log key is named {self.signer.name!r} but the genesis "
                               f"origin is {signed.event.origin!r}")

    def _checkpoint(self, frontier: merkle.Frontier, map_root: bytes) -> Checkpoint:
        assert self.signer is not None  # noqa: S101 - checked by append_many
        return Checkpoint(self.signer.name, frontier.size, frontier.root(),
                          (vmap.extension_line(map_root),))

    def _load_frontier(self, x: Exec, size: int) -> merkle.Frontier:
        with self._lock:
            cached = self._frontier
        if cached is not None and cached.size == size:
            return cached.copy()
        plan = merkle.root_plan(size)
        found = _nodes(x, plan)
        return merkle.Frontier(size, [found[n] for n in plan])

    # ---- reads --------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Exec]:
        """One read snapshot, on the DBAPI cursor of a pooled reader connection.

        On SQLite: ``BEGIN`` (deferred: a WAL snapshot that never blocks a writer) and
        the constant statements straight on ``sqlite3``; SQLAlchemy Core's statement,
        result and pool-event machinery cost several times the read itself (a proof
        took 130 µs through Core). On PostgreSQL: a Core connection in REPEATABLE READ,
        so every statement sees the same snapshot. A driver error is one sentence
        (:func:`describe_database_error`)."""
        if self.reader.dialect.name != "sqlite":
            try:
                with self.reader.connect() as conn:
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                    conn.execute(_HEAD)  # begin the read transaction
                    yield Exec.of(conn)  # psycopg's own errors from here on
            except self._dbapi.Error as exc:
                raise describe_database_error(exc, self.url) from None
            return
        raw = self.reader.raw_connection()
        try:
            x = Exec(raw.driver_connection, pg=False)
            try:
                x.run(_BEGIN)
            except self._dbapi.Error as exc:
                raise describe_database_error(exc, self.url) from None
            try:
                yield x
            except self._dbapi.Error as exc:
                raise describe_database_error(exc, self.url) from None
            finally:
                with contextlib.suppress(self._dbapi.Error):
                    x.run(_ROLLBACK)
        finally:
            raw.close()  # back to the pool

    def size(self) -> int:
        with self._reading() as x:
            return int(x.one(_SIZE)[0])

    def entry(self, index: int) -> StoredEntry:
        with self.reader.connect() as conn:
            row = conn.execute(sa.select(t.entries).where(t.entries.c.idx == index)).first()
        if row is None:
            raise NotFound(f"no log entry at index {index}")
        return stored_entry(row.idx, row.leaf, row.leaf_hash, row.ledger_time)

    def entries(self, start: int = 0, end: int | None = None,
                page: int = 2000) -> Iterator[StoredEntry]:
        """Entries in index order, read in pages (constant memory over huge logs)."""
        nxt = start
        while end is None or nxt < end:
            q = sa.select(t.entries).where(t.entries.c.idx >= nxt)
            if end is not None:
                q = q.where(t.entries.c.idx < end)
            with self.reader.connect() as conn:
                rows = conn.execute(q.order_by(t.entries.c.idx).limit(page)).all()
            if not rows:
                return
            for row in rows:
                yield stored_entry(row.idx, row.leaf, row.leaf_hash, row.ledger_time)
            nxt = rows[-1].idx + 1

    def entries_at(self, indices: Sequence[int]) -> list[StoredEntry]:
        if not indices:
            return []
        wanted = sorted({int(i) for i in indices})
        with self._reading() as x:
            rows = x.all(_ENTRIES_AT, (wanted,) if x.pg else (json.dumps(wanted),))
        found = {int(idx): stored_entry(idx, leaf, leaf_hash, ledger_time)
                 for idx, leaf, leaf_hash, ledger_time in rows}
        missing = [i for i in indices if i not in found]
        if missing:
            raise NotFound(f"no log entry at index {missing[0]}")
        return [found[i] for i in indices]

    def find_event(self, event_id: str) -> int | None:
        with self.reader.connect() as conn:
            return conn.execute(sa.select(t.entries.c.idx)
                                .where(t.entries.c.event_id == event_id)).scalar_one_or_none()

    def state(self, key: str) -> dict[str, Any] | None:
        """A state record, VERIFIED against the state-map root signed in the latest
        checkpoint when this store knows the log key (a writer, or a reader opened with
        ``verify_key``): an edited row raises :class:`IntegrityFault` naming the key
        instead of feeding a decision. Otherwise the raw cache (:meth:`cached_state`)."""
        if self._verify_key is None or not vmap.mapped(key):
            return self.cached_state(key)
        with self._lock:
            cache = self._rmap
        with self._reading() as x:  # one snapshot for the checkpoint and the bucket
            record, cache = verified_record(x, key, self._signed_map_root, cache)
        with self._lock:
            self._rmap = cache
        return record

    def _signed_map_root(self, note: str | None) -> bytes | None:
        """The state-map root of the latest checkpoint, its signature checked."""
        return None if note is None else vmap.root_of(self._verified(note).extensions)

    def cached_state(self, key: str) -> dict[str, Any] | None:
        """The state table's row as stored: a cache, for comparing against proofs."""
        with self._reading() as x:
            row = x.one(STATE_VALUE, (key,))
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def state_items(self, prefix: str, after: str = "",
                    page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records whose key starts with ``prefix`` and sorts after ``after``, in key
        order, read lazily in keyset pages (a caller that stops early stops reading)."""
        nxt = after
        while True:
            with self.reader.connect() as conn:
                rows = conn.execute(sa.select(t.state.c.key, t.state.c.value)
                                    .where(t.state.c.key.startswith(prefix, autoescape=True),
                                           t.state.c.key >= prefix, t.state.c.key > nxt)
                                    .order_by(t.state.c.key).limit(page)).all()
            for key, value in rows:
                yield key, json.loads(value)
            if len(rows) < page:
                return
            nxt = rows[-1][0]

    def refs(self, ref: str) -> list[int]:
        with self._reading() as x:
            return [int(row[0]) for row in x.all(_REFS, (ref,))]

    def latest_checkpoint(self) -> str | None:
        with self.reader.connect() as conn:
            return conn.execute(sa.select(t.checkpoints.c.note)
                                .order_by(t.checkpoints.c.size.desc()).limit(1)
                                ).scalar_one_or_none()

    def checkpoints(self, after: int = 0, page: int = 1000) -> Iterator[tuple[int, str]]:
        """Checkpoints with tree size > ``after``, oldest first, read lazily in pages."""
        nxt = after
        while True:
            with self.reader.connect() as conn:
                rows = conn.execute(sa.select(t.checkpoints.c.size, t.checkpoints.c.note)
                                    .where(t.checkpoints.c.size > nxt)
                                    .order_by(t.checkpoints.c.size).limit(page)).all()
            for size, note in rows:
                yield int(size), str(note)
            if len(rows) < page:
                return
            nxt = int(rows[-1][0])

    def _fetch(self, plan: Sequence[merkle.NodeId], size: int) -> dict[merkle.NodeId, bytes]:
        """The planned nodes, read in one snapshot together with the size check."""
        with self._reading() as x:
            current = int(x.one(_SIZE)[0])
            if size > current:
                raise NotFound(f"the log has {current} entries, not {size}")
            return _nodes(x, plan)

    def root(self, size: int) -> bytes:
        return merkle.root_at(size, self._fetch(merkle.root_plan(size), size))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        plan = merkle.inclusion_plan(index, size)
        return merkle.inclusion_proof(index, size, self._fetch(plan, size))

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        plan = merkle.consistency_plan(old, new)
        return merkle.consistency_proof(old, new, self._fetch(plan, new))

    # ---- state map and checkpoints at a size ----------------------------------------

    def map_proof(self, key: str, size: int) -> vmap.MapProof:
        """Proof of ``key``'s value (or absence) in the state map as of tree ``size``."""
        with self.reader.connect() as conn:
            current = int(conn.execute(_HEAD).one()[0])
            if size > current:
                raise NotFound(f"the log has {current} entries, not {size}")
            return map_proof(Exec.of(conn), key, size)

    def bundle(self, *, artefact_id: str | None = None, sha256: str | None = None,
               size: int | None = None) -> tuple[Bundle, list[Fault]]:
        from ledger.store.bundle_build import build_bundle

        return build_bundle(self, artefact_id=artefact_id, sha256=sha256, size=size)

    def checkpoint_at(self, size: int) -> str:
        """The log's signed checkpoint of exactly ``size`` entries."""
        with self.reader.connect() as conn:
            note = conn.execute(_CHECKPOINT_AT, {"size": size}).scalar_one_or_none()
        if note is None:
            raise NotFound(f"the log has no checkpoint of size {size}")
        return str(note)

    # ---- witness cosignatures (C2SP tlog-cosignature; issue #8 item 4) -------------
    # Kept apart from the append path: a cosignature is checked with the witness key it
    # names, over the stored checkpoint's text, and appended to ``cosignatures`` (an
    # append-only table). The log itself never changes.

    def _witness_note(self, size: int) -> str:
        with self.reader.connect() as conn:
            note = conn.execute(sa.select(t.checkpoints.c.note)
                                .where(t.checkpoints.c.size == size)).scalar_one_or_none()
        if note is None:
            raise NotFound(f"the log has no checkpoint of size {size}")
        return str(note)

    def add_cosignature(self, size: int, witness_key: str, line: str) -> str:
        """Store ``witness_key``'s cosignature ``line`` over the checkpoint of ``size``
        and return the stored line. Idempotent: if that witness already cosigned that
        size, its FIRST line is kept and returned. NotFound for an unknown size;
        InvalidInput / VerificationError for a malformed or invalid cosignature, or when
        the checkpoint already carries ``MAX_WITNESSES`` witnesses."""
        from ledger.core.witness import MAX_WITNESSES, check_cosignature

        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput("a checkpoint size must be a non-negative integer")
        canonical_line = check_cosignature(self._witness_note(size), witness_key, line)
        c = t.cosignatures.c
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # serialise writers per checkpoint
                    conn.execute(sa.select(t.checkpoints.c.size)
                                 .where(t.checkpoints.c.size == size).with_for_update())
                stored = conn.execute(sa.select(c.line).where(
                    c.size == size, c.witness == witness_key)).scalar_one_or_none()
                if stored is not None:
                    return str(stored)
                count = int(conn.execute(sa.select(sa.func.count()).select_from(
                    t.cosignatures).where(c.size == size)).scalar_one())
                if count >= MAX_WITNESSES:
                    raise InvalidInput(f"the checkpoint of size {size} already carries "
                                       f"{count} witness cosignatures, the most kept")
                conn.execute(sa.insert(t.cosignatures), [
                    {"size": size, "witness": witness_key, "line": canonical_line}])
        except OperationalError as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                raise Backpressure("the ledger is busy; retry shortly", 1.0) from exc
            raise UpstreamError(f"database error while storing a cosignature: "
                                f"{exc.orig}") from exc
        except DBAPIError as exc:
            raise UpstreamError(f"database error while storing a cosignature: "
                                f"{exc.orig}") from exc
        return canonical_line

    def cosignatures(self, size: int) -> dict[str, str]:
        """The stored cosignature lines of the checkpoint of ``size``, by witness key."""
        c = t.cosignatures.c
        with self.reader.connect() as conn:
            rows = conn.execute(sa.select(c.witness, c.line).where(c.size == size)
                                .order_by(c.witness)).all()
        return {str(w): str(line) for w, line in rows}

    def cosigned_note(self, size: int) -> str:
        """The checkpoint of ``size`` with every stored cosignature line appended."""
        from ledger.core.checkpoint import add_cosignature

        note = self._witness_note(size)
        for line in self.cosignatures(size).values():
            note = add_cosignature(note, line)
        return note

    def witnessed_checkpoint(self, min_witnesses: int = 1) -> tuple[int, str] | None:
        """The newest checkpoint with at least ``min_witnesses`` cosignatures, as
        ``(size, cosigned note)``; None if there is none."""
        if isinstance(min_witnesses, bool) or not isinstance(min_witnesses, int) \
                or min_witnesses < 1:
            raise InvalidInput("min_witnesses must be a positive integer")
        c = t.cosignatures.c
        with self.reader.connect() as conn:
            size = conn.execute(sa.select(c.size).group_by(c.size)
                                .having(sa.func.count() >= min_witnesses)
                                .order_by(c.size.desc()).limit(1)).scalar_one_or_none()
        return None if size is None else (int(size), self.cosigned_note(int(size)))
