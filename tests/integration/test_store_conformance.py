"""One conformance suite for every LedgerStore backend (threats T3, T5, T6, T15; base.py).

Each test runs once per backend through the ``world`` fixture: SQLite, PostgreSQL, a
SQLite store served by the API and reached through ``RemoteStore`` (what every joined
home uses), and Fabric (a fresh network of DE and NL per test, marker ``fabric``). Tests
talk to the store only through the ``LedgerStore`` protocol, except the raw-SQL trigger
tests, which apply to SQL backends only. Two documented differences:

- on Fabric each event of a batch is its own transaction, so a batch is not one
  checkpoint;
- through the API (``remote``) the server authenticates the signer and checks what the
  event names BEFORE the rules run: an unknown or revoked signer cannot log in (401,
  ``Unauthenticated``), and an event naming an object its signer may not see, or that
  does not exist, is ``NotFound`` (404: existence does not leak). Nothing is written
  either way, which is what these tests check on every backend.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from typing import Any
from unittest.mock import patch

import pytest
import sqlalchemy as sa

from ledger.core import events as ev
from ledger.core import merkle, merkle_verify
from ledger.core.checkpoint import verify_checkpoint
from ledger.core.errors import (
    Conflict,
    InvalidSignature,
    LedgerError,
    NotFound,
    RuleViolation,
    Unauthenticated,
    VerificationError,
)
from ledger.store.base import AppendResult
from ledger.store.schema import APPEND_ONLY
from ledger.store.sqlmap import Exec
from tests.conftest import BACKENDS, log_signer
from tests.integration.conftest import WORLD_SIZE, World, build_world

SQL_BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=(*BACKENDS, "remote", "fabric"))
def backend(request: pytest.FixtureRequest) -> str:
    """Every SQL backend, a SQLite store behind the API (``RemoteStore``), and Fabric."""
    name: str = request.param
    if name == "postgres":
        request.applymarker(pytest.mark.postgres)
        request.getfixturevalue("pg_databases")  # skip or fail early
    if name == "fabric":
        request.applymarker(pytest.mark.fabric)
    return name


def snapshot(store: Any) -> dict[str, Any]:
    """Everything a refused event must leave untouched, through the protocol."""
    return {
        "size": store.size(),
        "state": list(store.state_items("")),
        "checkpoints": list(store.checkpoints()),
        "entries": [dataclasses.astuple(e) for e in store.entries()],
        "root": store.root(store.size()),
    }


def leaf_hashes(store: Any) -> list[bytes]:
    return [e.leaf_hash for e in store.entries()]


def rule_of(exc: BaseException) -> str:
    assert isinstance(exc, RuleViolation), repr(exc)
    return exc.rule


# ---- basic append / read ---------------------------------------------------------------------


def test_append_size_entry_and_paging(world: World) -> None:
    store = world.store
    results = [store.append(world.access_event()) for _ in range(7)]
    assert [r.index for r in results] == list(range(WORLD_SIZE, WORLD_SIZE + 7))
    assert store.size() == WORLD_SIZE + 7
    for r in results:
        got = store.entry(r.index)
        assert got.index == r.index
        assert got.leaf_hash == r.leaf_hash == merkle.leaf_hash(got.leaf)
        entry = ev.Entry.from_leaf(got.leaf)
        assert (entry.index, entry.ledger_time) == (r.index, r.ledger_time)
        assert entry.signed.event_id == r.event_id
        assert r.duplicate is False
    everything = list(store.entries())
    assert [e.index for e in everything] == list(range(store.size()))
    assert [e.index for e in store.entries(3, 9)] == list(range(3, 9))
    assert [e.index for e in store.entries(WORLD_SIZE + 5)] == [WORLD_SIZE + 5, WORLD_SIZE + 6]
    assert list(store.entries(store.size())) == []
    # Paging: small pages must give exactly the same sequence as one big read.
    if hasattr(store, "engine"):
        assert list(store.entries(0, None, page=3)) == everything
        assert list(store.entries(2, 13, page=4)) == everything[2:13]
    with pytest.raises(NotFound):
        store.entry(store.size())
    with pytest.raises(NotFound):
        store.root(store.size() + 1)


def test_receipt_checkpoint_covers_the_entry(world: World) -> None:
    r = world.store.append(world.access_event())
    cp = verify_checkpoint(r.checkpoint, world.log.verifier_key)
    assert cp.size == r.index + 1
    proof = world.store.inclusion_proof(r.index, cp.size)
    merkle_verify.verify_inclusion(r.leaf_hash, r.index, cp.size, proof, cp.root)


# ---- T3: idempotent retry, replay, cross-ledger ----------------------------------------------


def test_same_signed_event_twice_grows_log_by_exactly_one(world: World) -> None:
    signed = world.access_event()
    before = world.store.size()
    first = world.store.append(signed)
    second = world.store.append(signed)
    third = world.store.append(ev.SignedEvent.from_bytes(signed.canonical_bytes()))
    assert world.store.size() == before + 1
    assert first.duplicate is False
    for again in (second, third):
        assert again.duplicate is True
        assert (again.index, again.event_id, again.leaf_hash, again.ledger_time) == (
            first.index, first.event_id, first.leaf_hash, first.ledger_time)
        verify_checkpoint(again.checkpoint, world.log.verifier_key)
    assert world.store.find_event(signed.event_id) == first.index


def test_retry_of_custody_event_is_idempotent_not_stale(world: World) -> None:
    signed = world.dispatch_event()
    first = world.store.append(signed)
    # The head moved, but a retry of the SAME event is recognised before the rules run.
    again = world.store.append(signed)
    assert again.duplicate
    assert again.index == first.index
    assert world.store.size() == first.index + 1


def test_replay_of_nonce_with_other_content_is_refused(world: World) -> None:
    original = world.access_event()
    world.store.append(original)
    body = dataclasses.replace(original.event, payload={**original.event.payload,
                                                       "purpose": "something else"})
    forged = ev.sign_event(body, world.admin.signer)
    before = snapshot(world.store)
    with pytest.raises(Conflict) as info:
        world.store.append(forged)
    assert info.value.rule == "replay"
    assert snapshot(world.store) == before


def test_event_for_another_origin_is_refused(world: World) -> None:
    good = world.access_event()
    body = dataclasses.replace(good.event, origin="other.example/custody")
    foreign = ev.sign_event(body, world.admin.signer)
    before = snapshot(world.store)
    with pytest.raises(RuleViolation) as info:
        world.store.append(foreign)
    assert info.value.rule == "origin"
    assert snapshot(world.store) == before


def test_replay_into_another_ledger_is_refused(world: World, new_db_url: Any) -> None:
    other = build_world(new_db_url(), origin="other.example/custody", random_label="other")
    try:
        accepted_here = world.access_event()
        world.store.append(accepted_here)
        before = snapshot(other.store)
        with pytest.raises(RuleViolation) as info:
            other.store.append(accepted_here)  # same actor ids and keys exist there
        assert info.value.rule == "origin"
        assert snapshot(other.store) == before
    finally:
        other.close()


# ---- refused events write nothing ------------------------------------------------------------


def _bad_events(world: World) -> dict[str, ev.SignedEvent]:
    good = world.access_event()
    stranger = dataclasses.replace(world.nl, actor_id="nobody")
    bad_sig = ev.SignedEvent(good.event, bytes(64))
    other_key = ev.Event(**{**good.event.to_json(), "key_id": world.nl.key_id,
                            "nonce": world.svc.random(16).hex()})
    return {
        "signature": bad_sig,
        "stale-head": world.dispatch_event(prev="ab" * 32),
        "unknown-signer": world.access_event(actor=stranger),
        "clock-skew": world.access_event(claimed_time=world.clock.now + 7_200_000),
        "legal-basis-required": world.dispatch_event(legal_basis=None),
        "unknown-art": world.event(ev.ACCESS, world.admin, {
            "artefact": "art-missing", "action": "view", "purpose": "x", "outcome": "success"}),
        "role": world.dispatch_event(actor=world.court),
        "signature-wrong-key": ev.SignedEvent(other_key, world.nl.signer.sign(
            other_key.signing_bytes())),
    }


#: Through the API these are refused before the rules (see the module docstring).
REMOTE_REFUSALS: dict[str, type[LedgerError]] = {
    "unknown-signer": Unauthenticated, "revoked-key": Unauthenticated,
    "unknown-art": NotFound}


def refused(backend: str, expected: str) -> type[LedgerError]:
    if backend == "remote" and expected in REMOTE_REFUSALS:
        return REMOTE_REFUSALS[expected]
    return RuleViolation


def test_refused_events_write_nothing(world: World, backend: str) -> None:
    world.store.append(world.access_event())
    before = snapshot(world.store)
    refs_before = world.store.refs(world.art)
    for expected, signed in _bad_events(world).items():
        with pytest.raises(refused(backend, expected)) as info:
            world.store.append(signed)
        if isinstance(info.value, RuleViolation):
            assert info.value.rule == expected.removesuffix("-wrong-key"), expected
        assert snapshot(world.store) == before, expected
        assert world.store.refs(world.art) == refs_before
        assert world.store.find_event(signed.event_id) is None


# ---- group commit ----------------------------------------------------------------------------


def test_append_many_mixed_batch(world: World, backend: str) -> None:
    store = world.store
    size0 = store.size()
    cps0 = len(list(store.checkpoints()))
    already = world.access_event()
    first_result = store.append(already)
    size0 += 1
    cps0 += 1
    g1, g2, g3 = world.access_event(), world.access_event(), \
        world.register_event("art-2", b"other evidence")
    replay = ev.sign_event(dataclasses.replace(
        g1.event, payload={**g1.event.payload, "purpose": "replay"}), world.admin.signer)
    foreign = ev.sign_event(dataclasses.replace(
        g2.event, origin="elsewhere.example/x", nonce=world.svc.random(16).hex()),
        world.admin.signer)
    stale = world.dispatch_event(prev="cd" * 32)
    # The last dispatch chains on art-2, registered earlier in the same batch: its head is
    # g3's id, visible to later events of the batch before anything is committed.
    chained = world.dispatch_event(artefact="art-2", prev=g3.event_id)
    batch = [g1, foreign, g2, g1, already, replay, stale, g3, chained]
    out = store.append_many(batch)
    assert len(out) == len(batch)
    ok = [o for o in out if isinstance(o, AppendResult) and not o.duplicate]
    assert [o.index for o in ok] == list(range(size0, size0 + 4))
    assert [o.event_id for o in ok] == [g1.event_id, g2.event_id, g3.event_id,
                                        chained.event_id]
    assert isinstance(out[1], RuleViolation)
    assert out[1].rule == "origin"
    assert isinstance(out[3], Conflict)
    assert out[3].rule == "duplicate-in-batch"
    assert isinstance(out[4], AppendResult)
    assert out[4].duplicate
    assert out[4].index == first_result.index
    assert isinstance(out[5], Conflict)
    assert out[5].rule == "replay"
    assert isinstance(out[6], Conflict)
    assert out[6].rule == "stale-head"
    assert store.size() == size0 + 4
    cps = list(store.checkpoints())
    if backend in SQL_BACKENDS:  # one transaction, one checkpoint
        assert len(cps) == cps0 + 1
        assert {o.checkpoint for o in ok} == {cps[-1][1]}
    else:  # Fabric: one transaction per event, each receipt's checkpoint covers it
        assert all(verify_checkpoint(o.checkpoint, world.log.verifier_key).size > o.index
                   for o in ok)
    assert store.state("art/art-2")["open_transfer"] is not None  # type: ignore[index]


def test_append_many_all_refused_writes_nothing(world: World) -> None:
    before = snapshot(world.store)
    bad = _bad_events(world)
    out = world.store.append_many(list(bad.values()))
    assert all(isinstance(o, LedgerError) for o in out)
    assert snapshot(world.store) == before
    assert world.store.append_many([]) == []


# ---- Merkle: root, proofs, checkpoints (T15) -------------------------------------------------


@pytest.fixture
def log70(world: World) -> World:
    sizes = itertools.cycle([1, 5, 2, 9, 3])
    while world.store.size() < 70:
        n = min(next(sizes), 70 - world.store.size())
        out = world.store.append_many([world.access_event() for _ in range(n)])
        assert all(isinstance(o, AppendResult) for o in out)
    return world


def test_root_matches_leaf_hashes_at_every_size(log70: World) -> None:
    store = log70.store
    hashes = leaf_hashes(store)
    assert len(hashes) == store.size() == 70
    for size in range(0, 71):
        assert store.root(size) == merkle.root(hashes[:size]), size


def test_inclusion_proofs_for_every_index_verify(log70: World) -> None:
    store = log70.store
    cp = verify_checkpoint(store.latest_checkpoint(), log70.log.verifier_key)
    assert cp.size == store.size()
    assert cp.root == merkle.root(leaf_hashes(store))
    for entry in store.entries():
        proof = store.inclusion_proof(entry.index, cp.size)
        merkle_verify.verify_inclusion(entry.leaf_hash, entry.index, cp.size, proof, cp.root)
        if entry.index:  # a proof for another index must not verify
            with pytest.raises(VerificationError):
                merkle_verify.verify_inclusion(entry.leaf_hash, entry.index - 1, cp.size,
                                               proof, cp.root)
    # Proofs at older tree sizes verify against the checkpoints signed at those sizes.
    for size, note in store.checkpoints():
        old = verify_checkpoint(note, log70.log.verifier_key)
        assert old.size == size
        for index in {0, size // 2, size - 1}:
            merkle_verify.verify_inclusion(store.entry(index).leaf_hash, index, size,
                                           store.inclusion_proof(index, size), old.root)


def test_consistency_proofs_between_all_checkpoints_verify(log70: World) -> None:
    store = log70.store
    cps = [verify_checkpoint(n, log70.log.verifier_key) for _, n in store.checkpoints()]
    assert len(cps) > 10
    for old, new in itertools.combinations(cps, 2):
        proof = store.consistency_proof(old.size, new.size)
        merkle_verify.verify_consistency(old.size, new.size, old.root, new.root, proof)
    latest = cps[-1]
    for old_size in range(1, latest.size + 1):
        proof = store.consistency_proof(old_size, latest.size)
        merkle_verify.verify_consistency(old_size, latest.size, store.root(old_size),
                                         latest.root, proof)
    with pytest.raises(NotFound):
        store.consistency_proof(3, latest.size + 1)


def test_latest_checkpoint_verifies_only_with_the_log_key(world: World) -> None:
    note = world.store.latest_checkpoint()
    assert note is not None
    cp = verify_checkpoint(note, world.log.verifier_key)
    assert (cp.origin, cp.size) == (world.svc.origin, world.store.size())
    assert cp.root == world.store.root(cp.size)
    impostor = log_signer("test.example/custody-impostor")
    with pytest.raises(VerificationError):
        verify_checkpoint(note, impostor.verifier_key)
    with pytest.raises(InvalidSignature):
        verify_checkpoint(note.replace(str(cp.size), str(cp.size + 1), 1),
                          world.log.verifier_key)


# ---- look-ups --------------------------------------------------------------------------------


def test_refs_state_and_find_event(world: World) -> None:
    store = world.store
    reg_index = store.refs("sha256:" + world.digests.sha256)
    assert len(reg_index) == 1
    d = store.append(world.dispatch_event())
    a = store.append(world.access_event())
    assert store.refs(world.art) == sorted(store.refs(world.art))
    assert {reg_index[0], d.index, a.index} <= set(store.refs(world.art))
    tr = d.result["transfer"]
    assert store.refs(tr) == [d.index]
    assert store.refs("no-such-object") == []
    art = store.state("art/" + world.art)
    assert art is not None
    assert art["custodian"] == "bka"
    assert art["open_transfer"] == tr
    assert art["head"] == ev.Entry.from_leaf(store.entry(d.index).leaf).signed.event_id
    assert store.state("art/missing") is None
    orgs = dict(store.state_items("org/"))
    assert set(orgs) == {"org/bka", "org/nfi", "org/lka"}
    assert store.find_event(d.event_id) == d.index
    assert store.find_event("00" * 32) is None
    # state keys with LIKE wildcards are matched literally
    assert list(store.state_items("org/%")) == []


# ---- append-only triggers (SQL backends) -----------------------------------------------------


_MUTATIONS = {
    "entries": ("UPDATE entries SET ledger_time = 0", "DELETE FROM entries"),
    "merkle_nodes": ("UPDATE merkle_nodes SET idx = idx + 1000000",
                     "DELETE FROM merkle_nodes WHERE level = 0"),
    "checkpoints": ("UPDATE checkpoints SET note = 'x'", "DELETE FROM checkpoints"),
    "refs": ("UPDATE refs SET ref = 'x'", "DELETE FROM refs"),
    "state_log": ("UPDATE state_log SET value = '{}'", "DELETE FROM state_log"),
    "map_nodes_v": ("UPDATE map_nodes_v SET level = 99", "DELETE FROM map_nodes_v"),
    "cosignatures": ("UPDATE cosignatures SET line = 'x'", "DELETE FROM cosignatures"),
    "fabric_blocks": ("UPDATE fabric_blocks SET size = 99", "DELETE FROM fabric_blocks"),
}


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_append_only_tables_refuse_update_delete_truncate(world: World, backend: str,
                                                          table: str) -> None:
    if backend not in SQL_BACKENDS:
        pytest.skip("raw SQL triggers exist only on SQL backends")
    if table == "cosignatures":  # SQLite triggers fire per row: give them one
        with world.store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO cosignatures (size, witness, line) "
                                 "VALUES (1, 'w', 'l')")
    if table == "fabric_blocks":
        with world.store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO fabric_blocks (number, hash, size) "
                                 "VALUES (0, :h, 0)"), {"h": b"\x00" * 32})
    before = snapshot(world.store)
    statements = list(_MUTATIONS[table])
    if backend == "postgres":
        statements.append(f"TRUNCATE {table}")
        statements.append(f"TRUNCATE {table} CASCADE")
    for sql in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), \
                world.store.engine.begin() as conn:
            conn.exec_driver_sql(sql)
    assert snapshot(world.store) == before
    assert set(_MUTATIONS) == set(APPEND_ONLY)


# ---- T5: revocation --------------------------------------------------------------------------


def test_revoked_actor_later_events_refused_earlier_ones_remain(world: World,
                                                                backend: str) -> None:
    store = world.store
    earlier = store.append(world.access_event(actor=world.court))
    prepared_before_revocation = world.access_event(actor=world.court)
    rev = world.svc.revoke(world.admin, "de-court", "key lost")
    assert store.state("actor/de-court")["revoked_at"] == rev.index  # type: ignore[index]
    before = snapshot(store)
    for signed in (prepared_before_revocation, world.access_event(actor=world.court)):
        with pytest.raises(refused(backend, "revoked-key")) as info:
            store.append(signed)
        if isinstance(info.value, RuleViolation):
            assert info.value.rule == "revoked-key"
    assert snapshot(store) == before
    # The earlier entry is still there, unchanged, and its signature still verifies.
    kept = ev.Entry.from_leaf(store.entry(earlier.index).leaf)
    assert kept.signed.event_id == earlier.event_id
    ev.verify_event(kept.signed, world.court.signer.public_key)
    merkle_verify.verify_inclusion(
        earlier.leaf_hash, earlier.index, store.size(),
        store.inclusion_proof(earlier.index, store.size()), store.root(store.size()))
    # The revoked actor cannot be revoked twice either.
    with pytest.raises(RuleViolation) as again:
        world.svc.revoke(world.admin, "de-court")
    assert again.value.rule == "revoked-key"


# ---- T6: clocks ------------------------------------------------------------------------------


@pytest.mark.parametrize("offset_ms", [7_200_000, -7_200_000])
def test_claimed_time_two_hours_off_is_refused(world: World, offset_ms: int) -> None:
    before = snapshot(world.store)
    with pytest.raises(RuleViolation) as info:
        world.store.append(world.access_event(claimed_time=world.clock.now + offset_ms))
    assert info.value.rule == "clock-skew"
    assert snapshot(world.store) == before
    # Within the window (the genesis default is 5 min) it is accepted.
    world.store.append(world.access_event(claimed_time=world.clock.now + offset_ms // 100))


def test_ledger_time_never_decreases_when_the_clock_goes_back(world: World) -> None:
    store = world.store
    first = store.append(world.access_event())
    world.clock.advance(-120_000)  # the server clock jumps back two minutes
    second = store.append(world.access_event())
    third = store.append(world.access_event())
    assert second.ledger_time >= first.ledger_time
    assert third.ledger_time >= second.ledger_time
    times = [ev.Entry.from_leaf(e.leaf).ledger_time for e in store.entries()]
    assert times == sorted(times)
    assert [e.ledger_time for e in store.entries()] == times


def test_second_genesis_is_refused(world: World) -> None:
    payload = ev.Entry.from_leaf(world.store.entry(0).leaf).signed.event.payload
    again = world.event(ev.GENESIS, world.admin, payload)
    with pytest.raises(RuleViolation) as info:
        world.store.append(again)
    assert info.value.rule == "genesis"


# ---- regressions found by this suite -------------------------------------------------------


def test_duplicate_returns_the_original_result(world: World) -> None:
    signed = world.dispatch_event()
    first = world.store.append(signed)
    again = world.store.append(signed)
    assert again.result == first.result


def test_proof_node_query_uses_the_primary_key(world: World, backend: str) -> None:
    """Proofs must read O(log n) nodes by key, not scan merkle_nodes (performance.md)."""
    if backend != "sqlite":
        pytest.skip("query-plan check written for SQLite")
    for _ in range(20):
        world.store.append(world.access_event())
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "merkle_nodes" in statement:
            seen.append((statement, params))

    real_all = Exec.all

    def spy(self: Exec, sql: Any, params: Any = ()) -> list[Any]:
        capture(None, None, sql.pg if self.pg else sql.lite, params)
        return real_all(self, sql, params)

    # Listen on every Engine (the store may read through a separate reader engine) and on
    # the constant statements the store runs on a DBAPI cursor (ledger.store.sqlmap.Exec).
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        with patch.object(Exec, "all", spy):
            world.store.inclusion_proof(5, world.store.size())
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    assert seen
    with world.store.engine.connect() as conn:
        for statement, params in seen:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            details = " | ".join(str(row[-1]) for row in plan)
            assert "SCAN merkle_nodes" not in details, (
                f"a proof scans merkle_nodes instead of using its key: {details}")


def test_state_items_and_checkpoints_page_lazily_from_after(world: World) -> None:
    """Listings start reading after ``after`` (keyset paging), across page boundaries,
    and a key equal to its prefix is still listed."""
    store = world.store
    everything = list(store.state_items(""))
    keys = [k for k, _ in everything]
    assert keys == sorted(keys)
    assert ("ledger", store.state("ledger")) in everything
    assert [k for k, _ in store.state_items("ledger")] == ["ledger"]
    paged = "page" in inspect.signature(store.state_items).parameters  # SQL stores
    for page in (1, 2, 3, 1000) if paged else ():
        assert list(store.state_items("", page=page)) == everything  # type: ignore[call-arg]
    middle = keys[len(keys) // 2]
    assert [k for k, _ in store.state_items("", middle)] == [k for k in keys if k > middle]
    actors = [k for k in keys if k.startswith("actor/")]
    assert [k for k, _ in store.state_items("actor/", actors[0])] == actors[1:]
    sizes = [size for size, _ in store.checkpoints()]
    assert sizes == sorted(sizes)
    assert [s for s, _ in store.checkpoints(sizes[1])] == sizes[2:]
    if paged:
        assert [s for s, _ in store.checkpoints(page=1)] == sizes  # type: ignore[call-arg]


def test_the_store_audits_itself(world: World) -> None:
    """``LedgerStore.audit``: every backend re-verifies what it can show, from scratch,
    against the pinned log key (a server's client replays the served log here)."""
    world.store.append(world.access_event())
    report = world.store.audit(log_verifier_key=world.log.verifier_key)
    assert report.ok, report
    assert report.tree_size == world.store.size()
    assert report.entries_checked == world.store.size()
    other = log_signer("another.example/log").verifier_key
    refused = world.store.audit(log_verifier_key=other)
    assert not refused.ok
