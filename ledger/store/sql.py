"""SQL backend (SQLite by default, PostgreSQL supported) on SQLAlchemy 2 Core.

Writers are serialised: ``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` on the
single ``head`` row on PostgreSQL. Inside that lock the custody rules run against the
``state`` table, the entry, its new Merkle nodes, refs and state writes are inserted,
and a checkpoint over the new root is signed, all in one transaction. Only after the
commit returns is anything acknowledged.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger import merkle, vmap
from ledger.bundle import Bundle, Fault
from ledger.canonical import canonical
from ledger.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from ledger.errors import (
    Backpressure,
    Conflict,
    IntegrityFault,
    InvalidInput,
    LedgerError,
    NotFound,
    UpstreamError,
)
from ledger.events import Entry, SignedEvent
from ledger.note import NoteSigner, split_note
from ledger.rules import Context, Record, apply
from ledger.store import schema as t
from ledger.store.base import AppendResult, StoredEntry
from ledger.store.sqlmap import MapCache, map_proof

Clock = Callable[[], int]
MIGRATIONS = Path(__file__).parent / "migrations"
#: Most entries one group commit takes (bounded queue, threat T11).
MAX_BATCH = 1000


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
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise InvalidInput(f"unsupported database URL {url.split(':', 1)[0]!r}: "
                       "use sqlite:///PATH or postgresql://…")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic is the only schema source)."""
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


def describe_database_error(exc: DBAPIError, url: str | None = None) -> LedgerError:
    """One sentence for a database failure: a damaged SQLite file (IntegrityFault, exit
    1), a file that cannot be opened or written (InvalidInput, exit 2), a busy database
    (Backpressure) or any other backend failure (UpstreamError)."""
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


# Statements are built once: constructing SQLAlchemy expressions on every append cost
# more than the commit's fsync. Execution still goes through SQLAlchemy Core.
_NONCE_ENTRY = sa.select(t.entries).where(t.entries.c.idx == sa.bindparam("idx"))
_HEAD = sa.select(t.head.c.size, t.head.c.last_time).where(t.head.c.id == 1)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_INSERT_ENTRIES = sa.insert(t.entries)
_INSERT_NODES = sa.insert(t.nodes)
_INSERT_REFS = sa.insert(t.refs)
_INSERT_CHECKPOINT = sa.insert(t.checkpoints)
_UPDATE_HEAD = sa.update(t.head).where(t.head.c.id == 1).values(
    size=sa.bindparam("new_size"), last_time=sa.bindparam("new_time"))
_FIRST_CHECKPOINT_AFTER = (sa.select(t.checkpoints.c.note)
                           .where(t.checkpoints.c.size > sa.bindparam("idx"))
                           .order_by(t.checkpoints.c.size).limit(1))


_NODES_SQLITE = sa.text(
    "SELECT m.level, m.idx, m.hash FROM json_each(:plan) AS j JOIN merkle_nodes AS m "
    "ON m.level = json_extract(j.value, '$[0]') AND m.idx = json_extract(j.value, '$[1]')")
_NODES_PG = sa.text(
    "SELECT m.level, m.idx, m.hash FROM unnest(CAST(:levels AS smallint[]), "
    "CAST(:idxs AS bigint[])) AS j(level, idx) JOIN merkle_nodes AS m "
    "ON m.level = j.level AND m.idx = j.idx")
#: The same SQL on SQLite (>= 3.24) and PostgreSQL. A constant text() statement stays in
#: SQLAlchemy's compiled cache; the dialect ``on_conflict_do_update`` construct does not.
_UPSERT_STATE = sa.text(
    "INSERT INTO state (key, value, idx, bucket) VALUES (:key, :value, :idx, :bucket) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, idx = excluded.idx")
_LATEST_CHECKPOINT = (sa.select(t.checkpoints.c.note)
                      .order_by(t.checkpoints.c.size.desc()).limit(1))
_CHECKPOINT_AT = sa.select(t.checkpoints.c.note).where(
    t.checkpoints.c.size == sa.bindparam("size"))


def blob(value: Any) -> bytes:
    """A BLOB column as bytes. A hand-edited SQLite row can hold TEXT where a BLOB was
    (``replace()`` on a BLOB returns TEXT): its bytes are then the UTF-8 text, which the
    hash checks reject like any other edit, instead of crashing the reader."""
    return value.encode() if isinstance(value, str) else bytes(value)


def stored_entry(idx: Any, leaf: Any, leaf_hash: Any, ledger_time: Any) -> StoredEntry:
    return StoredEntry(int(idx), blob(leaf), blob(leaf_hash), int(ledger_time))


class _SqlView:
    """The rules' StateView over the ``state`` table, with the batch's pending writes.

    A mapped record is read with its whole bucket, verified against the state-map root
    signed in the latest checkpoint (:class:`ledger.store.sqlmap.MapCache`): a state row
    edited outside the log is refused, never used. Unmapped bookkeeping (``nonce/``) is
    read directly; a replayed event still fails on the unique event id."""

    def __init__(self, conn: Connection, cache: MapCache | None = None) -> None:
        self.conn = conn
        self.cache = cache
        self.pending: dict[str, Record] = {}
        self._read: dict[str, Record | None] = {}
        # The hot read goes straight to the DBAPI cursor of this same connection (and so
        # this same transaction): SQLAlchemy's per-execute overhead was most of the
        # append cost. Bound parameter only; the SQL text is constant.
        self._cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        self._sql = f"SELECT value FROM state WHERE key = {mark}"  # noqa: S608 - constant

    def get(self, key: str) -> Record | None:
        if key in self.pending:
            return self.pending[key]
        if self.cache is not None and vmap.mapped(key):
            return self.cache.bucket(self.conn, vmap.bucket_of(key)).get(key)
        if key in self._read:
            return self._read[key]
        self._cursor.execute(self._sql, (key,))
        row = self._cursor.fetchone()
        value = None if row is None else row[0]
        record = None if value is None else dict(json.loads(value))
        self._read[key] = record
        return record


class SqlStore:
    """A ledger on one SQL database. Thread-safe; one instance per process is enough."""

    def __init__(self, engine: Engine, *, signer: NoteSigner | None, clock: Clock,
                 reader: Engine | None = None, verify_key: str | None = None) -> None:
        self.engine = engine
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

    def close(self) -> None:
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
            with self.engine.begin() as conn:
                return self._append_locked(conn, batch)
        except OperationalError as exc:
            self._frontier = self._map = None
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                raise Backpressure("the ledger is busy; retry shortly", 1.0) from exc
            raise UpstreamError(f"database error while appending: {exc.orig}") from exc
        except DBAPIError as exc:
            self._frontier = self._map = None
            raise UpstreamError(f"database error while appending: {exc.orig}") from exc
        except BaseException:
            self._frontier = self._map = None
            raise

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
        try:
            with self.engine.begin() as conn:
                size = conn.execute(_HEAD).one()[0]
                newest = conn.execute(sa.select(sa.func.max(t.fabric_blocks.c.number))).scalar()
                if newest is not None and block <= newest:
                    return int(size)  # another process took this block in first
                if block != (0 if newest is None else newest + 1):
                    raise IntegrityFault(f"block {block} follows block {newest} in this log: "
                                         "blocks must be taken in one by one, in order",
                                         kind="divergence")
                if batch:
                    outcomes = self._append_locked(conn, [e for e, _ in batch],
                                                   [ts for _, ts in batch])
                    for (signed, _), outcome in zip(batch, outcomes, strict=True):
                        if isinstance(outcome, LedgerError) or outcome.duplicate:
                            why = outcome if isinstance(outcome, LedgerError) else "a duplicate"
                            raise IntegrityFault(
                                f"block {block}: event {signed.event_id} is VALID on the chain "
                                f"but this log refuses it ({why}); the derived log and the "
                                "chain disagree", kind="divergence")
                    size += len(batch)
                conn.execute(sa.insert(t.fabric_blocks),
                             {"number": block, "hash": block_hash, "size": size})
                return int(size)
        except DBAPIError as exc:
            self._frontier = self._map = None
            raise describe_database_error(exc) from None
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
            note = conn.execute(_FIRST_CHECKPOINT_AFTER, {"idx": row.idx}).scalar_one()
        nonce = self.state("nonce/" + Entry.from_leaf(blob(row.leaf)).signed.event.nonce)
        return AppendResult(row.idx, blob(row.leaf_hash), row.event_id, row.ledger_time,
                            str(note), dict((nonce or {}).get("result", {})),
                            duplicate=duplicate)

    def _append_locked(self, conn: Connection, batch: Sequence[SignedEvent],
                       times: Sequence[int] | None = None) -> list[AppendResult | LedgerError]:
        """Apply ``batch`` in order. The ledger time is the clock's, or with ``times`` the
        given time of each event, never below the time of the entry before it."""
        query = _HEAD_FOR_UPDATE if conn.dialect.name == "postgresql" else _HEAD
        size, last_time = conn.execute(query).one()
        frontier = self._load_frontier(conn, size)
        cache = self._map_cache(conn, size)
        view = _SqlView(conn, cache)
        now = max(self.clock(), last_time) if times is None else last_time
        # One outcome per event; accepted ones are filled in once the checkpoint is signed.
        outcomes: list[AppendResult | LedgerError | None] = []
        accepted: list[tuple[int, bytes, str, dict[str, Any]]] = []  # slot, hash, id, result
        rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        ref_rows: list[dict[str, Any]] = []
        for n, signed in enumerate(batch):
            index = size + len(accepted)
            if times is not None:
                now = max(times[n], now)
            try:
                dup = self._duplicate(conn, view, signed, size)
                if dup is not None:
                    outcomes.append(dup)
                    continue
                if index == 0:
                    self._check_genesis_origin(signed)
                leaf = Entry(index, now, signed).leaf_bytes()
                leaf_hash = merkle.leaf_hash(leaf)
                effects = apply(view, signed, Context(index, now, leaf_hash))
            except LedgerError as exc:
                outcomes.append(exc)
                continue
            view.pending.update(effects.writes)
            accepted.append((len(outcomes), leaf_hash, signed.event_id, effects.result))
            outcomes.append(None)
            rows.append({"idx": index, "leaf": leaf, "leaf_hash": leaf_hash,
                         "event_id": signed.event_id, "ledger_time": now})
            node_rows += [{"level": lv, "idx": i, "hash": h}
                          for lv, i, h in frontier.append(leaf_hash)]
            ref_rows += [{"ref": r, "idx": index} for r in dict.fromkeys(effects.refs)]
        if accepted:
            new_size = size + len(accepted)
            encoded = {k: canonical(v).decode() for k, v in view.pending.items()}
            map_root = cache.commit(conn, view.pending, new_size, encoded)
            note = self._checkpoint(frontier, map_root)
            conn.execute(_INSERT_ENTRIES, rows)
            conn.execute(_INSERT_NODES, node_rows)
            if ref_rows:
                conn.execute(_INSERT_REFS, ref_rows)
            self._write_state(conn, encoded, new_size - 1)
            conn.execute(_INSERT_CHECKPOINT, [{"size": new_size, "note": note}])
            conn.execute(_UPDATE_HEAD, {"new_size": new_size, "new_time": now})
            for n, (slot, leaf_hash, event_id, result) in enumerate(accepted):
                outcomes[slot] = AppendResult(size + n, leaf_hash, event_id,
                                              rows[n]["ledger_time"], note, result)
        self._frontier, self._map = frontier, cache
        if accepted:  # the checkpoint this process signed needs no signature check later
            self._checked = (note, Checkpoint.parse(split_note(note)[0]))
        return [o for o in outcomes if o is not None]

    def _map_cache(self, conn: Connection, size: int) -> MapCache:
        """The verified state-map cache for this batch, checked against the latest
        checkpoint's signature and its state-map root."""
        if size == 0:
            return MapCache(None)
        note = conn.execute(_CHECKPOINT_AT, {"size": size}).scalar_one_or_none()
        if note is None:
            raise IntegrityFault(f"the log has {size} entries but no checkpoint of that size; "
                                 "writes are refused (run 'custody audit')", kind="checkpoint")
        cp = self._verified(str(note))
        if cp.size != size:
            raise IntegrityFault(f"the latest checkpoint covers {cp.size} entries, the log has "
                                 f"{size}; writes are refused", kind="checkpoint")
        root = vmap.root_of(cp.extensions)
        cached = self._map
        if cached is not None and root is not None and cached.root == root:
            return cached
        cache = MapCache(root)
        if root is None:  # a ledger from before the state map: map its state once
            cache.bootstrap(conn, size)
        return cache

    def _verified(self, note: str) -> Checkpoint:
        """``note`` verified with the log key, remembered for the next call (the latest
        checkpoint is the same note until the next append; a signature check per append
        or per read cost as much as the commit)."""
        known = self._checked
        if known is not None and known[0] == note:
            return known[1]
        assert self._verify_key is not None  # noqa: S101 - checked by the callers
        try:
            cp = verify_checkpoint(note, self._verify_key)
            vmap.root_of(cp.extensions)
        except LedgerError as exc:
            raise IntegrityFault(f"the latest checkpoint does not verify with the log key "
                                 f"({exc}): the ledger's tables cannot be trusted and writes "
                                 "are refused", kind="checkpoint") from None
        self._checked = (note, cp)
        return cp

    def _duplicate(self, conn: Connection, view: _SqlView, signed: SignedEvent,
                   size: int) -> AppendResult | None:
        """Idempotent retry: the same signed event again returns the original receipt."""
        used = view.get("nonce/" + signed.event.nonce)
        if used is None or used["event_id"] != signed.event_id:
            return None  # unused nonce, or a replay the rules will refuse
        if used["index"] >= size:  # written by this very batch
            raise Conflict("duplicate-in-batch", f"event {signed.event_id} is twice "
                           f"in one batch (first at index {used['index']})")
        row = conn.execute(_NONCE_ENTRY, {"idx": used["index"]}).one()
        note = conn.execute(_FIRST_CHECKPOINT_AFTER, {"idx": row.idx}).scalar_one()
        return AppendResult(row.idx, row.leaf_hash, row.event_id, row.ledger_time, note,
                            dict(used.get("result", {})), duplicate=True)

    def _check_genesis_origin(self, signed: SignedEvent) -> None:
        assert self.signer is not None  # noqa: S101 - checked by append_many
        if signed.event.origin != self.signer.name:
            raise InvalidInput(f"the log key is named {self.signer.name!r} but the genesis "
                               f"origin is {signed.event.origin!r}")

    def _checkpoint(self, frontier: merkle.Frontier, map_root: bytes) -> str:
        assert self.signer is not None  # noqa: S101 - checked by append_many
        cp = Checkpoint(self.signer.name, frontier.size, frontier.root(),
                        (vmap.extension_line(map_root),))
        return sign_checkpoint(cp, self.signer)

    def _write_state(self, conn: Connection, encoded: dict[str, str], index: int) -> None:
        if encoded:
            conn.execute(_UPSERT_STATE,
                         [{"key": k, "value": v, "idx": index,
                           "bucket": vmap.bucket_of(k) if vmap.mapped(k) else None}
                          for k, v in encoded.items()])

    def _load_frontier(self, conn: Connection, size: int) -> merkle.Frontier:
        with self._lock:
            cached = self._frontier
        if cached is not None and cached.size == size:
            return cached.copy()
        plan = merkle.root_plan(size)
        found = self._nodes(conn, plan)
        return merkle.Frontier(size, [found[n] for n in plan])

    # ---- reads --------------------------------------------------------------------

    def size(self) -> int:
        with self.reader.connect() as conn:
            return int(conn.execute(sa.select(t.head.c.size)).scalar_one())

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
        with self.reader.connect() as conn:
            rows = conn.execute(sa.select(t.entries)
                                .where(t.entries.c.idx.in_(list(indices)))).all()
        found = {row.idx: stored_entry(row.idx, row.leaf, row.leaf_hash, row.ledger_time)
                 for row in rows}
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
        with self.reader.connect() as conn:
            if conn.dialect.name == "postgresql":  # one snapshot for checkpoint + bucket
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            note = conn.execute(_LATEST_CHECKPOINT).scalar_one_or_none()
            root = self._signed_map_root(None if note is None else str(note))
            if root is None:  # an empty ledger, or one from before the state map
                return self.cached_state(key)
            with self._lock:
                cache = self._rmap
            if cache is None or cache.root != root:
                cache = MapCache(root)
            record = cache.bucket(conn, vmap.bucket_of(key)).get(key)
        with self._lock:
            self._rmap = cache
        return record

    def _signed_map_root(self, note: str | None) -> bytes | None:
        """The state-map root of the latest checkpoint, its signature checked."""
        return None if note is None else vmap.root_of(self._verified(note).extensions)

    def cached_state(self, key: str) -> dict[str, Any] | None:
        """The state table's row as stored: a cache, for comparing against proofs."""
        if self.reader.dialect.name == "sqlite":
            # One statement is its own snapshot: skip the BEGIN/ROLLBACK round trip of a
            # Core transaction (this read runs several times per API request).
            raw = self.reader.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("SELECT value FROM state WHERE key = ?", (key,))
                row = cur.fetchone()
                cur.close()
            finally:
                raw.close()  # back to the pool
            return None if row is None else dict(json.loads(row[0]))
        with self.reader.connect() as conn:
            return _SqlView(conn).get(key)

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
        with self.reader.connect() as conn:
            return list(conn.execute(sa.select(t.refs.c.idx).where(t.refs.c.ref == ref)
                                     .order_by(t.refs.c.idx)).scalars())

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

    def _nodes(self, conn: Connection, plan: Sequence[merkle.NodeId]) -> dict[merkle.NodeId,
                                                                                bytes]:
        """Fetch the planned perfect-subtree nodes in ONE constant statement: the whole plan
        is one bound parameter, joined to ``merkle_nodes`` on its primary key (building an
        OR expression per call cost ~4 ms; a row-value IN made SQLite scan the table)."""
        if not plan:
            return {}
        if conn.dialect.name == "postgresql":
            params: dict[str, Any] = {"levels": [lv for lv, _ in plan],
                                      "idxs": [i for _, i in plan]}
            rows = conn.execute(_NODES_PG, params).all()
        else:
            rows = conn.execute(_NODES_SQLITE, {"plan": json.dumps(list(plan))}).all()
        return {(int(lv), int(i)): blob(h) for lv, i, h in rows}

    def _fetch(self, plan: Sequence[merkle.NodeId], size: int) -> dict[merkle.NodeId, bytes]:
        """The planned nodes, read in one snapshot together with the size check."""
        with self.reader.connect() as conn:
            current = int(conn.execute(_HEAD).one()[0])
            if size > current:
                raise NotFound(f"the log has {current} entries, not {size}")
            return self._nodes(conn, plan)

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
            return map_proof(conn, key, size)

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
        from ledger.witness import MAX_WITNESSES, check_cosignature

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
        from ledger.checkpoint import add_cosignature

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
