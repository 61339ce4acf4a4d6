"""Group commit with signatures checked ahead in worker processes gives the outcome of a
serial check, event for event.

A large ``append_many`` (``ledger.store.sql.PARALLEL_VERIFY_MIN`` events or more) hands
its signatures to ``ledger.parallel_verify`` workers while the rules run in order; the
rules still make each check and take a worker's answer only for exactly the triple it
checked. The batch below mixes everything that makes a guessed key wrong or a check
fail: forged and truncated-key signatures, an actor enrolled and then signing in the
same batch, an actor revoked in the batch and signing after it, an unknown signer, a
replay and a duplicate inside the batch. Two ledgers built the same way take the batch,
one with workers and one serially: the outcomes (receipts or refusal rule), the
entries, the checkpoints and the state are identical, and the audit passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from ledger.core import events as ev
from ledger.core.errors import LedgerError, RuleViolation
from ledger.service import ActorKey
from ledger.store import sql as sqlstore
from ledger.store.audit_sql import audit_store
from tests.conftest import FakeClock, actor_key
from tests.integration.conftest import World, build_world


def _forged(signed: ev.SignedEvent) -> ev.SignedEvent:
    sig = bytearray(signed.signature)
    sig[5] ^= 0x40
    return dataclasses.replace(signed, signature=bytes(sig))


def _batch(w: World) -> list[ev.SignedEvent]:
    """~130 events: mostly good accesses, with every kind of awkward signature."""
    newcomer = actor_key("newcomer")
    leaver: ActorKey = w.de_cust  # LKA custodian: revoked mid-batch, signs after it
    stranger = actor_key("stranger")  # never enrolled
    out: list[ev.SignedEvent] = []
    for i in range(40):
        out.append(w.access_event())
        if i % 9 == 4:
            out.append(_forged(w.access_event()))
    out.append(w.event(ev.ACTOR_ENROL, w.admin, {
        "id": "newcomer", "org": "bka", "name": "Neu", "roles": ["custodian", "examiner"],
        "public_key": newcomer.public_key_b64}))
    for _ in range(10):  # the newcomer's key was not in the state before the batch
        out.append(w.access_event(newcomer))
    out.append(_forged(w.access_event(newcomer)))
    out.append(w.access_event(stranger))
    out.append(w.event(ev.ACTOR_REVOKE, w.admin, {"actor": leaver.actor_id,
                                                  "reason": "left"}))
    out.append(w.access_event(leaver, outcome="denied"))
    again = w.access_event()
    out += [again, again]  # duplicate inside the batch
    for i in range(60):
        out.append(w.access_event(w.court if i % 2 else w.admin))
        if i % 13 == 7:
            out.append(_forged(w.access_event(w.court)))
    return out


def _outcome(o: Any) -> tuple[Any, ...]:
    if isinstance(o, LedgerError):
        return (type(o).__name__, getattr(o, "rule", None), str(o))
    return ("ok", o.index, o.leaf_hash, o.event_id, o.ledger_time, o.checkpoint, o.result,
            o.duplicate)


def _dump(w: World) -> dict[str, list[Any]]:
    with w.store.engine.connect() as conn:
        return {table: sorted(tuple(r) for r in conn.exec_driver_sql(
            f"SELECT * FROM {table}"))  # noqa: S608 - constant names
            for table in ("entries", "checkpoints", "merkle_nodes", "refs", "state",
                          "state_log", "map_nodes_v", "head")}


@pytest.fixture
def two_worlds(backend: str, db_url: str, new_db_url: Any) -> Iterator[tuple[World, World]]:
    a = build_world(db_url, FakeClock())
    b = build_world(new_db_url(), FakeClock())
    yield a, b
    a.close()
    b.close()


def test_parallel_checks_give_the_serial_outcome(two_worlds: tuple[World, World],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    parallel, serial = two_worlds
    batch = _batch(parallel)
    assert len(batch) >= sqlstore.PARALLEL_VERIFY_MIN
    assert [e.event_id for e in _batch(serial)] == [e.event_id for e in batch]

    got = parallel.store.append_many(batch)
    pool = parallel.store._pool
    assert pool, "the batch was not checked in worker processes"
    assert pool.started >= 1

    monkeypatch.setattr(sqlstore, "PARALLEL_VERIFY_MIN", 10**9)
    want = serial.store.append_many(batch)
    assert not serial.store._pool

    assert [_outcome(o) for o in got] == [_outcome(o) for o in want]
    rules = [o.rule for o in got if isinstance(o, RuleViolation)]
    assert rules.count("signature") == 4 + 1 + 5  # every forged one, the newcomer's too
    assert "unknown-signer" in rules
    assert "revoked-key" in rules
    assert sum(1 for o in got if not isinstance(o, LedgerError)) > 100
    assert _dump(parallel) == _dump(serial)
    assert audit_store(parallel.store).ok
    assert audit_store(serial.store).ok


def test_a_tampered_actor_record_fails_the_same_with_workers(
        two_worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch) -> None:
    """The guess reads the state through the verified map: an edited actor record is
    refused by the rules in order, never used to pick a key."""
    parallel, serial = two_worlds
    batch = _batch(parallel)
    assert [e.event_id for e in _batch(serial)] == [e.event_id for e in batch]  # same clock
    results = []
    for w, parallel_min in ((parallel, sqlstore.PARALLEL_VERIFY_MIN), (serial, 10**9)):
        monkeypatch.setattr(sqlstore, "PARALLEL_VERIFY_MIN", parallel_min)
        old = w.store
        old.close()
        with old.engine.begin() as conn:
            conn.execute(sa.text("UPDATE state SET value = replace(value, 'Richter', 'Rixter') "
                                 "WHERE key = 'actor/de-court'"))
        old.close()
        w.store = old.open(w.url, signer=w.log, clock=w.clock)  # fresh caches
        results.append([_outcome(o) for o in w.store.append_many(batch)])
    assert results[0] == results[1]
    assert any("actor/de-court" in o[2] for o in results[0] if o[0] != "ok")
