"""An embedded ledger read over the standard library's ``sqlite3``, for quick commands.

``custody status`` reads four things: the log size, the latest checkpoint, the state
records under a few prefixes and the ``ledger`` record. Opening a :class:`SqlStore` for
that imports SQLAlchemy (by itself about nine times an interpreter start) and the
store's write path. :class:`SqliteReader` reads the same tables with the same
statements and the same verification: a mapped record is read with its whole bucket
and checked against the state-map root signed in the latest checkpoint, whose
signature is checked with the pinned log key (:func:`ledger.store.sqlmap.verified_record`),
so an edited row is an :class:`~ledger.core.errors.IntegrityFault` here as there.

It never writes, creates or migrates anything, and it serves only the plain case (a
SQLite file in a directory it may use): :meth:`SqliteReader.open` returns None for
anything else (no file, no ledger tables, a read-only directory with a write-ahead log),
and a ``sqlite3`` error while reading is the caller's cue to use the full store, which
names the problem in one sentence (:meth:`cli.context.Ctx.quick_read`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ledger.core import vmap
from ledger.core.checkpoint import Checkpoint
from ledger.store.sqlmap import (
    LATEST_NOTE,
    STATE_VALUE,
    Exec,
    MapCache,
    Sql,
    decode_record,
    signed_checkpoint,
    verified_record,
)

_TABLES = Sql("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
              "('entries', 'head', 'checkpoints', 'state', 'state_log', 'map_nodes_v')")
_SIZE = Sql("SELECT size FROM head WHERE id = 1")
_BEGIN = Sql("BEGIN")
_ROLLBACK = Sql("ROLLBACK")
_ITEMS = Sql("SELECT key, value FROM state WHERE key >= ? AND key > ? "
             "AND substr(key, 1, ?) = ? ORDER BY key LIMIT ?")


class SqliteReader:
    """The reads of :class:`ledger.store.sql.SqlStore` that ``custody status`` needs, on
    one read-only ``sqlite3`` connection (each read is one snapshot)."""

    def __init__(self, conn: sqlite3.Connection, verify_key: str | None) -> None:
        self._conn = conn
        self._x = Exec(conn, pg=False)
        self._verify_key = verify_key
        self._checked: tuple[str, Checkpoint] | None = None
        self._cache: MapCache | None = None

    @classmethod
    def open(cls, path: Path, *, verify_key: str | None) -> SqliteReader | None:
        """A reader of the ledger file ``path``, or None when this reader does not serve
        it (the full store then decides what to say)."""
        if not path.is_file():
            return None
        if os.access(path.parent, os.W_OK):
            uri = f"file:{quote(str(path))}?mode=ro"
        elif not Path(f"{path}-wal").exists():  # nothing can change it: as SqlStore.open
            uri = f"file:{quote(str(path))}?immutable=1"
        else:
            return None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            if Exec(conn, pg=False).one(_TABLES)[0] != 6:
                conn.close()
                return None
        except sqlite3.Error:
            conn.close()
            return None
        return cls(conn, verify_key)

    def close(self) -> None:
        self._conn.close()

    def size(self) -> int:
        return int(self._x.one(_SIZE)[0])

    def latest_checkpoint(self) -> str | None:
        row = self._x.one(LATEST_NOTE)
        return None if row is None else str(row[0])

    def state(self, key: str) -> dict[str, Any] | None:
        """As :meth:`SqlStore.state`: verified against the signed state-map root when
        the log key is pinned and the key is mapped, else the stored row."""
        x = self._x
        x.run(_BEGIN)  # the checkpoint and the bucket from one snapshot
        try:
            if self._verify_key is None or not vmap.mapped(key):
                row = x.one(STATE_VALUE, (key,))
                return None if row is None else decode_record(key, str(row[0]))
            record, self._cache = verified_record(x, key, self._map_root, self._cache)
            return record
        finally:
            x.run(_ROLLBACK)

    def _map_root(self, note: str | None) -> bytes | None:
        if note is None:
            return None
        if self._checked is None or self._checked[0] != note:
            assert self._verify_key is not None  # noqa: S101 - checked by state()
            self._checked = (note, signed_checkpoint(note, self._verify_key,
                                                     "nothing read from them is shown"))
        return vmap.root_of(self._checked[1].extensions)

    def state_items(self, prefix: str, after: str = "",
                    page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """As :meth:`SqlStore.state_items`: stored records under ``prefix`` after
        ``after``, in key order, read in keyset pages."""
        nxt = after
        while True:
            rows = self._x.all(_ITEMS, (prefix, nxt, len(prefix), prefix, page))
            for key, value in rows:
                yield str(key), decode_record(str(key), str(value))
            if len(rows) < page:
                return
            nxt = str(rows[-1][0])
