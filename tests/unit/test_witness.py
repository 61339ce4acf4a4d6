"""The witness's decision (ledger/core/witness.py): pure, with real Merkle trees and keys.

A witness cosigns a new checkpoint only if it verifies with the log key and extends the
one it cosigned last; a smaller tree is a rollback, another root at the same size or a
failing consistency proof is a split view, and then nothing is cosigned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ledger.core import merkle
from ledger.core.checkpoint import (
    Checkpoint,
    add_cosignature,
    cosign,
    cosignature_timestamp,
    sign_checkpoint,
    verify_cosignatures,
)
from ledger.core.errors import CheckpointRefused, InvalidInput, InvalidSignature, VerificationError
from ledger.core.note import NoteSigner, split_note
from ledger.core.witness import (
    ROLLBACK,
    SPLIT_VIEW,
    check_cosignature,
    check_extends,
    decide,
    verify_witnessed,
    witness_verifier_key,
)
from tests.unit.test_import_direction import (
    FORBIDDEN_CALLS,
    FORBIDDEN_IN_CORE,
    _hits,
    imported_modules,
)

ORIGIN = "log.example/custody"
LOG = NoteSigner(ORIGIN, hashlib.sha256(b"log").digest())
LOG_KEY = LOG.verifier_key
W_NAME = "witness.nfi.example"
W_SEED = hashlib.sha256(b"witness nfi").digest()
W_KEY = witness_verifier_key(W_NAME, W_SEED)
W2_NAME = "witness.pj.example"
W2_SEED = hashlib.sha256(b"witness pj").digest()
W2_KEY = witness_verifier_key(W2_NAME, W2_SEED)
T = 1_790_000_000


class Tree:
    """A log: leaf hashes, stored perfect nodes, checkpoints and proofs."""

    def __init__(self, label: str, n: int = 0, signer: NoteSigner = LOG) -> None:
        self.frontier = merkle.Frontier.empty()
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.label = label
        self.signer = signer
        self.grow(n)

    def grow(self, n: int) -> Tree:
        for _ in range(n):
            leaf = merkle.leaf_hash(f"{self.label}/{self.frontier.size}".encode())
            for level, idx, h in self.frontier.add_leaf(leaf):
                self.nodes[(level, idx)] = h
        return self

    @property
    def size(self) -> int:
        return self.frontier.size

    def note(self) -> str:
        cp = Checkpoint(self.signer.name, self.size, self.frontier.root())
        return sign_checkpoint(cp, self.signer)

    def proof(self, old: int) -> list[bytes]:
        return merkle.consistency_proof(old, self.size, self.nodes)


def first_state(tree: Tree) -> str:
    return decide(None, LOG_KEY, tree.note(), [], T, witness_name=W_NAME,
                  witness_seed=W_SEED).state


def test_first_cosignature_verifies_with_the_witness_key() -> None:
    tree = Tree("a", 5)
    out = decide(None, LOG_KEY, tree.note(), [], T, witness_name=W_NAME, witness_seed=W_SEED)
    assert out.previous_size is None
    assert out.checkpoint.size == 5
    assert cosignature_timestamp(out.line) == T
    cosigned = add_cosignature(tree.note(), out.line)
    assert verify_cosignatures(cosigned, [W_KEY], 1) == [W_NAME]
    # The new state is the log-signed note with the line: evidence, and it still verifies.
    assert out.state == cosigned
    assert verify_witnessed(out.state, LOG_KEY, [W_KEY], 1).checkpoint.size == 5
    # Another witness's key does not accept it.
    with pytest.raises(VerificationError, match="0 valid of 1 required"):
        verify_cosignatures(cosigned, [W2_KEY], 1)


def test_advance_with_a_valid_consistency_proof() -> None:
    tree = Tree("a", 5)
    state = first_state(tree)
    tree.grow(8)
    out = decide(state, LOG_KEY, tree.note(), tree.proof(5), T + 60, witness_name=W_NAME,
                 witness_seed=W_SEED)
    assert (out.previous_size, out.checkpoint.size) == (5, 13)
    assert verify_cosignatures(out.state, [W_KEY], 1) == [W_NAME]
    # The state chain keeps going: 13 -> 16 (a power of two) -> 17.
    for grow in (3, 1):
        old = tree.size
        tree.grow(grow)
        out = decide(out.state, LOG_KEY, tree.note(), tree.proof(old), T + 120,
                     witness_name=W_NAME, witness_seed=W_SEED)
        assert out.previous_size == old


def test_same_size_same_root_cosigns_again() -> None:
    tree = Tree("a", 7)
    state = first_state(tree)
    out = decide(state, LOG_KEY, tree.note(), [], T + 1, witness_name=W_NAME,
                 witness_seed=W_SEED)
    assert out.previous_size == 7
    assert cosignature_timestamp(out.line) == T + 1


def test_rollback_is_refused() -> None:
    tree = Tree("a", 9)
    state = first_state(tree)
    smaller = Tree("a", 6)
    with pytest.raises(CheckpointRefused) as caught:
        decide(state, LOG_KEY, smaller.note(), [], T, witness_name=W_NAME, witness_seed=W_SEED)
    assert caught.value.kind == ROLLBACK
    assert "rollback" in caught.value.message
    assert "size 6" in caught.value.message
    assert "size 9" in caught.value.message


def test_split_view_at_equal_size_names_both_roots() -> None:
    honest, fork = Tree("a", 9), Tree("b", 9)
    state = first_state(honest)
    with pytest.raises(CheckpointRefused) as caught:
        decide(state, LOG_KEY, fork.note(), [], T, witness_name=W_NAME, witness_seed=W_SEED)
    exc = caught.value
    assert exc.kind == SPLIT_VIEW
    assert isinstance(exc, VerificationError)
    assert "split view" in exc.message
    assert fork.frontier.root().hex() in exc.message
    assert honest.frontier.root().hex() in exc.message
    assert "\n" not in exc.message


def test_split_view_when_the_new_tree_does_not_extend_the_old() -> None:
    honest = Tree("a", 9)
    state = first_state(honest)
    # A rewritten log: same first 7 leaves, then different ones, re-signed with the key.
    fork = Tree("a", 7)
    fork.label = "evil"
    fork.grow(5)
    # Its own proof from 9 is honest about ITS tree, so it cannot reach the old root.
    with pytest.raises(CheckpointRefused) as caught:
        decide(state, LOG_KEY, fork.note(), fork.proof(9), T, witness_name=W_NAME,
               witness_seed=W_SEED)
    assert caught.value.kind == SPLIT_VIEW
    assert "size 12" in caught.value.message
    assert "size 9" in caught.value.message


def test_split_view_with_a_forged_proof() -> None:
    tree = Tree("a", 9)
    state = first_state(tree)
    tree.grow(4)
    good = tree.proof(9)
    forged = [*good[:-1], hashlib.sha256(b"forged").digest()]
    for proof in (forged, good[:-1], [*good, good[0]], []):
        with pytest.raises(CheckpointRefused) as caught:
            decide(state, LOG_KEY, tree.note(), proof, T, witness_name=W_NAME,
                   witness_seed=W_SEED)
        assert caught.value.kind == SPLIT_VIEW
    # The genuine proof is accepted: the refusals above are about the proof alone.
    assert decide(state, LOG_KEY, tree.note(), good, T, witness_name=W_NAME,
                  witness_seed=W_SEED).checkpoint.size == 13


def test_wrong_log_key_and_foreign_origin_are_refused() -> None:
    tree = Tree("a", 4)
    other_log = NoteSigner(ORIGIN, hashlib.sha256(b"another log key").digest())
    forged = Tree("a", 4, signer=other_log)
    with pytest.raises(InvalidSignature):
        decide(None, LOG_KEY, forged.note(), [], T, witness_name=W_NAME, witness_seed=W_SEED)
    foreign = NoteSigner("other.example/log", hashlib.sha256(b"log").digest())
    with pytest.raises(VerificationError):
        decide(None, LOG_KEY, Tree("a", 4, signer=foreign).note(), [], T,
               witness_name=W_NAME, witness_seed=W_SEED)
    # A state that no longer verifies (edited, or another log's) is refused, not reset.
    state = first_state(tree)
    text, _sigs = split_note(state)
    with pytest.raises(VerificationError, match="witness state"):
        decide(text.replace("\n4\n", "\n3\n") + state[len(text):], LOG_KEY, tree.note(), [],
               T, witness_name=W_NAME, witness_seed=W_SEED)
    with pytest.raises(InvalidInput):
        decide(None, "not a key", tree.note(), [], T, witness_name=W_NAME, witness_seed=W_SEED)


def test_check_extends_accepts_exactly_what_decide_cosigns() -> None:
    tree = Tree("a", 3)
    state = first_state(tree)
    tree.grow(2)
    new, last = check_extends(state, LOG_KEY, tree.note(), tree.proof(3))
    assert (new.size, last.size if last else None) == (5, 3)


def test_check_cosignature_canonicalises_and_refuses_other_keys() -> None:
    note = Tree("a", 3).note()
    line = cosign(note, W_NAME, W_SEED, T)
    assert check_cosignature(note, W_KEY, line.rstrip("\n")) == line
    with pytest.raises(VerificationError, match="not by the witness key"):
        check_cosignature(note, W2_KEY, line)
    other = Tree("b", 3).note()  # a line over another checkpoint
    with pytest.raises(InvalidSignature):
        check_cosignature(other, W_KEY, line)
    with pytest.raises(InvalidInput):
        check_cosignature(note, LOG_KEY, line)  # a type 0x01 key is not a witness key
    with pytest.raises(InvalidInput):
        check_cosignature(note, W_KEY, "— garbage")


def test_quorum_of_named_witnesses() -> None:
    note = Tree("a", 3).note()
    one = add_cosignature(note, cosign(note, W_NAME, W_SEED, T))
    two = add_cosignature(one, cosign(note, W2_NAME, W2_SEED, T))
    assert verify_witnessed(two, LOG_KEY, [W_KEY, W2_KEY], 2).witnesses == [W_NAME, W2_NAME]
    with pytest.raises(VerificationError, match="1 valid of 2 required"):
        verify_witnessed(one, LOG_KEY, [W_KEY, W2_KEY], 2)


def test_the_witness_core_does_no_io() -> None:
    import ledger.core.witness

    path = Path(ledger.core.witness.__file__)
    assert not _hits(imported_modules(path), FORBIDDEN_IN_CORE)
    assert not FORBIDDEN_CALLS.search(path.read_text())
