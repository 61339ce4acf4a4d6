"""Feed the pure :func:`ledger.audit.audit` straight from the SQL tables.

Rows are read raw with SQLAlchemy Core, never through ``head.size`` or the store's
caches, so a deleted, truncated or reordered row is what the audit sees. Everything is
read inside ONE read transaction, so the entries, checkpoints, Merkle nodes and state
come from the same snapshot even while writers keep appending:

* SQLite: the store's reader engine, whose transactions start with a plain (deferred)
  ``BEGIN``; in WAL mode that is a snapshot that never blocks writers.
* PostgreSQL: a ``REPEATABLE READ`` read-only transaction.

Entries and nodes are read in keyset pages, so memory stays that of the audit itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ledger.audit import AuditReport, NodeRow, Progress, audit
from ledger.store import schema as t
from ledger.store.base import StoredEntry
from ledger.store.sql import SqlStore, blob, damage_message, integrity_check, stored_entry

PAGE = 2000


def entry_rows(conn: Connection) -> Iterator[StoredEntry]:
    nxt = -1
    while True:
        rows = conn.execute(
            sa.select(t.entries.c.idx, t.entries.c.leaf, t.entries.c.leaf_hash,
                      t.entries.c.ledger_time)
            .where(t.entries.c.idx > nxt).order_by(t.entries.c.idx).limit(PAGE)).all()
        if not rows:
            return
        for idx, leaf, leaf_hash, ledger_time in rows:
            yield stored_entry(idx, leaf, leaf_hash, ledger_time)
        nxt = rows[-1][0]


def _checkpoints(conn: Connection) -> Iterator[tuple[int, str]]:
    nxt = -1
    while True:
        rows = conn.execute(
            sa.select(t.checkpoints.c.size, t.checkpoints.c.note)
            .where(t.checkpoints.c.size > nxt).order_by(t.checkpoints.c.size).limit(PAGE)).all()
        if not rows:
            return
        for size, note in rows:
            yield int(size), str(note)
        nxt = rows[-1][0]


def _nodes(conn: Connection) -> Callable[[], Iterator[NodeRow]]:
    def read() -> Iterator[NodeRow]:
        last = (-1, -1)
        while True:
            rows = conn.execute(
                sa.select(t.nodes.c.level, t.nodes.c.idx, t.nodes.c.hash)
                .where(sa.or_(t.nodes.c.level > last[0],
                              sa.and_(t.nodes.c.level == last[0], t.nodes.c.idx > last[1])))
                .order_by(t.nodes.c.level, t.nodes.c.idx).limit(PAGE)).all()
            if not rows:
                return
            for level, idx, value in rows:
                yield int(level), int(idx), blob(value)
            last = (int(rows[-1][0]), int(rows[-1][1]))

    return read


def _state(conn: Connection) -> Iterator[tuple[str, object]]:
    nxt: str | None = None
    while True:
        q = sa.select(t.state.c.key, t.state.c.value).order_by(t.state.c.key).limit(PAGE)
        if nxt is not None:
            q = q.where(t.state.c.key > nxt)
        rows = conn.execute(q).all()
        if not rows:
            return
        for key, value in rows:
            yield str(key), str(value)  # JSON text: the audit canonicalises and compares
        nxt = str(rows[-1][0])


def state_history_rows(conn: Connection) -> Iterator[tuple[str, object]]:
    rows = conn.execute(sa.text(
        "SELECT s.key, s.value FROM state_log AS s WHERE s.size = "
        "(SELECT max(x.size) FROM state_log AS x WHERE x.key = s.key)"))
    for key, value in rows:
        yield str(key), str(value)


def map_node_rows(conn: Connection) -> Iterator[NodeRow]:
    rows = conn.execute(sa.text(
        "SELECT m.level, m.idx, m.hash FROM map_nodes_v AS m WHERE m.size = "
        "(SELECT max(x.size) FROM map_nodes_v AS x WHERE x.level = m.level "
        "AND x.idx = m.idx)"))
    for level, idx, value in rows:
        yield int(level), int(idx), blob(value)


def audit_store(store: SqlStore, trusted_checkpoint: str | None = None,
                progress: Progress | None = None,
                log_verifier_key: str | None = None,
                genesis_log_keys: Collection[str] | None = None) -> AuditReport:
    """Audit the ledger in ``store`` (steps 1-9 of :mod:`ledger.audit`), all checks on.

    The log key is ``log_verifier_key`` when given (a client's pinned key), else the
    one recorded in the genesis entry; the genesis key must equal the given one. If the
    store was opened with a log key (``store.signer``), that key must match too.
    """
    signing = store.signer.verifier_key if store.signer is not None else None
    given = log_verifier_key if log_verifier_key is not None else signing
    # The database's own check first: a damaged SQLite file can read "fine" in the rows
    # the audit happens to touch (e.g. a corrupted alembic_version page).
    problems = integrity_check(store.reader)
    if problems:
        return AuditReport(ok=False, entries_checked=0, first_bad_index=None, kind="database",
                           detail=damage_message(store.reader.url.database, problems),
                           tree_size=0, root_hex="")
    with store.reader.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
        with conn.begin():
            report = audit(entry_rows(conn), _checkpoints(conn), log_verifier_key=given,
                           stored_nodes=_nodes(conn), state=_state(conn),
                           state_history=state_history_rows(conn), stored_map=map_node_rows(conn),
                           checkpoint_sizes={int(n) for n in conn.execute(
                               sa.select(t.checkpoints.c.size)).scalars()},
                           trusted_checkpoint=trusted_checkpoint, progress=progress,
                           genesis_log_keys=genesis_log_keys)
    if report.ok and signing is not None and signing != given:
        return replace(report, ok=False, first_bad_index=0, kind="checkpoint",
                       detail="the store signs checkpoints with a log key that differs from "
                       "the pinned log key")
    return report
