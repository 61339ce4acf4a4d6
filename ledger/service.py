"""Use cases: build an event for the acting actor, sign it locally, append it.

The service works over any :class:`~ledger.store.base.LedgerStore` — the local SQL
store in embedded mode, or a remote store that speaks to the API server — so events are
always signed where the private key lives. Clock and randomness are passed in.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.core import _sodium
from ledger.core import events as ev
from ledger.core.errors import Forbidden, InvalidInput, NotFound, RuleViolation
from ledger.core.rules import RULES, may_access
from ledger.core.state import (
    actor_key,
    artefact_key,
    case_key,
    org_key,
    org_keys_key,
    transfer_key,
)
from ledger.core.vocab import STRONG_DIGESTS
from ledger.evidence import Digests
from ledger.store.base import AppendResult, CachedView, LedgerStore

Clock = Callable[[], int]
Random = Callable[[int], bytes]
_B32 = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o/1/i/l: ids are read aloud and retyped


@dataclass(frozen=True)
class ActorKey:
    """An actor id with its loaded private key (never serialised)."""

    actor_id: str
    signer: _sodium.Signer

    @property
    def key_id(self) -> str:
        return ev.actor_key_id(self.actor_id, self.signer.public_key)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.signer.public_key).decode()


class Custody:
    """The custody use cases over one ledger."""

    def __init__(self, store: LedgerStore, *, origin: str, clock: Clock, random: Random) -> None:
        self.store = store
        self.origin = origin
        self.clock = clock
        self.random = random

    # ---- plumbing -----------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        raw = self.random(8)
        return prefix + "-" + "".join(_B32[b % len(_B32)] for b in raw)

    def event(self, kind: str, actor: ActorKey, payload: dict[str, Any],
              prev: str | None = None) -> ev.SignedEvent:
        body = ev.Event(kind=kind, origin=self.origin, nonce=self.random(16).hex(),
                        claimed_time=self.clock(), signer=actor.actor_id,
                        key_id=actor.key_id, payload=payload, prev=prev)
        return ev.sign_event(body, actor.signer)

    def submit(self, kind: str, actor: ActorKey, payload: dict[str, Any],
               prev: str | None = None) -> AppendResult:
        return self.store.append(self.event(kind, actor, payload, prev))

    def record(self, key: str, what: str) -> dict[str, Any]:
        rec = self.store.state(key)
        if rec is None:
            raise NotFound(f"unknown {what} {key.split('/', 1)[1]!r}")
        return rec

    # ---- identities ---------------------------------------------------------------

    def genesis(self, actor: ActorKey, *, org_id: str, org_name: str, jurisdiction: str,
                actor_name: str, roles: list[str], log_key: str,
                skew_ms: int = 300_000) -> AppendResult:
        payload = {"log_key": log_key, "skew_ms": skew_ms, "rules": RULES,
                   "org": {"id": org_id, "name": org_name,
                           "jurisdiction": jurisdiction.upper()},
                   "actor": {"id": actor.actor_id, "org": org_id, "name": actor_name,
                             "roles": roles, "public_key": actor.public_key_b64}}
        return self.submit(ev.GENESIS, actor, payload)

    def add_org(self, actor: ActorKey, org_id: str, name: str,
                jurisdiction: str) -> AppendResult:
        return self.submit(ev.ORG_REGISTER, actor,
                           {"id": org_id, "name": name, "jurisdiction": jurisdiction.upper()})

    def enrol(self, actor: ActorKey, *, actor_id: str, org: str, name: str, roles: list[str],
              public_key: bytes) -> AppendResult:
        self.record(org_key(org), "organisation")
        return self.submit(ev.ACTOR_ENROL, actor, {
            "id": actor_id, "org": org, "name": name, "roles": roles,
            "public_key": base64.b64encode(public_key).decode()})

    def revoke(self, actor: ActorKey, target: str, reason: str = "") -> AppendResult:
        self.record(actor_key(target), "actor")  # an unknown actor is not found (exit 4)
        return self.submit(ev.ACTOR_REVOKE, actor, {"actor": target, "reason": reason})

    def enrol_org_key(self, actor: ActorKey, org: str, recipient: str) -> AppendResult:
        """Enrol ``recipient`` (an age X25519 recipient, ``age1…``) as ``org``'s current
        encryption key; its previous key, if any, is retired."""
        self.record(org_key(org), "organisation")
        return self.submit(ev.ORG_KEY, actor, {"org": org, "recipient": recipient})

    def revoke_org_key(self, actor: ActorKey, org: str, key_id: str,
                       reason: str = "") -> AppendResult:
        """Revoke one of ``org``'s encryption keys (no package may be sealed to it)."""
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            raise InvalidInput(f"{key_id!r} is not a key id (16 lowercase hex characters, "
                               "as 'custody org key show' prints them)")
        self.record(org_key(org), "organisation")
        keys = (self.store.state(org_keys_key(org)) or {}).get("keys", {})
        if key_id not in keys:  # an unknown key is not found (exit 4), like an actor
            raise NotFound(f"organisation {org} has no encryption key {key_id}")
        return self.submit(ev.ORG_KEY_REVOKE, actor,
                           {"org": org, "key_id": key_id, "reason": reason})

    def org_keys(self, org: str) -> dict[str, Any]:
        """``org``'s encryption keys: the ``orgkey/ORG`` record, or an empty one."""
        self.record(org_key(org), "organisation")
        return self.store.state(org_keys_key(org)) or {"org": org, "current": None, "keys": {}}

    # ---- cases and legal bases ----------------------------------------------------

    def open_case(self, actor: ActorKey, ref: str, title: str = "") -> AppendResult:
        return self.submit(ev.CASE_OPEN, actor, {"id": ref, "title": title})

    def add_member(self, actor: ActorKey, case: str, org: str) -> AppendResult:
        self.record(case_key(case), "case")
        self.record(org_key(org), "organisation")
        return self.submit(ev.CASE_ADD_MEMBER, actor, {"case": case, "org": org})

    def add_legal_basis(self, actor: ActorKey, *, instrument: str, reference: str,
                        issuing_state: str, executing_state: str, valid_until: str,
                        valid_from: str | None = None, case: str | None = None,
                        artefacts: list[str] | None = None, restrictions: list[str] | None = None,
                        issuing_authority: str = "", executing_authority: str = "",
                        document_sha256: str | None = None,
                        basis_id: str | None = None) -> AppendResult:
        today = dt.datetime.fromtimestamp(self.clock() / 1000, tz=dt.UTC).date().isoformat()
        if valid_until < (valid_from or today):
            raise InvalidInput(f"the legal basis would end ({valid_until}) before it starts "
                               f"({valid_from or today}); check --valid-from and --valid-until")
        if case is not None:
            self.record(case_key(case), "case")
        issuing_state, executing_state = issuing_state.upper(), executing_state.upper()
        payload: dict[str, Any] = {
            "id": basis_id or self.new_id("lb"), "instrument": instrument,
            "reference": reference, "issuing_state": issuing_state,
            "issuing_authority": issuing_authority, "executing_state": executing_state,
            "executing_authority": executing_authority, "valid_from": valid_from or today,
            "valid_until": valid_until, "case": case, "artefacts": artefacts or [],
            "restrictions": restrictions or [], "document_sha256": document_sha256}
        return self.submit(ev.LEGAL_BASIS, actor, payload)

    # ---- custody ------------------------------------------------------------------

    def register(self, actor: ActorKey, *, case: str, digests: Digests, kind: str = "file",
                 exhibit: str = "", description: str = "", parents: list[str] | None = None,
                 acquisition: Mapping[str, str] | None = None,
                 artefact_id: str | None = None,
                 duplicate_of: str | None = None) -> AppendResult:
        """Register an artefact. Bytes already registered in the same case must name
        that artefact as ``duplicate_of`` (or as a parent); the rules refuse otherwise
        (``duplicate-bytes``)."""
        self.record(case_key(case), "case")
        payload: dict[str, Any] = {
            "id": artefact_id or self.new_id("art"), "case": case, "exhibit": exhibit,
            "type": kind, "description": description, "size": digests.size,
            "digests": digests.as_dict(), "parents": parents or []}
        if acquisition:
            payload["acquisition"] = dict(acquisition)
        if duplicate_of is not None:
            payload["duplicate_of"] = duplicate_of
        return self.submit(ev.ARTEFACT_REGISTER, actor, payload)

    def dispatch(self, actor: ActorKey, *, artefact: str, to_org: str, purpose: str,
                 legal_basis: str | None = None, to_actor: str | None = None,
                 transport: str = "", transport_ref: str = "",
                 seals: list[str] | None = None,
                 transfer_id: str | None = None,
                 package: Mapping[str, Any] | None = None) -> AppendResult:
        """Dispatch an artefact. ``package``: the sealed package that travels (a
        :class:`ledger.core.payloads.Package` dict: sha256, size, format, recipient, also_to,
        digests of the plaintext)."""
        art = self.record(artefact_key(artefact), "artefact")
        self.record(org_key(to_org), "organisation")
        payload: dict[str, Any] = {
            "transfer": transfer_id or self.new_id("tr"), "artefact": artefact, "to_org": to_org,
            "to_actor": to_actor, "purpose": purpose, "legal_basis": legal_basis,
            "transport": {"method": transport, "reference": transport_ref},
            "seals": seals or []}
        if package is not None:
            payload["package"] = dict(package)
        return self.submit(ev.DISPATCH, actor, payload, prev=art["head"])

    def receive(self, actor: ActorKey, *, transfer: str, digests: Digests,
                reason: str = "", seals: list[str] | None = None,
                package_sha256: str | None = None,
                seal_discrepancy: str = "") -> AppendResult:
        """Record a receipt. The outcome follows from comparing the recomputed digests
        with the recorded ones: the integrity check happens BEFORE acceptance. A sealed
        package that arrived (``package_sha256``) other than the one dispatched is
        rejected too. ``seal_discrepancy``: why the seals received differ from those
        dispatched (accepted, but an integrity incident)."""
        tr = self.record(transfer_key(transfer), "transfer")
        art = self.record(artefact_key(tr["artefact"]), "artefact")
        recomputed = {k: v for k, v in digests.as_dict().items() if k in STRONG_DIGESTS}
        differ = [a for a, v in art["digests"].items()
                  if a in recomputed and recomputed[a] != v]
        sent = tr.get("package")
        wrong_package = sent is not None and package_sha256 is not None \
            and package_sha256 != sent["sha256"]
        outcome = "rejected" if differ or digests.size != art["size"] or wrong_package \
            else "accepted"
        if outcome == "rejected" and not reason:
            reason = ("received bytes do not match the recorded digests: " + ", ".join(differ)
                      if differ else f"received {digests.size} bytes, expected {art['size']}"
                      if digests.size != art["size"] else
                      f"the package received (sha256 {package_sha256}) is not the package "
                      f"dispatched (sha256 {sent['sha256'] if sent else None})")
        payload: dict[str, Any] = {
            "transfer": transfer, "artefact": tr["artefact"], "outcome": outcome,
            "recomputed": recomputed, "reason": reason, "seals": seals or []}
        if package_sha256 is not None:
            payload["package_sha256"] = package_sha256
        if seal_discrepancy:
            payload["seal_discrepancy"] = seal_discrepancy
        return self.submit(ev.RECEIPT, actor, payload, prev=art["head"])

    def access(self, actor: ActorKey, *, artefact: str, action: str, purpose: str,
               authorisation: str = "", source: str = "cli") -> AppendResult:
        """Record an access. A denied attempt is recorded too, then raises Forbidden.

        An artefact this store does not show (unknown, or through a server one the actor
        may not see) is still attempted, as a signed DENIED access: the ledger records it
        when the artefact exists, and answers "unknown artefact" either way (the rules
        refuse an access to an unknown id, ``unknown-art``; a server answers 404 for both,
        so the answer does not reveal whether the artefact exists)."""
        signer = self.record(actor_key(actor.actor_id), "actor")
        payload = {"artefact": artefact, "action": action, "purpose": purpose,
                   "authorisation": authorisation, "outcome": "denied", "source": source}
        if self.store.state(artefact_key(artefact)) is None:
            unknown = NotFound(f"unknown artefact {artefact!r}, or one you may not see; an "
                               "attempt on an artefact that exists is recorded")
            try:
                self.submit(ev.ACCESS, actor, payload)
            except (NotFound, RuleViolation) as exc:
                if isinstance(exc, RuleViolation) and exc.rule != "unknown-art":
                    raise
                raise unknown from None
            raise unknown  # pragma: no cover - a store records it only when it exists
        if may_access(CachedView(self.store), signer, artefact):
            payload["outcome"] = "success"
        outcome = payload["outcome"]
        receipt = self.submit(ev.ACCESS, actor, payload)
        if outcome == "denied":
            raise AccessDenied(
                f"{actor.actor_id} ({signer['org']}) may not access {artefact}; the denied "
                f"attempt was recorded at log index {receipt.index}", receipt)
        return receipt

    def record_verification(self, actor: ActorKey, *, artefact: str, sha256: str,
                            tree_size: int, verdict: str | None = None) -> AppendResult:
        """Log a verification. ``verdict``: one already reached from proofs (a court
        outside the case cannot read the artefact's record, only prove it)."""
        if verdict is None:
            art = self.record(artefact_key(artefact), "artefact")
            verdict = "authentic" if art["digests"]["sha256"] == sha256 else "mismatch"
        return self.submit(ev.VERIFICATION, actor, {
            "artefact": artefact, "sha256": sha256, "verdict": verdict, "tree_size": tree_size})


class AccessDenied(Forbidden):
    """Access was refused by policy; the denied attempt is on the log (``receipt``)."""

    def __init__(self, message: str, receipt: AppendResult) -> None:
        super().__init__(message)
        self.receipt = receipt
