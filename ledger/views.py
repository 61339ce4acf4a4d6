"""Read models over a store: court verification (from proofs only), ledger status.

``verify`` never reads a verdict from the store's tables: it obtains the artefact's
bundle (signed entries, inclusion proofs, state-map proofs) and checks it with the pure
:func:`ledger.core.bundle.verify_bundle` against the pinned log key; the custody timeline is
part of its result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ledger.core.checkpoint import Checkpoint
from ledger.core.errors import InvalidInput
from ledger.core.state import ACTOR, ARTEFACT, CASE, LEDGER, LEGAL_BASIS, ORG, TRANSFER
from ledger.store.base import LedgerStore

if TYPE_CHECKING:  # the verifier (and pydantic's payload models) only when verifying
    from ledger.core.bundle import VerifyResult


def verify(store: LedgerStore, *, log_key: str, sha256: str | None = None,
           artefact_id: str | None = None, size: int | None = None,
           expect: Checkpoint | None = None, witnesses: Sequence[str] = (),
           quorum: int = 0) -> VerifyResult:
    """Court verification: the store's bundle for the artefact (or for every registration
    of ``sha256``) at ``size``, checked by :func:`ledger.core.bundle.verify_bundle` against the
    pinned ``log_key`` — the ONE verification every client runs. Caches of the store
    that disagree with what is proven are added as ``cache`` faults (never authentic)."""
    if artefact_id is None and sha256 is None:
        raise InvalidInput("name an artefact or a SHA-256 digest")
    # The digest goes along with a named artefact: a server lets a court or an auditor
    # that holds the bytes see any artefact proven to have been registered with them.
    bundle, cache_faults = store.bundle(artefact_id=artefact_id, sha256=sha256, size=size)
    from ledger.core.bundle import verify_bundle

    result = verify_bundle(bundle, log_key=log_key, evidence_sha256=sha256,
                           witnesses=witnesses, quorum=quorum, expect=expect)
    return result.with_faults(cache_faults)


class StateReader(Protocol):
    """The reads :func:`status` makes: a :class:`LedgerStore`, or the sqlite3-only
    :class:`ledger.store.lite.SqliteReader` of an embedded ledger."""

    def size(self) -> int: ...

    def latest_checkpoint(self) -> str | None: ...

    def state(self, key: str) -> dict[str, Any] | None: ...

    def state_items(self, prefix: str,
                    after: str = "") -> Iterator[tuple[str, dict[str, Any]]]: ...


def status(store: StateReader) -> dict[str, Any]:
    counts: dict[str, int] = {}
    open_transfers = incidents = 0
    for prefix in (ORG, ACTOR, CASE, LEGAL_BASIS, ARTEFACT, TRANSFER):
        n = 0
        for _key, rec in store.state_items(prefix):
            n += 1
            if prefix == TRANSFER and rec["status"] == "open":
                open_transfers += 1
            if prefix == ARTEFACT:
                incidents += rec["incidents"]
        counts[prefix] = n
    ledger = store.state(LEDGER) or {}
    return {"origin": ledger.get("origin"), "size": store.size(),
            "checkpoint": store.latest_checkpoint(),
            "organisations": counts[ORG], "actors": counts[ACTOR], "cases": counts[CASE],
            "legal_bases": counts[LEGAL_BASIS], "artefacts": counts[ARTEFACT],
            "transfers": counts[TRANSFER], "open_transfers": open_transfers,
            "integrity_incidents": incidents}
