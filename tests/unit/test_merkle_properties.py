"""Property tests (Hypothesis) for the Merkle prover and the independent verifier.

For every tree size n <= 300: every inclusion proof and every consistency proof built
by :mod:`ledger.core.merkle` verifies with :mod:`ledger.core.merkle_verify` against
``merkle.root`` of the leaves, and every mutation of a proof or of its claims is
rejected (RFC 9162 §2.1.3.2 / §2.1.4.2; threat T15).

A "wrong size" mutation always comes with the true root of that size: a root is only
meaningful together with its size (both are in the signed checkpoint), and the RFC
algorithm does not, and need not, reject a correct root paired with a wrong size when
the two trees have the same shape along the path.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core import merkle as m
from ledger.core.errors import VerificationError
from ledger.core.merkle_verify import verify_consistency, verify_inclusion

MAX_N = 300
LEAVES = [m.leaf_hash(i.to_bytes(2, "big")) for i in range(MAX_N + 1)]
NODES: dict[m.NodeId, bytes] = {}
ROOTS = [m.EMPTY_ROOT]
_frontier = m.Frontier.empty()
for _leaf in LEAVES:
    for _level, _index, _hash in _frontier.add_leaf(_leaf):
        NODES[(_level, _index)] = _hash
    ROOTS.append(_frontier.root())
OTHER = m.leaf_hash(b"not in the tree")

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def flip(proof: Sequence[bytes], element: int, bit: int) -> list[bytes]:
    out = list(proof)
    value = bytearray(out[element])
    value[bit // 8] ^= 1 << (bit % 8)
    out[element] = bytes(value)
    return out


def inclusion_rejected(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except VerificationError:
        return True
    return False


def consistency_rejected(old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes]) -> bool:
    try:
        verify_consistency(old, new, r1, r2, proof)
    except VerificationError:
        return True
    return False


def test_frontier_agrees_with_root_and_subtrees_for_every_size() -> None:
    frontier = m.Frontier.empty()
    for size in range(1, MAX_N + 1):
        for level, index, value in frontier.add_leaf(LEAVES[size - 1]):
            start = index << level
            assert value == m.root(LEAVES[start : start + (1 << level)])
            assert value == m.subtree_hash(start, start + (1 << level), NODES)
        assert frontier.root() == m.root(LEAVES[:size]) == m.root_at(size, NODES)
        restored = m.Frontier(size, frontier.hashes)
        assert restored.root() == frontier.root()


@SETTINGS
@given(n=st.integers(min_value=1, max_value=MAX_N), data=st.data())
def test_every_inclusion_proof_verifies_and_every_mutation_fails(
    n: int, data: st.DataObject
) -> None:
    root = m.root(LEAVES[:n])
    assert root == ROOTS[n]
    for index in range(n):
        proof = m.inclusion_proof(index, n, NODES)
        verify_inclusion(LEAVES[index], index, n, proof, root)
        leaf = LEAVES[index]
        mutants: list[tuple[bytes, int, int, list[bytes], bytes]] = [
            (leaf, index, n, [*proof, root], root),  # extra hash
            (leaf, index, n + 1, proof, ROOTS[n + 1]),  # a larger tree head
            (leaf, index, n, proof, ROOTS[n - 1]),  # root of another size
            (OTHER, index, n, proof, root),  # another leaf
        ]
        if proof:
            mutants.append((leaf, index, n, proof[:-1], root))  # truncated
            mutants.append((leaf, index, n, proof[1:], root))  # first hash dropped
            bit = data.draw(st.integers(0, 255), label="bit")
            mutants += [(leaf, index, n, flip(proof, e, bit), root) for e in range(len(proof))]
        if n > 1:
            other = (index + 1) % n
            mutants.append((leaf, other, n, proof, root))  # wrong index
            mutants.append((LEAVES[other], other, n, proof, root))  # proof for another index
            if n > 2:
                smaller = n - 1 if index < n - 1 else n - 2
                mutants.append((leaf, index, smaller, proof, ROOTS[smaller]))  # smaller head
        for mutant in mutants:
            assert inclusion_rejected(*mutant), (index, n)
    # Exhaustively: every single bit of every hash of one proof.
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = m.inclusion_proof(index, n, NODES)
    for element in range(len(proof)):
        for bit in range(256):
            assert inclusion_rejected(LEAVES[index], index, n, flip(proof, element, bit), root)


@SETTINGS
@given(n=st.integers(min_value=1, max_value=MAX_N), data=st.data())
def test_every_consistency_proof_verifies_and_every_mutation_fails(
    n: int, data: st.DataObject
) -> None:
    new_root = m.root(LEAVES[:n])
    for old in range(0, n + 1):
        old_root = m.root(LEAVES[:old])
        proof = m.consistency_proof(old, n, NODES)
        verify_consistency(old, n, old_root, new_root, proof)
        if old == 0 or old == n:
            assert proof == []
            assert consistency_rejected(old, n, old_root, new_root, [new_root])
            if old != n:
                assert consistency_rejected(old, n, new_root, new_root, proof)
            continue
        mutants: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
            (old, n, new_root, old_root, proof),  # swapped roots
            (old, n, old_root, new_root, []),  # empty
            (old, n, old_root, new_root, proof[:-1]),  # truncated
            (old, n, old_root, new_root, [*proof, new_root]),  # extra hash
            (old, n, old_root, new_root, [proof[0], *proof]),  # duplicated head
            (old - 1, n, ROOTS[old - 1], new_root, proof),  # wrong old size
            (old + 1, n, ROOTS[old + 1], new_root, proof),  # wrong old size
            (old, n + 1, old_root, ROOTS[n + 1], proof),  # wrong new size
            (old, n, ROOTS[old - 1], new_root, proof),  # wrong old root
            (old, n, old_root, ROOTS[n - 1], proof),  # wrong new root
        ]
        if n > 2 and old < n - 1:
            mutants.append((old, n - 1, old_root, ROOTS[n - 1], proof))
        bit = data.draw(st.integers(0, 255), label="bit")
        mutants += [(old, n, old_root, new_root, flip(proof, e, bit)) for e in range(len(proof))]
        for mutant in mutants:
            assert consistency_rejected(*mutant), (old, n)
    if n > 1:
        old = data.draw(st.integers(1, n - 1), label="old")
        proof = m.consistency_proof(old, n, NODES)
        old_root = ROOTS[old]
        for element in range(len(proof)):
            for bit in range(256):
                mutated = flip(proof, element, bit)
                assert consistency_rejected(old, n, old_root, new_root, mutated)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 65])
def test_proof_for_another_index_never_verifies(n: int) -> None:
    root = ROOTS[n]
    proofs = [m.inclusion_proof(i, n, NODES) for i in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j:
                assert (
                    inclusion_rejected(LEAVES[i], i, n, proofs[j], root) or proofs[i] == proofs[j]
                )
