"""The state map: a Merkle commitment to the whole world state, signed in every checkpoint.

The world state (``ledger.core.rules``) is a deterministic function of the log. Each
checkpoint carries the root of a Merkle tree over it as an extension line
``custody-map/v1 <base64 root>``, so any single record — an artefact, an actor's key
status, or the history accumulator that makes an artefact's event list provably
complete — can be proven against a checkpoint the client has verified, and a record
that is absent can be proven absent. Anyone who replays the log recomputes the same
root (``custody audit`` does, at every checkpoint). Pure: no I/O, clock or randomness.

Structure (all hashes SHA-256, 32 bytes)::

    key_hash(k)    = SHA-256(UTF-8 k)
    bucket(k)      = first 2 bytes of key_hash(k), big-endian   (65,536 buckets)
    value_hash(v)  = SHA-256(JCS(v))                             (RFC 8785)
    bucket hash    = ZERO if the bucket is empty, else
                     SHA-256(0x02 || concat of key_hash || value_hash, sorted)
    node(l, r)     = ZERO if l == r == ZERO, else SHA-256(0x03 || l || r)
    level 0        = the 65,536 bucket hashes; level L+1 idx i = node(L 2i, L 2i+1)
    root           = level 16, idx 0

Keys under ``nonce/`` (replay bookkeeping) are not in the map: a replayed event has the
same event id, which the log refuses on its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.core.canonical import canonical
from ledger.core.errors import VerificationError
from ledger.core.state import UNMAPPED

LEVELS = 16
ZERO = bytes(32)
EXTENSION = "custody-map/v1"

NodeId = tuple[int, int]


def mapped(key: str) -> bool:
    """Whether ``key`` is covered by the map."""
    return not key.startswith(UNMAPPED)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def bucket_of(key: str) -> int:
    return int.from_bytes(key_hash(key)[:2], "big")


def value_hash(value: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical(dict(value))).digest()


def bucket_hash(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket's (key_hash, value_hash) pairs, in any order."""
    parts = sorted(kh + vh for kh, vh in items)
    if not parts:
        return ZERO
    return hashlib.sha256(b"\x02" + b"".join(parts)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    if left == ZERO and right == ZERO:
        return ZERO
    return hashlib.sha256(b"\x03" + left + right).digest()


def path_plan(bucket: int) -> list[NodeId]:
    """The sibling nodes on the way from ``bucket`` to the root, lowest first."""
    return [(level, (bucket >> level) ^ 1) for level in range(LEVELS)]


def update_nodes(changed: Mapping[int, bytes],
                 get: Callable[[int, int], bytes]) -> dict[NodeId, bytes]:
    """New hashes of every node above the ``changed`` buckets (bucket -> new hash).

    ``get(level, idx)`` returns the current hash of an unchanged node (ZERO if empty).
    Returns the changed level-0 nodes and every recomputed ancestor, root included."""
    out: dict[NodeId, bytes] = {(0, b): h for b, h in changed.items()}
    level_idxs = set(changed)
    for level in range(LEVELS):
        parents = {i >> 1 for i in level_idxs}
        for p in parents:
            left = out.get((level, 2 * p)) or get(level, 2 * p)
            right = out.get((level, 2 * p + 1)) or get(level, 2 * p + 1)
            out[(level + 1, p)] = node_hash(left, right)
        level_idxs = parents
    return out


def root_from_path(bucket: int, bucket_h: bytes, siblings: Sequence[bytes]) -> bytes:
    if len(siblings) != LEVELS:
        raise VerificationError(f"a map proof has {LEVELS} path hashes, not {len(siblings)}")
    h = bucket_h
    for level, sib in enumerate(siblings):
        h = node_hash(sib, h) if (bucket >> level) & 1 else node_hash(h, sib)
    return h


@dataclass(frozen=True, slots=True)
class MapProof:
    """Proof of one key's value (``None``: absent) at a map root."""

    key: str
    value: dict[str, Any] | None
    #: (key_hash, value_hash) of the OTHER keys in the same bucket.
    others: tuple[tuple[bytes, bytes], ...]
    #: Sibling hashes from level 0 up (16).
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value,
                "bucket": [[kh.hex(), vh.hex()] for kh, vh in self.others],
                "path": [h.hex() for h in self.path]}

    @classmethod
    def from_json(cls, obj: Any) -> MapProof:
        try:
            key, value = obj["key"], obj["value"]
            if not isinstance(key, str) or not (value is None or isinstance(value, dict)):
                raise TypeError
            others = tuple((_hex32(kh), _hex32(vh)) for kh, vh in obj["bucket"])
            path = tuple(_hex32(h) for h in obj["path"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"malformed map proof: {exc or 'bad field'}") from None
        return cls(key, value, others, path)


def _hex32(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("hash is not a string")
    try:
        raw = binascii.unhexlify(text)
    except binascii.Error:
        raise ValueError(f"{text!r} is not hex") from None
    if len(raw) != 32:
        raise ValueError("a hash is 32 bytes")
    return raw


def verify_map_proof(root: bytes, proof: MapProof) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows ``proof.key`` has
    ``proof.value`` (or is absent) in the map with ``root``."""
    if not mapped(proof.key):
        raise VerificationError(f"key {proof.key!r} is not covered by the state map")
    try:
        proof.key.encode()
    except UnicodeEncodeError:  # an unpaired surrogate: no key of the map is such a string
        raise VerificationError(f"map key {proof.key!r} is not valid UTF-8 text") from None
    kh = key_hash(proof.key)
    bucket = bucket_of(proof.key)
    items = list(proof.others)
    seen = {o[0] for o in items}
    if kh in seen or len(seen) != len(items):
        raise VerificationError(f"map proof for {proof.key!r} lists a key twice")
    if any(int.from_bytes(o[0][:2], "big") != bucket for o in items):
        raise VerificationError(f"map proof for {proof.key!r} mixes keys of another bucket")
    if proof.value is not None:
        items.append((kh, value_hash(proof.value)))
    if root_from_path(bucket, bucket_hash(items), proof.path) != root:
        state = "absence" if proof.value is None else "value"
        raise VerificationError(f"the {state} of {proof.key!r} does not match the state-map "
                                "root signed in the checkpoint")


def extension_line(root: bytes) -> str:
    return f"{EXTENSION} {base64.b64encode(root).decode()}"


def root_of(extensions: Sequence[str]) -> bytes | None:
    """The map root carried by a checkpoint's extension lines, if any."""
    found = [line for line in extensions if line.startswith(EXTENSION + " ")]
    if not found:
        return None
    if len(found) > 1:
        raise VerificationError("a checkpoint carries two state-map roots")
    try:
        root = base64.b64decode(found[0][len(EXTENSION) + 1:], validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text in the line
        raise VerificationError("malformed state-map root in the checkpoint") from None
    if len(root) != 32:
        raise VerificationError("malformed state-map root in the checkpoint")
    return root


class MemoryMap:
    """The map held in memory (audit, tests): incremental root over changed buckets."""

    def __init__(self) -> None:
        self.buckets: dict[int, dict[bytes, bytes]] = {}
        self.nodes: dict[NodeId, bytes] = {}
        self._dirty: set[int] = set()

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        if not mapped(key):
            return
        b = bucket_of(key)
        self.buckets.setdefault(b, {})[key_hash(key)] = value_hash(value)
        self._dirty.add(b)

    def root(self) -> bytes:
        if self._dirty:
            changed = {b: bucket_hash(self.buckets[b].items()) for b in self._dirty}
            self.nodes.update(update_nodes(changed, lambda lv, i: self.nodes.get((lv, i), ZERO)))
            self._dirty.clear()
        return self.nodes.get((LEVELS, 0), ZERO)

    def prove(self, key: str, value: Mapping[str, Any] | None) -> MapProof:
        self.root()
        b, kh = bucket_of(key), key_hash(key)
        others = tuple(sorted((k, v) for k, v in self.buckets.get(b, {}).items() if k != kh))
        path = tuple(self.nodes.get(n, ZERO) for n in path_plan(b))
        return MapProof(key, None if value is None else dict(value), others, path)
