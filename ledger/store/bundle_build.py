"""Build a court bundle (``ledger.core.bundle``) from a SQL store at one checkpoint size.

The builder reads caches (the ``refs`` index) only as hints for WHERE to look; what it
puts in the bundle are signed entries, inclusion proofs and state-map proofs that the
verifier checks against the checkpoint. It also compares the operator's caches with
what is proven and reports each disagreement as a ``cache`` fault naming the key, so a
hand-edited ``state`` or ``refs`` row is reported, never used.
"""

from __future__ import annotations

from typing import Any, Protocol

from ledger.core import events as ev
from ledger.core import state, vmap
from ledger.core.bundle import Bundle, BundleEntry, Fault
from ledger.core.checkpoint import Checkpoint
from ledger.core.errors import InvalidInput, NotFound
from ledger.core.note import split_note
from ledger.core.rules import subjects
from ledger.store.base import StoredEntry

#: Most entries one bundle carries (an artefact with more accesses needs paging).
MAX_ENTRIES = 100_000


class _Source(Protocol):
    def size(self) -> int: ...
    def checkpoint_at(self, size: int) -> str: ...
    def map_proof(self, key: str, size: int) -> vmap.MapProof: ...
    def refs(self, ref: str) -> list[int]: ...
    def entries_at(self, indices: list[int]) -> list[StoredEntry]: ...
    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...
    def cached_state(self, key: str) -> dict[str, Any] | None: ...


def build_bundle(store: Any, *, artefact_id: str | None = None, sha256: str | None = None,
                 size: int | None = None) -> tuple[Bundle, list[Fault]]:
    """The bundle for an artefact (or, when no artefact is named, for every registration
    of a SHA-256) at ``size`` (default: the latest checkpoint), and the cache faults found
    while building it. With both, the artefact's bundle: the digest is the caller's
    evidence, which the verifier compares."""
    if artefact_id is None and sha256 is None:
        raise InvalidInput("name an artefact or a SHA-256 digest")
    src: _Source = store
    size = src.size() if size is None else size
    if size <= 0:
        raise NotFound("the ledger is empty: nothing to prove")
    cosigned = getattr(store, "cosigned_note", None)
    note = cosigned(size) if cosigned is not None else src.checkpoint_at(size)
    cp = Checkpoint.parse(split_note(note)[0])
    faults: list[Fault] = []
    maps: dict[str, vmap.MapProof] = {}
    wanted: set[int] = {0}

    def prove(key: str) -> dict[str, Any] | None:
        if key not in maps:
            maps[key] = src.map_proof(key, size)
        return maps[key].value

    def history(subject: str) -> list[StoredEntry]:
        value = prove(state.history_key(subject))
        hint = state.subject_ref(subject)
        indices = [i for i in src.refs(hint) if i < size]
        if value is None:
            listed = [e.index for e in src.entries_at(indices)
                      if subject in subjects(ev.Entry.from_leaf(
                          e.leaf, check_canonical=False).signed.event)] if indices else []
            if indices and (subject.startswith(state.DIGEST_SUBJECT) or listed):
                faults.append(Fault("cache", f"the refs index lists entries {indices[:5]} for "
                                    f"{subject}, which the checkpoint proves has none: the "
                                    "index was edited", key="refs/" + hint))
            return []
        if len(indices) > MAX_ENTRIES:
            raise InvalidInput(f"{subject} has more than {MAX_ENTRIES} entries")
        found = [e for e in src.entries_at(indices)
                 if subject in subjects(ev.Entry.from_leaf(e.leaf,
                                                          check_canonical=False).signed.event)]
        if len(found) != value["n"] or (found and found[-1].index != value["last"]):
            faults.append(Fault("cache", f"the refs index lists {len(found)} entries of "
                                f"{subject} but the checkpoint proves {value['n']} (last at "
                                f"index {value['last']}): the index was edited",
                                key="refs/" + hint))
        wanted.update(e.index for e in found)
        return found

    subject: dict[str, str]
    if artefact_id is None:
        assert sha256 is not None  # noqa: S101 - checked above
        sha256 = sha256.lower()
        subject = {"sha256": sha256}
        regs = history(state.digest_subject(sha256))
        ids = [ev.Entry.from_leaf(e.leaf, check_canonical=False).signed.event.payload["id"]
               for e in regs]
        targets = ids[:1]
    else:
        subject = {"artefact": artefact_id}
        targets = [artefact_id]
    for art in targets:
        chain = history(state.artefact_subject(art))
        prove(state.artefact_key(art))
        for stored in chain:
            event = ev.Entry.from_leaf(stored.leaf, check_canonical=False).signed.event
            actor = prove(state.actor_key(event.signer))
            if actor is not None:
                wanted.add(int(actor["enrolled_at"]))
                prove(state.org_key(actor["org"]))
            lb = event.payload.get("legal_basis") if event.kind == ev.DISPATCH else None
            if lb is not None:
                rec = prove(state.legal_basis_key(lb))
                if rec is not None:
                    wanted.add(int(rec["recorded_at"]))
    entries = [BundleEntry(e.index, e.leaf, tuple(src.inclusion_proof(e.index, size)))
               for e in src.entries_at(sorted(i for i in wanted if i < size))]
    if size == src.size():  # the caches describe the latest state: they must agree
        for key, proof in maps.items():
            if src.cached_state(key) != proof.value:
                faults.append(Fault("cache", f"the state cache's record {key!r} differs from "
                                    "the record proven against the checkpoint: the state "
                                    "table was edited outside the log", key=key))
    ledger = src.cached_state(state.LEDGER) or {}
    return Bundle(cp.origin, note, subject, tuple(entries), tuple(maps.values()),
                  str(ledger.get("log_key", ""))), faults
