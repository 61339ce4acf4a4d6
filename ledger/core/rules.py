"""The custody rules: a pure state machine over a key/value world state.

``apply(view, signed, ctx) -> Effects`` checks one signed event against the current
state and returns the writes it causes, or raises :class:`RuleViolation` naming the
rule. The state is a map of JSON records by key (``org/ID``, ``art/ID``, ``ledger``...:
the keys and the records they hold are :mod:`ledger.core.state`), so the same function
runs over an in-memory dict (audit), the SQL ``state`` table, or Fabric world state.
Records written before a field existed lack it (the ``NotRequired`` fields of the
records), so readers use ``.get`` with a default for those.

Rule codes (stable, machine-readable) are listed in ``docs/rules.md``. Every rule that
involves time uses ``ctx.ledger_time`` (assigned at append), never the claimed time,
except the skew rule that bounds the claimed time.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ledger.core import events as ev
from ledger.core import merkle
from ledger.core import payloads as pl
from ledger.core.errors import Conflict, InvalidSignature, RuleViolation
from ledger.core.state import (
    LEDGER,
    ActorRecord,
    ArtefactRecord,
    CaseRecord,
    DigestRecord,
    HistoryRecord,
    LedgerRecord,
    NonceRecord,
    OrgKeyEntry,
    OrgKeysRecord,
    OrgRecord,
    PackageRecord,
    Record,
    TransferRecord,
    actor_key,
    artefact_key,
    artefact_subject,
    case_key,
    digest_key,
    digest_ref,
    digest_subject,
    history_key,
    legal_basis_key,
    nonce_key,
    org_admin_key,
    org_key,
    org_keys_key,
    transfer_key,
)
from ledger.core.vocab import CUSTODIAL_ROLES, DOMESTIC_ONLY_INSTRUMENTS, STRONG_DIGESTS


class StateView(Protocol):
    """Read access to the world state; ``None`` when the key does not exist."""

    def get(self, key: str) -> Record | None: ...


@dataclass(frozen=True, slots=True)
class Context:
    """What the ledger assigns to the event: its position and time."""

    index: int
    ledger_time: int
    #: The entry's RFC 6962 leaf hash when the caller already has it (else computed).
    leaf_hash: bytes | None = None
    #: False where the event's log position is not known yet (a Fabric endorsement: the
    #: position comes from block order later). Then no ``hist/`` accumulator is read or
    #: written, and ``index`` fields in the writes are provisional; the log derived from
    #: the blocks applies the event again with its real position.
    history: bool = True

    def leaf_hash_of(self, signed: ev.SignedEvent) -> bytes:
        if self.leaf_hash is not None:
            return self.leaf_hash
        return merkle.leaf_hash(ev.Entry(self.index, self.ledger_time, signed).leaf_bytes())


@dataclass(slots=True)
class Effects:
    """The outcome of applying one event."""

    #: State key -> the record written (the records of :mod:`ledger.core.state`; ``Any``
    #: so that each kind's ``TypedDict`` fits).
    writes: dict[str, Any] = field(default_factory=dict)
    #: Object ids this event concerns, for history look-ups (artefact, case, transfer...).
    refs: list[str] = field(default_factory=list)
    #: What a caller may want to report (artefact id, receipt outcome...).
    result: dict[str, Any] = field(default_factory=dict)


class MemoryState:
    """A dict-backed world state (used by audit and by tests)."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def commit(self, effects: Effects) -> None:
        self.records.update(effects.writes)


def _refuse(rule: str, message: str) -> RuleViolation:
    return RuleViolation(rule, message)


def _need(view: StateView, key: str, what: str) -> Record:
    rec = view.get(key)
    if rec is None:
        raise _refuse("unknown-" + key.split("/", 1)[0], f"unknown {what} {key.split('/', 1)[1]!r}")
    return rec


def _artefact(view: StateView, artefact_id: str, what: str = "artefact") -> ArtefactRecord:
    return cast(ArtefactRecord, _need(view, artefact_key(artefact_id), what))


def _transfer(view: StateView, transfer_id: str) -> TransferRecord:
    return cast(TransferRecord, _need(view, transfer_key(transfer_id), "transfer"))


def _case(view: StateView, case_id: str) -> CaseRecord:
    return cast(CaseRecord, _need(view, case_key(case_id), "case"))


def _org(view: StateView, org_id: str) -> OrgRecord:
    return cast(OrgRecord, _need(view, org_key(org_id), "organisation"))


def _date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date().isoformat()


def _pub(actor: ActorRecord) -> bytes:
    return base64.b64decode(actor["public_key"])


def apply(view: StateView, signed: ev.SignedEvent, ctx: Context) -> Effects:
    """Check ``signed`` against the state and return its effects (pure; raises on refusal)."""
    event = signed.event
    payload = pl.validate(event.kind, event.payload)
    if event.kind == ev.GENESIS:
        return _genesis(view, signed, payload, ctx)
    ledger = cast(LedgerRecord | None, view.get(LEDGER))
    if ledger is None:
        raise _refuse("no-genesis", "the ledger has no genesis event yet")
    signer = _check_envelope(view, ledger, signed, ctx)
    used = nonce_key(event.nonce)
    if view.get(used) is not None:
        raise Conflict("replay", f"nonce {event.nonce} was already used on this ledger")
    handler = _HANDLERS[event.kind]
    if event.kind in _NEEDS_ROLE and not set(signer["roles"]) & _NEEDS_ROLE[event.kind]:
        raise _refuse(
            "role", f"actor {signer['id']} (roles: {', '.join(signer['roles'])}) may not "
            f"perform {event.kind}; it needs one of: {', '.join(sorted(_NEEDS_ROLE[event.kind]))}")
    effects: Effects = handler(view, signer, event, payload, ctx)
    if event.kind in _HEAD_MOVERS:
        effects.writes[artefact_key(payload.artefact if event.kind != ev.ARTEFACT_REGISTER
                                    else payload.id)]["head"] = signed.event_id
    # The result is kept with the nonce so an idempotent retry can return it.
    effects.writes[used] = _nonce_record(signed, ctx, effects.result)
    effects.refs.append(signer["id"])
    subjects_ = subjects(event) if ctx.history else []
    if subjects_:
        leaf_hash = ctx.leaf_hash_of(signed)
        for subject in subjects_:
            key = history_key(subject)
            prev = effects.writes.get(key) or view.get(key)
            effects.writes[key] = advance_history(prev, ctx.index, leaf_hash)
    return effects


def _nonce_record(signed: ev.SignedEvent, ctx: Context, result: dict[str, Any]) -> NonceRecord:
    return {"event_id": signed.event_id, "index": ctx.index, "result": result}


def subjects(event: ev.Event) -> list[str]:
    """The history subjects an event belongs to, from its signed payload alone.

    ``art/ID`` for every event about artefact ID (registration, dispatch, receipt,
    access, verification) and ``sha256/HEX`` for a registration with that SHA-256. The
    state keeps one accumulator per subject under ``hist/<subject>`` (see
    :func:`advance_history`); proven against a checkpoint's state map, it lets a
    verifier holding only that checkpoint know it has ALL of an artefact's events."""
    p = event.payload
    if event.kind == ev.ARTEFACT_REGISTER:
        return [artefact_subject(p["id"]), digest_subject(p["digests"]["sha256"])]
    if event.kind in _ARTEFACT_KINDS:
        return [artefact_subject(p["artefact"])]
    return []


HISTORY_START = "00" * 32


def advance_history(prev: Mapping[str, Any] | None, index: int,
                    leaf_hash: bytes) -> HistoryRecord:
    """``{"n", "first", "last", "acc"}`` after one more entry of a subject, where
    ``acc = SHA-256(acc_before || leaf_hash)`` starting from 32 zero bytes."""
    acc = bytes.fromhex(prev["acc"] if prev else HISTORY_START)
    return {"n": (prev["n"] if prev else 0) + 1,
            "first": prev["first"] if prev else index, "last": index,
            "acc": hashlib.sha256(acc + leaf_hash).hexdigest()}


def _check_envelope(view: StateView, ledger: LedgerRecord, signed: ev.SignedEvent,
                    ctx: Context) -> ActorRecord:
    event = signed.event
    if event.origin != ledger["origin"]:
        raise _refuse("origin", f"event is for ledger {event.origin!r}, not {ledger['origin']!r}")
    if event.kind in _CHAINED and event.prev is None:
        raise _refuse("prev", f"{event.kind} must name the artefact's current head in 'prev'")
    if event.kind not in _CHAINED and event.prev is not None:
        raise _refuse("prev", f"{event.kind} must not carry 'prev'")
    skew = ledger["skew_ms"]
    if abs(event.claimed_time - ctx.ledger_time) > skew:
        raise _refuse("clock-skew", f"claimed time differs from ledger time by "
                      f"{abs(event.claimed_time - ctx.ledger_time) // 1000} s, more than the "
                      f"allowed {skew // 1000} s; check the signer's clock")
    actor = cast(ActorRecord | None, view.get(actor_key(event.signer)))
    if actor is None:
        raise _refuse("unknown-signer", f"unknown signer {event.signer!r}")
    if actor["status"] != "active":
        raise _refuse("revoked-key", f"actor {event.signer} was revoked at log index "
                      f"{actor['revoked_at']} and can no longer sign")
    try:
        ev.verify_event(signed, _pub(actor))
    except InvalidSignature as exc:
        raise _refuse("signature", f"signature of {event.signer} does not verify: {exc}") from exc
    return actor


def _genesis(view: StateView, signed: ev.SignedEvent, p: pl.Genesis, ctx: Context) -> Effects:
    event = signed.event
    if view.get(LEDGER) is not None or ctx.index != 0:
        raise _refuse("genesis", "a genesis event is only valid as entry 0 of a new ledger")
    if p.actor.org != p.org.id or event.signer != p.actor.id or "admin" not in p.actor.roles:
        raise _refuse("genesis", "the genesis event must be signed by an admin of its own org")
    if event.prev is not None:
        raise _refuse("prev", "the genesis event must not carry 'prev'")
    if abs(event.claimed_time - ctx.ledger_time) > p.skew_ms:
        raise _refuse("clock-skew", "the genesis event's claimed time is outside the skew "
                      "window; check the signer's clock")
    try:
        ev.verify_event(signed, base64.b64decode(p.actor.public_key))
    except InvalidSignature as exc:
        raise _refuse("signature", f"genesis signature does not verify: {exc}") from exc
    org = {**p.org.model_dump(), "registered_at": ctx.index}
    actor = _actor_record(p.actor, ctx)
    ledger: LedgerRecord = {"origin": event.origin, "log_key": p.log_key,
                            "skew_ms": p.skew_ms, "genesis": signed.event_id}
    if p.rules > 1:  # a first-release ledger's record stays exactly as it was
        ledger["rules"] = p.rules
    result = {"origin": event.origin}
    return Effects(
        writes={LEDGER: ledger, org_key(p.org.id): org, actor_key(p.actor.id): actor,
                org_admin_key(p.org.id): {"actor": p.actor.id},
                nonce_key(event.nonce): _nonce_record(signed, ctx, result)},
        refs=[p.org.id, p.actor.id], result=result)


def _actor_record(a: pl.ActorInfo, ctx: Context) -> ActorRecord:
    return cast(ActorRecord, {
        **a.model_dump(), "key_id": ev.actor_key_id(a.id, base64.b64decode(a.public_key)),
        "status": "active", "enrolled_at": ctx.index, "revoked_at": None})


def _org_register(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.OrgRegister,
                  ctx: Context) -> Effects:
    if view.get(org_key(p.id)) is not None:
        raise Conflict("duplicate-id", f"organisation {p.id} already exists")
    return Effects({org_key(p.id): {**p.model_dump(), "registered_at": ctx.index}}, [p.id],
                   {"org": p.id})


def _actor_enrol(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.ActorEnrol,
                 ctx: Context) -> Effects:
    _org(view, p.org)
    if view.get(actor_key(p.id)) is not None:
        raise Conflict("duplicate-id", f"actor {p.id} already exists")
    _check_admin_scope(view, signer, p.org, "enrol its actors")
    writes: dict[str, Any] = {actor_key(p.id): _actor_record(p, ctx)}
    if "admin" in p.roles:
        writes[org_admin_key(p.org)] = {"actor": p.id}
    return Effects(writes, [p.id, p.org], {"actor": p.id})


def _actor_revoke(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.ActorRevoke,
                  ctx: Context) -> Effects:
    target = cast(ActorRecord, _need(view, actor_key(p.actor), "actor"))
    _check_admin_scope(view, signer, target["org"], f"revoke {p.actor}")
    if target["status"] != "active":
        raise _refuse("revoked-key", f"actor {p.actor} is already revoked")
    rec: ActorRecord = {**target, "status": "revoked", "revoked_at": ctx.index,
                        "revoke_reason": p.reason}
    return Effects({actor_key(p.actor): rec}, [p.actor], {"actor": p.actor})


def _check_admin_scope(view: StateView, signer: ActorRecord, org: str, what: str) -> None:
    """An admin acts for another organisation only while that one has no admin of its
    own (the bootstrap of :func:`_actor_enrol`)."""
    if signer["org"] != org and view.get(org_admin_key(org)) is not None:
        raise _refuse("admin-scope", f"only an admin of {org} may {what}")


def _org_key(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.OrgKey,
             ctx: Context) -> Effects:
    _org(view, p.org)
    _check_admin_scope(view, signer, p.org, "enrol its encryption keys")
    rec = cast(OrgKeysRecord | None, view.get(org_keys_key(p.org))) or {
        "org": p.org, "current": None, "keys": {}}
    key_id = ev.org_key_id(p.recipient)
    for kid, key in rec["keys"].items():
        if key["recipient"] == p.recipient or kid == key_id:
            raise Conflict("duplicate-id", f"the encryption key {kid} is already enrolled "
                           f"for {p.org} ({key['status']}); a new key needs a new recipient")
    keys = {kid: OrgKeyEntry(**key) for kid, key in rec["keys"].items()}
    retired = rec.get("current")
    if retired is not None:
        keys[retired]["status"] = "retired"
    keys[key_id] = {"recipient": p.recipient, "status": "current", "enrolled_at": ctx.index,
                    "revoked_at": None, "reason": ""}
    new: OrgKeysRecord = {"org": p.org, "current": key_id, "keys": keys}
    return Effects({org_keys_key(p.org): new}, [p.org],
                   {"org": p.org, "key_id": key_id, "retired": retired})


def _org_key_revoke(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.OrgKeyRevoke,
                    ctx: Context) -> Effects:
    _org(view, p.org)
    _check_admin_scope(view, signer, p.org, "revoke its encryption keys")
    rec = cast(OrgKeysRecord | None, view.get(org_keys_key(p.org)))
    key = rec["keys"].get(p.key_id) if rec is not None else None
    if rec is None or key is None:
        raise _refuse("unknown-orgkey", f"organisation {p.org} has no encryption key {p.key_id}")
    if key["status"] == "revoked":
        raise _refuse("revoked-key", f"the encryption key {p.key_id} of {p.org} was already "
                      f"revoked at log index {key['revoked_at']}")
    keys = {kid: OrgKeyEntry(**k) for kid, k in rec["keys"].items()}
    keys[p.key_id] |= {"status": "revoked", "revoked_at": ctx.index, "reason": p.reason}
    current = None if rec.get("current") == p.key_id else rec.get("current")
    new: OrgKeysRecord = {"org": p.org, "current": current, "keys": keys}
    return Effects({org_keys_key(p.org): new}, [p.org],
                   {"org": p.org, "key_id": p.key_id, "current": current})


def _case_open(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.CaseOpen,
               ctx: Context) -> Effects:
    if view.get(case_key(p.id)) is not None:
        raise Conflict("duplicate-id", f"case {p.id} already exists")
    rec: CaseRecord = {"id": p.id, "title": p.title, "lead_org": signer["org"], "members": [],
                       "opened_at": ctx.index}
    return Effects({case_key(p.id): rec}, [p.id], {"case": p.id})


def case_orgs(case: Mapping[str, Any]) -> set[str]:
    """The organisations of a case: its lead and its members."""
    return {case["lead_org"], *case["members"]}


def _case_add_member(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.CaseAddMember,
                     ctx: Context) -> Effects:
    case = _case(view, p.case)
    _org(view, p.org)
    if signer["org"] != case["lead_org"]:
        raise _refuse("case-lead", f"only the lead organisation {case['lead_org']} may add "
                      f"members to case {p.case}")
    if p.org in case_orgs(case):
        raise Conflict("duplicate-id", f"{p.org} is already a member of case {p.case}")
    rec: CaseRecord = {**case, "members": [*case["members"], p.org]}
    return Effects({case_key(p.case): rec}, [p.case, p.org], {"case": p.case})


def _legal_basis(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.LegalBasis,
                 ctx: Context) -> Effects:
    if view.get(legal_basis_key(p.id)) is not None:
        raise Conflict("duplicate-id", f"legal basis {p.id} already exists")
    if p.valid_until < p.valid_from:
        raise _refuse("legal-basis-window", "valid_until is before valid_from")
    if p.instrument in _BETWEEN_STATES and p.issuing_state == p.executing_state:
        raise _refuse("legal-basis-same-state", f"a {p.instrument} is between two states; "
                      f"issuing and executing state are both {p.issuing_state}")
    if p.case is None and not p.artefacts:
        raise _refuse("legal-basis-scope", "a legal basis must name a case or artefacts")
    if p.case is not None:
        _case(view, p.case)
    for art in p.artefacts:
        _artefact(view, art)
    org = _org(view, signer["org"])
    if org["jurisdiction"] not in (p.issuing_state, p.executing_state):
        raise _refuse("legal-basis-state", f"{signer['org']} ({org['jurisdiction']}) is neither "
                      "the issuing nor the executing state of this instrument")
    rec = {**p.model_dump(), "recorded_by": signer["id"], "recorded_at": ctx.index}
    return Effects({legal_basis_key(p.id): rec},
                   [p.id, *([p.case] if p.case else []), *p.artefacts], {"legal_basis": p.id})


RULES = 2
"""The rules version new ledgers are created with (the genesis payload's ``rules``).

Version 1 (the first release; a genesis without ``rules``) is kept exactly, so its logs
replay to the state their checkpoints signed. Version 2 adds what changes the records of
existing kinds: the ``sha/`` index and the ``duplicate-bytes`` rule at registration, the
seals and package in ``tr/`` records, the ``seal-mismatch`` and ``package-mismatch``
rules at receipt. The new payload fields (``duplicate_of``, ``package``,
``package_sha256``, ``seal_discrepancy``) are refused on a version-1 ledger (rule
``rules-version``); ``org.key`` events, which only add records, are allowed on both."""


def _version(view: StateView) -> int:
    ledger = view.get(LEDGER)
    return int(ledger.get("rules", 1)) if ledger is not None else RULES


def _needs_v2(view: StateView, what: str) -> None:
    if _version(view) < 2:
        raise _refuse("rules-version", f"this ledger was created with rules version 1, "
                      f"which has no {what}; create a new ledger to use it")


def _artefact_register(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.ArtefactRegister,
                       ctx: Context) -> Effects:
    if view.get(artefact_key(p.id)) is not None:
        raise Conflict("duplicate-id", f"artefact {p.id} already exists")
    case = _case(view, p.case)
    if signer["org"] not in case_orgs(case):
        raise _refuse("case-member", f"{signer['org']} is not a member of case {p.case}")
    for parent in p.parents:
        if _artefact(view, parent, "parent artefact")["case"] != p.case:
            raise _refuse("parent-case", f"parent {parent} belongs to another case")
    sha256 = p.digests["sha256"]
    v2 = _version(view) >= 2
    if p.duplicate_of is not None:
        _needs_v2(view, "duplicate_of")
    if p.duplicate_of is not None and _artefact(view, p.duplicate_of)[
            "digests"]["sha256"] != sha256:
        raise _refuse("duplicate-of", f"duplicate_of names {p.duplicate_of}, whose registered "
                      "sha256 differs from this registration's")
    index = cast(DigestRecord | None, view.get(digest_key(sha256)) if v2 else None) or {
        "artefacts": []}
    same_case = [a["id"] for a in index["artefacts"] if a["case"] == p.case]
    if same_case and p.duplicate_of not in same_case and not set(p.parents) & set(same_case):
        raise _refuse("duplicate-bytes", f"these bytes (sha256 {sha256}) are already "
                      f"registered in case {p.case} as {', '.join(same_case)}; register it "
                      "with --duplicate-of ID or --derived-from ID")
    rec: ArtefactRecord = {
        "id": p.id, "case": p.case, "exhibit": p.exhibit, "type": p.type,
        "digests": p.digests, "size": p.size, "parents": p.parents,
        "custodian": signer["org"], "head": "", "open_transfer": None,
        "registered_at": ctx.index, "registered_by": signer["id"], "incidents": 0}
    if p.duplicate_of is not None:
        rec["duplicate_of"] = p.duplicate_of
    sha_rec: DigestRecord = {"artefacts": [*index["artefacts"], {"id": p.id, "case": p.case}]}
    refs = [p.id, p.case, *p.parents, *([p.duplicate_of] if p.duplicate_of else []),
            digest_ref(sha256)]
    writes: dict[str, Any] = {artefact_key(p.id): rec}
    if v2:
        writes[digest_key(sha256)] = sha_rec
    return Effects(writes, refs,
                   {"artefact": p.id, "custodian": signer["org"]})


def _check_head(art: ArtefactRecord, e: ev.Event) -> None:
    if e.prev != art["head"]:
        raise Conflict("stale-head", f"artefact {art['id']} changed since this event was "
                       "prepared (another custody event won); re-read it and try again")


def _dispatch(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.Dispatch,
              ctx: Context) -> Effects:
    art = _artefact(view, p.artefact)
    _check_head(art, e)
    if signer["org"] != art["custodian"]:
        raise _refuse("not-custodian", f"{signer['org']} is not the custodian of {p.artefact} "
                      f"({art['custodian']} is)")
    if art["open_transfer"] is not None:
        raise Conflict("open-dispatch", f"artefact {p.artefact} already has an open dispatch "
                       f"({art['open_transfer']})")
    if view.get(transfer_key(p.transfer)) is not None:
        raise Conflict("duplicate-id", f"transfer {p.transfer} already exists")
    to_org = _org(view, p.to_org)
    if p.to_org == art["custodian"]:
        raise _refuse("self-dispatch", f"{p.to_org} already holds {p.artefact}")
    if p.to_actor is not None and _need(view, actor_key(p.to_actor), "actor")["org"] != p.to_org:
        raise _refuse("to-actor", f"actor {p.to_actor} does not belong to {p.to_org}")
    from_org = _org(view, art["custodian"])
    if p.legal_basis is not None or from_org["jurisdiction"] != to_org["jurisdiction"]:
        _check_legal_basis(view, art, p, from_org["jurisdiction"], to_org["jurisdiction"], ctx)
    if p.package is not None:
        _needs_v2(view, "sealed packages")
        _check_package(view, art, p.to_org, p.package)
    tr: TransferRecord = {"id": p.transfer, "artefact": p.artefact, "from_org": art["custodian"],
                  "to_org": p.to_org, "to_actor": p.to_actor, "legal_basis": p.legal_basis,
                  "status": "open", "dispatched_at": ctx.index, "closed_at": None}
    if _version(view) >= 2:
        tr |= {"seals": list(p.seals),
               "package": cast(PackageRecord, p.package.model_dump())
               if p.package is not None else None}
    new_art: ArtefactRecord = {**art, "open_transfer": p.transfer}
    return Effects({artefact_key(p.artefact): new_art, transfer_key(p.transfer): tr},
                   [p.artefact, p.transfer, art["case"]],
                   {"transfer": p.transfer, "artefact": p.artefact})


def _check_legal_basis(view: StateView, art: ArtefactRecord, p: pl.Dispatch, from_j: str, to_j: str,
                       ctx: Context) -> None:
    if p.legal_basis is None:
        raise _refuse("legal-basis-required", f"dispatch from {from_j} to {to_j} crosses a "
                      "border and needs a legal basis (MLAT request, EIO, ...)")
    lb = _need(view, legal_basis_key(p.legal_basis), "legal basis")
    states = {lb["issuing_state"], lb["executing_state"]}
    if from_j != to_j and lb["instrument"] in DOMESTIC_ONLY_INSTRUMENTS:
        raise _refuse("legal-basis-instrument", f"a {lb['instrument']} does not authorise a "
                      "transfer across a border")
    if {from_j, to_j} - states:
        raise _refuse("legal-basis-states", f"legal basis {lb['id']} is between "
                      f"{lb['issuing_state']} and {lb['executing_state']}, not {from_j} and {to_j}")
    today = _date(ctx.ledger_time)
    if not lb["valid_from"] <= today <= lb["valid_until"]:
        raise _refuse("legal-basis-expired", f"legal basis {lb['id']} is valid from "
                      f"{lb['valid_from']} until {lb['valid_until']}, not on {today}")
    in_scope = (lb["case"] == art["case"] and not lb["artefacts"]) or art["id"] in lb["artefacts"]
    if lb["case"] is not None and lb["case"] != art["case"]:
        in_scope = False
    if not in_scope:
        raise _refuse("legal-basis-scope", f"legal basis {lb['id']} does not cover artefact "
                      f"{art['id']}")


def _check_package(view: StateView, art: ArtefactRecord, to_org: str,
                   pkg: pl.Package) -> None:
    """A sealed package goes to the receiving organisation's current key (and only to
    keys of the sender besides), and holds the registered bytes."""
    receiving = cast(OrgKeysRecord | None, view.get(org_keys_key(to_org)))
    current = receiving.get("current") if receiving is not None else None
    if pkg.recipient != current:
        raise _refuse("package-recipient", (
            f"the package is sealed to key {pkg.recipient}, but the current encryption key "
            f"of {to_org} is {current}; seal it to {current}") if current is not None else (
            f"the package is sealed to key {pkg.recipient}, but {to_org} has no current "
            "encryption key; it must enrol one first"))
    sender = art["custodian"]
    sending = cast(OrgKeysRecord | None, view.get(org_keys_key(sender)))
    for kid in pkg.also_to:
        key = sending["keys"].get(kid) if sending is not None else None
        if key is None:
            raise _refuse("package-recipient", f"the package is also sealed to key {kid}, "
                          f"which is not an encryption key of the sending organisation {sender}")
        if key["status"] == "revoked":
            raise _refuse("package-recipient", f"the package is also sealed to key {kid} of "
                          f"{sender}, which was revoked at log index {key['revoked_at']}")
    registered = art["digests"]
    differ = sorted(a for a in STRONG_DIGESTS
                    if a in pkg.digests and a in registered and pkg.digests[a] != registered[a])
    if differ:
        raise _refuse("package-digests", f"the package's plaintext digests ({', '.join(differ)}) "
                      f"differ from those registered for {art['id']}: it does not hold the "
                      "registered bytes")


def _receipt(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.Receipt,
             ctx: Context) -> Effects:
    art = _artefact(view, p.artefact)
    tr = _transfer(view, p.transfer)
    _check_head(art, e)
    if tr["artefact"] != p.artefact or art["open_transfer"] != p.transfer:
        raise _refuse("no-open-dispatch", f"transfer {p.transfer} is not the open dispatch of "
                      f"artefact {p.artefact}")
    if signer["org"] != tr["to_org"] or tr["to_actor"] not in (None, signer["id"]):
        raise _refuse("not-recipient", f"{signer['id']} ({signer['org']}) is not the recipient "
                      f"of transfer {p.transfer}")
    recorded = {a: v for a, v in art["digests"].items() if a in STRONG_DIGESTS}
    missing = sorted(set(recorded) - set(p.recomputed))
    if missing and p.outcome == "accepted":
        raise _refuse("digest-missing", "acceptance needs every recorded digest recomputed; "
                      f"missing: {', '.join(missing)}")
    differ = sorted(a for a in recorded if a in p.recomputed and p.recomputed[a] != recorded[a])
    if p.outcome == "accepted" and differ:
        raise _refuse("digest-mismatch", f"received bytes do not match the recorded "
                      f"{', '.join(differ)} digest; record a rejection instead")
    if p.outcome == "rejected" and not differ and not p.reason:
        raise _refuse("reject-reason", "a rejection with matching digests must give a reason")
    accepted = p.outcome == "accepted"
    v2 = _version(view) >= 2
    if not v2 and (p.package_sha256 is not None or p.seal_discrepancy):
        _needs_v2(view, "package or seal-discrepancy receipts")
    sent_seals = tr.get("seals") or []
    if accepted and sent_seals and set(p.seals) != set(sent_seals) and not p.seal_discrepancy:
        raise _refuse("seal-mismatch", f"the seals received ({', '.join(p.seals) or 'none'}) "
                      f"differ from those dispatched ({', '.join(sent_seals)}); record a "
                      "rejection, or a seal discrepancy with its reason")
    package = tr.get("package")
    if accepted and package is not None and p.package_sha256 != package["sha256"]:
        raise _refuse("package-mismatch", f"the package received (sha256 "
                      f"{p.package_sha256 or 'not given'}) is not the package dispatched "
                      f"(sha256 {package['sha256']}); record a rejection instead")
    # A rejection is an integrity incident; so is an acceptance with a seal discrepancy.
    incident = not accepted or bool(p.seal_discrepancy)
    new_art: ArtefactRecord = {**art, "open_transfer": None,
                               "custodian": tr["to_org"] if accepted else art["custodian"],
                               "incidents": art["incidents"] + (1 if incident else 0)}
    new_tr: TransferRecord = {**tr, "status": p.outcome, "closed_at": ctx.index,
                              "mismatched": differ}
    if v2:
        new_tr |= {"package_received": p.package_sha256,
                   "seal_discrepancy": p.seal_discrepancy}
    return Effects({artefact_key(p.artefact): new_art, transfer_key(p.transfer): new_tr},
                   [p.artefact, p.transfer, art["case"]],
                   {"outcome": p.outcome, "mismatched": differ, "custodian": new_art["custodian"]})


def may_access(view: StateView, actor: Mapping[str, Any], artefact_id: str) -> bool:
    """Access policy: the custodian org and the case's member orgs may access an artefact."""
    art = view.get(artefact_key(artefact_id))
    if art is None:
        return False
    case = view.get(case_key(art["case"]))
    allowed = {art["custodian"], *(case_orgs(case) if case else ())}
    return bool(actor["status"] == "active" and actor["org"] in allowed)


def _access(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.Access,
            ctx: Context) -> Effects:
    art = _artefact(view, p.artefact)
    decision = "success" if may_access(view, signer, p.artefact) else "denied"
    if p.outcome != decision:
        raise _refuse("access-outcome", f"access by {signer['id']} to {p.artefact} is "
                      f"{decision} by policy, but the event claims {p.outcome}")
    return Effects({}, [p.artefact, art["case"]], {"outcome": decision})


def _verification(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.Verification,
                  ctx: Context) -> Effects:
    art = _artefact(view, p.artefact)
    expected = "authentic" if art["digests"]["sha256"] == p.sha256 else "mismatch"
    if p.verdict != expected:
        raise _refuse("verdict", f"the verdict for this digest is {expected}, not {p.verdict}")
    return Effects({}, [p.artefact, art["case"]], {"verdict": p.verdict})


def _auth_denied(view: StateView, signer: ActorRecord, e: ev.Event, p: pl.AuthDenied,
                 ctx: Context) -> Effects:
    _needs_v2(view, "a refused login record")
    return Effects({}, [p.actor], {"outcome": "denied"})


_HANDLERS: dict[str, Any] = {
    ev.ORG_REGISTER: _org_register, ev.ACTOR_ENROL: _actor_enrol,
    ev.ACTOR_REVOKE: _actor_revoke, ev.CASE_OPEN: _case_open,
    ev.CASE_ADD_MEMBER: _case_add_member, ev.LEGAL_BASIS: _legal_basis,
    ev.ARTEFACT_REGISTER: _artefact_register, ev.DISPATCH: _dispatch, ev.RECEIPT: _receipt,
    ev.ACCESS: _access, ev.VERIFICATION: _verification,
    ev.ORG_KEY: _org_key, ev.ORG_KEY_REVOKE: _org_key_revoke,
    ev.AUTH_DENIED: _auth_denied,
}
_NEEDS_ROLE: dict[str, frozenset[str]] = {
    ev.ORG_REGISTER: frozenset({"admin"}), ev.ACTOR_ENROL: frozenset({"admin"}),
    ev.ACTOR_REVOKE: frozenset({"admin"}), ev.ORG_KEY: frozenset({"admin"}),
    ev.ORG_KEY_REVOKE: frozenset({"admin"}), ev.CASE_OPEN: frozenset({"prosecutor", "admin"}),
    ev.CASE_ADD_MEMBER: frozenset({"prosecutor", "admin"}),
    ev.LEGAL_BASIS: frozenset({"prosecutor", "admin"}),
    ev.ARTEFACT_REGISTER: frozenset({"examiner"}),
    ev.DISPATCH: CUSTODIAL_ROLES, ev.RECEIPT: CUSTODIAL_ROLES,
    # The server's security actor: an auditor (read-only otherwise) or an admin.
    ev.AUTH_DENIED: frozenset({"auditor", "admin"}),
}
#: Instruments that exist only between two different states (mutual legal assistance,
#: European Investigation and Production Orders): the same state on both sides is refused.
_BETWEEN_STATES = frozenset({"mlat", "eio", "epoc", "epoc-pr"})
#: Kinds that move custody and therefore carry the artefact head in ``prev``.
_CHAINED = frozenset({ev.DISPATCH, ev.RECEIPT})
#: Kinds whose payload names the artefact in ``artefact``.
_ARTEFACT_KINDS = frozenset({ev.DISPATCH, ev.RECEIPT, ev.ACCESS, ev.VERIFICATION})
#: Kinds after which the artefact's head is this event's id.
_HEAD_MOVERS = _CHAINED | {ev.ARTEFACT_REGISTER}
