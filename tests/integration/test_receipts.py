"""Threat T17: the operator denies an entry ever existed.

Every append returns a signed receipt (:class:`ledger.store.base.AppendResult`: index,
leaf hash, event id, the signed checkpoint covering it). The holder verifies it OFFLINE
with nothing but the log's verifier key and an RFC 9162 inclusion proof fetched at the
checkpoint's size, and keeps both. When an insider later deletes the entry (triggers
dropped, raw DELETE) or rewrites the log without it and re-signs every checkpoint
(``tests/helpers/ledger_builder.rewrite_log``), the receipt proves the omission:

* the kept receipt and proof still verify (the log key signed a tree holding that leaf);
* ``audit`` with ``trusted_checkpoint=receipt.checkpoint`` fails (``missing`` or
  ``consistency``);
* after a rewrite, the store can no longer produce an inclusion proof of the receipt's
  leaf hash, at any index, that verifies against any checkpoint it now signs (its
  re-signed one at the receipt's size, its latest), nor a consistency proof from the
  receipt's checkpoint to its latest one. (The proof of the receipt's own index at the
  receipt's size is built only from the untouched prefix, so it still leads to the
  receipt's root: the store's root at that size is what differs.)

T18-adjacent: a receipt stays verifiable after unrelated later appends (consistency
proof from its size to the new size, inclusion proof at the new size).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.core import events as ev
from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, verify_checkpoint
from ledger.core.errors import LedgerError, NotFound, VerificationError
from ledger.core.events import Entry
from ledger.core.merkle_verify import verify_consistency, verify_inclusion
from ledger.core.note import NoteSigner
from ledger.service import AccessDenied
from ledger.store.audit_sql import audit_store
from ledger.store.base import AppendResult
from ledger.store.sql import SqlStore
from tests.helpers.ledger_builder import (
    ORIGIN,
    BuiltLedger,
    build_ledger,
    drop_triggers,
    execute,
    rewrite_log,
)


@pytest.fixture
def built(tmp_path: Path) -> Iterator[BuiltLedger]:
    b = build_ledger(tmp_path / "ledger", seed=17)
    yield b
    b.store.close()


def log_key(b: BuiltLedger) -> str:
    assert b.store.signer is not None
    return b.store.signer.verifier_key


def verify_offline(receipt: AppendResult, key: str, proof: list[bytes]) -> Checkpoint:
    """What a receipt holder checks with the verifier key only (no store access)."""
    cp = verify_checkpoint(receipt.checkpoint, key)
    assert cp.origin == ORIGIN
    assert receipt.index < cp.size
    verify_inclusion(receipt.leaf_hash, receipt.index, cp.size, proof, cp.root)
    return cp


def fetch_proof(store: SqlStore, receipt: AppendResult, key: str) -> list[bytes]:
    cp = verify_checkpoint(receipt.checkpoint, key)
    return store.inclusion_proof(receipt.index, cp.size)


def open_case(b: BuiltLedger, n: int) -> AppendResult:
    return b.custody.open_case(b.actors["admin-de"], f"CASE-R{n}", f"receipt case {n}")


def unrelated(b: BuiltLedger, count: int, start: int = 100) -> list[AppendResult]:
    return [open_case(b, start + i) for i in range(count)]


def signed_case(b: BuiltLedger, n: int) -> ev.SignedEvent:
    admin = b.actors["admin-de"]
    body = ev.Event(kind=ev.CASE_OPEN, origin=ORIGIN, nonce=os.urandom(16).hex(),
                    claimed_time=b.clock(), signer="admin-de", key_id=admin.key_id,
                    payload={"id": f"CASE-B{n}", "title": ""}, prev=None)
    return ev.sign_event(body, admin.signer)


def test_every_append_returns_a_signed_receipt_that_verifies_offline(built: BuiltLedger) -> None:
    b, key = built, log_key(built)
    arts = dict(b.store.state_items("art/"))
    nl_art = next(v["id"] for v in arts.values() if v["custodian"] == "nfi")
    receipts = [open_case(b, 1), open_case(b, 2)]
    receipts.append(b.custody.add_legal_basis(
        b.actors["admin-de"], instrument="mlat", reference="MLA-R", issuing_state="NL",
        executing_state="DE", valid_until="2099-01-01", case="CASE-R1"))
    receipts.append(b.custody.access(b.actors["ex-nl"], artefact=nl_art, action="view",
                                     purpose="receipt test"))
    with pytest.raises(AccessDenied) as denied:  # a denied access gets a receipt too
        b.custody.access(b.actors["ext-1"], artefact=nl_art, action="view", purpose="nosy")
    receipts.append(denied.value.receipt)
    # Group commit: several events in ONE transaction share one checkpoint.
    group = b.store.append_many([signed_case(b, i) for i in range(5)])
    assert all(isinstance(r, AppendResult) for r in group)
    receipts += [r for r in group if isinstance(r, AppendResult)]
    assert len({r.checkpoint for r in group if isinstance(r, AppendResult)}) == 1

    indices = [r.index for r in receipts]
    assert indices == sorted(set(indices))
    for r in receipts:
        proof = fetch_proof(b.store, r, key)
        cp = verify_offline(r, key, proof)
        assert r.leaf_hash == merkle.leaf_hash(b.store.entry(r.index).leaf)
        assert Entry.from_leaf(b.store.entry(r.index).leaf).signed.event_id == r.event_id
        # A receipt is bound to its leaf, its index and the log key.
        with pytest.raises(VerificationError):
            verify_inclusion(merkle.leaf_hash(b"forged"), r.index, cp.size, proof, cp.root)
        if cp.size > 1:
            with pytest.raises(VerificationError):
                verify_inclusion(r.leaf_hash, (r.index + 1) % cp.size, cp.size, proof,
                                 cp.root)
        other = NoteSigner(ORIGIN, b"\x07" * 32).verifier_key
        with pytest.raises(VerificationError):
            verify_checkpoint(r.checkpoint, other)
    assert audit_store(b.store, trusted_checkpoint=receipts[0].checkpoint).ok


def test_receipt_stays_verifiable_after_unrelated_appends(built: BuiltLedger) -> None:
    b, key = built, log_key(built)
    receipt = open_case(b, 1)
    old = verify_offline(receipt, key, fetch_proof(b.store, receipt, key))
    later = unrelated(b, 25)
    for r in later:  # consistency from the receipt's tree to every later checkpoint
        new = verify_checkpoint(r.checkpoint, key)
        verify_consistency(old.size, new.size, old.root, new.root,
                           b.store.consistency_proof(old.size, new.size))
    new = verify_checkpoint(b.store.latest_checkpoint() or "", key)
    assert new.size == old.size + 25
    verify_inclusion(receipt.leaf_hash, receipt.index, new.size,
                     b.store.inclusion_proof(receipt.index, new.size), new.root)
    report = audit_store(b.store, trusted_checkpoint=receipt.checkpoint)
    assert report.ok, report


def test_deleted_entry_is_proven_by_its_receipt(built: BuiltLedger) -> None:
    """Raw DELETE of the row (triggers dropped): the audit names the index, the kept
    receipt and proof still verify, so the operator cannot deny the entry."""
    b, key = built, log_key(built)
    receipt = open_case(b, 1)
    kept_proof = fetch_proof(b.store, receipt, key)
    unrelated(b, 5)
    drop_triggers(b.store)
    execute(b.store, "DELETE FROM entries WHERE idx = :i", {"i": receipt.index})
    assert b.store.find_event(receipt.event_id) is None
    with pytest.raises(NotFound):
        b.store.entry(receipt.index)
    assert all(s.leaf_hash != receipt.leaf_hash for s in b.store.entries())
    report = audit_store(b.store, trusted_checkpoint=receipt.checkpoint)
    assert not report.ok
    assert report.kind == "missing", report
    assert report.first_bad_index == receipt.index, report
    verify_offline(receipt, key, kept_proof)  # the receipt still proves it existed


@pytest.mark.parametrize("where", ["middle", "last"])
def test_rewritten_log_without_the_entry_is_caught_by_the_receipt(
        built: BuiltLedger, where: str) -> None:
    """The insider holds the log key: rewrites entries, Merkle nodes, checkpoints and
    state without the entry and re-signs every checkpoint. The log audits clean on its
    own; the receipt exposes it."""
    b, key = built, log_key(built)
    receipt = open_case(b, 1)
    kept_proof = fetch_proof(b.store, receipt, key)
    receipt_cp = verify_offline(receipt, key, kept_proof)
    if where == "middle":
        unrelated(b, 6)
    entries = [Entry.from_leaf(s.leaf) for s in b.store.entries()]
    kept = [e for e in entries if e.index != receipt.index]
    rebuilt = [Entry(i, e.ledger_time, e.signed) for i, e in enumerate(kept)]
    drop_triggers(b.store)
    rewrite_log(b.store, rebuilt, rewrite_state=True)

    assert b.store.find_event(receipt.event_id) is None
    assert audit_store(b.store).ok  # on its own, the re-signed log looks perfect
    report = audit_store(b.store, trusted_checkpoint=receipt.checkpoint)
    assert not report.ok
    assert report.kind == ("consistency" if where == "middle" else "missing"), report
    verify_offline(receipt, key, kept_proof)  # the kept receipt still verifies

    # The store can no longer prove the receipt's leaf in any tree it signs now: not in
    # its re-signed checkpoint at the receipt's size, not in its latest checkpoint.
    # (A proof of the receipt's index at the receipt's size is made of hashes of the
    # untouched prefix only, so it still leads to the RECEIPT's root; the store's own
    # root at that size differs, which is what the audit above reports.)
    size = b.store.size()
    signed_now = dict(b.store.checkpoints())
    if receipt_cp.size > size:
        assert receipt_cp.size not in signed_now
        with pytest.raises(NotFound):
            b.store.inclusion_proof(receipt.index, receipt_cp.size)
    else:
        resigned = verify_checkpoint(signed_now[receipt_cp.size], key)
        assert resigned.root == b.store.root(receipt_cp.size) != receipt_cp.root
        for i in range(receipt_cp.size):
            with pytest.raises(VerificationError):
                verify_inclusion(receipt.leaf_hash, i, receipt_cp.size,
                                 b.store.inclusion_proof(i, receipt_cp.size), resigned.root)
        for i in range(receipt_cp.size - 1):  # off the right edge the path changed too
            with pytest.raises(VerificationError):
                verify_inclusion(receipt.leaf_hash, i, receipt_cp.size,
                                 b.store.inclusion_proof(i, receipt_cp.size),
                                 receipt_cp.root)
    latest = verify_checkpoint(b.store.latest_checkpoint() or "", key)
    for i in range(latest.size):
        with pytest.raises(VerificationError):
            verify_inclusion(receipt.leaf_hash, i, latest.size,
                             b.store.inclusion_proof(i, latest.size), latest.root)
    assert all(s.leaf_hash != receipt.leaf_hash for s in b.store.entries())
    # Nor show its new history extends the receipt's tree.
    new = verify_checkpoint(b.store.latest_checkpoint() or "", key)
    with pytest.raises(LedgerError):
        verify_consistency(receipt_cp.size, new.size, receipt_cp.root, new.root,
                           b.store.consistency_proof(receipt_cp.size, new.size))
