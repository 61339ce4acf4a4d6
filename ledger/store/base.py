"""The store protocol every backend implements, and its durability contract.

Durability contract: ``append`` returns only after the entry is committed. An
acknowledged entry has an index, is covered by the returned signed checkpoint, and
survives a crash (SQLite WAL with ``synchronous=FULL``; PostgreSQL commit). A refused
event writes nothing. Submitting the same signed event again returns the original
result (``duplicate=True``) and the log does not grow.

One conformance suite (``tests/integration/test_store_conformance.py``) runs against
every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: reading a store needs no models (start-up time)
    from ledger.core.audit import AuditReport
    from ledger.core.bundle import Bundle, Fault
    from ledger.core.errors import LedgerError
    from ledger.core.events import SignedEvent
    from ledger.store.repair import Repair


@dataclass(frozen=True, slots=True)
class AppendResult:
    """A signed append receipt: where the event landed and the checkpoint covering it."""

    index: int
    leaf_hash: bytes
    event_id: str
    ledger_time: int
    checkpoint: str
    result: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "leaf_hash": self.leaf_hash.hex(),
                "event_id": self.event_id, "ledger_time": self.ledger_time,
                "checkpoint": self.checkpoint, "result": self.result,
                "duplicate": self.duplicate}


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    leaf: bytes
    leaf_hash: bytes
    ledger_time: int


class LedgerStore(Protocol):
    """What the service and the verifiers need from a backend."""

    def append(self, signed: SignedEvent) -> AppendResult: ...

    def append_many(self, batch: Sequence[SignedEvent]) -> list[AppendResult | LedgerError]:
        """Group commit: one transaction, one checkpoint; each event accepted or refused
        on its own (a refused event writes nothing)."""
        ...

    def size(self) -> int: ...

    def entry(self, index: int) -> StoredEntry: ...

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]: ...

    def entries_at(self, indices: Sequence[int]) -> list[StoredEntry]:
        """The entries at these indices, in the order given (one round trip)."""
        ...

    def find_event(self, event_id: str) -> int | None: ...

    def state(self, key: str) -> dict[str, Any] | None:
        """A state record; a backend that knows the log key verifies it against the
        signed state map (an edited row raises IntegrityFault naming the key)."""
        ...

    def cached_state(self, key: str) -> dict[str, Any] | None:
        """The record as the backend's cache holds it (compared against proofs)."""
        ...

    def state_items(self, prefix: str, after: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        """Records under ``prefix`` with keys sorting after ``after``, in key order."""
        ...

    def refs(self, ref: str) -> list[int]: ...

    def latest_checkpoint(self) -> str | None: ...

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        """Checkpoints with tree size > ``after``, oldest first."""
        ...

    def root(self, size: int) -> bytes: ...

    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...

    def consistency_proof(self, old: int, new: int) -> list[bytes]: ...

    def bundle(self, *, artefact_id: str | None = None, sha256: str | None = None,
               size: int | None = None) -> tuple[Bundle, list[Fault]]:
        """The court bundle of an artefact (or of every registration of a SHA-256) proven
        at checkpoint ``size`` (default latest), plus the faults the store found in its
        own caches while building it (``cache`` faults: never authentic)."""
        ...

    def close(self) -> None: ...

    # ---- the ledger as a whole -------------------------------------------------------

    def audit(self, *, trusted_checkpoint: str | None = None,
              log_verifier_key: str | None = None,
              progress: Callable[[int], None] | None = None) -> AuditReport:
        """Re-verify from scratch everything this store can show (:mod:`ledger.core.audit`):
        a SQL store its own tables (nodes and state included), a Fabric organisation the
        log it derived from the chain, a server's client what the server serves, replayed
        here against ``log_verifier_key`` (the client's pinned key)."""
        ...

    def rebuild_state(self, log_key: str) -> Repair:
        """Rewrite the state cache from the replayed log, only if the result gives the
        state-map root signed in the latest checkpoint. Only where the cache lives:
        :class:`~ledger.core.errors.InvalidInput` elsewhere (a server's client, Fabric)."""
        ...

    # ---- witness cosignatures (C2SP tlog-cosignature; ledger/core/witness.py) -----------

    def add_cosignature(self, size: int, witness_key: str, line: str) -> str:
        """Check and store a witness's cosignature line over the checkpoint of ``size``;
        return the stored line (the first one, if that witness cosigned that size
        before)."""
        ...

    def cosignatures(self, size: int) -> dict[str, str]:
        """Stored cosignature lines of the checkpoint of ``size``, by witness key."""
        ...

    def cosigned_note(self, size: int) -> str:
        """The checkpoint of ``size`` with every stored cosignature line appended."""
        ...

    def witnessed_checkpoint(self, min_witnesses: int = 1) -> tuple[int, str] | None:
        """The newest checkpoint with at least ``min_witnesses`` cosignatures, as
        ``(size, cosigned note)``, or None."""
        ...


class CachedView:
    """The world state as one use case or one API request reads it through a store (a
    :class:`ledger.core.rules.StateView`): each key is read at most once (the
    authorisation checks ask for the same case/artefact records repeatedly). ``seed``:
    records the caller already holds (the API's caller's own actor record)."""

    __slots__ = ("_cache", "store")

    def __init__(self, store: LedgerStore,
                 seed: Mapping[str, dict[str, Any] | None] | None = None) -> None:
        self.store = store
        self._cache: dict[str, dict[str, Any] | None] = dict(seed or {})

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return self._cache[key]
        except KeyError:
            record = self._cache[key] = self.store.state(key)
            return record
