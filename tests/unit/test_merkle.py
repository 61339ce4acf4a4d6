"""RFC 6962 / RFC 9162 Merkle trees: known answers, plans, frontier, edge cases.

The leaves, roots, node hashes and proofs below are the Certificate Transparency
reference vectors as published in transparency-dev/merkle (testonly/constants.go and
proof/verify_test.go); they are data, copied so the tests need no network.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from ledger.core import merkle as m
from ledger.core.errors import InvalidInput, VerificationError
from ledger.core.merkle_verify import (
    expected_consistency_length,
    expected_inclusion_length,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

LEAF_INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
ROOTS = [  # root of the tree of size i
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
NODE_HASHES = {  # (level, index) -> hash, transparency-dev/merkle NodeHashes()
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
}
INCLUSION = [  # (index, size, proof)
    (0, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (5, 8, ["bc1a0643", "ca854ea1", "d37ee418"]),
    (2, 3, ["fac54203"]),
    (1, 5, ["6e340b9c", "5f083f0a", "bc1a0643"]),
]
CONSISTENCY = [  # (old, new, proof)
    (1, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (6, 8, ["0ebc5d34", "ca854ea1", "d37ee418"]),
    (2, 5, ["5f083f0a", "bc1a0643"]),
    (6, 7, ["0ebc5d34", "b08693ec", "d37ee418"]),
]
ALL_HASHES = [*ROOTS, *NODE_HASHES.values()]


def full(prefix: str) -> bytes:
    (match,) = {h for h in ALL_HASHES if h.startswith(prefix)}
    return bytes.fromhex(match)


LEAVES = [m.leaf_hash(d) for d in LEAF_INPUTS]


def nodes_for(leaves: list[bytes]) -> dict[m.NodeId, bytes]:
    frontier = m.Frontier.empty()
    nodes: dict[m.NodeId, bytes] = {}
    for leaf in leaves:
        for level, index, h in frontier.add_leaf(leaf):
            nodes[(level, index)] = h
    return nodes


NODES = nodes_for(LEAVES)


def test_hash_functions_use_rfc6962_domain_prefixes() -> None:
    assert m.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert m.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert m.EMPTY_ROOT.hex() == ROOTS[0]


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size: int) -> None:
    assert m.root(LEAVES[:size]).hex() == ROOTS[size]
    assert m.root_at(size, NODES).hex() == ROOTS[size]


def test_reference_node_hashes() -> None:
    for node, value in NODE_HASHES.items():
        assert NODES[node].hex() == value
    assert NODES[(3, 0)].hex() == ROOTS[8]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    want = [full(p) for p in proof]
    assert m.inclusion_proof(index, size, NODES) == want
    verify_inclusion(LEAVES[index], index, size, want, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    want = [full(p) for p in proof]
    assert m.consistency_proof(old, new, NODES) == want
    verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), want)


def test_root_is_the_largest_power_of_two_split_not_the_midpoint() -> None:
    leaves = [m.leaf_hash(bytes([i])) for i in range(7)]
    left = m.root(leaves[:4])
    right = m.node_hash(m.node_hash(leaves[4], leaves[5]), leaves[6])
    assert m.root(leaves) == m.node_hash(left, right)


def test_frontier_matches_compact_tree_reference() -> None:
    f = m.Frontier.empty()
    for size, leaf in enumerate(LEAVES, start=1):
        f.add_leaf(leaf)
        assert f.size == size
        assert len(f.hashes) == size.bit_count()
        assert f.root().hex() == ROOTS[size]
    restored = m.Frontier(f.size, f.hashes)
    assert restored == f
    assert restored.root() == f.root()
    copy = f.copy()
    copy.add_leaf(LEAVES[0])
    assert f.size == 8
    assert copy.size == 9


def test_frontier_append_reports_every_new_perfect_node() -> None:
    f = m.Frontier.empty()
    for _ in range(3):
        f.add_leaf(LEAVES[0])
    created = f.add_leaf(LEAVES[3])
    assert [(lv, ix) for lv, ix, _ in created] == [(0, 3), (1, 1), (2, 0)]


@pytest.mark.parametrize(
    ("size", "hashes"),
    [(-1, []), (1, []), (2, [b"\x00" * 32, b"\x00" * 32]), (1, [b"short"])],
)
def test_frontier_rejects_inconsistent_state(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(InvalidInput):
        m.Frontier(size, hashes)


def test_frontier_rejects_bad_leaf() -> None:
    with pytest.raises(InvalidInput):
        m.Frontier.empty().add_leaf(b"\x00" * 31)


def test_plans_are_logarithmic() -> None:
    for size in [1, 2, 3, 1000, 1023, 1024, 1025, 2**20 - 1, 2**40 + 12345]:
        bound = 2 * size.bit_length() + 2
        for index in {0, size // 3, size // 2, size - 1}:
            assert len(m.inclusion_plan(index, size)) <= bound
        for old in {1, size // 3, size // 2, size - 1}:
            if 0 < old < size:
                assert len(m.consistency_plan(old, size)) <= bound
        assert len(m.root_plan(size)) == size.bit_count()


def test_plan_covers_exactly_the_nodes_used() -> None:
    for index in range(8):
        plan = m.inclusion_plan(index, 7 if index < 7 else 8)
        subset = {k: NODES[k] for k in plan}
        size = 7 if index < 7 else 8
        assert m.inclusion_proof(index, size, subset) == m.inclusion_proof(index, size, NODES)


def test_subtree_hash_of_right_edge() -> None:
    assert m.subtree_plan(4, 7) == [(1, 2), (0, 6)]
    assert m.subtree_hash(4, 7, NODES) == m.root(LEAVES[4:7])
    assert m.subtree_hash(2, 5, NODES) == m.root(LEAVES[2:5])


@pytest.mark.parametrize(("start", "end"), [(0, 0), (3, 2), (-1, 2), (1, 3), (2, 6)])
def test_subtree_plan_rejects_unaligned_or_empty_ranges(start: int, end: int) -> None:
    with pytest.raises(InvalidInput):
        m.subtree_plan(start, end)


def test_missing_or_bad_node_is_reported() -> None:
    with pytest.raises(InvalidInput, match="missing"):
        m.inclusion_proof(0, 8, {})
    with pytest.raises(InvalidInput, match="32-byte"):
        m.root_at(1, {(0, 0): b"x"})


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 4)])
def test_inclusion_plan_rejects_out_of_range(index: int, size: int) -> None:
    with pytest.raises(InvalidInput):
        m.inclusion_plan(index, size)


def test_consistency_plan_rejects_old_larger_than_new() -> None:
    with pytest.raises(InvalidInput):
        m.consistency_plan(5, 4)
    with pytest.raises(InvalidInput):
        m.consistency_plan(-1, 4)
    assert m.consistency_plan(0, 5) == []
    assert m.consistency_plan(5, 5) == []


def test_root_plan_of_empty_tree() -> None:
    assert m.root_plan(0) == []
    assert m.root_at(0, {}) == m.EMPTY_ROOT
    with pytest.raises(InvalidInput):
        m.root_plan(-1)


def test_expected_lengths_match_rfc_recursion() -> None:
    nodes = nodes_for([m.leaf_hash(bytes([i])) for i in range(70)])
    for size in range(1, 70):
        for index in range(size):
            assert expected_inclusion_length(index, size) == len(
                m.inclusion_proof(index, size, nodes)
            )
        for old in range(1, size):
            assert expected_consistency_length(old, size) == len(
                m.consistency_proof(old, size, nodes)
            )


def test_verifier_edge_cases() -> None:
    root1 = bytes.fromhex(ROOTS[1])
    verify_inclusion(LEAVES[0], 0, 1, [], root1)
    assert root_from_inclusion(LEAVES[0], 0, 1, []) == root1
    with pytest.raises(VerificationError, match="not inside"):
        verify_inclusion(LEAVES[0], 0, 0, [], m.EMPTY_ROOT)
    with pytest.raises(VerificationError, match="not a 32-byte"):
        verify_inclusion(b"x", 0, 1, [], root1)
    with pytest.raises(VerificationError, match="too long"):
        verify_inclusion(LEAVES[0], 0, 1, [root1], root1)
    with pytest.raises(VerificationError, match="does not lead"):
        verify_inclusion(LEAVES[1], 0, 1, [], root1)
    with pytest.raises(VerificationError, match="non-negative"):
        verify_inclusion(LEAVES[0], -1, 1, [], root1)


def test_consistency_edge_cases() -> None:
    r = [bytes.fromhex(h) for h in ROOTS]
    verify_consistency(0, 0, m.EMPTY_ROOT, m.EMPTY_ROOT, [])
    verify_consistency(0, 5, m.EMPTY_ROOT, r[5], [])
    verify_consistency(3, 3, r[3], r[3], [])
    with pytest.raises(VerificationError, match="must be empty"):
        verify_consistency(0, 5, m.EMPTY_ROOT, r[5], [r[1]])
    with pytest.raises(VerificationError, match="must be empty"):
        verify_consistency(3, 3, r[3], r[3], [r[1]])
    with pytest.raises(VerificationError, match="empty tree"):
        verify_consistency(0, 5, r[1], r[5], [])
    with pytest.raises(VerificationError, match="same tree size"):
        verify_consistency(3, 3, r[3], r[4], [])
    with pytest.raises(VerificationError, match="larger"):
        verify_consistency(4, 3, r[4], r[3], [])
    with pytest.raises(VerificationError, match="too short"):
        verify_consistency(1, 2, r[1], r[2], [])


def test_root_is_iterative_and_fast() -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1 << 17)]
    start = time.perf_counter()
    value = m.root(leaves)
    elapsed = time.perf_counter() - start
    f = m.Frontier.empty()
    for leaf in leaves:
        f.add_leaf(leaf)
    assert value == f.root()
    # 2^17 leaves take ~0.2 s here (1M leaves ~1.7 s); the bound only catches a regression
    # to recursive or quadratic code.
    assert elapsed < 2.0
