"""Checkpoint trust on a client (ledger/core/trust.py, threat T4): the pure update rule.

Every refusal must raise :class:`CheckpointRefused` with its stable kind, and no refusal
may hand back a checkpoint to keep. Trees are built with the prover in ``ledger.core.merkle``;
the function under test verifies with the independent ``ledger.core.merkle_verify``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import pytest

from ledger.core import _sodium, merkle
from ledger.core.checkpoint import (
    Checkpoint,
    add_cosignature,
    cosign,
    cosignature_verifier_key,
    sign_checkpoint,
    verify_cosignatures,
)
from ledger.core.errors import CheckpointRefused, InvalidInput, NotFound, VerificationError
from ledger.core.note import NoteSigner, split_note
from ledger.core.trust import TrustDecision, update_trusted
from tests.unit.test_import_direction import CORE, core_paths

ORIGIN = "custody.example/ledger"
LOG = NoteSigner(ORIGIN, b"\x11" * 32)
KEY = LOG.verifier_key
OTHER = NoteSigner(ORIGIN, b"\x22" * 32)  # same name, another key
FOREIGN = NoteSigner("other.example/ledger", b"\x33" * 32)
WITNESS, WITNESS_SEED = "witness.example/w1", b"\x44" * 32
MAP_LINE = "custody-map/v1 " + base64.b64encode(hashlib.sha256(b"map").digest()).decode()


class Tree:
    """An RFC 6962 tree over distinct leaves, with every perfect node kept."""

    def __init__(self, n: int, tag: bytes = b"leaf") -> None:
        self.frontier = merkle.Frontier.empty()
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.hashes: list[bytes] = []
        for i in range(n):
            self.append(tag + b"-%d" % i)

    def append(self, data: bytes) -> None:
        h = merkle.leaf_hash(data)
        self.hashes.append(h)
        for level, idx, value in self.frontier.add_leaf(h):
            self.nodes[(level, idx)] = value

    def root(self, size: int) -> bytes:
        return merkle.root(self.hashes[:size])

    def note(self, size: int, *extensions: str, signer: NoteSigner = LOG,
             origin: str = ORIGIN) -> str:
        return sign_checkpoint(Checkpoint(origin, size, self.root(size), extensions), signer)

    def proofs(self) -> Callable[[int, int], Sequence[bytes]]:
        return lambda old, new: merkle.consistency_proof(old, new, self.nodes)


class Spy:
    """A consistency source that records its calls."""

    def __init__(self, source: Callable[[int, int], Sequence[bytes]]) -> None:
        self.source = source
        self.calls: list[tuple[int, int]] = []

    def __call__(self, old: int, new: int) -> Sequence[bytes]:
        self.calls.append((old, new))
        return self.source(old, new)


def never(old: int, new: int) -> Sequence[bytes]:
    raise AssertionError(f"no consistency proof may be asked for ({old} -> {new})")


def refused(kind: str, kept: str | None, new: str,
            consistency: Callable[[int, int], Sequence[bytes]] = never,
            key: str = KEY, older_ok: bool = False) -> CheckpointRefused:
    with pytest.raises(CheckpointRefused) as caught:
        update_trusted(kept, new, key, consistency, older_ok=older_ok)
    assert caught.value.kind == kind, caught.value
    assert isinstance(caught.value, VerificationError)
    assert "\n" not in caught.value.message
    return caught.value


TREE = Tree(40)


# ---- accepted ------------------------------------------------------------------------


def test_first_use_accepts_a_checkpoint_signed_by_the_pinned_key() -> None:
    note = TREE.note(12)
    decision = update_trusted(None, note, KEY, never)
    cp = Checkpoint(ORIGIN, 12, TREE.root(12))
    assert decision == TrustDecision(cp, note, True, None, cp)


def test_advance_verifies_the_consistency_proof_from_the_kept_size() -> None:
    kept, new = TREE.note(13), TREE.note(29)
    spy = Spy(TREE.proofs())
    decision = update_trusted(kept, new, KEY, spy)
    assert spy.calls == [(13, 29)]
    assert decision.advanced
    assert decision.note == new
    assert decision.previous_size == 13
    assert decision.checkpoint == Checkpoint(ORIGIN, 29, TREE.root(29))


def test_advance_works_between_every_pair_of_sizes() -> None:
    for old in range(1, 18):
        for new in range(old + 1, 19):
            decision = update_trusted(TREE.note(old), TREE.note(new), KEY, TREE.proofs())
            assert decision.advanced, (old, new)
            assert decision.checkpoint.size == new, (old, new)


def test_same_size_same_root_keeps_the_kept_note_without_a_proof() -> None:
    kept = TREE.note(20)
    cosigned = add_cosignature(kept, cosign(kept, WITNESS, WITNESS_SEED, 1_700_000_000))
    decision = update_trusted(kept, cosigned, KEY, never)
    assert decision.advanced is False
    assert decision.note == kept  # the kept note is not replaced
    assert decision.previous_size == 20


# ---- refused -------------------------------------------------------------------------


def test_rollback_to_a_smaller_checkpoint_is_refused() -> None:
    exc = refused("rollback", TREE.note(35), TREE.note(30))
    assert exc.message == ("the ledger's checkpoint (size 30) is older than the one this "
                           "client kept (size 35): the log was truncated or you are shown "
                           "a stale view")


def test_equal_size_with_another_root_is_a_fork() -> None:
    forked = Tree(20, tag=b"other")
    exc = refused("fork", TREE.note(20), forked.note(20))
    assert "different root" in exc.message
    assert "split view" in exc.message


def test_equal_size_and_root_with_other_extension_lines_is_a_fork() -> None:
    exc = refused("fork", TREE.note(20, MAP_LINE), TREE.note(20))
    assert "different extension lines" in exc.message


def test_a_larger_checkpoint_that_does_not_extend_the_kept_one_is_a_fork() -> None:
    # The log was rewritten from index 10 on and grew: its own proofs are valid for the
    # rewritten tree, but they cannot lead from the root the client kept.
    rewritten = Tree(10)
    for i in range(10, 40):
        rewritten.append(b"rewritten-%d" % i)
    exc = refused("fork", TREE.note(25), rewritten.note(33), rewritten.proofs())
    assert "does not extend the one this client kept (size 25)" in exc.message


@pytest.mark.parametrize("damage", ["flip", "short", "long", "empty", "not-bytes"])
def test_a_bad_consistency_proof_is_a_fork(damage: str) -> None:
    def bad(old: int, new: int) -> Sequence[bytes]:
        proof = list(merkle.consistency_proof(old, new, TREE.nodes))
        if damage == "flip":
            proof[-1] = bytes([proof[-1][0] ^ 1]) + proof[-1][1:]
        elif damage == "short":
            proof = proof[:-1]
        elif damage == "long":
            proof.append(proof[0])
        elif damage == "empty":
            proof = []
        else:
            proof[0] = proof[0].hex()  # type: ignore[call-overload]
        return proof

    refused("fork", TREE.note(7), TREE.note(26), bad)


def test_an_older_receipt_checkpoint_is_accepted_only_as_a_proven_prefix() -> None:
    kept = TREE.note(30)
    spy = Spy(TREE.proofs())
    decision = update_trusted(kept, TREE.note(22), KEY, spy, older_ok=True)
    assert spy.calls == [(22, 30)]
    assert decision.advanced is False
    assert decision.note == kept
    assert decision.received == Checkpoint(ORIGIN, 22, TREE.root(22))
    assert decision.checkpoint.size == 30
    # the same older checkpoint of a rewritten log is a fork, not a rollback
    rewritten = Tree(10)
    for i in range(10, 40):
        rewritten.append(b"rewritten-%d" % i)
    exc = refused("fork", kept, rewritten.note(22), TREE.proofs(), older_ok=True)
    assert "is not a prefix of the one this client kept (size 30)" in exc.message
    refused("unverified", kept, TREE.note(22, signer=OTHER), older_ok=True)
    # and without older_ok it stays a rollback
    refused("rollback", kept, TREE.note(22), TREE.proofs())


def test_an_error_of_the_proof_source_is_passed_through_and_nothing_is_accepted() -> None:
    def unavailable(old: int, new: int) -> Sequence[bytes]:
        raise NotFound("no such tree size")

    with pytest.raises(NotFound):
        update_trusted(TREE.note(7), TREE.note(26), KEY, unavailable)


def test_an_unsigned_note_is_refused() -> None:
    body = Checkpoint(ORIGIN, 12, TREE.root(12)).body()
    for note in (body, body + "\n", ""):
        exc = refused("unverified", None, note)
        assert "does not verify with the pinned log key" in exc.message


def test_a_note_signed_by_another_key_is_refused() -> None:
    exc = refused("unverified", TREE.note(5), TREE.note(12, signer=OTHER))
    assert "no signature from a trusted key" in exc.message


def test_a_note_only_cosigned_by_a_witness_is_refused() -> None:
    cp = Checkpoint(ORIGIN, 12, TREE.root(12))
    only_cosig = cp.body() + "\n" + cosign(cp, WITNESS, WITNESS_SEED, 1_700_000_000)
    refused("unverified", None, only_cosig)


def test_a_badly_signed_note_is_refused() -> None:
    note = TREE.note(12)
    text, sigs = split_note(note)
    blob = bytearray(sigs[0].key_hash + sigs[0].signature)
    blob[-1] ^= 0x01
    bad = text + "\n" + f"— {ORIGIN} {base64.b64encode(bytes(blob)).decode()}\n"
    exc = refused("unverified", None, bad)
    assert "invalid signature" in exc.message


def test_an_edited_text_under_a_valid_signature_is_refused() -> None:
    note = TREE.note(12)
    refused("unverified", None, note.replace("\n12\n", "\n13\n", 1))


def test_a_foreign_origin_is_refused_even_when_signed_by_the_log_key() -> None:
    exc = refused("unverified", None, TREE.note(12, origin="other.example/ledger"))
    assert "foreign checkpoint" in exc.message
    refused("unverified", None, TREE.note(12, origin=FOREIGN.name, signer=FOREIGN))


@pytest.mark.parametrize("edit", ["size", "root", "signature", "key", "garbage", "empty"])
def test_an_edited_kept_file_is_an_error_and_is_never_silently_replaced(edit: str) -> None:
    kept = TREE.note(20)
    edited = {
        "size": kept.replace("\n20\n", "\n10\n", 1),
        "root": TREE.note(20).replace(base64.b64encode(TREE.root(20)).decode(),
                                      base64.b64encode(TREE.root(19)).decode()),
        "signature": kept[:-6] + ("AAAAA\n" if not kept.endswith("AAAAA\n") else "BBBBB\n"),
        "key": TREE.note(20, signer=OTHER),
        "garbage": "not a checkpoint\n",
        "empty": "",
    }[edit]
    # The new checkpoint is perfectly good, and still it does not replace the bad file.
    exc = refused("kept-invalid", edited, TREE.note(30), TREE.proofs())
    assert "the checkpoint this client kept does not verify" in exc.message


# ---- extension and cosignature lines ------------------------------------------------


def test_extension_lines_are_verified_kept_and_compared() -> None:
    first = TREE.note(9, MAP_LINE)
    decision = update_trusted(None, first, KEY, never)
    assert decision.checkpoint.extensions == (MAP_LINE,)
    assert decision.note == first
    other_map = "custody-map/v1 " + base64.b64encode(bytes(32)).decode()
    later = TREE.note(21, other_map)
    decision = update_trusted(first, later, KEY, TREE.proofs())
    assert decision.advanced
    assert decision.note == later
    assert decision.checkpoint.extensions == (other_map,)
    assert update_trusted(later, later, KEY, never).advanced is False


def test_cosignature_lines_are_kept_in_the_stored_note() -> None:
    vkey = cosignature_verifier_key(WITNESS, _sodium.public_key_from_seed(WITNESS_SEED))
    first = TREE.note(8)
    first = add_cosignature(first, cosign(first, WITNESS, WITNESS_SEED, 1_700_000_000))
    decision = update_trusted(None, first, KEY, never)
    assert decision.note == first
    later = TREE.note(17, MAP_LINE)
    later = add_cosignature(later, cosign(later, WITNESS, WITNESS_SEED, 1_700_000_100))
    decision = update_trusted(first, later, KEY, TREE.proofs())
    assert decision.note == later
    assert verify_cosignatures(decision.note, [vkey], 1) == [WITNESS]
    # A cosigned kept note still verifies as the kept one.
    assert update_trusted(later, TREE.note(30), KEY, TREE.proofs()).checkpoint.size == 30


# ---- the contract ----------------------------------------------------------------


def test_a_malformed_pinned_key_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        update_trusted(None, TREE.note(3), "not-a-key", never)


def test_the_decision_is_frozen() -> None:
    decision = update_trusted(None, TREE.note(3), KEY, never)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.advanced = False  # type: ignore[misc]


def test_refusals_map_to_exit_1_and_http_422_and_round_trip_through_the_client() -> None:
    from api.problems import problem_body
    from cli.errors import exit_code
    from ledger.store.remote import to_exception

    exc = CheckpointRefused("a forked log", "fork")
    assert exit_code(exc) == 1
    status, body, _headers = problem_body(exc)
    assert status == 422
    again = to_exception(status, body)
    assert isinstance(again, VerificationError)
    assert again.message == "a forked log"


def test_trust_module_is_in_the_pure_core() -> None:
    """It lives in ledger/core/, so the import-direction tests hold it to the core's
    rules (no I/O, clock or randomness; imports only the core)."""
    assert CORE / "trust.py" in core_paths()
