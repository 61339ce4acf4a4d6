"""RFC 6962 / RFC 9162 Merkle tree hashing and proof construction (the prover side).

Pure functions over bytes. The verifier lives in :mod:`ledger.core.merkle_verify` and
shares only :func:`leaf_hash` and :func:`node_hash` with this module, so a bug in
proof construction cannot be hidden by the same bug in verification.

Stored nodes are *perfect* subtrees. A :data:`NodeId` ``(level, index)`` names the
perfect subtree covering leaves ``[index * 2**level, (index + 1) * 2**level)``;
level 0 nodes are the leaf hashes themselves. Proofs are built in two pure steps so a
database can fetch every node it needs in one query:

1. ``*_plan(...)`` returns the node ids needed;
2. ``inclusion_proof`` / ``consistency_proof`` assemble the RFC 9162 proof from a
   mapping of those ids to hashes. A path element that is not a perfect subtree
   (it can only lie on the right edge of the tree) is recomputed from the perfect
   subtrees it decomposes into.

Cost: every proof needs O(log n) stored nodes. At most one path element is a
non-perfect subtree, and it decomposes into at most ``log2(n)`` perfect nodes, so a
plan holds fewer than ``2 * log2(n) + 2`` ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from ledger.core.errors import InvalidInput

HASH_SIZE = 32
NodeId = tuple[int, int]

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() — RFC 6962 §2.1 / RFC 9162 §2.1.1."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) — RFC 9162 §2.1.1 (leaf/node domain separation)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) — RFC 9162 §2.1.1 interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves — RFC 9162 §2.1.1.

    Computed level by level: pairing neighbours and carrying an odd last node up
    unchanged yields exactly the tree that splits at the largest power of two below n.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha = hashlib.sha256
    prefix = _NODE_PREFIX
    while len(level) > 1:
        carry = level[-1] if len(level) % 2 else None
        nxt = [sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
        if carry is not None:
            nxt.append(carry)
        level = nxt
    return level[0]


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise InvalidInput(f"{what} must be a {HASH_SIZE}-byte SHA-256 hash")


class Frontier:
    """The compact range of the tree's right edge: one perfect-subtree hash per set bit
    of ``size``, largest (leftmost) first. Enough to append and to compute the root."""

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int, hashes: Sequence[bytes]) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput("a frontier size must be a non-negative integer")
        if len(hashes) != size.bit_count():
            raise InvalidInput(
                f"a frontier of size {size} needs {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            _check_hash(h, "a frontier hash")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, [])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        """A copy of the stored hashes, largest subtree first (serialisable)."""
        return list(self._hashes)

    def copy(self) -> Frontier:
        return Frontier(self._size, self._hashes)

    def add_leaf(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return every perfect node this append completed,
        ``(level, index, hash)`` from level 0 upwards."""
        _check_hash(leaf, "a leaf hash")
        index = self._size
        created = [(0, index, leaf)]
        current, level = leaf, 0
        # Each trailing 1 bit of the old size is a left sibling waiting for a partner.
        while index & 1:
            current = node_hash(self._hashes.pop(), current)
            level += 1
            index >>= 1
            created.append((level, index, current))
        self._hashes.append(current)
        self._size += 1
        return created

    def root(self) -> bytes:
        """MTH of the current size in O(log n): fold the perfect subtrees right to left."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frontier(size={self._size})"


def subtree_plan(start: int, end: int) -> list[NodeId]:
    """Perfect nodes whose fold is MTH(D[start:end]) (RFC 9162 §2.1.1), left to right.

    The range must be one the RFC recursion can produce: ``start`` a multiple of the
    largest power of two not above ``end - start``, so every piece is a stored node.
    """
    if start < 0 or end <= start:
        raise InvalidInput(f"subtree [{start}, {end}) is empty or negative")
    n = end - start
    top = n.bit_length() - 1
    if start % (1 << top):
        raise InvalidInput(f"subtree [{start}, {end}) is not aligned to stored nodes")
    plan: list[NodeId] = []
    pos = start
    for level in range(top, -1, -1):
        if n >> level & 1:
            plan.append((level, pos >> level))
            pos += 1 << level
    return plan


def _fetch(nodes: Mapping[NodeId, bytes], node: NodeId) -> bytes:
    try:
        value = nodes[node]
    except KeyError:
        raise InvalidInput(f"node {node} is missing from the fetched nodes") from None
    _check_hash(value, f"node {node}")
    return value


def subtree_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[start:end]) folded from the perfect nodes of :func:`subtree_plan`.

    The split at the largest power of two makes the leftmost piece the left child, so
    the fold goes right to left.
    """
    plan = subtree_plan(start, end)
    acc = _fetch(nodes, plan[-1])
    for node in reversed(plan[:-1]):
        acc = node_hash(_fetch(nodes, node), acc)
    return acc


def root_plan(size: int) -> list[NodeId]:
    """Nodes needed for the root at ``size`` (one per set bit; none when empty)."""
    if size < 0:
        raise InvalidInput("a tree size cannot be negative")
    return subtree_plan(0, size) if size else []


def root_at(size: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[0:size]) from stored nodes — RFC 9162 §2.1.1."""
    if size < 0:
        raise InvalidInput("a tree size cannot be negative")
    return subtree_hash(0, size, nodes) if size else EMPTY_ROOT


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 as leaf ranges, leaf-to-root order."""
    if size <= 0 or not 0 <= index < size:
        raise InvalidInput(f"leaf index {index} is not inside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1 as leaf ranges, in proof order."""
    if old < 0 or new < 0:
        raise InvalidInput("tree sizes cannot be negative")
    if old > new:
        raise InvalidInput(f"old size {old} is larger than new size {new}")
    if old == 0 or old == new:
        return []  # nothing to prove: every tree extends the empty tree and itself
    ranges: list[tuple[int, int]] = []
    lo, hi, complete = 0, new, True
    while True:
        if old == hi:  # m == n: {} if b, else {MTH(D[m])}
            if not complete:
                ranges.append((lo, hi))
            break
        k = _largest_power_of_two_below(hi - lo)
        if old <= lo + k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            lo += k
            complete = False
    ranges.reverse()
    return ranges


def _plan(ranges: Sequence[tuple[int, int]]) -> list[NodeId]:
    seen: dict[NodeId, None] = {}
    for start, end in ranges:
        for node in subtree_plan(start, end):
            seen.setdefault(node)
    return list(seen)


def inclusion_plan(index: int, size: int) -> list[NodeId]:
    """Node ids needed for the inclusion proof of leaf ``index`` in a tree of ``size``."""
    return _plan(_inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """The RFC 9162 §2.1.3.1 inclusion proof (audit path), leaf-to-root order."""
    return [subtree_hash(a, b, nodes) for a, b in _inclusion_ranges(index, size)]


def consistency_plan(old: int, new: int) -> list[NodeId]:
    """Node ids needed for the consistency proof from size ``old`` to size ``new``."""
    return _plan(_consistency_ranges(old, new))


def consistency_proof(old: int, new: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """The RFC 9162 §2.1.4.1 consistency proof PROOF(m, D[n]); empty when
    ``old == 0`` or ``old == new``."""
    return [subtree_hash(a, b, nodes) for a, b in _consistency_ranges(old, new)]
