"""The state map (``ledger.vmap``) on SQL: verified reads for the writer, versioned proofs.

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

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ledger import vmap
from ledger.errors import IntegrityFault, NotFound

Record = dict[str, Any]

_NODES_AT_SQLITE = sa.text(
    "SELECT m.level, m.idx, m.hash FROM json_each(:plan) AS j JOIN map_nodes_v AS m "
    "ON m.level = json_extract(j.value, '$[0]') AND m.idx = json_extract(j.value, '$[1]') "
    "AND m.size = (SELECT max(x.size) FROM map_nodes_v AS x WHERE x.level = m.level "
    "AND x.idx = m.idx AND x.size <= :size)")
_NODES_AT_PG = sa.text(
    "SELECT m.level, m.idx, m.hash FROM unnest(CAST(:levels AS smallint[]), "
    "CAST(:idxs AS integer[])) AS j(level, idx) JOIN map_nodes_v AS m "
    "ON m.level = j.level AND m.idx = j.idx "
    "AND m.size = (SELECT max(x.size) FROM map_nodes_v AS x WHERE x.level = m.level "
    "AND x.idx = m.idx AND x.size <= :size)")
_BUCKET_NOW = sa.text("SELECT key, value FROM state WHERE bucket = :b")
_BUCKET_AT = sa.text(
    "SELECT s.key, s.value FROM state_log AS s WHERE s.bucket = :b AND s.size = "
    "(SELECT max(x.size) FROM state_log AS x WHERE x.key = s.key AND x.size <= :size)")
_VALUE_AT = sa.text("SELECT value FROM state_log WHERE key = :k AND size <= :size "
                    "ORDER BY size DESC LIMIT 1")
_INSERT_LOG = sa.text("INSERT INTO state_log (key, size, bucket, value) "
                      "VALUES (:key, :size, :bucket, :value)")
_INSERT_NODE = sa.text("INSERT INTO map_nodes_v (level, idx, size, hash) "
                       "VALUES (:level, :idx, :size, :hash)")
_MAX_SIZE = 2**62


def nodes_at(conn: Connection, plan: Sequence[vmap.NodeId], size: int) -> dict[vmap.NodeId,
                                                                              bytes]:
    """The map nodes in ``plan`` as of tree ``size`` (missing: empty) in one statement."""
    if not plan:
        return {}
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_NODES_AT_PG, {"levels": [lv for lv, _ in plan],
                                           "idxs": [i for _, i in plan], "size": size}).all()
    else:
        rows = conn.execute(_NODES_AT_SQLITE, {"plan": json.dumps(list(plan)),
                                               "size": size}).all()
    return {(int(lv), int(i)): h.encode() if isinstance(h, str) else bytes(h)
            for lv, i, h in rows}


def _decode(key: str, text: str) -> Record:
    try:
        value = json.loads(text)
    except ValueError:
        raise IntegrityFault(f"state record {key!r} is not valid JSON", kind="state") from None
    if not isinstance(value, dict):
        raise IntegrityFault(f"state record {key!r} is not a JSON object", kind="state")
    return value


class MapCache:
    """Verified buckets and nodes for ONE signed map root (the writer's view)."""

    def __init__(self, root: bytes | None) -> None:
        self.root = root
        self.buckets: dict[int, dict[str, Record]] = {}
        self.nodes: dict[vmap.NodeId, bytes] = {}

    def bucket(self, conn: Connection, b: int) -> dict[str, Record]:
        """Bucket ``b`` of the current state, checked against the signed root."""
        found = self.buckets.get(b)
        if found is not None:
            return found
        rows = conn.execute(_BUCKET_NOW, {"b": b}).all()
        records = {str(k): _decode(str(k), str(v)) for k, v in rows}
        if self.root is not None:
            plan = [n for n in vmap.path_plan(b) if n not in self.nodes]
            self.nodes.update({n: h for n, h in nodes_at(conn, plan, _MAX_SIZE).items()})
            siblings = [self.nodes.get(n, vmap.ZERO) for n in vmap.path_plan(b)]
            h = vmap.bucket_hash((vmap.key_hash(k), vmap.value_hash(v))
                                 for k, v in records.items())
            if vmap.root_from_path(b, h, siblings) != self.root:
                raise IntegrityFault(self._culprit(conn, b, records), kind="state")
            for n in vmap.path_plan(b):
                self.nodes.setdefault(n, vmap.ZERO)
        self.buckets[b] = records
        return records

    def _culprit(self, conn: Connection, b: int, records: Mapping[str, Record]) -> str:
        """Name the key whose cached row differs from the state-map history."""
        rows = conn.execute(_BUCKET_AT, {"b": b, "size": _MAX_SIZE}).all()
        logged = {str(k): _decode(str(k), str(v)) for k, v in rows}
        for key in sorted(set(records) | set(logged)):
            if records.get(key) != logged.get(key):
                what = ("was inserted" if key not in logged else
                        "was deleted" if key not in records else "was edited")
                return (f"state record {key!r} {what} outside the log: it does not match the "
                        "state map signed in the latest checkpoint; writes are refused until "
                        "the state is rebuilt from the log")
        return (f"state map bucket {b} does not match the root signed in the latest "
                "checkpoint (a map node or the state history was edited); writes are refused")

    def commit(self, conn: Connection, writes: Mapping[str, Record], size: int,
               encoded: Mapping[str, str]) -> bytes:
        """Apply a batch's writes: new bucket and node hashes, versioned rows at ``size``;
        returns the new root. ``encoded`` is each written value's canonical JSON text."""
        changed: dict[int, bytes] = {}
        log_rows = []
        for key, value in writes.items():
            if not vmap.mapped(key):
                continue
            b = vmap.bucket_of(key)
            self.bucket(conn, b)[key] = value
            changed[b] = vmap.ZERO
            log_rows.append({"key": key, "size": size, "bucket": b, "value": encoded[key]})
        for b in changed:
            changed[b] = vmap.bucket_hash((vmap.key_hash(k), vmap.value_hash(v))
                                          for k, v in self.buckets[b].items())
        new = vmap.update_nodes(changed, lambda lv, i: self.nodes.get((lv, i), vmap.ZERO))
        self.nodes.update(new)
        if log_rows:
            conn.execute(_INSERT_LOG, log_rows)
            conn.execute(_INSERT_NODE, [{"level": lv, "idx": i, "size": size, "hash": h}
                                        for (lv, i), h in new.items()])
        self.root = self.nodes.get((vmap.LEVELS, 0), vmap.ZERO)
        return self.root

    def bootstrap(self, conn: Connection, size: int) -> None:
        """A ledger written before the state map existed: map the current state once."""
        rows = conn.execute(sa.text("SELECT key, value FROM state")).all()
        writes = {str(k): _decode(str(k), str(v)) for k, v in rows}
        for key in writes:
            if vmap.mapped(key):
                conn.execute(sa.text("UPDATE state SET bucket = :b WHERE key = :k"),
                             {"b": vmap.bucket_of(key), "k": key})
                self.buckets.setdefault(vmap.bucket_of(key), {})
        self.root = None
        self.commit(conn, writes, size, {k: str(v) for k, v in rows})


def map_proof(conn: Connection, key: str, size: int) -> vmap.MapProof:
    """The proof of ``key`` (its value or its absence) in the map as of tree ``size``."""
    if not vmap.mapped(key):
        raise NotFound(f"key {key!r} is not covered by the state map")
    b = vmap.bucket_of(key)
    text = conn.execute(_VALUE_AT, {"k": key, "size": size}).scalar_one_or_none()
    value = None if text is None else _decode(key, str(text))
    kh = vmap.key_hash(key)
    others = []
    for k, v in conn.execute(_BUCKET_AT, {"b": b, "size": size}).all():
        other = vmap.key_hash(str(k))
        if other != kh:
            others.append((other, vmap.value_hash(_decode(str(k), str(v)))))
    plan = vmap.path_plan(b)
    nodes = nodes_at(conn, plan, size)
    return vmap.MapProof(key, value, tuple(sorted(others)),
                         tuple(nodes.get(n, vmap.ZERO) for n in plan))
