"""Every rule code in ``ledger/core/rules.py`` refuses with exactly that code (pure, no DB).

``CASES`` maps each rule code to a scenario that builds an event the rule must refuse.
``test_every_rule_code_has_a_case`` reads rules.py and fails when a code is added
without a case here (or a case names a code that no longer exists).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.core.rules
import ledger.core.state
from ledger.core import events as ev
from ledger.core.errors import Conflict, InvalidInput, RuleViolation
from ledger.service import ActorKey
from tests.conftest import PureLedger, actor_key, b64, digests_of

RULES_SOURCE = Path(ledger.core.rules.__file__).read_text()
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def recipient(label: str) -> str:
    """A well-formed age X25519 recipient for ``label`` (the rules check its form only)."""
    raw = hashlib.sha256(label.encode()).digest() * 2
    return "age1" + "".join(_BECH32[b % 32] for b in raw[:58])


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
                data: bytes = b"evidence", outcome: str = "accepted", reason: str = "",
                **extra: Any) -> Any:
        """A receipt of art-1; ``extra``: further payload fields (seals, package...)."""
        payload = {**self.p.receipt_payload("art-1", transfer, data, outcome, reason), **extra}
        return self.sign(ev.RECEIPT, actor or self.nl, payload, prev=self.p.head("art-1"))

    def access(self, actor: ActorKey, art: str = "art-1", outcome: str = "success",
               **kw: Any) -> Any:
        return self.sign(ev.ACCESS, actor, {"artefact": art, "action": "view",
                                            "purpose": "review", "outcome": outcome}, **kw)

    def org_keys(self) -> tuple[str, str]:
        """Enrol an encryption key for bka and for nfi; returns their key ids."""
        for org in ("bka", "nfi"):
            self.p.submit(ev.ORG_KEY, self.admin, {"org": org, "recipient": recipient(org)})
        return ev.org_key_id(recipient("bka")), ev.org_key_id(recipient("nfi"))

    def package(self, data: bytes = b"evidence", **kw: Any) -> dict[str, Any]:
        """A package for art-1 sealed to nfi's current key (after :meth:`org_keys`)."""
        return {"sha256": hashlib.sha256(b"age:" + data).hexdigest(), "size": len(data) + 200,
                "format": "age-v1", "recipient": ev.org_key_id(recipient("nfi")),
                "digests": digests_of(data).as_dict(), **kw}

    def sealed_transfer(self, **kw: Any) -> dict[str, Any]:
        """Open tr-1 (art-1 to nfi) with seals S-1, S-2 and a package; its package."""
        self.org_keys()
        package = self.package()
        self.p.dispatch(self.admin, "art-1", "nfi", "tr-1", "lb-1", seals=["S-1", "S-2"],
                        package=package, **kw)
        return package

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
    payload = {"log_key": "k", "skew_ms": 300_000, "rules": 2,
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

CASES.update({
    "unknown-orgkey": lambda w: w.sign(ev.ORG_KEY_REVOKE, w.admin,
                                       {"org": "nfi", "key_id": "00" * 8}),
    # Sealed to the SENDER's key instead of the receiving organisation's current key.
    "package-recipient": lambda w: (w.org_keys(), w.dispatch(
        package=w.package(recipient=ev.org_key_id(recipient("bka")))))[1],
    "package-digests": lambda w: (w.org_keys(), w.dispatch(
        package=w.package(digests=digests_of(b"other bytes").as_dict())))[1],
    "seal-mismatch": lambda w: (w.sealed_transfer(), w.receipt(
        seals=["S-1", "S-3"], package_sha256=w.package()["sha256"]))[1],
    "package-mismatch": lambda w: (w.sealed_transfer(), w.receipt(
        seals=["S-2", "S-1"], package_sha256="ab" * 32))[1],
    "duplicate-bytes": lambda w: w.sign(ev.ARTEFACT_REGISTER, w.admin, {
        "id": "art-again", "case": "CASE-1", "size": 8,
        "digests": digests_of(b"evidence").as_dict()}),
    "duplicate-of": lambda w: w.sign(ev.ARTEFACT_REGISTER, w.admin, {
        "id": "art-d", "case": "CASE-1", "size": 1, "digests": digests_of(b"d").as_dict(),
        "duplicate_of": "art-1"}),
})

def _v1_ledger(w: W) -> Any:
    """A first-release ledger: its genesis has no ``rules`` (version 1)."""
    w.p = PureLedger()
    payload = {"log_key": "k", "skew_ms": 300_000,
               "org": {"id": "bka", "name": "BKA", "jurisdiction": "DE"},
               "actor": {"id": "admin", "org": "bka", "name": "A",
                         "roles": ["admin", "examiner", "prosecutor"],
                         "public_key": b64(w.admin.signer.public_key)}}
    w.p.submit(ev.GENESIS, w.admin, payload)
    w.p.submit(ev.CASE_OPEN, w.admin, {"id": "CASE-1", "title": "t"})
    return w


CASES["rules-version"] = lambda w: _v1_ledger(w).sign(ev.ARTEFACT_REGISTER, w.admin, {
    "id": "art-d", "case": "CASE-1", "size": 1, "digests": digests_of(b"d").as_dict(),
    "duplicate_of": "art-x"})


def test_a_first_release_ledger_replays_as_it_was() -> None:
    """Version 1 writes exactly what the first release wrote: no sha/ index, no new
    transfer fields, and the same bytes may be registered twice in one case."""
    w = _v1_ledger(W())
    for n in (1, 2):
        w.p.submit(ev.ARTEFACT_REGISTER, w.admin, {
            "id": f"art-{n}", "case": "CASE-1", "size": 8,
            "digests": digests_of(b"evidence").as_dict()})
    assert w.p.state.records["ledger"].keys() == {"origin", "log_key", "skew_ms", "genesis"}
    assert not [k for k in w.p.state.records if k.startswith("sha/")]
    # And a new ledger records its version and indexes registrations.
    new = W()
    assert new.p.state.records["ledger"]["rules"] == 2
    assert [k for k in new.p.state.records if k.startswith("sha/")]


CONFLICT_CODES = {"replay", "duplicate-id", "stale-head", "open-dispatch"}


def rule_codes_in_module() -> set[str]:
    """Every rule code rules.py can raise, including the ``unknown-<kind>`` family."""
    codes = set(re.findall(r'(?:_refuse|Conflict)\(\s*"([a-z][a-z-]*)"', RULES_SOURCE))
    if "unknown-" in codes or re.search(r'_refuse\(\s*"unknown-"\s*\+', RULES_SOURCE):
        codes.discard("unknown-")
        # The kind is the key's prefix: ``_need(view, artefact_key(...))`` -> unknown-art.
        codes |= {"unknown-" + getattr(ledger.core.state, builder)("").rstrip("/")
                  for builder in re.findall(r'_need\(view,\s*(\w+_key)\(', RULES_SOURCE)}
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


# ---- organisation encryption keys (org.key, org.key.revoke) --------------------------


def _key(w: W, org: str, label: str, actor: ActorKey | None = None) -> Any:
    return w.p.submit(ev.ORG_KEY, actor or w.admin, {"org": org, "recipient": recipient(label)})


def test_org_key_enrol_rotate_and_revoke() -> None:
    w = W()
    first, second = ev.org_key_id(recipient("n1")), ev.org_key_id(recipient("n2"))
    eff = _key(w, "nfi", "n1")
    assert eff.refs[0] == "nfi"
    assert eff.result == {"org": "nfi", "key_id": first, "retired": None}
    rec = w.p.state.get("orgkey/nfi")
    assert rec == {"org": "nfi", "current": first, "keys": {first: {
        "recipient": recipient("n1"), "status": "current", "enrolled_at": w.p.index - 1,
        "revoked_at": None, "reason": ""}}}
    eff = _key(w, "nfi", "n2")
    assert eff.result["retired"] == first
    rec = w.p.state.get("orgkey/nfi")
    assert rec is not None
    assert rec["current"] == second
    assert [rec["keys"][k]["status"] for k in (first, second)] == ["retired", "current"]
    # Revoking a retired key leaves the current one; revoking the current one leaves none.
    w.p.submit(ev.ORG_KEY_REVOKE, w.admin, {"org": "nfi", "key_id": first, "reason": "old"})
    rec = w.p.state.get("orgkey/nfi")
    assert rec is not None
    assert rec["current"] == second
    assert rec["keys"][first] | {} == {"recipient": recipient("n1"), "status": "revoked",
                                       "enrolled_at": rec["keys"][first]["enrolled_at"],
                                       "revoked_at": w.p.index - 1, "reason": "old"}
    eff = w.p.submit(ev.ORG_KEY_REVOKE, w.admin, {"org": "nfi", "key_id": second})
    assert eff.result["current"] is None
    rec = w.p.state.get("orgkey/nfi")
    assert rec is not None
    assert rec["current"] is None
    assert rec["keys"][second]["status"] == "revoked"
    # A new key after that becomes current; the revoked ones stay revoked.
    _key(w, "nfi", "n3")
    rec = w.p.state.get("orgkey/nfi")
    assert rec is not None
    assert rec["current"] == ev.org_key_id(recipient("n3"))
    assert sorted(k["status"] for k in rec["keys"].values()) == ["current", "revoked",
                                                                  "revoked"]


def test_org_key_id_is_the_sha256_prefix_of_the_recipient() -> None:
    r = recipient("x")
    assert ev.org_key_id(r) == hashlib.sha256(r.encode("ascii")).hexdigest()[:16]


@pytest.mark.parametrize(("build", "code"), [
    # the same recipient again, whether current, retired or revoked
    (lambda w: (_key(w, "nfi", "n1"), w.sign(ev.ORG_KEY, w.admin,
                                             {"org": "nfi", "recipient": recipient("n1")}))[1],
     "duplicate-id"),
    (lambda w: (_key(w, "nfi", "n1"), _key(w, "nfi", "n2"), w.sign(
        ev.ORG_KEY, w.admin, {"org": "nfi", "recipient": recipient("n1")}))[2], "duplicate-id"),
    (lambda w: w.sign(ev.ORG_KEY, w.admin, {"org": "nowhere", "recipient": recipient("z")}),
     "unknown-org"),
    (lambda w: w.sign(ev.ORG_KEY_REVOKE, w.admin, {"org": "nowhere", "key_id": "00" * 8}),
     "unknown-org"),
    (lambda w: w.sign(ev.ORG_KEY, w.nl, {"org": "nfi", "recipient": recipient("z")}), "role"),
    (lambda w: (_key(w, "nfi", "n1"), w.sign(ev.ORG_KEY_REVOKE, w.nl_pros, {
        "org": "nfi", "key_id": ev.org_key_id(recipient("n1"))}))[1], "role"),
    # Once nfi has its own admin, bka's admin may no longer touch nfi's keys, nor nfi's
    # admin bka's (bka has had an admin since the genesis).
    (lambda w: (w.p.enrol(w.admin, actor_key("nl-admin"), "nfi", ["admin"]), w.sign(
        ev.ORG_KEY, w.admin, {"org": "nfi", "recipient": recipient("z")}))[1], "admin-scope"),
    (lambda w: (_key(w, "nfi", "n1"), w.p.enrol(w.admin, actor_key("nl-admin"), "nfi",
                                                ["admin"]),
                w.sign(ev.ORG_KEY_REVOKE, w.admin, {
                    "org": "nfi", "key_id": ev.org_key_id(recipient("n1"))}))[2],
     "admin-scope"),
    (lambda w: (w.p.enrol(w.admin, actor_key("nl-admin"), "nfi", ["admin"]), w.sign(
        ev.ORG_KEY, actor_key("nl-admin"), {"org": "bka", "recipient": recipient("z")}))[1],
     "admin-scope"),
    (lambda w: (_key(w, "nfi", "n1"), w.p.submit(ev.ORG_KEY_REVOKE, w.admin, {
        "org": "nfi", "key_id": ev.org_key_id(recipient("n1"))}), w.sign(
        ev.ORG_KEY_REVOKE, w.admin, {"org": "nfi", "key_id": ev.org_key_id(recipient("n1"))}
    ))[2], "revoked-key"),
    (lambda w: (_key(w, "nfi", "n1"), w.sign(ev.ORG_KEY_REVOKE, w.admin, {
        "org": "bka", "key_id": ev.org_key_id(recipient("n1"))}))[1], "unknown-orgkey"),
])
def test_org_key_refusals(build: Callable[[W], Any], code: str) -> None:
    w = W()
    signed = build(w)
    before = copy.deepcopy(w.p.state.records)
    with pytest.raises(RuleViolation) as info:
        w.p.apply(signed)
    assert info.value.rule == code, info.value.message
    assert isinstance(info.value, Conflict) == (code == "duplicate-id")
    assert w.p.state.records == before


def test_an_admin_keys_an_organisation_without_an_admin_and_its_own_admin_then() -> None:
    w = W()
    _key(w, "nfi", "n1")  # bootstrap: nfi has no admin, bka's admin acts for it
    nl_admin = actor_key("nl-admin")
    w.p.enrol(w.admin, nl_admin, "nfi", ["admin"])
    _key(w, "nfi", "n2", actor=nl_admin)
    w.p.submit(ev.ORG_KEY_REVOKE, nl_admin, {"org": "nfi",
                                             "key_id": ev.org_key_id(recipient("n1"))})


@pytest.mark.parametrize("payload", [
    {"org": "nfi", "recipient": "age1" + "b" * 58},          # 'b' is not bech32
    {"org": "nfi", "recipient": "age1" + "q" * 57},          # too short
    {"org": "nfi", "recipient": "AGE1" + "q" * 58},          # upper case
    {"org": "nfi", "recipient": "AGE-SECRET-KEY-1" + "Q" * 58},  # an identity, never!
    {"org": "nfi", "recipient": recipient("n"), "extra": 1},
])
def test_org_key_payload_is_strict(payload: dict[str, Any]) -> None:
    w = W()
    with pytest.raises(InvalidInput):
        w.p.apply(w.sign(ev.ORG_KEY, w.admin, payload))


@pytest.mark.parametrize("key_id", ["00" * 7, "AB" * 8, "0g" * 8, "00" * 9])
def test_org_key_revoke_payload_needs_a_key_id(key_id: str) -> None:
    w = W()
    with pytest.raises(InvalidInput):
        w.p.apply(w.sign(ev.ORG_KEY_REVOKE, w.admin, {"org": "nfi", "key_id": key_id}))


def test_org_keys_apply_without_history_as_on_fabric() -> None:
    """The chaincode applies events with ``Context(history=False)``: no ``hist/`` key."""
    from ledger.core.rules import Context, apply

    w = W()
    signed = w.sign(ev.ORG_KEY, w.admin, {"org": "nfi", "recipient": recipient("n1")})
    eff = apply(w.p.state, signed, Context(w.p.index, w.p.time, history=False))
    assert not any(k.startswith("hist/") for k in eff.writes)
    assert eff.writes["orgkey/nfi"]["current"] == ev.org_key_id(recipient("n1"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["enrol", "revoke"]), st.integers(0, 5)),
                max_size=25))
def test_org_key_records_stay_consistent(ops: list[tuple[str, int]]) -> None:
    """Any sequence of enrolments and revocations (refused or not): at most one key is
    current and it is the record's ``current``; a revoked key never comes back; every
    refusal leaves the state as it was."""
    w = W()
    revoked: set[str] = set()
    for op, n in ops:
        label = f"k{n}"
        if op == "enrol":
            signed = w.sign(ev.ORG_KEY, w.admin, {"org": "nfi", "recipient": recipient(label)})
        else:
            signed = w.sign(ev.ORG_KEY_REVOKE, w.admin,
                            {"org": "nfi", "key_id": ev.org_key_id(recipient(label))})
        before = copy.deepcopy(w.p.state.records)
        refused: RuleViolation | None = None
        try:
            w.p.apply(signed)
        except RuleViolation as exc:
            refused = exc
        if refused is not None:
            assert refused.rule in {"duplicate-id", "unknown-orgkey", "revoked-key"}
            assert w.p.state.records == before
        elif op == "revoke":
            revoked.add(ev.org_key_id(recipient(label)))
        rec = w.p.state.get("orgkey/nfi") or {"current": None, "keys": {}}
        current = [k for k, v in rec["keys"].items() if v["status"] == "current"]
        assert current == ([rec["current"]] if rec["current"] else [])
        assert {k for k, v in rec["keys"].items() if v["status"] == "revoked"} == revoked
        for kid, key in rec["keys"].items():
            assert kid == ev.org_key_id(key["recipient"])


# ---- sealed dispatches and receipts ----------------------------------------------------


def test_a_sealed_dispatch_records_its_seals_and_package() -> None:
    w = W()
    package = w.sealed_transfer()
    tr = w.p.state.get("tr/tr-1")
    assert tr is not None
    assert tr["seals"] == ["S-1", "S-2"]
    assert tr["package"] == {**package, "also_to": []}
    # An unsealed dispatch records no package and its (possibly empty) seals.
    w2 = W()
    w2.open_transfer()
    tr2 = w2.p.state.get("tr/tr-1")
    assert tr2 is not None
    assert tr2["seals"] == []
    assert tr2["package"] is None


def test_a_package_may_also_be_sealed_to_the_senders_current_and_retired_keys() -> None:
    w = W()
    bka_old, _ = w.org_keys()
    _key(w, "bka", "bka-2")
    bka_new = ev.org_key_id(recipient("bka-2"))
    w.p.apply(w.dispatch(package=w.package(also_to=[bka_new, bka_old])))


@pytest.mark.parametrize("case", ["revoked", "unknown", "receivers", "no-key", "stale"])
def test_package_recipients_are_refused(case: str) -> None:
    w = W()
    bka, nfi = w.org_keys()
    also: list[str] = []
    to = nfi
    if case == "revoked":
        w.p.submit(ev.ORG_KEY_REVOKE, w.admin, {"org": "bka", "key_id": bka})
        also = [bka]
    elif case == "unknown":
        also = ["12" * 8]
    elif case == "receivers":  # also_to names keys of the SENDER only
        also = [nfi]
    elif case == "no-key":
        w.p.submit(ev.ORG_KEY_REVOKE, w.admin, {"org": "nfi", "key_id": nfi})
    elif case == "stale":  # nfi rotated: its retired key is no longer the one to seal to
        _key(w, "nfi", "nfi-2")
    with pytest.raises(RuleViolation) as info:
        w.p.apply(w.dispatch(package=w.package(recipient=to, also_to=also)))
    assert info.value.rule == "package-recipient"
    if case == "no-key":
        assert "nfi has no current encryption key" in info.value.message
    if case == "stale":
        assert f"current encryption key of nfi is {ev.org_key_id(recipient('nfi-2'))}" \
            in info.value.message


def test_a_package_to_an_organisation_that_never_had_a_key_is_refused() -> None:
    w = W()
    with pytest.raises(RuleViolation) as info:
        w.p.apply(w.dispatch(package=w.package()))
    assert info.value.rule == "package-recipient"
    assert "nfi has no current encryption key" in info.value.message


@pytest.mark.parametrize("digests", [
    {"sha256": digests_of(b"evidence").sha256},  # sha256 alone is enough
    {"sha256": digests_of(b"evidence").sha256, "md5": "00" * 16},  # legacy: not compared
])
def test_package_plaintext_digests_accepted(digests: dict[str, str]) -> None:
    w = W()
    w.org_keys()
    w.p.apply(w.dispatch(package=w.package(digests=digests)))


def test_package_plaintext_digests_must_all_match() -> None:
    w = W()
    w.org_keys()
    bad = {**digests_of(b"evidence").as_dict(), "sha512": digests_of(b"x").sha512}
    with pytest.raises(RuleViolation) as info:
        w.p.apply(w.dispatch(package=w.package(digests=bad)))
    assert info.value.rule == "package-digests"
    assert "sha512" in info.value.message


@pytest.mark.parametrize("change", [
    {"format": "age-v2"}, {"size": -1}, {"recipient": "AB" * 8},
    {"also_to": ["00" * 8] * 2}, {"also_to": [f"{i:016x}" for i in range(11)]},
    {"digests": {"sha512": digests_of(b"evidence").sha512}}, {"sha256": "00"},
    {"digests": {"sha256": "00" * 32, "crc32": "00"}}, {"extra": True},
])
def test_package_payload_is_strict(change: dict[str, Any]) -> None:
    w = W()
    w.org_keys()
    with pytest.raises(InvalidInput):
        w.p.apply(w.dispatch(package=w.package(**change)))


def test_a_sealed_receipt_with_the_same_seals_and_package_is_accepted() -> None:
    w = W()
    package = w.sealed_transfer()
    eff = w.p.apply(w.receipt(seals=["S-2", "S-1"], package_sha256=package["sha256"]))
    assert eff.result["custodian"] == "nfi"
    tr = w.p.state.get("tr/tr-1")
    art = w.p.state.get("art/art-1")
    assert tr is not None
    assert art is not None
    assert tr["package_received"] == package["sha256"]
    assert tr["seal_discrepancy"] == ""
    assert art["incidents"] == 0


def test_a_seal_discrepancy_is_accepted_as_an_integrity_incident() -> None:
    w = W()
    package = w.sealed_transfer()
    w.p.apply(w.receipt(seals=["S-1"], package_sha256=package["sha256"],
                        seal_discrepancy="seal S-2 missing from the bag; contents intact"))
    tr = w.p.state.get("tr/tr-1")
    art = w.p.state.get("art/art-1")
    assert tr is not None
    assert art is not None
    assert tr["status"] == "accepted"
    assert art["custodian"] == "nfi"
    assert tr["seal_discrepancy"].startswith("seal S-2 missing")
    assert art["incidents"] == 1


def test_seal_mismatch_message_names_both_sets() -> None:
    w = W()
    package = w.sealed_transfer()
    with pytest.raises(RuleViolation) as info:
        w.p.apply(w.receipt(package_sha256=package["sha256"]))
    assert info.value.message == (
        "the seals received (none) differ from those dispatched (S-1, S-2); record a "
        "rejection, or a seal discrepancy with its reason")


def test_a_rejection_may_carry_any_seals_and_package() -> None:
    w = W()
    w.sealed_transfer()
    w.p.apply(w.receipt(outcome="rejected", reason="package broken", seals=["S-9"],
                        package_sha256="cd" * 32))
    tr = w.p.state.get("tr/tr-1")
    art = w.p.state.get("art/art-1")
    assert tr is not None
    assert art is not None
    assert tr["status"] == "rejected"
    assert tr["package_received"] == "cd" * 32
    assert art["incidents"] == 1
    assert art["custodian"] == "bka"


def test_an_accepted_sealed_receipt_must_name_the_package() -> None:
    w = W()
    w.sealed_transfer()
    with pytest.raises(RuleViolation) as info:
        w.p.apply(w.receipt(seals=["S-1", "S-2"]))
    assert info.value.rule == "package-mismatch"


def test_seals_alone_need_the_same_seals_and_no_package() -> None:
    w = W()
    w.p.dispatch(w.admin, "art-1", "nfi", "tr-1", "lb-1", seals=["S-1"])
    with pytest.raises(RuleViolation) as info:
        w.p.apply(w.receipt(seals=["S-1", "S-2"]))
    assert info.value.rule == "seal-mismatch"
    w.p.apply(w.receipt(seals=["S-1"]))


def test_a_transfer_recorded_before_seals_were_kept_still_closes() -> None:
    """A ``tr/`` record written by an older version has no seals or package fields."""
    w = W()
    w.open_transfer()
    old = {k: v for k, v in w.p.state.records["tr/tr-1"].items()
           if k not in ("seals", "package")}
    w.p.state.records["tr/tr-1"] = old
    w.p.apply(w.receipt(seals=["S-7"]))
    tr = w.p.state.get("tr/tr-1")
    assert tr is not None
    assert tr["status"] == "accepted"


# ---- the same bytes registered twice ---------------------------------------------------


def _register(w: W, art: str, case: str, data: bytes = b"evidence", **kw: Any) -> Any:
    d = digests_of(data)
    return w.sign(ev.ARTEFACT_REGISTER, w.admin,
                  {"id": art, "case": case, "size": d.size, "digests": d.as_dict(), **kw})


def test_every_registration_is_indexed_by_its_sha256() -> None:
    w = W()
    sha = digests_of(b"evidence").sha256
    assert w.p.state.get("sha/" + sha) == {"artefacts": [{"id": "art-1", "case": "CASE-1"}]}
    w.p.apply(_register(w, "art-2", "CASE-2"))  # another case: allowed
    w.p.apply(_register(w, "art-3", "CASE-1", duplicate_of="art-1"))
    w.p.apply(_register(w, "art-4", "CASE-1", parents=["art-3"]))
    w.p.case(w.admin, "CASE-3")
    w.p.apply(_register(w, "art-5", "CASE-3", duplicate_of="art-1"))  # any case's artefact
    assert w.p.state.get("sha/" + sha) == {"artefacts": [
        {"id": "art-1", "case": "CASE-1"}, {"id": "art-2", "case": "CASE-2"},
        {"id": "art-3", "case": "CASE-1"}, {"id": "art-4", "case": "CASE-1"},
        {"id": "art-5", "case": "CASE-3"}]}
    rec = w.p.state.get("art/art-3")
    assert rec is not None
    assert rec["duplicate_of"] == "art-1"


def test_duplicate_bytes_names_the_artefacts_of_the_case() -> None:
    w = W()
    w.p.apply(_register(w, "art-3", "CASE-1", duplicate_of="art-1"))
    w.p.apply(_register(w, "art-y", "CASE-2"))
    with pytest.raises(RuleViolation) as info:
        w.p.apply(_register(w, "art-4", "CASE-1"))
    assert info.value.rule == "duplicate-bytes"
    assert "already registered in case CASE-1 as art-1, art-3; register it with " \
        "--duplicate-of ID or --derived-from ID" in info.value.message
    assert "art-y" not in info.value.message  # another case's artefacts are not named
    # Naming a duplicate from another case does not answer for the ones of this case.
    with pytest.raises(RuleViolation) as info:
        w.p.apply(_register(w, "art-4", "CASE-1", duplicate_of="art-y"))
    assert info.value.rule == "duplicate-bytes"


def test_duplicate_of_must_exist() -> None:
    w = W()
    with pytest.raises(RuleViolation) as info:
        w.p.apply(_register(w, "art-4", "CASE-1", duplicate_of="art-none"))
    assert info.value.rule == "unknown-art"
