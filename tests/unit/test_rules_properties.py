"""Hypothesis state machine over the PURE custody rules (``MemoryState``, no database).

Three organisations in three jurisdictions (BKA/DE, NFI/NL, DGSI/FR), each with a
custodian; BKA's admin is also examiner and prosecutor; a court actor (BKA) and an
auditor (NFI). Legal bases exist for DE↔NL (MLAT) and DE↔FR (EIO), none for NL↔FR.
Random sequences of register / dispatch / receive (accepted or rejected) / access /
revoke, well-formed or deliberately wrong, must keep these invariants:

* every artefact has exactly one custodian, and that organisation exists;
* at most one open transfer per artefact, and it is the one the artefact points to;
* custody only moves by an accepted receipt;
* a refused event leaves the whole state unchanged (compared with a deep copy);
* court- and auditor-role actors never change custody.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ledger.core import events as ev
from ledger.core.errors import InvalidInput, RuleViolation
from ledger.service import ActorKey
from tests.conftest import PureLedger, actor_key

ORGS = {"bka": "DE", "nfi": "NL", "dgsi": "FR"}
DATA = b"the evidence"
TAMPERED = b"the evidence, changed"


def _note(label: str) -> None:
    """Label for ``--hypothesis-show-statistics`` (a no-op outside a Hypothesis run)."""
    with contextlib.suppress(InvalidArgument):
        event(label)


class CustodyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        p = self.p = PureLedger()
        self.admin = actor_key("admin")
        p.genesis(self.admin)
        self.actors: dict[str, ActorKey] = {"admin": self.admin}
        self.roles: dict[str, list[str]] = {"admin": ["admin", "examiner", "custodian",
                                                      "prosecutor"]}
        for org, country in ORGS.items():
            if org != "bka":
                p.org(self.admin, org, country)
        for actor_id, org, roles in [("bka-cust", "bka", ["custodian"]),
                                     ("nfi-cust", "nfi", ["custodian", "examiner"]),
                                     ("dgsi-cust", "dgsi", ["custodian"]),
                                     ("court", "bka", ["court"]),
                                     ("auditor", "nfi", ["auditor"])]:
            key = actor_key(actor_id)
            p.enrol(self.admin, key, org, roles)
            self.actors[actor_id] = key
            self.roles[actor_id] = roles
        p.case(self.admin, "CASE-1", members=("nfi", "dgsi"))
        p.legal_basis(self.admin, "lb-nl", "NL", "DE", case="CASE-1")
        p.legal_basis(self.admin, "lb-fr", "FR", "DE", case="CASE-1", instrument="eio")
        self.arts: list[str] = []
        self.accepted = 0
        self.refused = 0
        self.register(0, True)

    # ---- helpers ---------------------------------------------------------------------

    def pick(self, seq: list[Any], i: int) -> Any:
        return seq[i % len(seq)]

    def actor(self, i: int) -> tuple[str, ActorKey]:
        actor_id = self.pick(sorted(self.actors), i)
        return actor_id, self.actors[actor_id]

    def arts_state(self) -> dict[str, dict[str, Any]]:
        return {a: dict(self.p.state.records["art/" + a]) for a in self.arts}

    def attempt(self, actor_id: str, signed: ev.SignedEvent) -> Any:
        """Apply; on refusal check that nothing changed. Returns effects or None."""
        before = copy.deepcopy(self.p.state.records)
        arts_before = self.arts_state()
        try:
            effects = self.p.apply(signed)
        except (RuleViolation, InvalidInput):
            assert self.p.state.records == before, "a refused event changed the state"
            self.refused += 1
            _note(f"refused {signed.event.kind}")
            return None
        self.accepted += 1
        _note(f"accepted {signed.event.kind}"
              + (f" {effects.result['outcome']}" if signed.event.kind == ev.RECEIPT else ""))
        kind = signed.event.kind
        roles = set(self.roles[actor_id])
        for art, old in arts_before.items():
            new = self.p.state.records["art/" + art]
            if new["custodian"] != old["custodian"]:
                assert kind == ev.RECEIPT, f"custody of {art} moved by {kind}"
                assert effects.result["outcome"] == "accepted", f"{art} moved by a rejection"
                tr = self.p.state.records["tr/" + old["open_transfer"]]
                assert tr["status"] == "accepted"
                assert new["custodian"] == tr["to_org"]
            if roles <= {"court", "auditor"}:
                assert (new["custodian"], new["open_transfer"], new["head"]) == (
                    old["custodian"], old["open_transfer"], old["head"])
        return effects

    # ---- actions ---------------------------------------------------------------------

    @rule(who=st.integers(0, 50), well_formed=st.booleans())
    def register(self, who: int, well_formed: bool) -> None:
        actor_id, key = ("admin", self.admin) if well_formed else self.actor(who)
        art = f"art-{len(self.arts)}-{self.p.index}"
        d = {"id": art, "case": "CASE-1", "size": len(DATA),
             "digests": {"sha256": hashlib.sha256(DATA).hexdigest()}}
        if self.arts:  # the same bytes again in the case: a declared duplicate
            d["duplicate_of"] = self.arts[0]
        if self.attempt(actor_id, self.p.sign(ev.ARTEFACT_REGISTER, key, d)) is not None:
            self.arts.append(art)

    def custodian_actor(self, org: str) -> str:
        return "admin" if org == "bka" and self.p.index % 2 else f"{org}-cust"

    @rule(who=st.integers(0, 50), which=st.integers(0, 50), to=st.sampled_from(sorted(ORGS)),
          lb=st.sampled_from([None, "lb-nl", "lb-fr", "lb-none"]), stale=st.booleans(),
          well_formed=st.booleans())
    def dispatch(self, who: int, which: int, to: str, lb: str | None, stale: bool,
                 well_formed: bool) -> None:
        art = self.pick(self.arts, which)
        actor_id, key = self.actor(who)
        if well_formed:  # the custodian's own custodian, with the matching legal basis
            custodian = self.p.state.records["art/" + art]["custodian"]
            actor_id = self.custodian_actor(custodian)
            key = self.actors[actor_id]
            pair = {custodian, to}
            lb = "lb-nl" if pair == {"bka", "nfi"} else "lb-fr" if pair == {"bka", "dgsi"} else lb
            stale = False
        payload = self.p.dispatch_payload(art, to, f"tr-{self.p.index}", lb)
        prev = "ee" * 32 if stale else self.p.head(art)
        self.attempt(actor_id, self.p.sign(ev.DISPATCH, key, payload, prev=prev))

    @rule(who=st.integers(0, 50), which=st.integers(0, 50),
          outcome=st.sampled_from(["accepted", "rejected"]),
          tampered=st.sampled_from([False, False, False, True]),
          reason=st.sampled_from(["", "seal broken"]), well_formed=st.booleans())
    def receive(self, who: int, which: int, outcome: str, tampered: bool, reason: str,
                well_formed: bool) -> None:
        actor_id, key = self.actor(who)
        pending = [a for a in self.arts if self.p.state.records["art/" + a]["open_transfer"]]
        art = self.pick(pending if well_formed and pending else self.arts, which)
        rec = self.p.state.records["art/" + art]
        transfer = rec["open_transfer"] or "tr-none"
        if well_formed and rec["open_transfer"]:  # the addressee receives it
            actor_id = self.custodian_actor(self.p.state.records["tr/" + transfer]["to_org"])
            key = self.actors[actor_id]
        payload = self.p.receipt_payload(art, transfer, TAMPERED if tampered else DATA,
                                         outcome, reason)
        payload["recomputed"] = {"sha256": payload["recomputed"]["sha256"]}
        self.attempt(actor_id, self.p.sign(ev.RECEIPT, key, payload, prev=self.p.head(art)))

    @rule(who=st.integers(0, 50), which=st.integers(0, 50),
          outcome=st.sampled_from(["success", "denied"]))
    def access(self, who: int, which: int, outcome: str) -> None:
        actor_id, key = self.actor(who)
        art = self.pick(self.arts, which)
        self.attempt(actor_id, self.p.sign(ev.ACCESS, key, {
            "artefact": art, "action": "view", "purpose": "p", "outcome": outcome}))

    @rule(who=st.integers(0, 50), victim=st.integers(0, 50), chance=st.integers(0, 9))
    def revoke(self, who: int, victim: int, chance: int) -> None:
        if chance:  # revocations are rare, or every actor is soon revoked
            return
        actor_id, key = self.actor(who)
        target_id, _ = self.actor(victim)
        if target_id == "admin":  # keep one working admin so the run stays interesting
            return
        self.attempt(actor_id, self.p.sign(ev.ACTOR_REVOKE, key, {"actor": target_id}))

    # ---- invariants ------------------------------------------------------------------

    @invariant()
    def one_existing_custodian_each(self) -> None:
        for art in self.arts:
            rec = self.p.state.records["art/" + art]
            assert isinstance(rec["custodian"], str)
            assert self.p.state.get("org/" + rec["custodian"]) is not None

    @invariant()
    def at_most_one_open_transfer(self) -> None:
        open_by_art: dict[str, list[str]] = {}
        for key, rec in self.p.state.records.items():
            if key.startswith("tr/") and rec["status"] == "open":
                open_by_art.setdefault(rec["artefact"], []).append(rec["id"])
        for art in self.arts:
            pointed = self.p.state.records["art/" + art]["open_transfer"]
            found = open_by_art.get(art, [])
            assert len(found) <= 1
            assert found == ([pointed] if pointed else [])


TestCustodyMachine = CustodyMachine.TestCase
TestCustodyMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_machine_reaches_both_outcomes() -> None:
    """Guard against a vacuous run: a fixed walk exercises accepted and refused events."""
    m = CustodyMachine()
    m.dispatch(0, 0, "nfi", "lb-nl", False, True)
    m.receive(0, 0, "accepted", False, "", True)
    assert m.p.state.records["art/" + m.arts[0]]["custodian"] == "nfi"
    m.dispatch(sorted(m.actors).index("court"), 0, "bka", None, False, False)
    assert m.accepted >= 3
    assert m.refused >= 1
