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
3. **Event.** The event is replayed through :func:`ledger.rules.apply` on a fresh
   :class:`~ledger.rules.MemoryState` (so its signature is checked against the
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
   generated from the recomputed tree and verified with :mod:`ledger.merkle_verify`
   — kind ``consistency``; its state-map root (``ledger.vmap``) equals the root of
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

Memory is O(state + n): the replayed world state, plus the recomputed Merkle tree kept
as packed hashes — 32 bytes per perfect node, about 64 bytes per entry (64 MB for a
million entries) — so proofs and roots at any checkpoint size cost O(log n). Leaves and
events are never kept.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol

from ledger import merkle, merkle_verify, vmap
from ledger.canonical import canonical, parse
from ledger.checkpoint import Checkpoint, verify_checkpoint
from ledger.errors import InvalidInput, LedgerError, RuleViolation, VerificationError
from ledger.events import Entry
from ledger.rules import Context, MemoryState, Record, apply

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
    :mod:`ledger.merkle` expects.
    """

    def __init__(self) -> None:
        self.frontier = merkle.Frontier.empty()
        self.levels: list[bytearray] = []

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf_hash: bytes) -> None:
        for level, _index, value in self.frontier.append(leaf_hash):
            if level == len(self.levels):
                self.levels.append(bytearray())
            self.levels[level] += value

    def count(self, level: int) -> int:
        return len(self.levels[level]) // 32 if level < len(self.levels) else 0

    def get(self, node: merkle.NodeId) -> bytes | None:
        level, index = node
        if not 0 <= index < self.count(level):
            return None
        return bytes(self.levels[level][index * 32:(index + 1) * 32])

    def root(self, size: int) -> bytes:
        return merkle.root_at(size, _TreeMapping(self))


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
        self.map = vmap.MemoryMap()
        self.map_sizes = map_sizes
        self.map_roots = bytearray()
        self.map_roots_at: dict[int, bytes] = {}

    def map_root(self, size: int) -> bytes | None:
        if not size:
            return vmap.ZERO
        if self.map_sizes is not None:
            return self.map_roots_at.get(size)
        return bytes(self.map_roots[(size - 1) * 32:size * 32])

    def run(self, entries: Iterable[EntryLike]) -> _Failure | None:
        for raw in entries:
            failure = self.step(*_row(raw))
            if failure is not None:
                return failure
            if self.progress is not None and self.tree.size % PROGRESS_EVERY == 0:
                self.progress(self.tree.size)
        if self.progress is not None:
            self.progress(self.tree.size)
        return None

    def step(self, index: int, leaf: bytes, leaf_hash: bytes, ledger_time: int) -> _Failure | None:
        want = self.tree.size
        # 1. Contiguity.
        if index > want:
            return _Failure(want, "missing", f"entry {want} is missing: the next stored "
                            f"entry has index {index}")
        if index < want:
            return _Failure(want, "leaf", f"entry index {index} appears again or out of order "
                            f"where entry {want} was expected")
        # 2. Leaf hash and canonical leaf.
        if not hmac.compare_digest(merkle.leaf_hash(leaf), leaf_hash):
            return _Failure(index, "leaf", f"entry {index}: stored leaf hash is not "
                            "SHA-256(0x00 || leaf)")
        try:
            entry = Entry.from_leaf(leaf)
        except InvalidInput as exc:
            return _Failure(index, "leaf", f"entry {index}: leaf does not parse: {exc.message}")
        except (ValueError, TypeError) as exc:
            return _Failure(index, "leaf", f"entry {index}: leaf does not parse: {exc}")
        if entry.index != index:
            return _Failure(index, "leaf", f"entry {index}: the leaf says it is entry "
                            f"{entry.index}")
        if entry.ledger_time != ledger_time:
            return _Failure(index, "leaf", f"entry {index}: the leaf's ledger time "
                            f"{entry.ledger_time} differs from the row's {ledger_time}")
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
        for key, value in effects.writes.items():
            self.written_at[key] = index
            self.map.set(key, value)
        if self.map_sizes is None:
            self.map_roots += self.map.root()
        elif index + 1 in self.map_sizes:
            self.map_roots_at[index + 1] = self.map.root()
        self.tree.append(leaf_hash)
        return None


@dataclass(frozen=True)
class Replayed:
    """The world state a log replays to (steps 1-4), for rebuilding a damaged cache."""

    size: int
    records: Mapping[str, Record]
    written_at: Mapping[str, int]
    map: vmap.MemoryMap
    failure: str | None


def replay(entries: Iterable[EntryLike]) -> Replayed:
    """Replay ``entries`` (steps 1-4) into a fresh state; ``failure`` names the first
    entry that does not replay (the state is then the state before it)."""
    r = _Replay(None)
    bad = r.run(entries)
    r.map.root()
    return Replayed(r.tree.size, r.state.records, r.written_at, r.map,
                    None if bad is None else f"entry {bad.index} ({bad.kind}): {bad.detail}")


def _log_key(replay: _Replay, given: str | None,
             genesis_keys: Collection[str] | None) -> tuple[str | None, _Failure | None]:
    """Step 5: the log key comes from the genesis record unless one is given. With
    ``genesis_keys`` (a log derived from a Fabric channel: signed by its organisation's
    node key, while the genesis names the founding organisation's node key), the genesis
    must name one of those keys and the given key signs the checkpoints."""
    ledger = replay.state.get("ledger")
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
    ledger = replay.state.get("ledger")
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
    """Step 7: stored perfect nodes against the recomputed ones, and none missing."""
    n = tree.size
    seen = [bytearray(tree.count(level)) for level in range(len(tree.levels))]
    worst: _Failure | None = None

    def note(f: _Failure) -> None:
        nonlocal worst
        if worst is None or f.rank() < worst.rank():
            worst = f

    for level, index, value in nodes:
        first, end = index << level, (index + 1) << level
        if level < 0 or index < 0:
            note(_Failure(0, "node", f"stored node ({level}, {index}) has a negative id"))
            continue
        if end > n:
            if complete:
                note(_Failure(n, "missing", f"a stored Merkle node covers leaves {first}-"
                              f"{end - 1} but the log has only {n} entries"))
            continue
        if bytes(value) != tree.get((level, index)):
            kind = "leaf" if level == 0 else "node"
            note(_Failure(first, kind, f"stored Merkle node ({level}, {index}) over leaves "
                          f"{first}-{end - 1} differs from the recomputed one"))
        seen[level][index] = 1
    if complete:
        for level, flags in enumerate(seen):
            gap = flags.find(0)
            if gap >= 0:
                note(_Failure(gap << level, "node", f"Merkle node ({level}, {gap}) is "
                              "missing from the store"))
    return worst


def _canon(value: object) -> bytes | None:
    """Canonical bytes of a stored record; a str/bytes record is its JSON text."""
    try:
        if isinstance(value, str | bytes):
            return canonical(parse(value))
        return canonical(value)
    except InvalidInput:
        return None


def _same(stored: object, replayed: Record) -> bool:
    want = canonical(replayed)
    if isinstance(stored, str | bytes):  # JSON text as stored: usually already canonical
        raw = stored.encode() if isinstance(stored, str) else stored
        if raw == want:
            return True
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
    worst: _Failure | None = None
    for key, value in stored:
        if key not in records:
            f = _Failure(None, "state", f"{what} key {key!r} is stored but no entry wrote it",
                         end)
        else:
            unseen.discard(key)
            if _same(value, records[key]):
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
    want = {n: h for n, h in replay.map.nodes.items() if h != vmap.ZERO}
    end = replay.tree.size
    for level, idx, value in stored:
        if want.pop((level, idx), vmap.ZERO) != value:
            return _Failure(None, "map", f"stored state-map node ({level}, {idx}) differs from "
                            "the node recomputed from the replayed state", end)
    if want:
        (level, idx), _ = min(want.items())
        return _Failure(None, "map", f"state-map node ({level}, {idx}) is missing from the "
                        "store", end)
    return None


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
    keys the genesis may name (step 5).
    Never raises for bad data: every problem is reported in the returned :class:`AuditReport`.
    """
    replay = _Replay(progress, checkpoint_sizes)
    bad = replay.run(entries)
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
    root_hex = replay.tree.frontier.root().hex()
    if not failures:
        return AuditReport(True, size, None, None, f"all {size} entries verified", size,
                           root_hex)
    first = min(failures, key=_Failure.rank)
    return AuditReport(False, size, first.index, first.kind, first.detail, size, root_hex)
