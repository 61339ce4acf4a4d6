"""The court bundle (``custody-bundle/v1``) and the ONE verification that gives a verdict.

A verdict, a timeline and a custodian come only from signed log entries proven by
RFC 6962 inclusion proofs, and state-map proofs (``ledger.core.vmap``), against a checkpoint
signed by the pinned log key (and, on demand, cosigned by a quorum of witnesses). No
table of the operator's is read here: the embedded CLI, the server client and
``custody bundle verify`` all build or fetch a :class:`Bundle` and call
:func:`verify_bundle`. Every problem becomes a named :class:`Fault`; a verdict with
a fault is never ``authentic``. The format and the numbered steps are in
``docs/bundle.md``. Pure: no I/O, clock or randomness.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeGuard

from ledger.core import events as ev
from ledger.core import merkle, vmap
from ledger.core import payloads as pl
from ledger.core.checkpoint import Checkpoint, verify_checkpoint, verify_cosignatures
from ledger.core.errors import InvalidInput, LedgerError, VerificationError
from ledger.core.merkle_verify import verify_inclusion
from ledger.core.rules import HISTORY_START, subjects
from ledger.core.state import (
    actor_key,
    artefact_key,
    artefact_subject,
    digest_subject,
    history_key,
    legal_basis_key,
    org_key,
)
from ledger.core.vocab import STRONG_DIGESTS

FORMAT = "custody-bundle/v1"
MAX_ENTRIES = 200_000

Verdict = Literal["authentic", "mismatch", "not-registered", "verified", "fault"]


@dataclass(frozen=True, slots=True)
class BundleEntry:
    index: int
    leaf: bytes
    inclusion: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a court receives: entries, proofs and the checkpoint they are proven against."""

    origin: str
    checkpoint: str
    #: ``{"artefact": ID}`` or ``{"sha256": HEX}``.
    subject: Mapping[str, str]
    entries: tuple[BundleEntry, ...]
    maps: tuple[vmap.MapProof, ...]
    #: The log key the operator says it uses (informational: verifiers pin their own).
    log_key: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "origin": self.origin, "log_key": self.log_key,
                "checkpoint": self.checkpoint, "subject": dict(self.subject),
                "entries": [{"index": e.index, "leaf": base64.b64encode(e.leaf).decode(),
                             "inclusion": [h.hex() for h in e.inclusion]}
                            for e in self.entries],
                "maps": [m.to_json() for m in self.maps]}

    def to_bytes(self) -> bytes:
        """The bundle file: sorted keys, one-space indent, a final newline. Deterministic,
        so a report can print the SHA-256 of exactly these bytes."""
        return json.dumps(self.to_json(), sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, obj: Any) -> Bundle:
        """Strictly parse a bundle; raise :class:`VerificationError` naming the field."""
        if not isinstance(obj, dict):
            raise VerificationError("malformed bundle: not a JSON object")
        if obj.get("format") != FORMAT:
            raise VerificationError(f"unsupported bundle format {obj.get('format')!r}; "
                                    f"this verifier reads {FORMAT}")
        try:
            origin, note, subject = obj["origin"], obj["checkpoint"], obj["subject"]
            if not (isinstance(origin, str) and isinstance(note, str)):
                raise TypeError("origin and checkpoint must be strings")
            if not (isinstance(subject, dict) and len(subject) == 1
                    and next(iter(subject)) in ("artefact", "sha256")
                    and isinstance(next(iter(subject.values())), str)):
                raise TypeError("subject must be {'artefact': ID} or {'sha256': HEX}")
            raw_entries, raw_maps = obj["entries"], obj["maps"]
            if not isinstance(raw_entries, list) or not isinstance(raw_maps, list):
                raise TypeError("entries and maps must be lists")
            if len(raw_entries) > MAX_ENTRIES:
                raise TypeError(f"more than {MAX_ENTRIES} entries")
            entries = tuple(_entry(e) for e in raw_entries)
            maps = tuple(vmap.MapProof.from_json(m) for m in raw_maps)
            log_key = obj.get("log_key", "")
            if not isinstance(log_key, str):
                raise TypeError("log_key must be a string")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise VerificationError(f"malformed bundle: {exc}") from None
        return cls(origin, note, dict(subject), entries, maps, log_key)


def _entry(obj: Any) -> BundleEntry:
    if not isinstance(obj, dict):
        raise TypeError("an entry must be an object")
    index, leaf, proof = obj["index"], obj["leaf"], obj["inclusion"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise TypeError("an entry index must be a non-negative integer")
    if not isinstance(leaf, str) or not isinstance(proof, list):
        raise TypeError("an entry needs base64 'leaf' and a list 'inclusion'")
    hashes = []
    for h in proof:
        if not isinstance(h, str) or len(h) != 64:
            raise TypeError("inclusion proof hashes are 64 hex characters")
        hashes.append(bytes.fromhex(h))
    return BundleEntry(index, base64.b64decode(leaf, validate=True), tuple(hashes))


# ---- the typed result -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """One thing that does not verify. ``kind`` is a stable code (docs/bundle.md)."""

    kind: str
    detail: str
    key: str | None = None
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "key": self.key, "index": self.index}


@dataclass(frozen=True, slots=True)
class TimelineItem:
    index: int
    ledger_time: int
    kind: str
    event_id: str
    leaf_hash: str
    signer: str
    signer_name: str
    org: str
    jurisdiction: str
    key_id: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    inclusion_proof: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "ledger_time": iso(self.ledger_time),
                "ledger_time_ms": self.ledger_time, "kind": self.kind,
                "event_id": self.event_id, "leaf_hash": self.leaf_hash, "signer": self.signer,
                "signer_name": self.signer_name, "org": self.org,
                "jurisdiction": self.jurisdiction, "key_id": self.key_id,
                "summary": self.summary, **dict(self.details),
                "inclusion_proof": list(self.inclusion_proof), "inclusion_verified": True}


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    origin: str
    size: int
    root: str
    map_root: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": self.root,
                "map_root": self.map_root, "note": self.note}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict and everything it rests on. CLI, API and bundle verify serialise this."""

    verdict: Verdict
    artefact_id: str | None
    sha256: str | None
    registered: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    case: str | None = None
    exhibit: str | None = None
    custodian: str | None = None
    open_transfer: str | None = None
    incidents: int = 0
    complete: bool = False
    timeline: tuple[TimelineItem, ...] = ()
    checkpoint: CheckpointInfo | None = None
    witnesses: tuple[str, ...] = ()
    faults: tuple[Fault, ...] = ()
    also_registered_as: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict in ("authentic", "verified")

    def with_faults(self, extra: Sequence[Fault]) -> VerifyResult:
        """The same result with more faults (e.g. a cache that disagrees): never authentic."""
        if not extra:
            return self
        return replace(self, faults=(*self.faults, *extra), verdict="fault")

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "artefact_id": self.artefact_id,
                "sha256": self.sha256, "registered_digests": dict(self.registered),
                "registered_sha256": self.registered.get("sha256"), "size": self.size,
                "case": self.case, "exhibit": self.exhibit, "custodian": self.custodian,
                "open_transfer": self.open_transfer, "incidents": self.incidents,
                "complete": self.complete,
                "custody": [t.to_json() for t in self.timeline],
                "checkpoint": None if self.checkpoint is None else self.checkpoint.to_json(),
                "witnesses": list(self.witnesses),
                "faults": [f.to_json() for f in self.faults],
                "also_registered_as": list(self.also_registered_as)}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---- verification ----------------------------------------------------------------------


class _Run:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def fault(self, kind: str, detail: str, key: str | None = None,
              index: int | None = None) -> None:
        self.faults.append(Fault(kind, detail, key, index))


def fold_history(leaf_hashes: Sequence[bytes]) -> str:
    acc = bytes.fromhex(HISTORY_START)
    for h in leaf_hashes:
        acc = hashlib.sha256(acc + h).digest()
    return acc.hex()


def verify_bundle(bundle: Bundle, *, log_key: str, evidence_sha256: str | None = None,
                  witnesses: Sequence[str] = (), quorum: int = 0,
                  expect: Checkpoint | None = None) -> VerifyResult:
    """Steps B1-B12 of docs/bundle.md. Never trusts anything the bundle says that is not
    proven against the checkpoint; returns a result with every fault found."""
    run = _Run()
    sha = evidence_sha256.lower() if evidence_sha256 else None
    subject_id = bundle.subject.get("artefact")
    fail = VerifyResult("fault", subject_id, sha)
    # B2. The checkpoint: signed by the pinned log key, origin = the key's name.
    try:
        cp = verify_checkpoint(bundle.checkpoint, log_key)
    except (VerificationError, InvalidInput) as exc:
        run.fault("checkpoint", f"the checkpoint does not verify with the pinned log key: {exc}")
        return _done(fail, run)
    if bundle.origin != cp.origin:
        run.fault("checkpoint", f"the bundle says origin {bundle.origin!r} but its checkpoint "
                  f"is for {cp.origin!r}")
    if expect is not None and (expect.size != cp.size or expect.root != cp.root):
        run.fault("checkpoint", f"the bundle is proven against size {cp.size} but the "
                  f"checkpoint this client trusts is size {expect.size} with another root")
    # B3. Witnesses.
    named: tuple[str, ...] = ()
    if witnesses or quorum:  # a quorum demanded with no keys is a fault, never skipped
        try:
            named = tuple(verify_cosignatures(bundle.checkpoint, witnesses, quorum))
        except (VerificationError, InvalidInput) as exc:
            run.fault("witness", f"witness policy not met: {exc}")
    try:
        map_root = vmap.root_of(cp.extensions)
    except VerificationError as exc:
        map_root = None
        run.fault("map", str(exc))
    info = CheckpointInfo(cp.origin, cp.size, cp.root.hex(),
                          "" if map_root is None else map_root.hex(), bundle.checkpoint)
    fail = VerifyResult("fault", subject_id, sha, checkpoint=info, witnesses=named)
    if map_root is None:
        if not run.faults:
            run.fault("map", "the checkpoint carries no state-map root, so completeness "
                      "cannot be proven")
        return _done(fail, run)
    # B4. Entries: inclusion of the exact leaf bytes at the checkpoint.
    entries: dict[int, tuple[ev.Entry, bytes, tuple[bytes, ...]]] = {}
    for item in bundle.entries:
        if item.index in entries:
            run.fault("leaf", f"entry {item.index} appears twice", index=item.index)
            continue
        leaf_hash = merkle.leaf_hash(item.leaf)
        try:
            verify_inclusion(leaf_hash, item.index, cp.size, list(item.inclusion), cp.root)
        except LedgerError as exc:
            run.fault("inclusion", f"entry {item.index} is not in the log at size {cp.size}: "
                      f"{exc}", index=item.index)
            continue
        try:
            entry = ev.Entry.from_leaf(item.leaf)
            # The rules validated every payload on append; one that does not validate
            # is in a log the rules never ran on, and is never read further.
            pl.validate(entry.signed.event.kind, entry.signed.event.payload)
        except (LedgerError, ValueError, TypeError) as exc:
            run.fault("leaf", f"entry {item.index} does not parse: {exc}", index=item.index)
            continue
        if entry.index != item.index:
            run.fault("leaf", f"entry {item.index} says it is entry {entry.index}",
                      index=item.index)
            continue
        if entry.signed.event.origin != cp.origin:  # the rules refuse other ledgers' events
            run.fault("leaf", f"entry {item.index} is an event of ledger "
                      f"{entry.signed.event.origin!r}, not {cp.origin!r}", index=item.index)
            continue
        entries[item.index] = (entry, leaf_hash, item.inclusion)
    # B5. State-map proofs.
    proven: dict[str, dict[str, Any] | None] = {}
    for proof in bundle.maps:
        if proof.key in proven:
            run.fault("map", f"two map proofs for {proof.key!r}", key=proof.key)
            continue
        try:
            vmap.verify_map_proof(map_root, proof)
        except (VerificationError, InvalidInput) as exc:  # InvalidInput: value not JCS
            run.fault("map", str(exc), key=proof.key)
            continue
        proven[proof.key] = proof.value
    # B6. Resolve the subject (an artefact id, or every registration of a digest).
    also: tuple[str, ...] = ()
    if subject_id is None:
        digest = bundle.subject.get("sha256", "").lower()
        if sha is None:
            sha = digest
        key = history_key(digest_subject(digest))
        if key not in proven:
            run.fault("incomplete", f"no proof for {key!r}: cannot tell whether the digest "
                      "is registered", key=key)
            return _done(fail, run)
        regs = _history(run, entries, key, proven[key], digest_subject(digest))
        if proven[key] is None:
            return _done(VerifyResult("not-registered", None, sha, checkpoint=info,
                                      witnesses=named, complete=True), run)
        ids = [e.signed.event.payload["id"] for e, _, _ in regs]
        if not ids:  # a proven history with no registration in it: never a silent fault
            run.fault("incomplete", f"the checkpoint proves {key!r} but no registration of "
                      "the digest is in the bundle", key=key)
            return _done(fail, run)
        subject_id, also = ids[0], tuple(ids[1:])
    key = history_key(artefact_subject(subject_id))
    if key not in proven:
        run.fault("incomplete", f"no proof for {key!r}: the artefact's history cannot be "
                  "shown complete", key=key)
        return _done(VerifyResult("fault", subject_id, sha, checkpoint=info,
                                  witnesses=named), run)
    if proven[key] is None:
        return _done(VerifyResult("not-registered", subject_id, sha, checkpoint=info,
                                  witnesses=named, complete=True), run)
    # B7. Completeness: the artefact's entries fold to the proven accumulator.
    chain = _history(run, entries, key, proven[key], artefact_subject(subject_id))
    complete = not any(f.kind == "incomplete" for f in run.faults)
    # B8-B10. Keys, signatures and the custody chain.
    state = _replay(run, chain, entries, proven, subject_id)
    # B11. The artefact's state record, if proven, must agree with the replay.
    art_key = artefact_key(subject_id)
    if state is not None and proven.get(art_key) is not None:
        rec = proven[art_key] or {}
        for name in ("custodian", "head", "open_transfer", "incidents", "digests", "case"):
            if rec.get(name) != state.get(name):
                run.fault("state", f"the signed state record {art_key!r} says {name} = "
                          f"{rec.get(name)!r} but its proven events give {state.get(name)!r}",
                          key=art_key)
    if state is None:
        return _done(VerifyResult("fault", subject_id, sha, checkpoint=info, witnesses=named,
                                  complete=complete), run)
    registered = dict(state["digests"])
    # B12. The verdict.
    if run.faults:
        verdict: Verdict = "fault"
    elif sha is None:
        verdict = "verified"
    else:
        verdict = "authentic" if hmac.compare_digest(registered["sha256"], sha) \
            else "mismatch"
    return _done(VerifyResult(
        verdict, subject_id, sha, registered, state["size"], state["case"], state["exhibit"],
        state["custodian"], state["open_transfer"], state["incidents"], complete,
        tuple(state["timeline"]), info, named, (), also), run)


def _done(result: VerifyResult, run: _Run) -> VerifyResult:
    if not run.faults:
        return result
    return replace(result, verdict="fault", faults=tuple(run.faults))


def _history(run: _Run, entries: Mapping[int, tuple[ev.Entry, bytes, tuple[bytes, ...]]],
             key: str, value: Mapping[str, Any] | None, subject: str
             ) -> list[tuple[ev.Entry, bytes, tuple[bytes, ...]]]:
    """B7: the bundled entries of ``subject``, checked against its proven accumulator."""
    chain = [entries[i] for i in sorted(entries) if subject in subjects(entries[i][0].signed.event)]
    if value is None:
        if chain:
            run.fault("incomplete", f"{len(chain)} bundled entries belong to {subject!r}, "
                      "which the checkpoint proves has no history", key=key)
        return chain
    n, acc = value.get("n"), value.get("acc")
    got = fold_history([h for _, h, _ in chain])
    if len(chain) != n or got != acc or (chain and chain[-1][0].index != value.get("last")):
        run.fault("incomplete", f"the checkpoint proves {n} entries of {subject!r} (last at "
                  f"index {value.get('last')}) but the bundle's {len(chain)} entries do not "
                  "fold to its accumulator: an event is missing, extra or altered", key=key)
    return chain


def _replay(run: _Run, chain: Sequence[tuple[ev.Entry, bytes, tuple[bytes, ...]]],
            entries: Mapping[int, tuple[ev.Entry, bytes, tuple[bytes, ...]]],
            proven: Mapping[str, dict[str, Any] | None], artefact: str
            ) -> dict[str, Any] | None:
    """B8-B10: signer keys, signatures, and custody along the artefact's chain."""
    if not chain or chain[0][0].signed.event.kind != ev.ARTEFACT_REGISTER \
            or chain[0][0].signed.event.payload.get("id") != artefact:
        run.fault("chain", f"the first event of {artefact!r} is not its registration")
        return None
    timeline: list[TimelineItem] = []
    st: dict[str, Any] = {}
    open_tr: dict[str, Any] | None = None
    for entry, leaf_hash, proof in chain:
        signed = entry.signed
        event, p, i = signed.event, signed.event.payload, entry.index
        actor = _signer(run, signed, i, entries, proven)
        org_id = actor.get("org", "?") if actor else "?"
        org = proven.get(org_key(org_id)) or {}
        details: dict[str, Any] = {}
        if event.kind == ev.ARTEFACT_REGISTER and st:  # the rules refuse a duplicate id
            run.fault("chain", f"entry {i} registers {artefact} again; the registration "
                      f"at entry {chain[0][0].index} stands", index=i)
            summary = f"registered again in case {p['case']}"
        elif event.kind == ev.ARTEFACT_REGISTER:
            st = {"digests": dict(p["digests"]), "size": p["size"], "case": p["case"],
                  "exhibit": p.get("exhibit", ""), "custodian": org_id, "head": signed.event_id,
                  "open_transfer": None, "incidents": 0}
            summary = f"registered in case {p['case']}"
            details = {"digests": p["digests"], "size": p["size"]}
            # Signed relations to other artefacts (a court sees why bytes repeat).
            if p.get("parents"):
                details["parents"] = list(p["parents"])
            if p.get("duplicate_of"):
                details["duplicate_of"] = p["duplicate_of"]
        elif event.kind in (ev.DISPATCH, ev.RECEIPT):
            if event.prev != st["head"]:
                run.fault("chain", f"entry {i} does not follow the artefact's previous custody "
                          f"event (prev {event.prev}, head {st['head']})", index=i)
            if event.kind == ev.DISPATCH:
                if org_id != st["custodian"] or open_tr is not None:
                    run.fault("chain", f"entry {i}: {org_id} dispatched {artefact} while "
                              f"{st['custodian']} held it" + (" with a dispatch open"
                                                             if open_tr else ""), index=i)
                lb = _legal_basis(run, p.get("legal_basis"), entries, proven, i)
                open_tr = {"transfer": p["transfer"], "to_org": p["to_org"],
                           "to_actor": p.get("to_actor")}
                st["open_transfer"] = p["transfer"]
                summary = f"dispatched to {p['to_org']}"
                details = {"to_org": p["to_org"], "transfer": p["transfer"],
                           "legal_basis": p.get("legal_basis"), "legal_basis_record": lb,
                           "purpose": p["purpose"]}
                if p.get("package"):  # a sealed dispatch: the package that was sent
                    details["package_sha256"] = p["package"]["sha256"]
            else:
                if open_tr is None or open_tr["transfer"] != p["transfer"] \
                        or org_id != open_tr["to_org"]:
                    run.fault("chain", f"entry {i}: receipt of {p['transfer']} by {org_id} "
                              "does not close the open dispatch", index=i)
                accepted = p["outcome"] == "accepted"
                if accepted:
                    strong = {a: v for a, v in st["digests"].items() if a in STRONG_DIGESTS}
                    if any(p["recomputed"].get(a) != v for a, v in strong.items()):
                        run.fault("chain", f"entry {i}: accepted although the recomputed "
                                  "digests differ from the registered ones", index=i)
                    st["custodian"] = open_tr["to_org"] if open_tr else org_id
                    # An acceptance despite seals that differ is an incident too.
                    if p.get("seal_discrepancy"):
                        st["incidents"] += 1
                else:
                    st["incidents"] += 1
                open_tr, st["open_transfer"] = None, None
                summary = f"receipt {p['outcome']}"
                details = {"outcome": p["outcome"], "transfer": p["transfer"],
                           "digests_checked": sorted(p["recomputed"]),
                           "reason": p.get("reason", "")}
                if p.get("package_sha256"):  # the package that arrived
                    details["package_sha256"] = p["package_sha256"]
                if p.get("seal_discrepancy"):
                    details["seal_discrepancy"] = p["seal_discrepancy"]
            st["head"] = signed.event_id
        elif event.kind == ev.ACCESS:
            summary = f"access {p['action']} ({p['outcome']})"
            details = {"action": p["action"], "outcome": p["outcome"], "purpose": p["purpose"]}
        elif event.kind == ev.VERIFICATION:
            summary = f"verified: {p['verdict']}"
            details = {"verdict": p["verdict"]}
        else:  # pragma: no cover - subjects() names only the kinds above
            summary = event.kind
        timeline.append(TimelineItem(
            i, entry.ledger_time, event.kind, signed.event_id, leaf_hash.hex(), event.signer,
            actor.get("name", "") if actor else "", org_id, org.get("jurisdiction", ""),
            event.key_id, summary, details, tuple(h.hex() for h in proof)))
    st["timeline"] = timeline
    return st


def _signer(run: _Run, signed: ev.SignedEvent, index: int,
            entries: Mapping[int, tuple[ev.Entry, bytes, tuple[bytes, ...]]],
            proven: Mapping[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """B8-B9: the signer's key from its proven actor record and enrolment entry."""
    event = signed.event
    key = actor_key(event.signer)
    actor = proven.get(key)
    if actor is None:
        run.fault("key", f"entry {index}: no proven record of signer {event.signer!r}",
                  key=key, index=index)
        return None
    try:
        public = base64.b64decode(actor["public_key"], validate=True)
        enrolled, revoked = actor["enrolled_at"], actor.get("revoked_at")
        if not _is_index(enrolled) or not (revoked is None or _is_index(revoked)) \
                or not isinstance(actor.get("org", "?"), str):
            raise TypeError("enrolled_at, revoked_at or org")
    except (KeyError, TypeError, ValueError, binascii.Error):
        run.fault("key", f"the proven record {key!r} is malformed", key=key, index=index)
        return None
    try:
        ev.verify_event(signed, public)
    except LedgerError as exc:
        run.fault("signature", f"entry {index}: signature of {event.signer} does not verify: "
                  f"{exc}", key=key, index=index)
    if not enrolled <= index or (revoked is not None and revoked <= index):
        run.fault("key", f"entry {index}: {event.signer}'s key was not valid then (enrolled "
                  f"at {enrolled}, revoked at {revoked})", key=key, index=index)
    enrol = entries.get(enrolled)
    ok = False
    if enrol is not None:
        e = enrol[0].signed.event
        if e.kind == ev.GENESIS:
            ok = e.payload["actor"]["id"] == event.signer and \
                e.payload["actor"]["public_key"] == actor["public_key"]
        elif e.kind == ev.ACTOR_ENROL:
            ok = e.payload["id"] == event.signer and \
                e.payload["public_key"] == actor["public_key"]
    if not ok:
        run.fault("key", f"entry {index}: the enrolment entry {enrolled} of {event.signer} is "
                  "missing from the bundle or enrols another key", key=key, index=index)
    return actor


def _is_index(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _legal_basis(run: _Run, lb_id: str | None,
                 entries: Mapping[int, tuple[ev.Entry, bytes, tuple[bytes, ...]]],
                 proven: Mapping[str, dict[str, Any] | None], index: int
                 ) -> dict[str, Any] | None:
    if lb_id is None:
        return None
    rec = proven.get(legal_basis_key(lb_id))
    at = rec.get("recorded_at") if rec else None
    entry = entries.get(at) if _is_index(at) else None
    if entry is None or entry[0].signed.event.kind != ev.LEGAL_BASIS \
            or entry[0].signed.event.payload.get("id") != lb_id:
        run.fault("legal-basis", f"entry {index} cites legal basis {lb_id!r}, whose signed "
                  "entry is not proven in the bundle", key=legal_basis_key(lb_id), index=index)
        return None
    p = entry[0].signed.event.payload
    return {k: p.get(k) for k in ("id", "instrument", "reference", "issuing_state",
                                  "executing_state", "valid_from", "valid_until")}
