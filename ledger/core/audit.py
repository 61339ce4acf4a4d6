"""Audit: replay the whole log from scratch and recompute everything (threats T1, T6, T16).

One fail-closed procedure, :func:`audit`, with no skip switches. It is pure: it reads
only the iterables it is given (the I/O lives in :mod:`ledger.store.audit_sql`), uses
no clock, and returns an :class:`AuditReport` naming the FIRST failure — the one at the
lowest log index — with a stable ``kind`` and a one-sentence ``detail``.

The numbered steps below are the same as in ``docs/verification.md``:

1. **Contiguity.** Entry indices run 0, 1, 2, … with no gap: a gap is kind
   ``missing`` at the first missing index; a repeated or backwards index is ``leaf``.
2. **Leaf.** The stored ``leaf_hash`` is SHA-256(0x00 || leaf) (RFC 6962 §2.1); the leaf
   parses as canonical RFC 8785 JSON with ``leaf.index`` equal to the row index and
   ``leaf.ledger_time`` equal to the row's time — kind ``leaf``.
3. **Event.** The event is replayed through :func:`ledger.core.rules.apply` on a fresh
   :class:`~ledger.core.rules.MemoryState` (so its signature is checked against the
   signer's key as of that index, revocation included) and its effects committed.
   Rule ``signature`` → kind ``signature``; ``revoked-key`` / ``unknown-signer`` →
   ``key``; ``clock-skew`` → ``time``; any other refusal → ``rule``.
4. **Time.** ``ledger_time`` never decreases — kind ``time``.
5. **Log key.** The checkpoint key is the genesis record's ``log_key`` unless
   ``log_verifier_key`` is given; when both exist they must be equal — kind
   ``checkpoint`` (at index 0, the genesis entry). A log derived from a Fabric channel
   is signed by its organisation's node key, and its genesis must name one of the
   network's node keys (``genesis_log_keys``).
6. **Checkpoints**, in increasing size order: the size must not exceed the log size
   (else kind ``missing`` at the log size: the log was truncated); the stored size
   column equals the note's size; the note verifies with the log key and names the
   genesis origin; its root equals the recomputed root at that size — kind
   ``checkpoint``. An RFC 9162 consistency proof between each successive pair is
   generated from the recomputed tree and verified with :mod:`ledger.core.merkle_verify`
   — kind ``consistency``; its state-map root (``ledger.core.vmap``) equals the root of
   the replayed world state at that size — kind ``map`` (once a checkpoint carries a
   map root, every later one must).
7. **Stored nodes** (when ``stored_nodes`` is given): every stored perfect subtree
   equals the recomputed one and every recomputed one is stored — kind ``leaf`` for a
   level-0 node, ``node`` above, at the first leaf the node covers; a node over leaves
   the log does not have is ``missing`` at the log size.
8. **State** (when ``state`` is given): the stored world state equals the replayed
   state key for key — kind ``state`` naming the key, at the index that last wrote it.
9. **Trusted checkpoint** (when ``trusted_checkpoint`` is given: a checkpoint a client
   kept from earlier): it verifies with the log key and its root equals the recomputed
   root at its size — kind ``consistency``. This catches a log rebuilt and re-signed
   by someone holding the log key, which steps 1-8 cannot see.

A check at a size or index beyond the first failing entry is not run: what follows a
bad entry cannot be judged. Failures rank by index; a state failure ranks at the end of
the log (the state is the outcome of the whole log, so a truncation or bad entry is the
cause, not it) while its ``first_bad_index`` names the entry that last wrote the key.
Failures without an index (an extra state key, a trusted checkpoint that disagrees)
rank after every indexed failure.

**In parallel.** Given ``batch_checker`` (e.g. :mod:`ledger.parallel_verify`, which runs
worker processes), the audit reads entries a few batches ahead of the replay and has
:func:`check_leaves` run on them elsewhere: the leaf hash, the strict canonical parse
(step 2) and the event's signature under the key its signer most likely has (the key
enrolled in the entries read so far; the signer's id is read where a canonical leaf
has it, and only leaves that may enrol a key are parsed for it). A worker process
sends back each valid leaf's parse with its code (:func:`parse_leaves`), and the entry
is built from that parse without checking it again (:func:`_entry_of`). The replay
itself is unchanged: an entry the workers found unparsable is parsed here again to
report the exact error, and the rules still call the signature check in their own
order, which :func:`ledger.core._sodium.known_results` answers from the batch only for
exactly the triple checked (else the check runs here). So the failure reported, its
kind, index and detail, are the same whatever the workers do.

Memory is O(state + n): the replayed world state, plus the recomputed Merkle tree kept
as packed hashes — 32 bytes per perfect node, about 64 bytes per entry (64 MB for a
million entries) — so proofs and roots at any checkpoint size cost O(log n). Leaves and
events are never kept. The cyclic garbage collector is paused while an audit runs (all
it would scan is that state, which lives until the end).
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import hmac
import itertools
import json
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any, Final, Protocol, TypeVar

from ledger.core import _sodium, merkle, merkle_verify, vmap
from ledger.core import events as ev
from ledger.core.canonical import MAX_DEPTH, canonical, parse
from ledger.core.checkpoint import Checkpoint, verify_checkpoint
from ledger.core.errors import InvalidInput, LedgerError, RuleViolation, VerificationError
from ledger.core.events import Entry
from ledger.core.rules import Context, MemoryState, apply
from ledger.core.state import LEDGER, Record

#: Failure kinds (stable codes, listed in docs/verification.md).
KINDS: Final = ("missing", "leaf", "signature", "key", "time", "rule", "checkpoint",
                "consistency", "node", "state", "map")
_RULE_KINDS: Final = {"signature": "signature", "revoked-key": "key",
                      "unknown-signer": "key", "clock-skew": "time"}
PROGRESS_EVERY: Final = 1000


class EntryRow(Protocol):
    """A stored log row (e.g. :class:`ledger.store.base.StoredEntry`)."""

    @property
    def index(self) -> int: ...
    @property
    def leaf(self) -> bytes: ...
    @property
    def leaf_hash(self) -> bytes: ...
    @property
    def ledger_time(self) -> int: ...


EntryLike = EntryRow | tuple[int, bytes, bytes, int]
NodeRow = tuple[int, int, bytes]
Progress = Callable[[int], None]
#: ``(public key, message, signature)``, as :func:`ledger.core._sodium.verify` takes them.
Triple = tuple[bytes, bytes, bytes]
#: One entry for :func:`check_leaves`: ``(leaf, stored leaf hash, the public key its
#: signature is most likely checked with, or b"")``.
LeafItem = tuple[bytes, bytes, bytes]
#: What the batch checker says of one entry: the :func:`check_leaves` code, or that code
#: with the leaf's plain JSON parse (:func:`parse_leaves`), so it is not parsed again.
LeafCode = int | tuple[int, Any]
#: Start :func:`check_leaves` (or :func:`parse_leaves`) on a batch (e.g. in worker
#: processes: ``ledger.parallel_verify.VerifyPool.check_leaves``); the function returned
#: gives its codes, waiting for them if need be.
BatchCheck = Callable[[Sequence[LeafItem]], Callable[[], Sequence[LeafCode]]]
#: The bits of a :func:`check_leaves` code.
LEAF_HASH_OK: Final = 1
LEAF_OK: Final = 2
SIGNATURE_OK: Final = 4
#: With ``batch_checker``: entries per batch, and how many entries the reader keeps
#: ahead of the replay (so the workers have the next batches while it replays).
CHUNK: Final = 512
AHEAD: Final = 4 * CHUNK


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while an audit runs, and back on after it if it
    was on. An audit builds millions of objects that all stay alive until it ends (the
    replayed state and its map); with the collector on, its collections keep scanning
    them, for nothing (about 6 µs per entry, a tenth of the replay step). Two audits in
    two threads at once: the first to end turns it back on (slower, never wrong)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of :func:`audit`. ``tree_size``/``root_hex`` describe the verified
    prefix of the log (the whole log when ``ok``)."""

    ok: bool
    entries_checked: int
    first_bad_index: int | None
    kind: str | None
    detail: str
    tree_size: int
    root_hex: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Failure:
    index: int | None
    kind: str
    detail: str
    #: Where the failure ranks when it differs from ``index`` (state failures rank at
    #: the end of the log: the state is the outcome of the whole log).
    at: int | None = None

    def rank(self) -> tuple[int, int, int]:
        at = self.index if self.at is None else self.at
        derived = int(self.kind == "state")  # at equal rank, a cause beats derived state
        return (0, at, derived) if at is not None else (1, 0, derived)


class _Tree:
    """Every perfect subtree hash of the replayed log, packed per level (32 bytes each).

    Behaves as the read-only ``{(level, index): hash}`` mapping the prover in
    :mod:`ledger.core.merkle` expects. The replay only appends leaf hashes (level 0); the
    levels above are hashed in bulk when first read (:attr:`levels`), one slice and one
    SHA-256 per node, instead of a frontier update per entry.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._hashed = 0  # bytes of level 0 the levels above are complete for

    @property
    def size(self) -> int:
        return len(self._levels[0]) // 32

    def add_leaf(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != merkle.HASH_SIZE:
            raise InvalidInput(f"a leaf hash must be a {merkle.HASH_SIZE}-byte SHA-256 hash")
        self._levels[0] += leaf_hash

    @property
    def levels(self) -> list[bytearray]:
        """Level ``l`` holds the hashes of the perfect subtrees of ``2**l`` leaves, in order
        (no level at all for an empty tree)."""
        levels = self._levels
        if len(levels[0]) == self._hashed:
            return levels if levels[0] else []
        self._hashed = len(levels[0])
        sha256, prefix = hashlib.sha256, b"\x01"  # RFC 9162 interior node
        level = 0
        while len(levels[level]) >= 64:
            below = levels[level]
            if level + 1 == len(levels):
                levels.append(bytearray())
            above = levels[level + 1]
            for i in range(len(above) // 32, len(below) // 64):
                above += sha256(prefix + below[64 * i:64 * i + 64]).digest()
            level += 1
        return levels if levels[0] else []

    def count(self, level: int) -> int:
        levels = self.levels
        return len(levels[level]) // 32 if level < len(levels) else 0

    def get(self, node: merkle.NodeId) -> bytes | None:
        level, index = node
        if not 0 <= index < self.count(level):
            return None
        return bytes(self._levels[level][index * 32:(index + 1) * 32])

    def root(self, size: int) -> bytes:
        return merkle.root_at(size, _TreeMapping(self))

    def head(self) -> bytes:
        """The root of the whole tree."""
        return self.root(self.size)


class _TreeMapping(Mapping[merkle.NodeId, bytes]):
    def __init__(self, tree: _Tree) -> None:
        self.tree = tree

    def __getitem__(self, node: merkle.NodeId) -> bytes:
        value = self.tree.get(node)
        if value is None:
            raise KeyError(node)
        return value

    def __iter__(self) -> Iterator[merkle.NodeId]:
        for level in range(len(self.tree.levels)):
            for index in range(self.tree.count(level)):
                yield level, index

    def __len__(self) -> int:
        return sum(self.tree.count(level) for level in range(len(self.tree.levels)))


def _row(entry: EntryLike) -> tuple[int, bytes, bytes, int]:
    if isinstance(entry, tuple):
        index, leaf, leaf_hash, ledger_time = entry
    else:
        index, leaf, leaf_hash, ledger_time = (entry.index, entry.leaf, entry.leaf_hash,
                                               entry.ledger_time)
    return int(index), bytes(leaf), bytes(leaf_hash), int(ledger_time)


class _Slow(Exception):
    """The fast leaf parse does not apply: :meth:`Entry.from_leaf` decides."""


def _no_float(text: str) -> Any:
    raise _Slow(text)


def _safe_int(text: str) -> int:
    value = int(text)
    if not -(2**53 - 1) <= value <= 2**53 - 1:
        raise _Slow(text)
    return value


#: The stdlib encoder :func:`ledger.core.canonical.canonical` uses on its fast path, and a
#: decoder that refuses (to the slow path) what that fast path would not take.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                                   allow_nan=False)
_encode = _ENCODER.encode
_decode = json.JSONDecoder(parse_float=_no_float, parse_int=_safe_int,
                           parse_constant=_no_float).decode


def _c_encoder() -> Callable[[Any, int], Sequence[str]] | None:
    """The C encoder ``_ENCODER.encode`` builds on every call, built once (about 1 µs a
    call), without the circular-reference check: the audit encodes only parsed JSON and
    replayed records, which have no cycles (one would end in a ``RecursionError``
    instead of a ``ValueError``). None if this interpreter has no such encoder, or if it
    does not give ``_encode``'s bytes."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        c = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
                 True, False, False)
        sample = {"b": [1, -2, None, True, "\u00e9\n\"\\\x01"], "a": {"z": {}, "y": []}, "": 0}
        return c if "".join(c(sample, 0)) == _encode(sample) else None
    except (TypeError, ValueError):
        return None


_C_ENCODER: Final = _c_encoder()


def _encode_dict(value: dict[str, Any]) -> str:
    """``_encode(value)`` of a dict with no cycle, faster."""
    return _encode(value) if _C_ENCODER is None else "".join(_C_ENCODER(value, 0))


_LEAF_KEYS: Final = frozenset({"index", "ledger_time", "event"})
_LEAF_HEAD: Final = b'{"event":{"event":'
_SIGNED_KEYS: Final = frozenset({"event", "sig"})
#: Whether the events module still caches its encodings where :func:`_primed` puts them.
_PRIMABLE: Final = all(isinstance(vars(cls).get(name), cached_property) for cls, name in (
    (ev.SignedEvent, "_canonical"), (ev.SignedEvent, "event_id"),
    (ev.Event, "_signing_bytes")))
#: Whether an event can be built by filling in its instance dict, as :func:`_primed` and
#: :func:`_entry_of` do: frozen dataclasses without slots or ``__post_init__``, with
#: exactly these fields (the constructor stores each argument, nothing more).
_DICT_BUILT: Final = _PRIMABLE and all(
    "__slots__" not in vars(cls) and "__post_init__" not in vars(cls)
    and tuple(f.name for f in fields(cls)) == names for cls, names in (
        (ev.Event, ("kind", "origin", "nonce", "claimed_time", "signer", "key_id", "payload",
                    "prev", "v")),
        (ev.SignedEvent, ("event", "signature"))))
_T = TypeVar("_T")


def _new(cls: type[_T]) -> _T:
    return cls.__new__(cls)


def _parse_leaf(leaf: bytes) -> Entry:
    """``Entry.from_leaf(leaf)``, with the same result and the same errors, faster
    (:func:`_parse_leaf_obj`)."""
    return _parse_leaf_obj(leaf)[0]


def _parse_leaf_obj(leaf: bytes) -> tuple[Entry, Any]:
    """``Entry.from_leaf(leaf)``, with the same result and the same errors, faster; and
    the leaf's plain JSON parse when it has one at hand (else None).

    The usual leaf (ASCII, no float, integers within ±(2**53 - 1), fewer than
    ``MAX_DEPTH`` containers) is parsed by the C decoder and re-encoded by the C encoder:
    for such values that encoder IS RFC 8785 (see :func:`ledger.core.canonical.canonical`),
    so byte equality proves the leaf canonical, and it also rules out duplicate keys (a
    duplicate does not survive the round trip). The event is then checked by
    :meth:`ledger.core.events.Event.from_json` and its signature field as
    :meth:`~ledger.core.events.SignedEvent.from_json` checks it; the signed event's canonical
    form, which that method would encode again to prove it exists, is the part of the
    (canonical) leaf it was cut from. Anything else, or any doubt, goes to
    :meth:`Entry.from_leaf`, which then gives the exact error.
    """
    if leaf.isascii() and leaf.count(b"{") + leaf.count(b"[") < MAX_DEPTH:
        try:
            text = leaf.decode("ascii")
            obj = _decode(text)
            if type(obj) is dict and obj.keys() == _LEAF_KEYS and _encode_dict(obj) == text:
                index, ledger_time = obj["index"], obj["ledger_time"]
                if type(index) is int and index >= 0 and type(ledger_time) is int \
                        and 0 <= ledger_time <= ev.MAX_TIME_MS:
                    signed = _fast_signed(obj["event"], leaf, index, ledger_time)
                    if signed is None:
                        signed = ev.SignedEvent.from_json(obj["event"])
                    return Entry(index, ledger_time, signed), obj
        except (_Slow, LedgerError, ValueError, TypeError, RecursionError):
            pass
    return Entry.from_leaf(leaf), None


def _fast_signed(obj: Any, leaf: bytes, index: int, ledger_time: int) -> ev.SignedEvent | None:
    """``SignedEvent.from_json(obj)`` for the signed event of the canonical, ASCII ``leaf``
    (so it has an RFC 8785 form: no check of that is needed), with its encodings cut out
    of the leaf; None when that does not apply, or if in any doubt. Raises what
    :meth:`ledger.core.events.Event.from_json` raises."""
    if not _DICT_BUILT or type(obj) is not dict or obj.keys() != _SIGNED_KEYS:
        return None
    sig = obj["sig"]
    if type(sig) is not str:
        return None
    raw = binascii.a2b_base64(sig, strict_mode=True)
    if len(raw) != _sodium.SIGNATURE_SIZE or base64.b64encode(raw).decode() != sig:
        return None
    cut = _cut(leaf, sig.encode(), index, ledger_time)
    if cut is None:
        return None
    return _primed(ev.Event.from_json(obj["event"]), raw, cut)


def _cut(leaf: bytes, sig: bytes, index: int, ledger_time: int) -> tuple[bytes, bytes] | None:
    """The signed event's canonical bytes and the event's signing bytes, cut out of the
    canonical ``leaf`` of entry ``index`` whose signature's base64 is ``sig``.

    RFC 8785 encodes an object member's value exactly as it encodes that value on its
    own, so in a canonical leaf ``{"event":S,"index":I,"ledger_time":T}`` the signed
    event's canonical bytes are S, and in ``S = {"event":E,"sig":"..."}`` the event's
    are E: its id and signing bytes need no second and third encoding. None if the leaf
    is not laid out so. ``tests/unit/test_audit_parallel.py`` checks them against the
    events module's own.
    """
    tail = b',"index":%d,"ledger_time":%d}' % (index, ledger_time)
    end = b',"sig":"' + sig + b'"}' + tail
    if not (leaf.startswith(_LEAF_HEAD) and leaf.endswith(end)):
        return None
    return (leaf[9:len(leaf) - len(tail)],
            ev.EVENT_DOMAIN + leaf[len(_LEAF_HEAD):len(leaf) - len(end)])


def _primed(event: ev.Event, raw: bytes, cut: tuple[bytes, bytes]) -> ev.SignedEvent:
    """``SignedEvent(event, raw)`` holding the encodings ``cut`` (:func:`_cut`) where the
    events module caches its own (so they are not computed again)."""
    whole, signing = cut
    vars(event)["_signing_bytes"] = signing
    signed: ev.SignedEvent = _new(ev.SignedEvent)
    vars(signed).update(event=event, signature=raw, _canonical=whole,
                        event_id=hashlib.sha256(whole).hexdigest())
    return signed


def _b64_key(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value)
    except (binascii.Error, ValueError):
        return None


_Parsed = tuple[int, bytes, int, Entry]


def _loads(leaf: bytes) -> Any:
    try:
        return json.loads(leaf)
    except (ValueError, RecursionError):
        return None


def _entry_of(obj: Any, leaf: bytes) -> Entry | None:
    """The entry of a leaf :func:`check_leaves` found valid (so it is exactly what
    ``Entry.from_leaf`` returns), built from its plain JSON parse without checking it
    again, its encodings cut out of the leaf; None if it is not as expected after all."""
    if not _DICT_BUILT:
        return None
    try:
        signed, index, ledger_time = obj["event"], obj["index"], obj["ledger_time"]
        body, sig = signed["event"], signed["sig"]
        cut = _cut(leaf, sig.encode(), index, ledger_time)
        if cut is None:
            return None
        event: ev.Event = _new(ev.Event)
        vars(event).update(kind=body["kind"], origin=body["origin"], nonce=body["nonce"],
                           claimed_time=body["claimed_time"], signer=body["signer"],
                           key_id=body["key_id"], payload=body["payload"], prev=body["prev"],
                           v=ev.SCHEMA_VERSION)
        return Entry(index, ledger_time,
                     _primed(event, binascii.a2b_base64(sig, strict_mode=True), cut))
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
        return None


def check_leaves(items: Iterable[LeafItem]) -> list[int]:
    """For each ``(leaf, stored leaf hash, public key or b"")``, a code: bit
    :data:`LEAF_HASH_OK` if the stored hash is SHA-256(0x00 || leaf), :data:`LEAF_OK` if
    the leaf parses as ``Entry.from_leaf`` requires (canonical, strict), and
    :data:`SIGNATURE_OK` if its event's signature verifies with that key. The part of
    the audit that needs no state, run in worker processes (``ledger.parallel_verify``)."""
    return [_check_leaf(*item)[0] for item in items]


def parse_leaves(items: Iterable[LeafItem]) -> list[LeafCode]:
    """:func:`check_leaves`, with the plain JSON parse of each leaf found valid (the
    value ``json.loads`` gives) beside its code: ``(code, parse)``. A worker process
    sends it back (``marshal``), so the replaying process builds the entry without
    parsing the leaf again (it is ``Entry.from_leaf``'s result: see :func:`_entry_of`)."""
    out: list[LeafCode] = []
    for item in items:
        code, obj = _check_leaf(*item)
        out.append((code, obj) if code & LEAF_OK and obj is not None else code)
    return out


def _check_leaf(leaf: bytes, leaf_hash: bytes, key: bytes) -> tuple[int, Any]:
    code = LEAF_HASH_OK if hmac.compare_digest(merkle.leaf_hash(leaf), leaf_hash) else 0
    try:
        entry, obj = _parse_leaf_obj(leaf)
    except (LedgerError, ValueError, TypeError, RecursionError):
        return code, None
    code |= LEAF_OK
    signed = entry.signed
    if key and _sodium.valid(key, signed.event.signing_bytes(), signed.signature):
        code |= SIGNATURE_OK
    return code, obj


class _Batch:
    """Entries handed to the batch checker together, and its codes once asked for."""

    __slots__ = ("codes", "items", "result")

    def __init__(self) -> None:
        self.items: list[LeafItem] = []
        self.result: Callable[[], Sequence[LeafCode]] | None = None
        self.codes: Sequence[LeafCode] | None = None

    def start(self, checker: BatchCheck) -> None:
        self.result = checker(self.items)

    def code(self, pos: int) -> LeafCode:
        if self.codes is None:
            if self.result is None:  # pragma: no cover - every batch is started
                raise RuntimeError("batch not started")
            self.codes = self.result()
        return self.codes[pos]


#: An entry read ahead: index, leaf, leaf hash, time, guessed key, batch and position
#: in it.
_Ahead = tuple[int, bytes, bytes, int, bytes | None, _Batch, int]
#: In a canonical leaf, what follows the signer's id (the event's last member is "v").
_SIGNER_END: Final = b'","v":1},"sig":"'
_SIGNER: Final = b'"signer":"'
#: Leaves that may enrol a key (parsed when read, for :meth:`_Replay._guess`).
_ENROLS: Final = (b'"kind":"' + ev.GENESIS.encode() + b'"',
                  b'"kind":"' + ev.ACTOR_ENROL.encode() + b'"')


class _Map(vmap.MemoryMap):
    """:class:`ledger.core.vmap.MemoryMap` with the same nodes and root, updated with fewer
    Python calls: a key's hash is computed once per write, and the changed paths are
    recomputed level by level, each level's nodes kept by index (``tiers``; ``nodes``
    gives them keyed by ``(level, index)``, as the original keeps them). It also keeps
    the value hash each key was last set to (``hashes``), for the final comparisons.
    ``tests/unit/test_audit_parallel.py`` compares it with the original."""

    def __init__(self) -> None:
        self.tiers: list[dict[int, bytes]] = [{} for _ in range(vmap.LEVELS + 1)]
        super().__init__()
        self.changed: set[int] = set()
        self.hashes: dict[str, bytes] = {}

    @property
    def nodes(self) -> dict[vmap.NodeId, bytes]:
        return {(level, i): h for level, tier in enumerate(self.tiers) for i, h in tier.items()}

    @nodes.setter
    def nodes(self, value: Mapping[vmap.NodeId, bytes]) -> None:
        for tier in self.tiers:
            tier.clear()
        for (level, i), h in value.items():
            self.tiers[level][i] = h

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        if not vmap.mapped(key):
            return
        kh = vmap.key_hash(key)
        bucket = int.from_bytes(kh[:2], "big")
        # vmap.value_hash(value), without its copy of a record that is a dict already
        vh = hashlib.sha256(canonical(value)).digest() if type(value) is dict \
            else vmap.value_hash(value)
        self.buckets.setdefault(bucket, {})[kh] = self.hashes[key] = vh
        self.changed.add(bucket)

    def root(self) -> bytes:
        tiers, zero = self.tiers, vmap.ZERO
        if self.changed:
            sha256, buckets, tier = hashlib.sha256, self.buckets, tiers[0]
            for bucket in self.changed:
                tier[bucket] = vmap.bucket_hash(buckets[bucket].items())
            below = self.changed
            for level in range(vmap.LEVELS):
                get, up = tiers[level].get, tiers[level + 1]
                above = {i >> 1 for i in below}
                for i in above:
                    left, right = get(2 * i, zero), get(2 * i + 1, zero)
                    up[i] = zero if left == zero and right == zero \
                        else sha256(b"\x03" + left + right).digest()
                below = above
            self.changed = set()
        return tiers[vmap.LEVELS].get(0, zero)


class _Replay:
    """Steps 1-4: replay the entries into a fresh state, stopping at the first failure."""

    def __init__(self, progress: Progress | None,
                 map_sizes: Collection[int] | None = None) -> None:
        self.state = MemoryState()
        self.tree = _Tree()
        self.written_at: dict[str, int] = {}
        self.last_time = 0
        self.progress = progress
        #: The state map, and its root after every entry (32 bytes each), or only at the
        #: ``map_sizes`` given (the checkpoint sizes: a group-committed log has few).
        self.map = _Map()
        self.map_sizes = map_sizes
        self.map_roots = bytearray()
        self.map_roots_at: dict[int, bytes] = {}
        #: Mapped records written since the map was last brought up to date: a record
        #: rewritten before the next checkpoint size is hashed once.
        self.pending: dict[str, Record] = {}
        #: Rows the parser accepted (steps 1-2); the replay may be behind it.
        self.parsed = 0
        #: The candidate key of each actor, from the genesis and enrolments parsed so far.
        self.keys: dict[str, bytes] = {}
        #: The batch result for the entry being replayed: (triple checked, valid).
        self.current: tuple[Triple, bool] | None = None

    def map_root(self, size: int) -> bytes | None:
        if not size:
            return vmap.ZERO
        if self.map_sizes is not None:
            return self.map_roots_at.get(size)
        return bytes(self.map_roots[(size - 1) * 32:size * 32])

    def value_hash(self, key: str) -> bytes | None:
        """The map's hash of the replayed record ``key`` (a mapped key, after the run)."""
        return self.map.hashes.get(key)

    def flush(self) -> None:
        for key, value in self.pending.items():
            self.map.set(key, value)
        self.pending.clear()

    def run(self, entries: Iterable[EntryLike],
            batch_checker: BatchCheck | None = None) -> _Failure | None:
        try:
            if batch_checker is None:
                for raw in entries:
                    item = self.parse(raw)
                    failure = item if isinstance(item, _Failure) else self.step(*item)
                    if failure is not None:
                        return failure
            else:
                failure = self._run_ahead(entries, batch_checker)
                if failure is not None:
                    return failure
            if self.progress is not None:
                self.progress(self.tree.size)
            return None
        finally:
            self.flush()

    def _run_ahead(self, entries: Iterable[EntryLike],
                   batch_checker: BatchCheck) -> _Failure | None:
        """Read up to :data:`AHEAD` entries ahead of the replay and hand them to
        ``batch_checker`` :data:`CHUNK` at a time, in log order."""
        rows = iter(entries)
        window: deque[_Ahead | _Failure] = deque()
        batch = _Batch()
        ended = False
        with _sodium.known_results(self._known):
            while True:
                while not ended and len(window) < AHEAD:
                    raw = next(rows, None)
                    if raw is None:
                        ended = True
                        break
                    index, leaf, leaf_hash, ledger_time = _row(raw)
                    failure = self._contiguity(index)
                    if failure is not None:
                        window.append(failure)
                        ended = True
                        break
                    self.parsed += 1
                    key = self._guess_key(leaf)
                    window.append((index, leaf, leaf_hash, ledger_time, key, batch,
                                   len(batch.items)))
                    batch.items.append((leaf, leaf_hash, key or b""))
                    if len(batch.items) >= CHUNK:
                        batch.start(batch_checker)
                        batch = _Batch()
                if ended and batch.items:
                    batch.start(batch_checker)
                if not window:
                    return None
                while window and (ended or len(window) > AHEAD - CHUNK):
                    item = window.popleft()
                    if isinstance(item, _Failure):
                        return item
                    failure = self._replay_checked(*item)
                    if failure is not None:
                        return failure

    def _replay_checked(self, index: int, leaf: bytes, leaf_hash: bytes, ledger_time: int,
                        key: bytes | None, batch: _Batch, pos: int) -> _Failure | None:
        """Steps 2-4 for an entry :func:`check_leaves` has seen."""
        got = batch.code(pos)
        code, obj = got if isinstance(got, tuple) else (got, None)
        if not code & LEAF_HASH_OK:
            return _Failure(index, "leaf", f"entry {index}: stored leaf hash is not "
                            "SHA-256(0x00 || leaf)")
        entry = _entry_of(_loads(leaf) if obj is None else obj, leaf) \
            if code & LEAF_OK else None
        parsed = self._finish(index, leaf, leaf_hash, ledger_time, entry)
        if isinstance(parsed, _Failure):
            return parsed
        if entry is not None and key is not None:
            signed = entry.signed
            self.current = ((key, signed.event.signing_bytes(), signed.signature),
                            bool(code & SIGNATURE_OK))
        try:
            return self.step(*parsed)
        finally:
            self.current = None

    def _known(self, public_key: bytes, message: bytes, signature: bytes) -> bool | None:
        """The batch result, for exactly the triple checked for the current entry."""
        if self.current is None:
            return None
        (pk, msg, sig), ok = self.current
        if public_key == pk and signature == sig and message == msg:
            return ok
        return None

    def _guess_key(self, leaf: bytes) -> bytes | None:
        """:meth:`_guess` for the leaf's bytes, parsing only leaves that may enrol a key;
        for any other the signer's id is found where a canonical leaf has it."""
        if _ENROLS[0] in leaf or _ENROLS[1] in leaf:
            return self._guess(_loads(leaf))
        end = leaf.rfind(_SIGNER_END)
        start = leaf.rfind(_SIGNER, 0, end) + len(_SIGNER)
        if end < 0 or start < len(_SIGNER):
            return None
        return self.keys.get(leaf[start:end].decode("ascii", "replace"))

    def _guess(self, obj: Any) -> bytes | None:
        """The key the rules will most likely check the signature of the leaf ``obj``
        (not validated yet) with: its signer's key as enrolled in the entries read so
        far. A wrong guess costs only time."""
        try:
            body = obj["event"]["event"]
            kind, payload = body["kind"], body["payload"]
            if kind == ev.GENESIS:
                actor = payload["actor"]
                key = _b64_key(actor["public_key"])
                if key is not None and isinstance(actor["id"], str):
                    self.keys.setdefault(actor["id"], key)
                return key
            if kind == ev.ACTOR_ENROL and isinstance(payload["id"], str):
                enrolled = _b64_key(payload["public_key"])
                if enrolled is not None:
                    self.keys.setdefault(payload["id"], enrolled)
            return self.keys.get(body["signer"])
        except (KeyError, TypeError, AttributeError, IndexError):
            return None

    def _contiguity(self, index: int) -> _Failure | None:
        """Step 1 for the next row."""
        want = self.parsed
        if index > want:
            return _Failure(want, "missing", f"entry {want} is missing: the next stored "
                            f"entry has index {index}")
        if index < want:
            return _Failure(want, "leaf", f"entry index {index} appears again or out of order "
                            f"where entry {want} was expected")
        return None

    def parse(self, raw: EntryLike) -> _Parsed | _Failure:
        """Steps 1-2 for the next row."""
        index, leaf, leaf_hash, ledger_time = _row(raw)
        failure = self._contiguity(index)
        if failure is not None:
            return failure
        if not hmac.compare_digest(merkle.leaf_hash(leaf), leaf_hash):
            return _Failure(index, "leaf", f"entry {index}: stored leaf hash is not "
                            "SHA-256(0x00 || leaf)")
        parsed = self._finish(index, leaf, leaf_hash, ledger_time, None)
        if not isinstance(parsed, _Failure):
            self.parsed += 1
        return parsed

    def _finish(self, index: int, leaf: bytes, leaf_hash: bytes, ledger_time: int,
                entry: Entry | None) -> _Parsed | _Failure:
        """Step 2 after the leaf hash: the canonical leaf (parsed here unless
        ``entry`` is given), its index and its time."""
        if entry is None:
            try:
                entry = _parse_leaf(leaf)
            except InvalidInput as exc:
                return _Failure(index, "leaf", f"entry {index}: leaf does not parse: "
                                f"{exc.message}")
            except (ValueError, TypeError) as exc:
                return _Failure(index, "leaf", f"entry {index}: leaf does not parse: {exc}")
        if entry.index != index:
            return _Failure(index, "leaf", f"entry {index}: the leaf says it is entry "
                            f"{entry.index}")
        if entry.ledger_time != ledger_time:
            return _Failure(index, "leaf", f"entry {index}: the leaf's ledger time "
                            f"{entry.ledger_time} differs from the row's {ledger_time}")
        return index, leaf_hash, ledger_time, entry

    def step(self, index: int, leaf_hash: bytes, ledger_time: int,
             entry: Entry) -> _Failure | None:
        """Steps 3-4 for a parsed entry (the next one to replay)."""
        # 3. Signature and custody rules, on the state as of this index.
        try:
            effects = apply(self.state, entry.signed,
                            Context(index, entry.ledger_time, leaf_hash))
        except RuleViolation as exc:
            kind = _RULE_KINDS.get(exc.rule, "rule")
            return _Failure(index, kind, f"entry {index} is refused by rule {exc.rule!r}: "
                            f"{exc.message}")
        except LedgerError as exc:
            return _Failure(index, "rule", f"entry {index} is refused: {exc.message}")
        # 4. Ledger time never goes backwards.
        if entry.ledger_time < self.last_time:
            return _Failure(index, "time", f"entry {index}: ledger time {entry.ledger_time} "
                            f"is before the previous entry's {self.last_time}")
        self.last_time = entry.ledger_time
        self.state.commit(effects)
        pending = self.pending
        for key, value in effects.writes.items():
            self.written_at[key] = index
            if vmap.mapped(key):
                pending[key] = value
        size = index + 1
        if self.map_sizes is None:
            self.flush()
            self.map_roots += self.map.root()
        elif size in self.map_sizes:
            self.flush()
            self.map_roots_at[size] = self.map.root()
        self.tree.add_leaf(leaf_hash)
        if self.progress is not None and size % PROGRESS_EVERY == 0:
            self.progress(size)
        return None


@dataclass(frozen=True)
class Replayed:
    """The world state a log replays to (steps 1-4), for rebuilding a damaged cache."""

    size: int
    records: Mapping[str, Record]
    written_at: Mapping[str, int]
    map: vmap.MemoryMap
    failure: str | None


def replay(entries: Iterable[EntryLike], batch_checker: BatchCheck | None = None) -> Replayed:
    """Replay ``entries`` (steps 1-4) into a fresh state; ``failure`` names the first
    entry that does not replay (the state is then the state before it)."""
    r = _Replay(None, ())
    with _gc_paused():
        bad = r.run(entries, batch_checker)
        r.map.root()
    return Replayed(r.tree.size, r.state.records, r.written_at, r.map,
                    None if bad is None else f"entry {bad.index} ({bad.kind}): {bad.detail}")


def _log_key(replay: _Replay, given: str | None,
             genesis_keys: Collection[str] | None) -> tuple[str | None, _Failure | None]:
    """Step 5: the log key comes from the genesis record unless one is given. With
    ``genesis_keys`` (a log derived from a Fabric channel: signed by its organisation's
    node key, while the genesis names the founding organisation's node key), the genesis
    must name one of those keys and the given key signs the checkpoints."""
    ledger = replay.state.get(LEDGER)
    recorded = None if ledger is None else ledger.get("log_key")
    if genesis_keys is not None and given is not None:
        if recorded is not None and recorded not in genesis_keys:
            return given, _Failure(0, "checkpoint", "the genesis entry names a log key that "
                                   "is not the key of any organisation node of the network")
        return given, None
    if given is not None and recorded is not None and given != recorded:
        return given, _Failure(0, "checkpoint", "the given log verifier key differs from the "
                               "log key recorded in the genesis entry")
    return (given if given is not None else recorded), None


def _origin(replay: _Replay) -> str | None:
    ledger = replay.state.get(LEDGER)
    return None if ledger is None else str(ledger["origin"])


def _open(note: str, key: str | None, origin: str | None) -> Checkpoint:
    if key is None:
        raise VerificationError("there is no log key to verify it with (no genesis entry)")
    try:
        return verify_checkpoint(note, key, expected_origin=origin)
    except InvalidInput as exc:
        raise VerificationError(exc.message) from None


def _checkpoints(cps: Iterable[tuple[int, str]], replay: _Replay, complete: bool,
                 key: str | None) -> _Failure | None:
    """Step 6: every stored checkpoint, then consistency between successive ones."""
    tree, n = replay.tree, replay.tree.size
    origin = _origin(replay)
    prev: Checkpoint | None = None
    mapped = False  # a checkpoint with a state-map root was seen: all later ones need one
    for size, note in cps:
        if prev is not None and size <= prev.size:
            return _Failure(min(size, n), "checkpoint", f"checkpoint of size {size} is out of "
                            f"order after size {prev.size}")
        if size > n:
            if not complete:
                return None  # beyond the first bad entry: cannot be judged
            return _Failure(n, "missing", f"log truncated: checkpoint covers {size} entries "
                            f"but only {n} exist")
        at = max(size - 1, 0)
        try:
            cp = _open(note, key, origin)
        except VerificationError as exc:
            return _Failure(at, "checkpoint", f"checkpoint of size {size} does not verify: "
                            f"{exc.message}")
        if cp.size != size:
            return _Failure(at, "checkpoint", f"checkpoint stored as size {size} says size "
                            f"{cp.size}")
        if not hmac.compare_digest(cp.root, tree.root(size)):
            return _Failure(at, "checkpoint", f"checkpoint of size {size} has root "
                            f"{cp.root.hex()} but the entries give {tree.root(size).hex()}")
        try:
            map_root = vmap.root_of(cp.extensions)
        except VerificationError as exc:
            return _Failure(at, "map", f"checkpoint of size {size}: {exc.message}")
        if map_root is None and mapped:
            return _Failure(at, "map", f"checkpoint of size {size} carries no state-map root")
        if map_root is not None:
            mapped = True
            replayed = replay.map_root(size)
            if replayed is None:
                return _Failure(at, "map", f"checkpoint of size {size} was not among the "
                                "checkpoint sizes read before the replay")
            if not hmac.compare_digest(map_root, replayed):
                return _Failure(at, "map", f"checkpoint of size {size} signs state-map root "
                                f"{map_root.hex()} but the replayed state gives "
                                f"{replayed.hex()}")
        if prev is not None:
            try:
                proof = merkle.consistency_proof(prev.size, size, _TreeMapping(tree))
                merkle_verify.verify_consistency(prev.size, size, prev.root, cp.root, proof)
            except LedgerError as exc:
                return _Failure(at, "consistency", f"checkpoint of size {size} is not "
                                f"consistent with size {prev.size}: {exc.message}")
        prev = cp
    return None


def _nodes(nodes: Iterable[NodeRow], tree: _Tree, complete: bool) -> _Failure | None:
    """Step 7: stored perfect nodes against the recomputed ones, and none missing.

    Rows that follow one another in a level (as the store reads them) are compared a run
    at a time, as one byte string against the packed level; a run that differs anywhere
    is gone through row by row, in the order read, as every row would otherwise be."""
    n = tree.size
    levels = tree.levels
    seen = [bytearray(len(level) // 32) for level in levels]
    worst: _Failure | None = None

    def note(f: _Failure) -> None:
        nonlocal worst
        if worst is None or f.rank() < worst.rank():
            worst = f

    def one(level: int, index: int, value: bytes) -> None:
        first, end = index << level, (index + 1) << level
        if level < 0 or index < 0:
            note(_Failure(0, "node", f"stored node ({level}, {index}) has a negative id"))
            return
        if end > n:
            if complete:
                note(_Failure(n, "missing", f"a stored Merkle node covers leaves {first}-"
                              f"{end - 1} but the log has only {n} entries"))
            return
        if bytes(value) != tree.get((level, index)):
            kind = "leaf" if level == 0 else "node"
            note(_Failure(first, kind, f"stored Merkle node ({level}, {index}) over leaves "
                          f"{first}-{end - 1} differs from the recomputed one"))
        seen[level][index] = 1

    run_level, run_start = 0, 0  # a run of rows: its level and first index, and hashes
    run: list[bytes] = []

    def flush() -> None:
        count = len(run)
        if not count:
            return
        if (run_start + count) << run_level <= n and set(map(len, run)) == {32} \
                and b"".join(run) == levels[run_level][32 * run_start:32 * (run_start + count)]:
            seen[run_level][run_start:run_start + count] = b"\x01" * count
        else:
            for j, value in enumerate(run):
                one(run_level, run_start + j, value)
        run.clear()

    for level, index, value in nodes:
        if run and index == run_start + len(run) and level == run_level \
                and type(index) is int and type(level) is int and len(run) < _RUN:
            run.append(value)
            continue
        flush()
        if type(level) is int and type(index) is int and 0 <= level < len(levels) \
                and index >= 0:
            run_level, run_start = level, index
            run.append(value)
        else:
            one(level, index, value)
    flush()
    if complete:
        for level, flags in enumerate(seen):
            gap = flags.find(0)
            if gap >= 0:
                note(_Failure(gap << level, "node", f"Merkle node ({level}, {gap}) is "
                              "missing from the store"))
    return worst


#: Stored Merkle nodes compared at a time by :func:`_nodes`.
_RUN: Final = 4096


def _canon(value: object) -> bytes | None:
    """Canonical bytes of a stored record; a str/bytes record is its JSON text."""
    try:
        if isinstance(value, str | bytes):
            return canonical(parse(value))
        return canonical(value)
    except InvalidInput:
        return None


def _same(stored: object, replayed: Record, value_hash: bytes | None = None) -> bool:
    """Whether the stored record equals the replayed one (as canonical JSON).

    ``value_hash``: the state map's SHA-256 of the replayed record's canonical bytes, when
    the map holds it (then stored text that is already canonical is compared by its hash,
    without encoding the record again)."""
    if isinstance(stored, str | bytes):  # JSON text as stored: usually already canonical
        raw = stored.encode() if isinstance(stored, str) else stored
        if value_hash is not None and hashlib.sha256(raw).digest() == value_hash:
            return True
        # The stdlib encoding of the record, when it is the stored text, parses back to the
        # record itself, so the canonical comparison below would say equal: skip it.
        try:
            if _encode(replayed).encode() == raw:
                return True
        except (ValueError, TypeError):
            pass
        want = canonical(replayed)
        if raw == want:
            return True
    else:
        want = canonical(replayed)
    return _canon(stored) == want


def _state(stored: Iterable[tuple[str, object]], replay: _Replay,
           partial: bool = False, what: str = "state") -> _Failure | None:
    """Step 8: the stored state equals the replayed state, key for key (``partial``: the
    stored state is the part a server shows this caller; keys it does not show are not
    reported missing, and ``nonce/`` bookkeeping is not compared)."""
    records = replay.state.records
    if what != "state":  # the state history holds the keys the state map covers
        records = {k: v for k, v in records.items() if vmap.mapped(k)}
    end = replay.tree.size
    unseen = set(records)
    hashes, sha256 = replay.map.hashes, hashlib.sha256
    worst: _Failure | None = None
    for key, value in stored:
        record = records.get(key)
        if record is None:  # (a record is a dict, never None)
            f = _Failure(None, "state", f"{what} key {key!r} is stored but no entry wrote it",
                         end)
        else:
            unseen.discard(key)
            value_hash = hashes.get(key)  # the map's hash of the record (mapped keys)
            if type(value) is str:  # the usual stored text: compared without _same's calls
                if value_hash is not None and sha256(value.encode()).digest() == value_hash:
                    continue
                try:
                    if _encode_dict(record) == value:
                        continue
                except (ValueError, TypeError, RecursionError):
                    pass
            if _same(value, record, value_hash):
                continue
            f = _Failure(replay.written_at[key], "state", f"{what} key {key!r} differs from "
                         f"the replayed value written by entry {replay.written_at[key]}", end)
        if worst is None or f.rank() < worst.rank():
            worst = f
    for key in () if partial else unseen:
        f = _Failure(replay.written_at[key], "state", f"{what} key {key!r} is missing from "
                     f"the store (written by entry {replay.written_at[key]})", end)
        if worst is None or f.rank() < worst.rank():
            worst = f
    return worst


def _map_nodes(stored: Iterable[NodeRow], replay: _Replay) -> _Failure | None:
    """Step 8: the newest stored state-map nodes equal the recomputed ones."""
    replay.map.root()
    zero, end = vmap.ZERO, replay.tree.size
    # The recomputed nodes, level by level (as ``nodes`` without ZERO: a stored ZERO
    # node matches a node the map does not have).
    tiers = [{i: h for i, h in tier.items() if h != zero} for tier in replay.map.tiers]
    rows = iter(stored)
    for level, idx, value in rows:
        if type(level) is not int:  # e.g. 1.0 or True, equal to a level: as a key would
            return _map_nodes_keyed(itertools.chain([(level, idx, value)], rows), tiers, end)
        got = tiers[level].pop(idx, zero) if 0 <= level < len(tiers) else zero
        if got != value:
            return _map_node_differs(level, idx, end)
    for level, tier in enumerate(tiers):
        if tier:
            return _Failure(None, "map", f"state-map node ({level}, {min(tier)}) is missing "
                            "from the store", end)
    return None


def _map_nodes_keyed(stored: Iterable[NodeRow], tiers: list[dict[int, bytes]],
                     end: int) -> _Failure | None:
    """:func:`_map_nodes` from here on, with the nodes keyed by ``(level, index)``."""
    want = {(level, i): h for level, tier in enumerate(tiers) for i, h in tier.items()}
    for level, idx, value in stored:
        if want.pop((level, idx), vmap.ZERO) != value:
            return _map_node_differs(level, idx, end)
    if want:
        (level, idx), _ = min(want.items())
        return _Failure(None, "map", f"state-map node ({level}, {idx}) is missing from the "
                        "store", end)
    return None


def _map_node_differs(level: int, idx: int, end: int) -> _Failure:
    return _Failure(None, "map", f"stored state-map node ({level}, {idx}) differs from the "
                    "node recomputed from the replayed state", end)


def _trusted(note: str, replay: _Replay, complete: bool, key: str | None) -> _Failure | None:
    """Step 9: a checkpoint the client kept must match the recomputed tree."""
    try:
        cp = _open(note, key, _origin(replay))
    except VerificationError as exc:
        return _Failure(None, "consistency", "the trusted checkpoint does not verify with "
                        f"this log's key, so the log was rebuilt or re-keyed: {exc.message}")
    n = replay.tree.size
    if cp.size > n:
        if not complete:
            return None
        return _Failure(n, "missing", f"log truncated: the trusted checkpoint covers {cp.size} "
                        f"entries but only {n} exist")
    if not hmac.compare_digest(cp.root, replay.tree.root(cp.size)):
        return _Failure(None, "consistency", f"the trusted checkpoint of size {cp.size} does "
                        "not match the recomputed root: the log was rewritten and re-signed")
    return None


def audit(
    entries: Iterable[EntryLike],
    checkpoints: Iterable[tuple[int, str]],
    *,
    log_verifier_key: str | None = None,
    stored_nodes: Callable[[], Iterable[NodeRow]] | None = None,
    state: Iterable[tuple[str, object]] | None = None,
    trusted_checkpoint: str | None = None,
    progress: Progress | None = None,
    served_state: Iterable[tuple[str, object]] | None = None,
    state_history: Iterable[tuple[str, object]] | None = None,
    stored_map: Iterable[NodeRow] | None = None,
    checkpoint_sizes: Collection[int] | None = None,
    genesis_log_keys: Collection[str] | None = None,
    batch_checker: BatchCheck | None = None,
) -> AuditReport:
    """Replay and recompute the whole log (steps 1-9 of the module docstring).

    ``entries`` are stored rows in index order; ``checkpoints`` are ``(size, note)`` in
    increasing size order; ``stored_nodes`` returns ``(level, index, hash)`` rows in any
    order; ``state`` yields ``(key, record)`` where a record is a JSON value or its JSON
    text (``str``/``bytes``, compared after canonicalisation). ``progress`` is called
    with the number of entries replayed every :data:`PROGRESS_EVERY` entries and at the
    end. ``served_state`` is the part of the state a server shows this caller: each
    record shown must equal the replayed one (keys not shown are not missing).
    ``state_history`` (newest value per key of the versioned state) and ``stored_map``
    (newest version of each stored state-map node) are compared with the replay too.
    ``checkpoint_sizes`` (every size in ``checkpoints``, read beforehand) lets the replay
    compute state-map roots only where a checkpoint needs one. ``genesis_log_keys``: the
    log is an organisation's log derived from a Fabric channel, and these are the node
    keys the genesis may name (step 5). ``batch_checker`` runs :func:`check_leaves` ahead
    of the replay, e.g. in worker processes (see "In parallel" above); the report is the
    same with or without it.
    Never raises for bad data: every problem is reported in the returned :class:`AuditReport`.
    """
    with _gc_paused():
        replay = _Replay(progress, checkpoint_sizes)
        bad = replay.run(entries, batch_checker)
        complete = bad is None
        failures: list[_Failure] = [] if bad is None else [bad]
        key, key_failure = _log_key(replay, log_verifier_key, genesis_log_keys)
        failures += [f for f in (
            key_failure,
            _checkpoints(checkpoints, replay, complete, key),
            _nodes(stored_nodes(), replay.tree, complete) if stored_nodes is not None else None,
            _state(state, replay) if state is not None and complete else None,
            _state(served_state, replay, partial=True)
            if served_state is not None and complete else None,
            _state(state_history, replay, what="state history")
            if state_history is not None and complete else None,
            _map_nodes(stored_map, replay) if stored_map is not None and complete else None,
            _trusted(trusted_checkpoint, replay, complete, key)
            if trusted_checkpoint is not None else None,
        ) if f is not None]
        size = replay.tree.size
        root_hex = replay.tree.head().hex()
        if not failures:
            return AuditReport(True, size, None, None, f"all {size} entries verified", size,
                               root_hex)
        first = min(failures, key=_Failure.rank)
        return AuditReport(False, size, first.index, first.kind, first.detail, size, root_hex)
