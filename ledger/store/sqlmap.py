"""The state map (``ledger.core.vmap``) on SQL: verified reads for the writer, versioned proofs.

The ``state`` table is a cache. Before the custody rules may read a record from it, the
writer loads the record's whole bucket, hashes it and checks the path to the state-map
root signed in the latest checkpoint: an edited, inserted or deleted state row is an
:class:`IntegrityFault` naming the key, and nothing is appended. Verified buckets and
nodes are kept for as long as the signed root they were checked against is the latest
one (a write by another process changes the root and drops them).

``state_log`` and ``map_nodes_v`` are append-only and versioned by tree size, so the
proof of any key at any checkpoint can be served (a verifier may demand an older,
witnessed checkpoint).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ledger.core import vmap
from ledger.core.checkpoint import Checkpoint, verify_checkpoint
from ledger.core.errors import IntegrityFault, LedgerError, NotFound
from ledger.core.state import Record

if TYPE_CHECKING:  # this module also serves the sqlite3-only reader (ledger.store.lite)
    from sqlalchemy.engine import Connection


class Sql:
    """One constant statement in both DBAPI parameter styles: written with ``?``
    (SQLite's qmark) and rewritten once to ``%s`` for psycopg. No statement holds a
    literal ``?`` or ``%``.

    ``pg_many``: for a multi-row write, the PostgreSQL statement that takes the rows as
    one array per column (``INSERT ... SELECT * FROM unnest(%s::T[], ...)``): one
    statement for the whole batch instead of one per row (psycopg's ``executemany``
    still sends a statement per row)."""

    __slots__ = ("lite", "pg", "pg_many")

    def __init__(self, text: str, pg: str | None = None, pg_many: str | None = None) -> None:
        self.lite = text
        self.pg = text.replace("?", "%s") if pg is None else pg
        self.pg_many = pg_many


def insert_sql(table: str, columns: Sequence[str], pg_types: Sequence[str],
               tail: str = "") -> Sql:
    """``INSERT INTO table (columns) VALUES (?, ...) tail``, with its PostgreSQL
    one-statement form over ``unnest`` of one typed array per column. Built once, at
    import, from the constant names below (never from input)."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    # %b: arrays sent in binary (no per-element text escaping, the cost of a text array).
    arrays = ", ".join(f"CAST(%b AS {t}[])" for t in pg_types)
    one = f"INSERT INTO {table} ({names}) VALUES ({marks}){tail}"  # noqa: S608
    many = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}"  # noqa: S608
    return Sql(one, pg_many=many)


class Exec:
    """Constant SQL on one DBAPI cursor of the caller's connection (and so inside the
    caller's transaction). SQLAlchemy Core's per-statement bookkeeping cost more than
    the statements themselves on the append path; the SQL here never changes, values
    are always bound parameters (threat T10), and each driver keeps its own prepared
    statements (sqlite3's statement cache; psycopg prepares a statement it has seen
    five times)."""

    __slots__ = ("conn", "cur", "pg")

    def __init__(self, dbapi_conn: Any, pg: bool) -> None:
        self.conn = dbapi_conn
        self.cur = dbapi_conn.cursor()
        self.pg = pg

    @classmethod
    def of(cls, conn: Connection) -> Exec:
        """The cursor of a Core connection: statements join its current transaction."""
        return cls(conn.connection.dbapi_connection, conn.dialect.name == "postgresql")

    def all(self, sql: Sql, params: Sequence[Any] = ()) -> list[Any]:
        self.cur.execute(sql.pg if self.pg else sql.lite, params)
        return list(self.cur.fetchall())

    def one(self, sql: Sql, params: Sequence[Any] = ()) -> Any:
        """The first row, or None."""
        self.cur.execute(sql.pg if self.pg else sql.lite, params)
        return self.cur.fetchone()

    def run(self, sql: Sql, params: Sequence[Any] = ()) -> None:
        self.cur.execute(sql.pg if self.pg else sql.lite, params)

    def many(self, sql: Sql, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.pg and sql.pg_many is not None and len(rows) > 1:
            self.cur.execute(sql.pg_many, [list(column) for column in zip(*rows, strict=True)])
        else:
            self.cur.executemany(sql.pg if self.pg else sql.lite, rows)

    def pipeline(self) -> AbstractContextManager[Any]:
        """On PostgreSQL, send the statements inside without waiting for each answer
        (psycopg pipeline mode: one round trip for a transaction's writes)."""
        return self.conn.pipeline() if self.pg else nullcontext()


LATEST_NOTE = Sql("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
STATE_VALUE = Sql("SELECT value FROM state WHERE key = ?")


def signed_checkpoint(note: str, log_key: str, consequence: str) -> Checkpoint:
    """The latest checkpoint ``note``, its signature checked with ``log_key`` and its
    state-map root well formed; an IntegrityFault (saying ``consequence``) otherwise."""
    try:
        cp = verify_checkpoint(note, log_key)
        vmap.root_of(cp.extensions)
    except LedgerError as exc:
        raise IntegrityFault(f"the latest checkpoint does not verify with the log key "
                             f"({exc}): the ledger's tables cannot be trusted and "
                             f"{consequence}", kind="checkpoint") from None
    return cp


def verified_record(x: Exec, key: str, root_of: Callable[[str | None], bytes | None],
                    cache: MapCache | None) -> tuple[Record | None, MapCache | None]:
    """State record ``key`` as of x's snapshot, checked against the state-map root that
    ``root_of`` gives for the latest checkpoint (it verifies the signature), through
    ``cache`` while that root is still the latest. Returns the record and the cache to
    keep. Without a signed root (an empty ledger, or one from before the state map) the
    row is returned as stored."""
    row = x.one(LATEST_NOTE)
    root = root_of(None if row is None else str(row[0]))
    if root is None:
        row = x.one(STATE_VALUE, (key,))
        return (None if row is None or row[0] is None else decode_record(key, str(row[0]))), cache
    if cache is None or cache.root != root:
        cache = MapCache(root)
    return cache.bucket(x, bucket_of(key)).get(key), cache


@lru_cache(maxsize=1 << 17)
def bucket_of(key: str) -> int:
    """:func:`ledger.core.vmap.bucket_of`, remembered (the rules read the same keys often)."""
    return vmap.bucket_of(key)


#: Each planned node's newest version as of a size: one seek per node on the primary key
#: (level, idx, size). (A join on ``size = (SELECT max(size) ...)`` visited every version
#: of a node, thousands for the upper levels of a long log.)
_NODES_AT = Sql(
    "SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), "
    "(SELECT m.hash FROM map_nodes_v AS m WHERE m.level = json_extract(j.value, '$[0]') "
    "AND m.idx = json_extract(j.value, '$[1]') AND m.size <= ? "
    "ORDER BY m.size DESC LIMIT 1) FROM json_each(?) AS j",
    "SELECT j.level, j.idx, (SELECT m.hash FROM map_nodes_v AS m WHERE m.level = j.level "
    "AND m.idx = j.idx AND m.size <= %s ORDER BY m.size DESC LIMIT 1) "
    "FROM unnest(CAST(%s AS smallint[]), CAST(%s AS integer[])) AS j(level, idx)")
_BUCKET_NOW = Sql("SELECT key, value FROM state WHERE bucket = ?")
_BUCKET_AT = Sql(
    "SELECT s.key, s.value FROM state_log AS s WHERE s.bucket = ? AND s.size = "
    "(SELECT max(x.size) FROM state_log AS x WHERE x.key = s.key AND x.size <= ?)")
_VALUE_AT = Sql("SELECT value FROM state_log WHERE key = ? AND size <= ? "
                "ORDER BY size DESC LIMIT 1")
_INSERT_LOG = insert_sql("state_log", ("key", "size", "bucket", "value"),
                         ("text", "bigint", "integer", "text"))
_INSERT_NODE = insert_sql("map_nodes_v", ("level", "idx", "size", "hash"),
                          ("smallint", "integer", "bigint", "bytea"))
_ALL_STATE = Sql("SELECT key, value FROM state")
_SET_BUCKET = Sql("UPDATE state SET bucket = ? WHERE key = ?")
_MAX_SIZE = 2**62


def nodes_at(x: Exec, plan: Sequence[vmap.NodeId], size: int) -> dict[vmap.NodeId, bytes]:
    """The map nodes in ``plan`` as of tree ``size`` (missing: empty) in one statement."""
    if not plan:
        return {}
    if x.pg:
        params: tuple[Any, ...] = (size, [lv for lv, _ in plan], [i for _, i in plan])
    else:
        params = (size, json.dumps(list(plan)))
    return {(int(lv), int(i)): h.encode() if isinstance(h, str) else bytes(h)
            for lv, i, h in x.all(_NODES_AT, params) if h is not None}


def decode_record(key: str, text: str) -> Record:
    try:
        value = json.loads(text)
    except ValueError:
        raise IntegrityFault(f"state record {key!r} is not valid JSON", kind="state") from None
    if not isinstance(value, dict):
        raise IntegrityFault(f"state record {key!r} is not a JSON object", kind="state")
    return value


class MapCache:
    """Verified buckets and nodes for ONE signed map root (the writer's view).

    Besides the records, each cached bucket keeps its ``(key_hash, value_hash)`` pairs:
    a commit rehashes only the records it wrote (from the canonical text it writes
    anyway), not every record of the bucket."""

    def __init__(self, root: bytes | None) -> None:
        self.root = root
        self.buckets: dict[int, dict[str, Record]] = {}
        self.hashes: dict[int, dict[str, tuple[bytes, bytes]]] = {}
        self.nodes: dict[vmap.NodeId, bytes] = {}

    def bucket(self, x: Exec, b: int) -> dict[str, Record]:
        """Bucket ``b`` of the current state, checked against the signed root."""
        found = self.buckets.get(b)
        if found is not None:
            return found
        records = {str(k): decode_record(str(k), str(v)) for k, v in x.all(_BUCKET_NOW, (b,))}
        pairs = {k: (vmap.key_hash(k), vmap.value_hash(v)) for k, v in records.items()}
        if self.root is not None:
            plan = [n for n in vmap.path_plan(b) if n not in self.nodes]
            self.nodes.update(nodes_at(x, plan, _MAX_SIZE))
            siblings = [self.nodes.get(n, vmap.ZERO) for n in vmap.path_plan(b)]
            h = vmap.bucket_hash(pairs.values())
            if vmap.root_from_path(b, h, siblings) != self.root:
                raise IntegrityFault(self._culprit(x, b, records), kind="state")
            for n in vmap.path_plan(b):
                self.nodes.setdefault(n, vmap.ZERO)
        self.buckets[b] = records
        self.hashes[b] = pairs
        return records

    def _culprit(self, x: Exec, b: int, records: Mapping[str, Record]) -> str:
        """Name the key whose cached row differs from the state-map history."""
        logged = {str(k): decode_record(str(k), str(v))
                  for k, v in x.all(_BUCKET_AT, (b, _MAX_SIZE))}
        for key in sorted(set(records) | set(logged)):
            if records.get(key) != logged.get(key):
                what = ("was inserted" if key not in logged else
                        "was deleted" if key not in records else "was edited")
                return (f"state record {key!r} {what} outside the log: it does not match the "
                        "state map signed in the latest checkpoint; writes are refused until "
                        "the state is rebuilt from the log")
        return (f"state map bucket {b} does not match the root signed in the latest "
                "checkpoint (a map node or the state history was edited); writes are refused")

    def commit(self, x: Exec, writes: Mapping[str, Record], size: int,
               encoded: Mapping[str, str]) -> bytes:
        """Apply a batch's writes: new bucket and node hashes, versioned rows at ``size``;
        returns the new root. ``encoded`` is each written value's RFC 8785 text (the
        value hash is the SHA-256 of exactly those bytes)."""
        changed: set[int] = set()
        log_rows = []
        sha256 = hashlib.sha256
        for key, value in writes.items():
            if not vmap.mapped(key):
                continue
            b = bucket_of(key)
            self.bucket(x, b)[key] = value
            text = encoded[key]
            self.hashes[b][key] = (vmap.key_hash(key), sha256(text.encode()).digest())
            changed.add(b)
            log_rows.append((key, size, b, text))
        new = vmap.update_nodes({b: vmap.bucket_hash(self.hashes[b].values()) for b in changed},
                                lambda lv, i: self.nodes.get((lv, i), vmap.ZERO))
        self.nodes.update(new)
        if log_rows:
            x.many(_INSERT_LOG, log_rows)
            x.many(_INSERT_NODE, [(lv, i, size, h) for (lv, i), h in new.items()])
        self.root = self.nodes.get((vmap.LEVELS, 0), vmap.ZERO)
        return self.root

    def bootstrap(self, x: Exec, size: int) -> None:
        """A ledger written before the state map existed: map the current state once."""
        from ledger.core.canonical import canonical

        writes = {str(k): decode_record(str(k), str(v)) for k, v in x.all(_ALL_STATE)}
        for key in writes:
            if vmap.mapped(key):
                x.run(_SET_BUCKET, (bucket_of(key), key))
                self.buckets.setdefault(bucket_of(key), {})
                self.hashes.setdefault(bucket_of(key), {})
        self.root = None
        self.commit(x, writes, size, {k: canonical(v).decode() for k, v in writes.items()})


def state_keys_in(x: Exec, b: int, size: int) -> Iterator[tuple[str, str]]:
    """``(key, value text)`` of bucket ``b`` as of tree ``size`` (the state history)."""
    for k, v in x.all(_BUCKET_AT, (b, size)):
        yield str(k), str(v)


def map_proof(x: Exec, key: str, size: int) -> vmap.MapProof:
    """The proof of ``key`` (its value or its absence) in the map as of tree ``size``."""
    if not vmap.mapped(key):
        raise NotFound(f"key {key!r} is not covered by the state map")
    b = bucket_of(key)
    row = x.one(_VALUE_AT, (key, size))
    value = None if row is None else decode_record(key, str(row[0]))
    kh = vmap.key_hash(key)
    others = []
    for k, v in state_keys_in(x, b, size):
        other = vmap.key_hash(k)
        if other != kh:
            others.append((other, vmap.value_hash(decode_record(k, v))))
    plan = vmap.path_plan(b)
    nodes = nodes_at(x, plan, size)
    return vmap.MapProof(key, value, tuple(sorted(others)),
                         tuple(nodes.get(n, vmap.ZERO) for n in plan))
