"""Threat T1/T6: an insider with raw database access tampers with a real ledger.

Ledgers are built through ``Custody`` + ``SqlStore`` on SQLite (tests/helpers/
ledger_builder.py), then copied per trial and attacked with raw SQL after dropping the
append-only triggers. ``audit_store`` must fail every time and name the exact index.
Trial counts and the detection rate are in the test names and asserted (100 %).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.core import _sodium, merkle
from ledger.core import events as ev
from ledger.core.audit import AuditReport
from ledger.core.checkpoint import verify_checkpoint
from ledger.core.errors import RuleViolation
from ledger.core.events import Entry
from ledger.core.note import NoteSigner
from ledger.service import ActorKey, Custody
from ledger.store import schema as t
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore
from tests.helpers.ledger_builder import (
    ORIGIN,
    build_ledger,
    copy_ledger,
    drop_triggers,
    execute,
    leaves,
    rewrite_log,
)

TRIALS = 40


@dataclass(frozen=True)
class Template:
    directory: Path
    signer: NoteSigner
    size: int
    checkpoints: list[tuple[int, str]]
    admin_seed_rng: int


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    directory = tmp_path_factory.mktemp("template")
    built = build_ledger(directory, seed=7)
    assert built.store.signer is not None
    tpl = Template(directory, built.store.signer, built.store.size(),
                   list(built.store.checkpoints()), 7)
    built.store.close()
    return tpl


@pytest.fixture
def fresh(template: Template, tmp_path: Path) -> Iterator[Callable[[], SqlStore]]:
    """Open a new copy of the template ledger for each call (one per trial)."""
    opened: list[SqlStore] = []
    counter = iter(range(10_000))

    def make() -> SqlStore:
        store = copy_ledger(template.directory, tmp_path / f"copy-{next(counter)}",
                            template.signer)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def entries_of(store: SqlStore) -> list[Entry]:
    return [Entry.from_leaf(leaf) for _i, leaf, _h, _t in leaves(store)]


def assert_caught(report: AuditReport, index: int | None, *kinds: str) -> None:
    assert not report.ok, report
    assert report.first_bad_index == index, report
    if kinds:
        assert report.kind in kinds, report


# ---- the baseline ------------------------------------------------------------------


def test_clean_ledger_audits_ok_with_every_check(template: Template,
                                                 fresh: Callable[[], SqlStore]) -> None:
    store = fresh()
    assert 40 <= template.size <= 60
    kinds = {Entry.from_leaf(leaf).signed.event.kind for _i, leaf, _h, _t in leaves(store)}
    assert {ev.GENESIS, ev.ORG_REGISTER, ev.ACTOR_ENROL, ev.ACTOR_REVOKE, ev.CASE_OPEN,
            ev.CASE_ADD_MEMBER, ev.LEGAL_BASIS, ev.ARTEFACT_REGISTER, ev.DISPATCH,
            ev.RECEIPT, ev.ACCESS} <= kinds
    seen: list[int] = []
    report = audit_store(store, progress=seen.append)
    assert report.ok, report
    assert report.entries_checked == report.tree_size == store.size() == template.size
    assert report.root_hex == store.root(template.size).hex()
    assert seen[-1] == template.size
    for size, note in (template.checkpoints[0], template.checkpoints[len(template.checkpoints)
                                                                     // 2],
                       template.checkpoints[-1]):
        assert audit_store(store, trusted_checkpoint=note).ok, size


def test_audit_stays_clean_after_more_appends_through_the_real_path(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    store = fresh()
    before = store.latest_checkpoint()
    assert before is not None
    admin = ActorKey("admin-de", _rederive_key(random.Random(7), "admin-de"))
    clock = store.clock
    svc = Custody(store, origin=ORIGIN, clock=clock, random=random.Random(3).randbytes)
    svc.open_case(admin, "CASE-2", "second case")
    with pytest.raises(RuleViolation, match="unknown signer"):
        svc.open_case(ActorKey("mallory", _sodium.Signer(b"\x03" * 32)), "CASE-X")
    report = audit_store(store, trusted_checkpoint=before)
    assert report.ok, report
    assert report.entries_checked == template.size + 1


def test_triggers_refuse_update_and_delete(fresh: Callable[[], SqlStore]) -> None:
    store = fresh()
    for sql in ("UPDATE entries SET ledger_time = 0 WHERE idx = 3",
                "DELETE FROM entries WHERE idx = 3",
                "UPDATE merkle_nodes SET hash = x'00' WHERE level = 0 AND idx = 0",
                "DELETE FROM merkle_nodes",
                "UPDATE checkpoints SET note = 'x'",
                "DELETE FROM checkpoints",
                "DELETE FROM refs"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            execute(store, sql)
    assert audit_store(store).ok


# ---- byte flips: 3 × 40 random trials ----------------------------------------------


def _flip(store: SqlStore, column: str, rng: random.Random, *,
          fix_hash: bool = False) -> int:
    n = store.size()
    index = rng.randrange(n)
    with store.engine.connect() as conn:
        value = bytes(conn.execute(sa.select(t.entries.c[column])
                                   .where(t.entries.c.idx == index)).scalar_one())
    data = bytearray(value)
    data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    params = {"v": bytes(data), "i": index}
    if fix_hash:  # the attacker recomputes the leaf hash so only the leaf can betray them
        execute(store, "UPDATE entries SET leaf = :v, leaf_hash = :h WHERE idx = :i",
                {**params, "h": merkle.leaf_hash(bytes(data))})
    else:
        execute(store, f"UPDATE entries SET {column} = :v WHERE idx = :i", params)  # noqa: S608
    return index


def test_leaf_byte_flip_caught_at_exact_index_in_40_of_40_trials(
        fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(101)
    detected = 0
    for _ in range(TRIALS):
        store = fresh()
        drop_triggers(store)
        index = _flip(store, "leaf", rng)
        report = audit_store(store)
        assert_caught(report, index, "leaf")
        detected += 1
    assert detected == TRIALS == 40  # 100 % detection, exact index


def test_leaf_byte_flip_with_recomputed_hash_caught_in_40_of_40_trials(
        fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(202)
    detected = 0
    for _ in range(TRIALS):
        store = fresh()
        drop_triggers(store)
        index = _flip(store, "leaf", rng, fix_hash=True)
        assert_caught(audit_store(store), index, "leaf", "signature", "key", "rule", "time")
        detected += 1
    assert detected == TRIALS == 40


def test_leaf_hash_byte_flip_caught_at_exact_index_in_40_of_40_trials(
        fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(303)
    detected = 0
    for _ in range(TRIALS):
        store = fresh()
        drop_triggers(store)
        index = _flip(store, "leaf_hash", rng)
        assert_caught(audit_store(store), index, "leaf")
        detected += 1
    assert detected == TRIALS == 40


def test_merkle_node_byte_flip_caught_at_first_covered_leaf_in_40_of_40_trials(
        fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(404)
    detected = 0
    for _ in range(TRIALS):
        store = fresh()
        drop_triggers(store)
        with store.engine.connect() as conn:
            nodes = conn.execute(sa.select(t.nodes.c.level, t.nodes.c.idx)).all()
        level, idx = rng.choice(nodes)
        execute(store, "UPDATE merkle_nodes SET hash = :h WHERE level = :l AND idx = :i",
                {"h": rng.randbytes(32), "l": level, "i": idx})
        assert_caught(audit_store(store), idx << level, "leaf" if level == 0 else "node")
        detected += 1
    assert detected == TRIALS == 40


def test_checkpoint_note_byte_flip_caught_in_40_of_40_trials(
        fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(505)
    detected = 0
    for _ in range(TRIALS):
        store = fresh()
        drop_triggers(store)
        size, note = rng.choice(list(store.checkpoints()))
        data = bytearray(note.encode())
        data[rng.randrange(len(data))] ^= rng.randrange(1, 128)
        execute(store, "UPDATE checkpoints SET note = :n WHERE size = :s",
                {"n": data.decode("utf-8", "replace"), "s": size})
        assert_caught(audit_store(store), size - 1, "checkpoint")
        detected += 1
    assert detected == TRIALS == 40


# ---- deletion, truncation, reordering -------------------------------------------------


def test_deleting_a_middle_row_is_missing_at_that_index_in_20_of_20_trials(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(606)
    for _ in range(20):
        store = fresh()
        drop_triggers(store)
        index = rng.randrange(1, template.size - 1)
        execute(store, "DELETE FROM entries WHERE idx = :i", {"i": index})
        report = audit_store(store)
        assert_caught(report, index, "missing")
        assert report.entries_checked == index


def test_truncating_the_last_k_rows_is_caught_in_20_of_20_trials(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(707)
    for _ in range(20):
        store = fresh()
        drop_triggers(store)
        k = rng.randrange(1, 12)
        kept = template.size - k
        execute(store, "DELETE FROM entries WHERE idx >= :m", {"m": kept})
        report = audit_store(store)
        assert_caught(report, kept, "missing")
        assert report.detail.startswith("log truncated: checkpoint covers")


def test_truncation_with_tracks_covered_is_caught_only_by_the_trusted_checkpoint(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    """The insider truncates entries, nodes, checkpoints AND rebuilds the state: the log
    is self-consistent again; a client's earlier checkpoint still catches it."""
    rng = random.Random(808)
    for _ in range(10):
        store = fresh()
        drop_triggers(store)
        kept = template.size - rng.randrange(1, 12)
        prefix = entries_of(store)[:kept]
        sizes = [s for s, _n in template.checkpoints if s <= kept]
        rewrite_log(store, prefix, checkpoint_sizes=sizes, rewrite_state=True)
        assert audit_store(store).ok  # invisible without outside evidence...
        report = audit_store(store, trusted_checkpoint=template.checkpoints[-1][1])
        assert_caught(report, kept, "missing")  # ...but not to a client who kept one


def test_swapping_two_rows_is_caught_at_the_lower_index_in_40_of_40_trials(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(909)
    for _ in range(TRIALS):
        store = fresh()
        drop_triggers(store)
        a, b = sorted(rng.sample(range(template.size), 2))
        rows = {i: (leaf, h, tm) for i, leaf, h, tm in leaves(store)}
        for dst, src in ((a, b), (b, a)):
            leaf, h, tm = rows[src]
            execute(store, "UPDATE entries SET leaf = :l, leaf_hash = :h, ledger_time = :t "
                    "WHERE idx = :i", {"l": leaf, "h": h, "t": tm, "i": dst})
        assert_caught(audit_store(store), a, "leaf")


def test_reordering_with_reindexed_leaves_and_resigned_checkpoints_is_caught(
        fresh: Callable[[], SqlStore]) -> None:
    """A log-key holder re-indexes two swapped custody events and re-signs everything:
    the custody rules (artefact head chain) refuse the replay at the lower index."""
    store = fresh()
    drop_triggers(store)
    entries = entries_of(store)
    kinds = [e.signed.event.kind for e in entries]
    a = kinds.index(ev.DISPATCH)
    b = a + 1
    assert kinds[b] == ev.RECEIPT
    order = list(range(len(entries)))
    order[a], order[b] = b, a
    rewritten = [Entry(i, entries[i].ledger_time, entries[j].signed)
                 for i, j in enumerate(order)]
    rewrite_log(store, rewritten)
    assert_caught(audit_store(store), a, "rule")


# ---- state, rebuilt logs, time, forged events ------------------------------------------


def test_editing_the_state_table_is_a_state_failure(fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(1010)
    with fresh().engine.connect() as conn:
        keys = [k for (k,) in conn.execute(sa.select(t.state.c.key).order_by(t.state.c.key))]
    for key in rng.sample(keys, 10):
        store = fresh()
        execute(store, "UPDATE state SET value = :v WHERE key = :k",
                {"v": '{"tampered":true}', "k": key})
        report = audit_store(store)
        assert not report.ok
        assert report.kind == "state", report
        assert repr(key) in report.detail
    store = fresh()
    execute(store, "DELETE FROM state WHERE key = :k", {"k": "art/" + _an_artefact(store)})
    assert audit_store(store).kind == "state"
    store = fresh()
    execute(store, "INSERT INTO state (key, value, idx) VALUES ('org/ghost', '{}', 0)")
    assert audit_store(store).kind == "state"


def _an_artefact(store: SqlStore) -> str:
    return next(k for k, _v in store.state_items("art/")).split("/", 1)[1]


def test_rebuilt_log_with_a_different_log_key_is_caught_by_the_trusted_checkpoint(
        template: Template, tmp_path: Path) -> None:
    rebuilt = build_ledger(tmp_path / "rebuilt", seed=7, log_key_seed=b"\x42" * 32)
    try:
        assert rebuilt.store.size() == template.size
        assert audit_store(rebuilt.store).ok  # self-consistent on its own
        report = audit_store(rebuilt.store, trusted_checkpoint=template.checkpoints[-1][1])
        assert_caught(report, None, "consistency")
        assert "rebuilt or re-keyed" in report.detail
    finally:
        rebuilt.store.close()


def test_rebuilt_log_with_the_same_key_dropping_an_entry_is_caught_by_consistency(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    """The operator deletes the record of a denied access and re-appends the rest: every
    event signature still verifies, so only an earlier checkpoint can tell."""
    store = fresh()
    drop_triggers(store)
    entries = entries_of(store)
    denied = next(e.index for e in entries if e.signed.event.kind == ev.ACCESS
                  and e.signed.event.payload["outcome"] == "denied")
    kept = [e.signed for e in entries if e.index != denied]
    times = [e.ledger_time for e in entries if e.index != denied]
    rewrite_log(store, [Entry(i, tm, s) for i, (s, tm) in enumerate(zip(kept, times,
                                                                          strict=True))],
                rewrite_state=True)
    assert audit_store(store).ok
    new_size = template.size - 1
    same_size = next(n for s, n in template.checkpoints if s == new_size)
    verify_checkpoint(same_size, template.signer.verifier_key)
    report = audit_store(store, trusted_checkpoint=same_size)
    assert_caught(report, None, "consistency")
    assert "rewritten and re-signed" in report.detail
    # The client's latest checkpoint is longer than the rebuilt log: a truncation.
    assert_caught(audit_store(store, trusted_checkpoint=template.checkpoints[-1][1]),
                  new_size, "missing")
    # A checkpoint from before the deleted entry is still consistent with the new log.
    early = next(n for s, n in template.checkpoints if s == denied)
    assert audit_store(store, trusted_checkpoint=early).ok


def test_time_going_backwards_is_flagged_at_the_exact_index_in_20_of_20_trials(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(1111)
    for _ in range(20):
        store = fresh()
        drop_triggers(store)
        entries = entries_of(store)
        k = rng.randrange(1, template.size)
        back = entries[k - 1].ledger_time - rng.randrange(1, 60_000)
        entries[k] = Entry(k, back, entries[k].signed)
        rewrite_log(store, entries)  # leaf, hash, nodes, checkpoints all recomputed
        assert_caught(audit_store(store), k, "time")


def _forge(entries: list[Entry], k: int, signed: ev.SignedEvent) -> list[Entry]:
    """Insert ``signed`` as entry k, re-indexing everything after it."""
    tm = entries[k - 1].ledger_time
    seq = [*(e.signed for e in entries[:k]), signed, *(e.signed for e in entries[k:])]
    times = [*(e.ledger_time for e in entries[:k]), tm, *(e.ledger_time for e in entries[k:])]
    return [Entry(i, times[i], s) for i, s in enumerate(seq)]


def _access_event(entries: list[Entry], k: int, signer_id: str,
                  key: _sodium.Signer, rng: random.Random) -> ev.SignedEvent:
    art = next(e.signed.event.payload["id"] for e in entries
               if e.signed.event.kind == ev.ARTEFACT_REGISTER)
    body = ev.Event(kind=ev.ACCESS, origin=ORIGIN, nonce=rng.randbytes(16).hex(),
                    claimed_time=entries[k - 1].ledger_time, signer=signer_id,
                    key_id=ev.actor_key_id(signer_id, key.public_key),
                    payload={"artefact": art, "action": "download", "purpose": "exfiltrate",
                             "outcome": "success"})
    return ev.sign_event(body, key)


def test_forged_events_inserted_by_a_log_key_holder_are_caught_in_30_of_30_trials(
        template: Template, fresh: Callable[[], SqlStore]) -> None:
    rng = random.Random(1212)
    first_artefact = None
    for trial in range(30):
        store = fresh()
        drop_triggers(store)
        entries = entries_of(store)
        if first_artefact is None:
            first_artefact = next(e.index for e in entries
                                  if e.signed.event.kind == ev.ARTEFACT_REGISTER)
        k = rng.randrange(first_artefact + 1, template.size)
        attacker = _sodium.Signer(rng.randbytes(32))
        if trial % 3 == 0:  # an actor that was never enrolled
            signed, kinds = _access_event(entries, k, "mallory", attacker, rng), ("key",)
        elif trial % 3 == 1:  # a real actor's name with the attacker's key
            signed, kinds = _access_event(entries, k, "ex-de", attacker, rng), ("signature",)
        else:  # a real actor's key id with signature bytes the attacker made up
            real = _access_event(entries, k, "ex-de", attacker, rng)
            body = ev.Event(**{**{f: getattr(real.event, f) for f in (
                "kind", "origin", "nonce", "claimed_time", "signer", "payload", "prev")},
                "key_id": _key_id_of(entries, "ex-de")})
            signed, kinds = ev.SignedEvent(body, rng.randbytes(64)), ("signature",)
        rewrite_log(store, _forge(entries, k, signed))
        assert_caught(audit_store(store), k, *kinds)


def _key_id_of(entries: list[Entry], actor: str) -> str:
    for e in entries:
        if e.signed.event.kind == ev.ACTOR_ENROL and e.signed.event.payload["id"] == actor:
            import base64

            return ev.actor_key_id(actor, base64.b64decode(e.signed.event.payload["public_key"]))
    raise AssertionError(actor)


def test_event_signed_by_a_revoked_actor_after_revocation_is_a_key_failure(
        fresh: Callable[[], SqlStore]) -> None:
    """The revoked custodian's real key signs one more event; the insider appends it."""
    store = fresh()
    drop_triggers(store)
    entries = entries_of(store)
    assert entries[-1].signed.event.kind == ev.ACTOR_REVOKE
    rng = random.Random(7)  # the builder's seed: re-derive cust-de's key the same way
    stolen = _rederive_key(rng, "cust-de")
    signed = _access_event(entries, len(entries), "cust-de", stolen, random.Random(1))
    entries.append(Entry(len(entries), entries[-1].ledger_time, signed))
    rewrite_log(store, entries)
    assert_caught(audit_store(store), len(entries) - 1, "key")


def _rederive_key(rng: random.Random, actor: str) -> _sodium.Signer:
    rng.randbytes(32)  # log key
    names = ("admin-de", "ex-de", "cust-de", "cust-nl", "ex-nl", "pros-nl", "cust-fr", "ext-1")
    keys = {name: _sodium.Signer(rng.randbytes(32)) for name in names}
    return keys[actor]
