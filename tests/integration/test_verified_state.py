"""The state table is a cache: a record edited, inserted or deleted outside the log is
refused by every reader that knows the log key and by the writer, naming the key
(ledger/store/sqlmap.py), and the audit catches a signed map root that does not match
the replayed state (ledger/core/audit.py, step 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.core import vmap
from ledger.core.audit import audit
from ledger.core.errors import IntegrityFault
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore
from tests.helpers.ledger_builder import build_ledger, db_url, drop_triggers, execute


def _art(store: SqlStore) -> str:
    return next(k for k, _ in store.state_items("art/"))


def _edited(tmp_path: Path, sql: str, params: dict[str, object]) -> tuple[object, SqlStore]:
    built = build_ledger(tmp_path, artefacts=2)
    execute(built.store, sql, params)
    key = built.store.signer.verifier_key  # type: ignore[union-attr]
    fresh = SqlStore.open(db_url(tmp_path), signer=None, clock=lambda: 0, verify_key=key)
    return built, fresh


@pytest.mark.parametrize("what", ["edited", "deleted"])
def test_an_edited_or_deleted_record_is_refused_by_readers_and_the_writer(
        tmp_path: Path, what: str) -> None:
    built = build_ledger(tmp_path, artefacts=2)
    store, svc, actors = built.store, built.custody, built.actors
    art = _art(store)
    if what == "edited":  # the custodian becomes an outside organisation
        rec = {**store.cached_state(art), "custodian": "ext"}  # type: ignore[dict-item]
        execute(store, "UPDATE state SET value = :v WHERE key = :k",
                {"k": art, "v": json.dumps(rec)})
        assert store.cached_state(art) == rec
    else:
        execute(store, "DELETE FROM state WHERE key = :k", {"k": art})
    cold = SqlStore.open(db_url(tmp_path), signer=None, clock=lambda: 0,
                         verify_key=store.signer.verifier_key)  # type: ignore[union-attr]
    with pytest.raises(IntegrityFault, match=f"'{art}' was {what}"):
        cold.state(art)
    size = store.size()
    writer = SqlStore.open(db_url(tmp_path), signer=store.signer, clock=built.clock)
    svc.store = writer
    with pytest.raises(IntegrityFault, match=f"'{art}' was {what} outside the log"):
        svc.access(actors["cust-nl"], artefact=art.split("/", 1)[1], action="view",
                   purpose="after the edit")
    assert writer.size() == size  # nothing appended
    report = audit_store(writer)
    assert not report.ok
    assert report.kind == "state"
    assert art in report.detail
    for s in (cold, writer):
        s.close()


def test_an_inserted_record_is_refused_naming_it(tmp_path: Path) -> None:
    """A fake actor inserted into the state (e.g. to let an outsider sign)."""
    _built, cold = _edited(tmp_path, "INSERT INTO state (key, value, idx, bucket) VALUES "
                           "(:k, '{}', 1, :b)", {"k": "actor/evil",
                                                 "b": vmap.bucket_of("actor/evil")})
    with pytest.raises(IntegrityFault, match="'actor/evil' was inserted"):
        cold.state("actor/evil")
    cold.close()


def test_an_edited_map_node_is_refused(tmp_path: Path) -> None:
    built = build_ledger(tmp_path, artefacts=2)
    art = _art(built.store)
    drop_triggers(built.store)
    execute(built.store, "UPDATE map_nodes_v SET hash = :h WHERE level = 3",
            {"h": b"\x07" * 32})
    cold = SqlStore.open(db_url(tmp_path), signer=None, clock=lambda: 0,
                         verify_key=built.store.signer.verifier_key)  # type: ignore[union-attr]
    messages = []
    for key, _ in list(built.store.state_items("")):
        if vmap.mapped(key):
            try:
                cold.state(key)
            except IntegrityFault as exc:
                messages.append(str(exc))
    # A bucket whose level-3 sibling is a stored (non-empty) node reads the forged hash.
    assert messages
    assert all("does not match the root" in m for m in messages)
    assert art
    cold.close()


def test_readers_without_the_log_key_see_the_raw_cache(tmp_path: Path) -> None:
    _built, verified = _edited(tmp_path, "UPDATE state SET value = :v WHERE key = 'ledger'",
                               {"v": '{"x":1}'})
    with pytest.raises(IntegrityFault, match="'ledger' was edited"):
        verified.state("ledger")
    verified.close()
    raw = SqlStore.open(db_url(tmp_path), signer=None, clock=lambda: 0)
    assert raw.state("ledger") == {"x": 1}
    raw.close()


def test_audit_refuses_a_signed_map_root_that_the_replay_does_not_give(tmp_path: Path) -> None:
    """An operator holding the log key signs a checkpoint whose state-map root is not the
    root of the replayed state: caught at that checkpoint."""
    from ledger.core.checkpoint import Checkpoint, sign_checkpoint
    from ledger.core.note import split_note

    built = build_ledger(tmp_path, artefacts=1)
    store = built.store
    size = store.size()
    note = store.checkpoint_at(size)
    cp = Checkpoint.parse(split_note(note)[0])
    forged = sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root,
                                        (vmap.extension_line(b"\x05" * 32),)),
                             store.signer)  # type: ignore[arg-type]
    drop_triggers(store)
    execute(store, "UPDATE checkpoints SET note = :n WHERE size = :s", {"n": forged, "s": size})
    report = audit(store.entries(), store.checkpoints(),
                   log_verifier_key=store.signer.verifier_key)  # type: ignore[union-attr]
    assert not report.ok
    assert report.kind == "map"
    assert report.first_bad_index == size - 1


def test_a_ledger_from_before_the_state_map_is_mapped_on_its_next_append(
        tmp_path: Path) -> None:
    """Migration 0002 on a ledger written by the first release: its checkpoints carry no
    map root and its versioned tables are empty. The next append maps the current state
    once; from then on every checkpoint signs a root, the audit passes, and verdicts
    are proven complete."""
    from ledger import views
    from ledger.core.checkpoint import Checkpoint, sign_checkpoint
    from ledger.core.note import split_note

    built = build_ledger(tmp_path, artefacts=2)
    store = built.store
    signer = store.signer
    assert signer is not None
    drop_triggers(store)
    rows = []
    for size, note in store.checkpoints():
        cp = Checkpoint.parse(split_note(note)[0])
        rows.append((size, sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root), signer)))
    for size, note in rows:
        execute(store, "UPDATE checkpoints SET note = :n WHERE size = :s", {"n": note, "s": size})
    for table in ("state_log", "map_nodes_v"):
        execute(store, f"DELETE FROM {table}")  # noqa: S608 - constant table names
    execute(store, "UPDATE state SET bucket = NULL")
    writer = SqlStore.open(db_url(tmp_path), signer=signer, clock=built.clock)
    built.custody.store = writer
    art = _art(writer).split("/", 1)[1]
    built.custody.access(built.actors["cust-nl"], artefact=art, action="view",
                         purpose="after the upgrade")
    latest = Checkpoint.parse(split_note(writer.latest_checkpoint() or "")[0])
    assert vmap.root_of(latest.extensions) is not None
    assert audit_store(writer).ok
    result = views.verify(writer, log_key=signer.verifier_key, artefact_id=art)
    assert result.verdict == "verified", result.faults
    assert result.complete
    writer.close()
