"""RFC 9162 Merkle proof verification (the verifier side).

Deliberately independent of the prover in :mod:`ledger.core.merkle`: only the two hash
functions are shared. Every function returns ``None`` or raises
:class:`~ledger.core.errors.VerificationError` naming what was wrong; there is no
"skip" switch. The numbered comments follow RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ledger.core.errors import VerificationError
from ledger.core.merkle import leaf_hash, node_hash

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1, restated on purpose

__all__ = [
    "expected_consistency_length",
    "expected_inclusion_length",
    "leaf_hash",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]


def _check_size(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerificationError(f"{what} must be a non-negative integer")


def _check_hashes(proof: Sequence[bytes], *named: tuple[str, bytes]) -> None:
    for what, value in named:
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise VerificationError(f"the {what} is not a {HASH_SIZE}-byte hash")
    for i, element in enumerate(proof):
        if not isinstance(element, bytes) or len(element) != HASH_SIZE:
            raise VerificationError(f"proof element {i} is not a {HASH_SIZE}-byte hash")


def expected_inclusion_length(index: int, size: int) -> int:
    """Length of the audit path of ``index`` in ``size``: one hash per level where the
    leaf's path and the right edge still differ, then one per left sibling above."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def expected_consistency_length(old: int, new: int) -> int:
    """Length of PROOF(old, D[new]) for 0 < old < new: the audit path of leaf old-1
    with its lowest perfect subtree collapsed into one hash, which is omitted when
    ``old`` is a power of two (it is then the old root itself)."""
    shift = (old & -old).bit_length() - 1  # trailing zero bits of old
    seed = 0 if old == 1 << shift else 1
    return expected_inclusion_length(old - 1, new) - shift + seed


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root implied by an inclusion proof — RFC 9162 §2.1.3.2 steps 1-4."""
    _check_size(index, "the leaf index")
    _check_size(size, "the tree size")
    _check_hashes(proof, ("leaf hash", leaf))
    # 1. The index must lie inside the tree.
    if index >= size:
        raise VerificationError(f"leaf index {index} is not inside a tree of size {size}")
    want = expected_inclusion_length(index, size)
    if len(proof) != want:
        word = "long" if len(proof) > want else "short"
        raise VerificationError(
            f"inclusion proof too {word}: {len(proof)} hashes, a proof of leaf {index} "
            f"in a tree of size {size} has {want}"
        )
    # 2. fn = index, sn = size - 1, r = leaf hash.
    fn, sn, r = index, size - 1, leaf
    # 3. Walk the path.
    for p in proof:
        if sn == 0:  # 3a
            raise VerificationError("inclusion proof too long for this tree")
        if fn & 1 or fn == sn:  # 3b: p is a left sibling
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:  # 3b otherwise: p is a right sibling
            r = node_hash(r, p)
        fn >>= 1  # 3c
        sn >>= 1
    # 4. sn must have reached 0.
    if sn != 0:
        raise VerificationError("inclusion proof too short for this tree")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root`` —
    RFC 9162 §2.1.3.2. Raises :class:`VerificationError`."""
    _check_hashes((), ("root", root))
    computed = root_from_inclusion(leaf, index, size, proof)
    if not hmac.compare_digest(computed, root):
        raise VerificationError(
            f"inclusion proof of leaf {index} does not lead to the root of tree size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify that the tree (new_size, new_root) extends (old_size, old_root) —
    RFC 9162 §2.1.4.2.

    Edge cases: ``old_size == new_size`` needs an empty proof and equal roots;
    ``old_size == 0`` needs an empty proof and ``old_root`` equal to the empty-tree
    hash (every tree extends the empty tree, but a wrong empty root is an error).
    """
    _check_size(old_size, "the old tree size")
    _check_size(new_size, "the new tree size")
    _check_hashes(proof, ("old root", old_root), ("new root", new_root))
    if old_size > new_size:
        raise VerificationError(f"old tree size {old_size} is larger than new size {new_size}")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise VerificationError(
                f"consistency proof from size {old_size} to {new_size} must be empty"
            )
        if old_size == 0 and not hmac.compare_digest(old_root, EMPTY_ROOT):
            raise VerificationError("the root of an empty tree is not SHA-256 of nothing")
        if old_size == new_size and not hmac.compare_digest(old_root, new_root):
            raise VerificationError(f"two different roots for the same tree size {old_size}")
        return
    want = expected_consistency_length(old_size, new_size)
    if len(proof) != want:  # covers step 1: a non-empty proof is required here
        word = "long" if len(proof) > want else "short"
        raise VerificationError(
            f"consistency proof too {word}: {len(proof)} hashes, a proof from size "
            f"{old_size} to {new_size} has {want}"
        )
    path = list(proof)
    # 2. If old_size is an exact power of two, the old root is the first node.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = old_size - 1, sn = new_size - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. Skip the levels where fn is a right child inside the collapsed subtree.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Both running hashes start from the first node.
    fr = sr = path[0]
    # 6. Walk the rest of the path.
    for c in path[1:]:
        if sn == 0:  # 6a
            raise VerificationError("consistency proof too long for these sizes")
        if fn & 1 or fn == sn:  # 6b
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1  # 6c
        sn >>= 1
    # 7. Both roots must match and sn must have reached 0.
    if sn != 0:
        raise VerificationError("consistency proof too short for these sizes")
    if not hmac.compare_digest(fr, old_root):
        raise VerificationError(
            f"consistency proof does not reproduce the old root (size {old_size})"
        )
    if not hmac.compare_digest(sr, new_root):
        raise VerificationError(
            f"consistency proof does not reproduce the new root (size {new_size})"
        )
