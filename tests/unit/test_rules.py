"""Every rule code in ``ledger/rules.py`` refuses with exactly that code (pure, no DB).

``CASES`` maps each rule code to a scenario that builds an event the rule must refuse.
``test_every_rule_code_has_a_case`` reads rules.py and fails when a code is added
without a case here (or a case names a code that no longer exists).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ledger.rules
from ledger import events as ev
from ledger.errors import Conflict, RuleViolation
from ledger.service import ActorKey
from tests.conftest import PureLedger, actor_key, b64, digests_of

RULES_SOURCE = Path(ledger.rules.__file__).read_text()


class W:
    """The standard pure world: BKA (DE, lead of CASE-1), NFI (NL, member), LKA (DE),
    DGSI (FR); an artefact at BKA and an MLAT legal basis NL↔DE for CASE-1."""

    def __init__(self) -> None:
        p = self.p = PureLedger()
        self.admin = actor_key("admin")
        self.nl = actor_key("nl-cust")
        self.nl_pros = actor_key("nl-pros")
        self.court = actor_key("de-court")
        self.lka = actor_key("lka-cust")
        self.lka_exam = actor_key("lka-exam")
        p.genesis(self.admin)
        p.org(self.admin, "nfi", "NL")
        p.org(self.admin, "lka", "DE")
        p.org(self.admin, "dgsi", "FR")
        p.enrol(self.admin, self.nl, "nfi", ["custodian"])
        p.enrol(self.admin, self.nl_pros, "nfi", ["prosecutor"])
        p.enrol(self.admin, self.court, "bka", ["court"])
        p.enrol(self.admin, self.lka, "lka", ["custodian"])
        p.enrol(self.admin, self.lka_exam, "lka", ["examiner"])
        p.case(self.admin, "CASE-1", members=("nfi",))
        p.case(self.admin, "CASE-2")
        p.register(self.admin, "art-1", "CASE-1")
        p.register(self.admin, "art-x", "CASE-2", data=b"other")
        p.legal_basis(self.admin, "lb-1", "NL", "DE", case="CASE-1")

    def sign(self, kind: str, actor: ActorKey, payload: dict[str, Any], **kw: Any) -> Any:
        return self.p.sign(kind, actor, payload, **kw)

    def dispatch(self, actor: ActorKey | None = None, to_org: str = "nfi",
                 lb: str | None = "lb-1", prev: str | None = None, art: str = "art-1",
                 **kw: Any) -> Any:
        payload = self.p.dispatch_payload(art, to_org, "tr-" + self.p.random(4).hex(), lb, **kw)
        return self.sign(ev.DISPATCH, actor or self.admin, payload,
                         prev=self.p.head(art) if prev is None else prev)

    def open_transfer(self) -> str:
        self.p.dispatch(self.admin, "art-1", "nfi", "tr-1", "lb-1")
        return "tr-1"

    def receipt(self, actor: ActorKey | None = None, transfer: str = "tr-1",
                **kw: Any) -> Any:
        return self.sign(ev.RECEIPT, actor or self.nl,
                         self.p.receipt_payload("art-1", transfer, **kw),
                         prev=self.p.head("art-1"))

    def access(self, actor: ActorKey, art: str = "art-1", outcome: str = "success",
               **kw: Any) -> Any:
        return self.sign(ev.ACCESS, actor, {"artefact": art, "action": "view",
                                            "purpose": "review", "outcome": outcome}, **kw)

    def lb(self, actor: ActorKey, **kw: Any) -> Any:
        payload = {"id": "lb-" + self.p.random(4).hex(), "instrument": "mlat",
                   "reference": "R", "issuing_state": "NL", "executing_state": "DE",
                   "valid_from": "2020-01-01", "valid_until": "2099-12-31", "case": "CASE-1",
                   **kw}
        return self.sign(ev.LEGAL_BASIS, actor, payload)


def _other_lb(w: W, lb_id: str, **kw: Any) -> Any:
    payload = {"id": lb_id, "instrument": "mlat", "reference": "R", "issuing_state": "NL",
               "executing_state": "DE", "valid_from": "2020-01-01",
               "valid_until": "2099-12-31", "case": "CASE-1", **kw}
    w.p.submit(ev.LEGAL_BASIS, w.admin, payload)
    return w.dispatch(lb=lb_id)


def _no_genesis(w: W) -> Any:
    w.p = PureLedger()
    return w.p.sign(ev.ORG_REGISTER, w.admin, {"id": "x", "name": "X", "jurisdiction": "DE"})


def _genesis_again(w: W) -> Any:
    payload = {"log_key": "k", "skew_ms": 300_000,
               "org": {"id": "bka", "name": "BKA", "jurisdiction": "DE"},
               "actor": {"id": "admin", "org": "bka", "name": "A", "roles": ["admin"],
                         "public_key": b64(w.admin.signer.public_key)}}
    return w.sign(ev.GENESIS, w.admin, payload)


def _bad_signature(w: W) -> Any:
    good = w.access(w.admin)
    sig = bytearray(good.signature)
    sig[5] ^= 0x01
    return ev.SignedEvent(good.event, bytes(sig))


def _replay(w: W) -> Any:
    first = w.access(w.admin)
    w.p.apply(first)
    body = dataclasses.replace(first.event, payload={**first.event.payload, "purpose": "x"})
    return ev.sign_event(body, w.admin.signer)


def _revoked(w: W) -> Any:
    w.p.submit(ev.ACTOR_REVOKE, w.admin, {"actor": "de-court", "reason": "lost"})
    return w.access(w.court)


def _no_open_dispatch(w: W) -> Any:
    w.open_transfer()
    w.p.receive(w.nl, "art-1", "tr-1")
    return w.receipt()


def _enrol(actor: ActorKey, org: str, roles: list[str]) -> dict[str, Any]:
    return {"id": actor.actor_id, "org": org, "name": "N", "roles": roles,
            "public_key": b64(actor.signer.public_key)}


def _unknown(what: str) -> Callable[[W], Any]:
    def build(w: W) -> Any:
        if what == "org":
            return w.sign(ev.ACTOR_ENROL, w.admin, _enrol(actor_key("x"), "nowhere", ["examiner"]))
        if what == "actor":
            return w.sign(ev.ACTOR_REVOKE, w.admin, {"actor": "nobody"})
        if what == "case":
            d = digests_of(b"z")
            return w.sign(ev.ARTEFACT_REGISTER, w.admin, {
                "id": "art-z", "case": "CASE-9", "size": 1, "digests": d.as_dict()})
        if what == "lb":
            return w.dispatch(lb="lb-missing")
        if what == "art":
            return w.access(w.admin, art="art-missing")
        if what == "tr":
            return w.receipt(transfer="tr-missing")
        raise AssertionError(what)
    return build


CASES: dict[str, Callable[[W], Any]] = {
    "no-genesis": _no_genesis,
    "genesis": _genesis_again,
    "origin": lambda w: w.access(w.admin, origin="other.example/custody"),
    "prev": lambda w: w.access(w.admin, prev="ab" * 32),
    "clock-skew": lambda w: w.access(w.admin, claimed_time=w.p.time + 2 * 3_600_000),
    "unknown-signer": lambda w: w.access(actor_key("stranger")),
    "revoked-key": _revoked,
    "signature": _bad_signature,
    "replay": _replay,
    "role": lambda w: w.dispatch(w.court),
    "duplicate-id": lambda w: w.sign(ev.ORG_REGISTER, w.admin,
                                     {"id": "nfi", "name": "N", "jurisdiction": "NL"}),
    **{f"unknown-{k}": _unknown(k) for k in ("org", "actor", "case", "lb", "art", "tr")},
    # Once nfi has its own admin, bka's admin may no longer revoke nfi's actors.
    "admin-scope": lambda w: (w.p.enrol(w.admin, actor_key("nl-admin"), "nfi", ["admin"]),
                              w.sign(ev.ACTOR_REVOKE, w.admin, {"actor": "nl-cust"}))[1],
    "case-lead": lambda w: w.sign(ev.CASE_ADD_MEMBER, w.nl_pros,
                                  {"case": "CASE-1", "org": "lka"}),
    "legal-basis-window": lambda w: w.lb(w.admin, valid_from="2030-01-01",
                                         valid_until="2029-01-01"),
    "legal-basis-same-state": lambda w: w.lb(w.admin, issuing_state="DE"),
    "legal-basis-scope": lambda w: w.lb(w.admin, case=None),
    "legal-basis-state": lambda w: w.lb(w.admin, issuing_state="FR", executing_state="NL"),
    "case-member": lambda w: w.sign(ev.ARTEFACT_REGISTER, w.lka_exam, {
        "id": "art-l", "case": "CASE-1", "size": 1, "digests": digests_of(b"l").as_dict()}),
    "parent-case": lambda w: w.sign(ev.ARTEFACT_REGISTER, w.admin, {
        "id": "art-c", "case": "CASE-1", "size": 1, "digests": digests_of(b"c").as_dict(),
        "parents": ["art-x"]}),
    "stale-head": lambda w: w.dispatch(prev="cd" * 32),
    "not-custodian": lambda w: w.dispatch(w.nl, to_org="lka", lb=None),
    "open-dispatch": lambda w: (w.open_transfer(), w.dispatch(to_org="lka", lb=None))[1],
    "self-dispatch": lambda w: w.dispatch(to_org="bka", lb=None),
    "to-actor": lambda w: w.dispatch(to_actor="de-court"),
    "legal-basis-required": lambda w: w.dispatch(lb=None),
    "legal-basis-instrument": lambda w: _other_lb(w, "lb-w", instrument="warrant"),
    "legal-basis-states": lambda w: _other_lb(w, "lb-fr", issuing_state="FR"),
    "legal-basis-expired": lambda w: _other_lb(w, "lb-old", valid_until="2021-01-01"),
    "no-open-dispatch": _no_open_dispatch,
    "not-recipient": lambda w: (w.open_transfer(), w.receipt(w.lka))[1],
    "digest-missing": lambda w: (w.open_transfer(), w.sign(ev.RECEIPT, w.nl, {
        "transfer": "tr-1", "artefact": "art-1", "outcome": "accepted",
        "recomputed": {"sha256": digests_of(b"evidence").sha256}},
        prev=w.p.head("art-1")))[1],
    "digest-mismatch": lambda w: (w.open_transfer(), w.receipt(data=b"tampered"))[1],
    "reject-reason": lambda w: (w.open_transfer(), w.receipt(outcome="rejected"))[1],
    "access-outcome": lambda w: w.access(w.lka, outcome="success"),
    "verdict": lambda w: w.sign(ev.VERIFICATION, w.court, {
        "artefact": "art-1", "sha256": "00" * 32, "verdict": "authentic", "tree_size": 3}),
}

CONFLICT_CODES = {"replay", "duplicate-id", "stale-head", "open-dispatch"}


def rule_codes_in_module() -> set[str]:
    """Every rule code rules.py can raise, including the ``unknown-<kind>`` family."""
    codes = set(re.findall(r'(?:_refuse|Conflict)\(\s*"([a-z][a-z-]*)"', RULES_SOURCE))
    if "unknown-" in codes or re.search(r'_refuse\(\s*"unknown-"\s*\+', RULES_SOURCE):
        codes.discard("unknown-")
        codes |= {"unknown-" + k for k in re.findall(r'_need\(view,\s*"([a-z]+)/"',
                                                     RULES_SOURCE)}
    return codes


def test_every_rule_code_has_a_case() -> None:
    codes = rule_codes_in_module()
    assert len(codes) > 30
    assert codes - set(CASES) == set(), "rule codes without a test case"
    # duplicate-in-batch is a store code, not a rules code; everything here must exist.
    assert set(CASES) - codes == set(), "test cases for codes rules.py no longer has"


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_refuses_with_its_code(code: str) -> None:
    w = W()
    signed = CASES[code](w)
    before = copy.deepcopy(w.p.state.records)
    with pytest.raises(RuleViolation) as info:
        w.p.apply(signed)
    assert info.value.rule == code, info.value.message
    assert isinstance(info.value, Conflict) == (code in CONFLICT_CODES)
    assert info.value.message
    assert info.value.message[0].isalpha()
    assert w.p.state.records == before


def test_the_standard_world_accepts_the_happy_path() -> None:
    """The scenarios above are refused for the named reason, not because the world is
    broken: the same steps done correctly are accepted."""
    w = W()
    w.open_transfer()
    eff = w.p.receive(w.nl, "art-1", "tr-1")
    assert eff.result["custodian"] == "nfi"
    w.p.apply(w.access(w.nl))
    w.p.apply(w.sign(ev.VERIFICATION, w.court, {"artefact": "art-1",
                                                 "sha256": digests_of(b"evidence").sha256,
                                                 "verdict": "authentic", "tree_size": 3}))


def test_foreign_admin_cannot_enrol_into_the_genesis_org() -> None:
    w = W()
    nl_admin = actor_key("nl-admin")
    w.p.enrol(w.admin, nl_admin, "nfi", ["admin"])
    with pytest.raises(RuleViolation) as info:
        w.p.submit(ev.ACTOR_ENROL, nl_admin, _enrol(actor_key("mole"), "bka", ["admin"]))
    assert info.value.rule == "admin-scope"


def test_foreign_admin_cannot_enrol_into_an_org_with_an_admin() -> None:
    w = W()
    nl_admin = actor_key("nl-admin")
    w.p.enrol(w.admin, nl_admin, "nfi", ["admin"])  # bootstrap: nfi had no admin yet
    with pytest.raises(RuleViolation) as info:
        w.p.submit(ev.ACTOR_ENROL, w.admin, _enrol(actor_key("x2"), "nfi", ["custodian"]))
    assert info.value.rule == "admin-scope"


def test_operator_admin_may_revoke_in_an_org_without_an_admin() -> None:
    # A key lost in an organisation that has no admin of its own must still be revocable.
    w = W()
    w.p.submit(ev.ACTOR_REVOKE, w.admin, {"actor": "nl-cust", "reason": "key lost"})
    assert w.p.state.get("actor/nl-cust")["status"] == "revoked"  # type: ignore[index]
