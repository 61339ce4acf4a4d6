"""Feed the pure :func:`ledger.core.audit.audit` straight from the SQL tables.

Rows are read raw (with the driver's own cursor, inside SQLAlchemy's transaction), never
through ``head.size`` or the store's caches, so a deleted, truncated or reordered row is
what the audit sees. Everything is read inside ONE read transaction, so the entries,
checkpoints, Merkle nodes and state come from the same snapshot even while writers keep
appending:

* SQLite: the store's reader engine, whose transactions start with a plain (deferred)
  ``BEGIN``; in WAL mode that is a snapshot that never blocks writers.
* PostgreSQL: a ``REPEATABLE READ`` read-only transaction.

Entries and nodes are read in keyset pages, so memory stays that of the audit itself.

Event signatures are checked in worker processes (:class:`ledger.parallel_verify.VerifyPool`,
one per core) while this process reads, parses and replays; the report is the same as
with one process (see ``ledger.core.audit``). SQLite's ``integrity_check`` runs in a thread
beside the audit (SQLite works without the GIL): its verdict still comes first.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Connection

from ledger.core.audit import AuditReport, NodeRow, Progress, audit
from ledger.parallel_verify import VerifyPool, available_cores, idle_cores
from ledger.store.sql import SqlStore, blob, damage_message, integrity_check

PAGE = 5000
#: Logs with fewer entries are audited in one process: starting the workers (~0.3 s of
#: CPU each, to import the audit) costs more than they save there.
PARALLEL_MIN = 10_000


class _Raw:
    """Reads through the driver's own cursor, inside the SQLAlchemy transaction of
    ``conn`` (so the same snapshot): rows come back as plain tuples, without building a
    SQLAlchemy row for each of the ~five rows per entry the audit reads."""

    def __init__(self, conn: Connection) -> None:
        self.dbapi: Any = conn.connection.driver_connection
        self.mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"

    def pages(self, first: str, after: str, key: Callable[[tuple[Any, ...]], tuple[Any, ...]],
              ) -> Iterator[tuple[Any, ...]]:
        """Keyset pages of :data:`PAGE` rows: ``first`` reads the first page, ``after``
        (``?`` parameters) the page after the row whose ``key(row)`` it is given."""
        sql, params = first, ()
        while True:
            rows = self.all(sql + " LIMIT " + str(PAGE), params)
            yield from rows
            if len(rows) < PAGE:
                return
            sql, params = after, key(rows[-1])

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """``sql``'s rows; its parameters are written ``?`` whatever the driver."""
        cur = self.dbapi.cursor()
        try:
            cur.execute(sql if self.mark == "?" else sql.replace("?", self.mark), params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        cur = self.dbapi.cursor()
        try:
            cur.execute(sql)
            while rows := cur.fetchmany(PAGE):
                yield from rows
        finally:
            cur.close()


def entry_rows(conn: Connection) -> Iterator[tuple[int, bytes, bytes, int]]:
    """``(index, leaf, leaf_hash, ledger_time)`` in index order."""
    for idx, leaf, leaf_hash, ledger_time in _Raw(conn).pages(
            "SELECT idx, leaf, leaf_hash, ledger_time FROM entries ORDER BY idx",
            "SELECT idx, leaf, leaf_hash, ledger_time FROM entries WHERE idx > ? ORDER BY idx",
            lambda row: (row[0],)):
        yield int(idx), blob(leaf), blob(leaf_hash), int(ledger_time)


def _checkpoints(conn: Connection) -> Iterator[tuple[int, str]]:
    for size, note in _Raw(conn).pages(
            "SELECT size, note FROM checkpoints ORDER BY size",
            "SELECT size, note FROM checkpoints WHERE size > ? ORDER BY size",
            lambda row: (row[0],)):
        yield int(size), str(note)


def _nodes(conn: Connection) -> Callable[[], Iterator[NodeRow]]:
    def read() -> Iterator[NodeRow]:
        for level, idx, value in _Raw(conn).pages(
                "SELECT level, idx, hash FROM merkle_nodes ORDER BY level, idx",
                "SELECT level, idx, hash FROM merkle_nodes WHERE level > ? OR "
                "(level = ? AND idx > ?) ORDER BY level, idx",
                lambda row: (row[0], row[0], row[1])):
            yield int(level), int(idx), blob(value)

    return read


def _state(conn: Connection) -> Iterator[tuple[str, object]]:
    for key, value in _Raw(conn).pages(
            "SELECT key, value FROM state ORDER BY key",
            "SELECT key, value FROM state WHERE key > ? ORDER BY key",
            lambda row: (row[0],)):
        yield str(key), str(value)  # JSON text: the audit canonicalises and compares


#: The newest row per key of a versioned table: SQLite takes the other columns of a bare
#: ``max()`` from the row with the maximum (one pass in key order), PostgreSQL has
#: ``DISTINCT ON``; elsewhere a correlated subquery (4x slower on PostgreSQL).
_NEWEST = {
    "sqlite": {
        "state": "SELECT key, value, max(size) FROM state_log GROUP BY key",
        "map": "SELECT level, idx, hash, max(size) FROM map_nodes_v GROUP BY level, idx",
    },
    "postgresql": {
        "state": "SELECT DISTINCT ON (key) key, value FROM state_log ORDER BY key, size DESC",
        "map": "SELECT DISTINCT ON (level, idx) level, idx, hash FROM map_nodes_v "
               "ORDER BY level, idx, size DESC",
    },
    "": {
        "state": "SELECT s.key, s.value FROM state_log AS s WHERE s.size = "
                 "(SELECT max(x.size) FROM state_log AS x WHERE x.key = s.key)",
        "map": "SELECT m.level, m.idx, m.hash FROM map_nodes_v AS m WHERE m.size = "
               "(SELECT max(x.size) FROM map_nodes_v AS x WHERE x.level = m.level "
               "AND x.idx = m.idx)",
    },
}


def _newest(conn: Connection, table: str) -> str:
    return _NEWEST.get(conn.dialect.name, _NEWEST[""])[table]


def state_history_rows(conn: Connection) -> Iterator[tuple[str, object]]:
    """The newest value of each key in the versioned state (``state_log``)."""
    for row in _Raw(conn).stream(_newest(conn, "state")):
        yield str(row[0]), str(row[1])


def map_node_rows(conn: Connection) -> Iterator[NodeRow]:
    """The newest version of each stored state-map node (``map_nodes_v``)."""
    for row in _Raw(conn).stream(_newest(conn, "map")):
        yield int(row[0]), int(row[1]), blob(row[2])


class _Integrity(threading.Thread):
    """SQLite's ``integrity_check`` of the file, beside the audit."""

    def __init__(self, store: SqlStore) -> None:
        super().__init__(name="audit-integrity-check", daemon=True)
        self.store = store
        self.problems: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.problems = integrity_check(self.store.reader)
        except BaseException as exc:  # re-raised by the caller
            self.error = exc

    def result(self) -> list[str]:
        self.join()
        if self.error is not None:
            raise self.error
        return self.problems


def audit_store(store: SqlStore, trusted_checkpoint: str | None = None,
                progress: Progress | None = None,
                log_verifier_key: str | None = None,
                genesis_log_keys: Collection[str] | None = None,
                workers: int | None = None) -> AuditReport:
    """Audit the ledger in ``store`` (steps 1-9 of :mod:`ledger.core.audit`), all checks on.

    The log key is ``log_verifier_key`` when given (a client's pinned key), else the
    one recorded in the genesis entry; the genesis key must equal the given one. If the
    store was opened with a log key (``store.signer``), that key must match too.
    ``workers``: processes for the stateless part of the audit, signatures included
    (default: one per core, for logs of :data:`PARALLEL_MIN` entries or more, when the
    load average leaves at least half a core idle; 0 or 1: none, all in this process).
    """
    signing = store.signer.verifier_key if store.signer is not None else None
    given = log_verifier_key if log_verifier_key is not None else signing
    # The database's own check comes first: a damaged SQLite file can read "fine" in the
    # rows the audit happens to touch (e.g. a corrupted alembic_version page). It runs
    # beside the audit; when it finds damage, that is the report, whatever the audit says.
    integrity = _Integrity(store)
    integrity.start()
    try:
        report = _audit(store, given, trusted_checkpoint, progress, genesis_log_keys,
                        _default_workers() if workers is None else workers)
    except BaseException:
        problems = integrity.result()
        if problems:
            return _damaged(store, problems)
        raise
    problems = integrity.result()
    if problems:
        return _damaged(store, problems)
    if report.ok and signing is not None and signing != given:
        return replace(report, ok=False, first_bad_index=0, kind="checkpoint",
                       detail="the store signs checkpoints with a log key that differs from "
                       "the pinned log key")
    return report


def _default_workers() -> int:
    """One worker per core when at least half a core is idle, else none: on a machine
    busy with other work the workers cannot run beside this process, and their overhead
    (every leaf is decoded twice, ~15 % more CPU in all) makes the audit slower."""
    return available_cores() if idle_cores() >= 0.5 else 0


def _damaged(store: SqlStore, problems: list[str]) -> AuditReport:
    return AuditReport(ok=False, entries_checked=0, first_bad_index=None, kind="database",
                       detail=damage_message(store.reader.url.database, problems),
                       tree_size=0, root_hex="")


def _audit(store: SqlStore, given: str | None, trusted_checkpoint: str | None,
           progress: Progress | None, genesis_log_keys: Collection[str] | None,
           workers: int) -> AuditReport:
    with store.reader.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
        with conn.begin(), contextlib.ExitStack() as stack:
            raw = _Raw(conn)
            ((last,),) = raw.all("SELECT max(idx) FROM entries")
            pool = None
            if workers > 1 and last is not None and int(last) + 1 >= PARALLEL_MIN:
                pool = stack.enter_context(VerifyPool(workers, start_after=0))
                pool.start(preload=("ledger.core.audit",))
            return audit(entry_rows(conn), _checkpoints(conn), log_verifier_key=given,
                         stored_nodes=_nodes(conn), state=_state(conn),
                         state_history=state_history_rows(conn), stored_map=map_node_rows(conn),
                         checkpoint_sizes={int(n) for (n,) in raw.all(
                             "SELECT size FROM checkpoints")},
                         trusted_checkpoint=trusted_checkpoint, progress=progress,
                         genesis_log_keys=genesis_log_keys,
                         batch_checker=None if pool is None else pool.check_leaves)
