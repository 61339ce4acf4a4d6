"""The court report's content, computed from a verified bundle and nothing else.

:func:`build_report` takes a :class:`~ledger.core.bundle.Bundle` and the
:class:`~ledger.core.bundle.VerifyResult` that :func:`~ledger.core.bundle.verify_bundle` gave for
it. Every step of the timeline is an entry the verification accepted (its leaf proven
at its index, its signature checked, its place in the custody chain replayed); every
name, organisation, country and legal basis is a state-map value proven against the
checkpoint. When the verdict is ``fault`` the report carries the faults and NO timeline:
nothing in such a bundle is to be relied on. Language-neutral (codes, not words): the
renderer translates. Pure: no I/O, clock or randomness (the generation time is passed in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.core import events as ev
from ledger.core.bundle import Bundle, Fault, VerifyResult
from ledger.core.checkpoint import cosignature_timestamp
from ledger.core.errors import LedgerError
from ledger.core.note import split_note
from ledger.core.state import actor_key, legal_basis_key, org_key
from ledger.core.vocab import STRONG_DIGESTS

#: Timeline step kinds, in the words of the report's catalogue (``kind.<code>``).
STEP_KINDS = {ev.ARTEFACT_REGISTER: "register", ev.DISPATCH: "dispatch",
              ev.RECEIPT: "receipt", ev.ACCESS: "access", ev.VERIFICATION: "verification"}


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    country: str  # ISO 3166-1 alpha-2, "" when not proven


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    name: str
    org: Org
    roles: tuple[str, ...]
    key_id: str
    public_key: str
    enrolled_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class LegalBasis:
    id: str
    instrument: str
    reference: str
    issuing_state: str
    issuing_authority: str
    executing_state: str
    executing_authority: str
    valid_from: str
    valid_until: str
    recorded_at: int | None
    document_sha256: str | None


@dataclass(frozen=True, slots=True)
class Recheck:
    """One digest recomputed at a receipt, beside the registered value."""

    algorithm: str
    registered: str
    recomputed: str

    @property
    def equal(self) -> bool:
        return self.registered == self.recomputed


@dataclass(frozen=True, slots=True)
class Step:
    """One signed, proven event of the artefact's history."""

    number: int  # 1-based position in the timeline
    index: int  # log index
    kind: str  # register | dispatch | receipt | access | verification
    ledger_time: int  # ms since 1970 UTC, assigned by the log
    claimed_time: int  # ms, as signed by the actor
    actor: Actor
    event_id: str
    leaf_hash: str
    inclusion: tuple[str, ...]
    # dispatch
    transfer: str = ""
    to_org: Org | None = None
    purpose: str = ""
    legal_basis: LegalBasis | None = None
    legal_basis_id: str = ""
    transport: str = ""
    seals: tuple[str, ...] = ()
    package_sha256: str = ""
    # receipt
    outcome: str = ""  # accepted | rejected (receipt); success | denied (access)
    rechecks: tuple[Recheck, ...] = ()
    reason: str = ""
    seal_discrepancy: str = ""
    # access
    action: str = ""
    authorisation: str = ""
    # verification
    verdict: str = ""
    verified_sha256: str = ""
    #: Set when this step is an integrity incident: rejected | seal-discrepancy | mismatch
    incident: str = ""


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of the checkpoint note."""

    name: str
    key_id: str
    role: str  # log | witness | other
    verified: bool
    timestamp: int | None = None  # seconds, witnesses only


@dataclass(frozen=True, slots=True)
class Report:
    verdict: str
    #: The SHA-256 of the evidence file compared (None: no evidence file given).
    evidence_sha256: str | None
    evidence_name: str | None
    artefact_id: str | None
    exhibit: str
    artefact_type: str
    description: str
    case: str
    size: int | None
    digests: Mapping[str, str]
    container: str
    acquisition: Mapping[str, str]
    parents: tuple[str, ...]
    duplicate_of: str
    custodian: Org | None
    open_transfer: str | None
    complete: bool
    steps: tuple[Step, ...]
    incidents: tuple[Step, ...]
    faults: tuple[Fault, ...]
    origin: str
    tree_size: int | None
    root: str
    map_root: str
    checkpoint_note: str
    signatures: tuple[Signature, ...]
    witnesses: tuple[str, ...]
    quorum: int
    actors: tuple[Actor, ...]
    legal_bases: tuple[LegalBasis, ...]
    also_registered_as: tuple[str, ...]
    log_key: str
    bundle_sha256: str
    bundle_name: str
    verify_page_name: str
    generated_at: int
    commands: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.verdict in ("authentic", "verified")

    @property
    def accesses(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.kind == "access")

    @property
    def orgs(self) -> tuple[Org, ...]:
        """The organisations of the timeline, in order of first appearance."""
        seen: dict[str, Org] = {}
        for s in self.steps:
            for org in (s.actor.org, s.to_org):
                if org is not None and org.id not in seen:
                    seen[org.id] = org
        return tuple(seen.values())


def _proven(bundle: Bundle, faults: Sequence[Fault]) -> dict[str, dict[str, Any] | None]:
    """Map values that hold against the checkpoint (a key with a map fault is left out)."""
    bad = {f.key for f in faults if f.kind == "map"}
    values: dict[str, dict[str, Any] | None] = {}
    for proof in bundle.maps:
        if proof.key not in bad and proof.key not in values:
            values[proof.key] = proof.value
    return values


def _org(values: Mapping[str, dict[str, Any] | None], org_id: str) -> Org:
    rec = values.get(org_key(org_id)) or {}
    return Org(org_id, str(rec.get("name", "")), str(rec.get("jurisdiction", "")))


def _actor(values: Mapping[str, dict[str, Any] | None], actor_id: str, key_id: str) -> Actor:
    rec = values.get(actor_key(actor_id)) or {}
    org_id = str(rec.get("org", ""))
    enrolled, revoked = rec.get("enrolled_at"), rec.get("revoked_at")
    return Actor(actor_id, str(rec.get("name", "")), _org(values, org_id),
                 tuple(str(r) for r in rec.get("roles", ()) or ()), key_id,
                 str(rec.get("public_key", "")),
                 enrolled if isinstance(enrolled, int) else None,
                 revoked if isinstance(revoked, int) else None)


def _legal_basis(values: Mapping[str, dict[str, Any] | None], lb_id: str,
                 payload: Mapping[str, Any] | None) -> LegalBasis | None:
    """The legal basis as signed in its ``legal-basis.record`` entry (when the bundle
    carries it), else as proven in the map."""
    lb_key = legal_basis_key(lb_id)
    rec = dict(payload) if payload is not None else values.get(lb_key)
    if not rec:
        return None
    proven = values.get(lb_key) or {}
    recorded = proven.get("recorded_at")

    def s(key: str) -> str:
        value = rec.get(key)
        return value if isinstance(value, str) else ""

    doc = rec.get("document_sha256")
    return LegalBasis(lb_id, s("instrument"), s("reference"), s("issuing_state"),
                      s("issuing_authority"), s("executing_state"), s("executing_authority"),
                      s("valid_from"), s("valid_until"),
                      recorded if isinstance(recorded, int) else None,
                      doc if isinstance(doc, str) else None)


def _signatures(note: str, log_origin: str, witnesses: Sequence[str]) -> tuple[Signature, ...]:
    try:
        _text, lines = split_note(note)
    except LedgerError:  # a note that does not parse has no lines to show
        return ()
    out = []
    for line in lines:
        stamp: int | None = None
        if line.name == log_origin:
            role = "log"
        elif len(line.signature) == 8 + 64:  # cosignature/v1: timestamp || signature
            role = "witness"
            stamp = cosignature_timestamp(line.render())
        else:
            role = "other"
        out.append(Signature(line.name, line.key_hash.hex(), role,
                             role == "log" or line.name in witnesses, stamp))
    return tuple(out)


def build_report(bundle: Bundle, result: VerifyResult, *, log_key: str, bundle_sha256: str,
                 bundle_name: str, verify_page_name: str, generated_at: int,
                 evidence_name: str | None = None, quorum: int = 0,
                 commands: Sequence[str] = ()) -> Report:
    """The report of ``result`` (which :func:`verify_bundle` computed for ``bundle``)."""
    values = _proven(bundle, result.faults)
    entries: dict[int, ev.Entry] = {}
    for e in bundle.entries:
        try:
            entries.setdefault(e.index, ev.Entry.from_leaf(e.leaf, check_canonical=False))
        except LedgerError:  # a leaf the verification refused is not shown
            continue
    lb_payloads: dict[str, Mapping[str, Any]] = {}
    for entry in entries.values():
        if entry.signed.event.kind == ev.LEGAL_BASIS:
            p = entry.signed.event.payload
            lb_payloads.setdefault(str(p.get("id")), p)

    reg: Mapping[str, Any] = {}
    steps: list[Step] = []
    if result.verdict != "fault":
        for number, item in enumerate(result.timeline, 1):
            entry = entries[item.index]
            event = entry.signed.event
            p = event.payload
            kind = STEP_KINDS.get(event.kind, event.kind)
            actor = _actor(values, event.signer, event.key_id)
            extra: dict[str, Any] = {}
            if kind == "register" and not reg:
                reg = p
            elif kind == "dispatch":
                lb_id = p.get("legal_basis") or ""
                transport = p.get("transport") or {}
                extra = {"transfer": p["transfer"], "to_org": _org(values, p["to_org"]),
                         "purpose": p["purpose"], "legal_basis_id": lb_id,
                         "legal_basis": _legal_basis(values, lb_id, lb_payloads.get(lb_id))
                         if lb_id else None,
                         "transport": " ".join(str(transport.get(k, "")) for k in
                                               ("method", "reference")).strip(),
                         "seals": tuple(p.get("seals", ())),
                         "package_sha256": (p.get("package") or {}).get("sha256", "")}
            elif kind == "receipt":
                registered = reg.get("digests", {}) if reg else {}
                rechecks = tuple(Recheck(a, registered.get(a, ""), v)
                                 for a, v in sorted(p["recomputed"].items())
                                 if a in STRONG_DIGESTS)
                incident = ("rejected" if p["outcome"] == "rejected" else
                            "seal-discrepancy" if p.get("seal_discrepancy") else "")
                extra = {"transfer": p["transfer"], "outcome": p["outcome"],
                         "rechecks": rechecks, "reason": p.get("reason", ""),
                         "seals": tuple(p.get("seals", ())),
                         "seal_discrepancy": p.get("seal_discrepancy", ""),
                         "package_sha256": p.get("package_sha256") or "",
                         "incident": incident}
            elif kind == "access":
                extra = {"action": p["action"], "outcome": p["outcome"],
                         "purpose": p["purpose"], "authorisation": p.get("authorisation", "")}
            elif kind == "verification":
                extra = {"verdict": p["verdict"], "verified_sha256": p.get("sha256", ""),
                         "incident": "mismatch" if p["verdict"] == "mismatch" else ""}
            steps.append(Step(number, item.index, kind, entry.ledger_time, event.claimed_time,
                              actor, item.event_id, item.leaf_hash, item.inclusion_proof,
                              **extra))

    cp = result.checkpoint
    actors: dict[str, Actor] = {}
    for s in steps:
        actors.setdefault(s.actor.id, s.actor)
    lbs: dict[str, LegalBasis] = {}
    for s in steps:
        if s.legal_basis is not None:
            lbs.setdefault(s.legal_basis.id, s.legal_basis)
    custodian = None
    if result.custodian and result.verdict != "fault":
        custodian = _org(values, result.custodian)
    acquisition = reg.get("acquisition") or {} if reg else {}
    return Report(
        verdict=result.verdict, evidence_sha256=result.sha256 if evidence_name else None,
        evidence_name=evidence_name, artefact_id=result.artefact_id,
        exhibit=str(reg.get("exhibit", "")) if reg else (result.exhibit or ""),
        artefact_type=str(reg.get("type", "file")) if reg else "",
        description=str(reg.get("description", "")) if reg else "",
        case=result.case or "", size=result.size, digests=dict(result.registered),
        container=str(reg.get("container", "")) if reg else "",
        acquisition={k: str(v) for k, v in dict(acquisition).items() if v},
        parents=tuple(reg.get("parents", ()) or ()) if reg else (),
        duplicate_of=str(reg.get("duplicate_of") or "") if reg else "",
        custodian=custodian, open_transfer=result.open_transfer,
        complete=result.complete, steps=tuple(steps),
        incidents=tuple(s for s in steps if s.incident), faults=result.faults,
        origin=cp.origin if cp else bundle.origin, tree_size=cp.size if cp else None,
        root=cp.root if cp else "", map_root=cp.map_root if cp else "",
        checkpoint_note=bundle.checkpoint,
        signatures=_signatures(bundle.checkpoint, bundle.origin, result.witnesses),
        witnesses=result.witnesses, quorum=quorum,
        actors=tuple(actors.values()), legal_bases=tuple(lbs.values()),
        also_registered_as=result.also_registered_as, log_key=log_key,
        bundle_sha256=bundle_sha256, bundle_name=bundle_name,
        verify_page_name=verify_page_name, generated_at=generated_at,
        commands=tuple(commands))


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
