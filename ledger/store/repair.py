"""Rebuild the state cache from the log, after someone edited it outside the log.

The state table is derived data. When a writer or a reader refuses it (its records do
not match the state map signed in the latest checkpoint), the operator can rebuild it:
the log is replayed with the custody rules, and the replayed state is written back ONLY
if its state-map root equals the root signed in the latest checkpoint (verified with
the log key) and the append-only state history and map nodes agree with it. Nothing is
trusted from the damaged table; a log that does not replay, or a signed root the
replay does not give, is refused (run ``custody audit`` and restore from a backup).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ledger.core import vmap
from ledger.core.audit import replay
from ledger.core.canonical import canonical
from ledger.core.checkpoint import verify_checkpoint
from ledger.core.errors import IntegrityFault, LedgerError
from ledger.store import schema as t
from ledger.store.audit_sql import entry_rows, map_node_rows, state_history_rows
from ledger.store.sql import SqlStore


@dataclass(frozen=True)
class Repair:
    size: int
    #: Keys whose cached record was rewritten, inserted or removed.
    repaired: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "repaired": list(self.repaired)}


def rebuild_state(store: SqlStore, log_key: str) -> Repair:
    """Rewrite the ``state`` table from the replayed log (see the module docstring)."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # the writers' lock
            conn.execute(sa.select(t.head.c.size).where(t.head.c.id == 1).with_for_update())
        size = int(conn.execute(sa.select(t.head.c.size)).scalar_one())
        note = conn.execute(sa.select(t.checkpoints.c.note)
                            .where(t.checkpoints.c.size == size)).scalar_one_or_none()
        if note is None:
            raise IntegrityFault(f"the log has {size} entries but no checkpoint of that size; "
                                 "run 'custody audit'", kind="checkpoint")
        try:
            root = vmap.root_of(verify_checkpoint(str(note), log_key).extensions)
        except LedgerError as exc:
            raise IntegrityFault(f"the latest checkpoint does not verify with the log key: "
                                 f"{exc}", kind="checkpoint") from None
        done = replay(entry_rows(conn))
        if done.failure is not None or done.size != size:
            raise IntegrityFault("the log itself does not replay, so the state cannot be "
                                 f"rebuilt from it: {done.failure or 'entries are missing'}; "
                                 "run 'custody audit'", kind="log")
        if root is not None and done.map.root() != root:
            raise IntegrityFault("the replayed state does not give the state-map root signed "
                                 "in the latest checkpoint; run 'custody audit'", kind="map")
        mapped = {k: v for k, v in done.records.items() if vmap.mapped(k)}
        history = {k: v for k, v in state_history_rows(conn)}
        if any(canonical(mapped[k]).decode() != history.get(k) for k in mapped) \
                or set(history) - set(mapped):
            raise IntegrityFault("the append-only state history was edited too; the state "
                                 "cannot be rebuilt here: restore the database from a backup",
                                 kind="state")
        stored_nodes = {(lv, i): h for lv, i, h in map_node_rows(conn)}
        wanted = {n: h for n, h in done.map.nodes.items() if h != vmap.ZERO}
        if stored_nodes != wanted:
            raise IntegrityFault("the append-only state-map nodes were edited; restore the "
                                 "database from a backup", kind="map")
        cached = {str(k): str(v) for k, v in conn.execute(
            sa.select(t.state.c.key, t.state.c.value)).all()}
        want = {k: canonical(v).decode() for k, v in done.records.items()}
        repaired = sorted(k for k in set(cached) | set(want) if cached.get(k) != want.get(k))
        for key in repaired:
            conn.execute(t.state.delete().where(t.state.c.key == key))
            if key in want:
                conn.execute(t.state.insert().values(
                    key=key, value=want[key], idx=done.written_at[key],
                    bucket=vmap.bucket_of(key) if vmap.mapped(key) else None))
    store._map = store._rmap = None  # the store caches are stale now
    return Repair(size, tuple(repaired))
