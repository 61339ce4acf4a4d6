"""Who may see what: role × organisation × jurisdiction × case membership.

Pure functions over the ledger's world state (a ``StateView``), in the core next to
:func:`ledger.core.rules.may_access`; the API's routes call them for every object and
answer 404 when the caller may not see it, so existence does not leak.

Rules (documented in ``docs/api.md``):

* Directory records are visible to every authenticated actor of the consortium: the
  ledger record, organisations (id, name, jurisdiction), actors (name, org, roles,
  public key: what a verifier needs to check a signature) and organisations' encryption
  keys (the public age recipients a sender seals packages to).
* A case is visible to its lead organisation and its member organisations. Jurisdiction
  enters only through organisations: an agency in another country sees a case exactly
  when it was added to it (a joint investigation team, a court's organisation).
* An artefact is visible to its custodian organisation and the case's organisations
  (:func:`ledger.core.rules.may_access`, the same policy the ledger applies to access events)
  and to the recipient organisation of its open dispatch (it must see what it receives).
* A transfer is visible to its sending and receiving organisations and to whoever sees
  its artefact. A legal basis is visible to the recording organisation and to whoever
  sees its case or one of its artefacts.
* An actor with the ``auditor`` role reads everything (the whole log and state: it runs
  the audit), but writes nothing beyond what the custody rules allow its other roles.
* Every actor sees the log entries it signed itself.
* Anything else (nonce records, unknown prefixes) is auditor-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.core import events as ev
from ledger.core.rules import StateView, case_orgs, may_access
from ledger.core.state import (
    ARTEFACT,
    CASE,
    DIRECTORY,
    LEDGER,
    LEGAL_BASIS,
    TRANSFER,
    Record,
    actor_key,
    artefact_key,
    case_key,
    kind_of,
    legal_basis_key,
    transfer_key,
)

AUDITOR = "auditor"
#: Roles for which holding an artefact's bytes is the capability to verify it and see its
#: custody chain (``api.routes.artefacts.holds_bytes_capability``), case or no case.
VERIFY_BY_BYTES_ROLES = frozenset({"court", AUDITOR})
DIRECTORY_KINDS = frozenset({ev.GENESIS, ev.ORG_REGISTER, ev.ACTOR_ENROL, ev.ACTOR_REVOKE,
                             ev.ORG_KEY, ev.ORG_KEY_REVOKE})


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated actor of a request, with its ledger record."""

    id: str
    record: Record

    @property
    def org(self) -> str:
        return str(self.record["org"])

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self.record.get("roles", ()))

    @property
    def is_auditor(self) -> bool:
        return AUDITOR in self.roles


def can_see_case(view: StateView, caller: Caller, case: Record) -> bool:
    return caller.is_auditor or caller.org in case_orgs(case)


def can_see_artefact(view: StateView, caller: Caller, art: Record) -> bool:
    if caller.is_auditor or may_access(view, caller.record, art["id"]):
        return True
    open_tr = art.get("open_transfer")
    tr = view.get(transfer_key(open_tr)) if open_tr else None
    return tr is not None and tr["to_org"] == caller.org


def can_see_transfer(view: StateView, caller: Caller, tr: Record) -> bool:
    if caller.is_auditor or caller.org in (tr["from_org"], tr["to_org"]):
        return True
    art = view.get(artefact_key(tr["artefact"]))
    return art is not None and can_see_artefact(view, caller, art)


def can_see_legal_basis(view: StateView, caller: Caller, lb: Record) -> bool:
    if caller.is_auditor:
        return True
    recorder = view.get(actor_key(str(lb.get("recorded_by"))))
    if recorder is not None and recorder["org"] == caller.org:
        return True
    case = view.get(case_key(lb["case"])) if lb.get("case") else None
    if case is not None and can_see_case(view, caller, case):
        return True
    for art_id in lb.get("artefacts", ()):
        art = view.get(artefact_key(art_id))
        if art is not None and can_see_artefact(view, caller, art):
            return True
    return False


_BY_PREFIX = {CASE: can_see_case, ARTEFACT: can_see_artefact, TRANSFER: can_see_transfer,
              LEGAL_BASIS: can_see_legal_basis}


def can_see_state(view: StateView, caller: Caller, key: str, record: Record) -> bool:
    """May ``caller`` read the world-state record ``key``?"""
    if key == LEDGER or key.startswith(DIRECTORY):
        return True
    check = _BY_PREFIX.get(kind_of(key))
    if check is None:
        return caller.is_auditor
    return check(view, caller, record)


def visible(view: StateView, caller: Caller, key: str) -> Record | None:
    """The record at ``key`` if it exists and ``caller`` may see it, else ``None``."""
    record = view.get(key)
    if record is None or not can_see_state(view, caller, key, record):
        return None
    return record


def can_see_event(view: StateView, caller: Caller, signed: ev.SignedEvent) -> bool:
    """May ``caller`` read the log entry holding ``signed``?"""
    event = signed.event
    if caller.is_auditor or event.signer == caller.id or event.kind in DIRECTORY_KINDS:
        return True
    p = event.payload
    if event.kind == ev.CASE_OPEN:
        return visible(view, caller, case_key(str(p.get("id")))) is not None
    if event.kind == ev.CASE_ADD_MEMBER:
        return visible(view, caller, case_key(str(p.get("case")))) is not None
    if event.kind == ev.LEGAL_BASIS:
        return visible(view, caller, legal_basis_key(str(p.get("id")))) is not None
    if event.kind == ev.ARTEFACT_REGISTER:
        return visible(view, caller, artefact_key(str(p.get("id")))) is not None
    if event.kind in (ev.DISPATCH, ev.RECEIPT) and visible(
            view, caller, transfer_key(str(p.get("transfer")))) is not None:
        return True
    return visible(view, caller, artefact_key(str(p.get("artefact")))) is not None


#: Payload fields naming objects that must be visible to the signer before an event
#: about them is even considered (else 404, exactly like an unknown id).
REFERENCED = (("case", CASE), ("artefact", ARTEFACT))


def hidden_reference(view: StateView, caller: Caller, signed: ev.SignedEvent,
                     created: frozenset[str] = frozenset()) -> str | None:
    """The first object an event names that the caller may not see (or that does not
    exist), as ``"what id"``; ``None`` when every named object is visible. ``created``:
    state keys that the caller's own earlier events in the same batch create (the rules,
    which run in batch order, then decide whether they exist)."""
    p = signed.event.payload
    if signed.event.kind in (ev.CASE_OPEN, ev.GENESIS, ev.ORG_REGISTER, ev.ACTOR_ENROL):
        return None
    if signed.event.kind == ev.VERIFICATION and caller.roles & VERIFY_BY_BYTES_ROLES:
        # A court holding the bytes may log its verification of any artefact: it proves
        # that it holds them by the registered SHA-256 (the verdict is then authentic).
        art = view.get(artefact_key(str(p.get("artefact"))))
        if art is not None and art["digests"].get("sha256") == p.get("sha256"):
            return None
    for field, prefix in REFERENCED:
        value = p.get(field)
        if isinstance(value, str) and prefix + value not in created \
                and visible(view, caller, prefix + value) is None:
            return f"{'artefact' if prefix == ARTEFACT else 'case'} {value!r}"
    arts = p.get("artefacts") if signed.event.kind == ev.LEGAL_BASIS else None
    if isinstance(arts, list):
        for value in arts:
            if isinstance(value, str) and artefact_key(value) not in created \
                    and visible(view, caller, artefact_key(value)) is None:
                return f"artefact {value!r}"
    return None


def created_keys(signed: ev.SignedEvent) -> tuple[str, ...]:
    """The state keys of the objects an event creates (a case, an artefact)."""
    ident = signed.event.payload.get("id")
    if not isinstance(ident, str):
        return ()
    if signed.event.kind == ev.ARTEFACT_REGISTER:
        return (artefact_key(ident),)
    if signed.event.kind == ev.CASE_OPEN:
        return (case_key(ident),)
    return ()
