"""The custody chaincode on a real Fabric network (``fabric_network`` from conftest).

Regression tests for the two fabric-chaincode-python 2.5.4 defects fixed in
``chaincode/shim_fixes.py`` (concurrent transactions on one stream; chaincode events
dropped from COMPLETED), and the state-based endorsement the chaincode sets up: a
cross-border dispatch or its receipt endorsed by one organisation only is refused by
Fabric's validation (ENDORSEMENT_POLICY_FAILURE), endorsed by both it is VALID.

The channel may already hold a ledger (the fixture is shared by the session): if it has
none, these tests create it (genesis by ``tests.conftest.actor_key("admin")``, naming the
first organisation node's log key); otherwise they use that admin, and skip when the
ledger was created with another admin key. Everything else they create has fresh ids.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ledger.core import _sodium
from ledger.core import events as ev
from ledger.core.canonical import parse
from ledger.core.errors import RuleViolation
from ledger.fabric import wire
from ledger.service import ActorKey
from tests.conftest import actor_key, digests_of

pytestmark = pytest.mark.fabric

CONCURRENT = 24
SKEW_MS = 300_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Live:
    """A client of every organisation plus the ledger admin, with helpers to sign and
    submit custody events."""

    def __init__(self, profile: dict[str, Any], admin: ActorKey) -> None:
        from ledger.fabric.client import FabricClient

        self.profile = profile
        self.origin = str(profile["origin"])
        self.orgs = sorted(profile["orgs"])
        for name in self.orgs:
            assert profile["orgs"][name]["msp_id"] == wire.msp_id(name)
        self.client = FabricClient.from_profile(profile, self.orgs[0], timeout=60.0)
        self.admin = admin
        self.suffix = os.urandom(4).hex()

    def get(self, key: str, org: str | None = None) -> dict[str, Any] | None:
        raw = self.client.evaluate(wire.CHAINCODE, wire.FN_GET, [key.encode()], org=org)
        return parse(raw) if raw else None

    def sign(self, kind: str, actor: ActorKey, payload: dict[str, Any],
             prev: str | None = None) -> tuple[ev.SignedEvent, int]:
        now = _now_ms()
        body = ev.Event(kind=kind, origin=self.origin, nonce=os.urandom(16).hex(),
                        claimed_time=now, signer=actor.actor_id, key_id=actor.key_id,
                        payload=payload, prev=prev)
        return ev.sign_event(body, actor.signer), now

    def submit(self, signed_at: tuple[ev.SignedEvent, int],
               endorsers: Sequence[str] | None = None) -> Any:
        signed, now = signed_at
        return self.client.submit(wire.CHAINCODE, wire.FN_SUBMIT, [signed.canonical_bytes()],
                                  endorsers=list(endorsers or self.orgs), timestamp_ms=now)

    def do(self, kind: str, actor: ActorKey, payload: dict[str, Any],
           prev: str | None = None, endorsers: Sequence[str] | None = None) -> Any:
        return self.submit(self.sign(kind, actor, payload, prev), endorsers)

    def new_actor(self, name: str, org: str, roles: list[str]) -> ActorKey:
        key = ActorKey(f"{name}-{self.suffix}", _sodium.Signer(os.urandom(32)))
        self.do(ev.ACTOR_ENROL, self.admin, {
            "id": key.actor_id, "org": org, "name": name, "roles": roles,
            "public_key": _b64(key.signer.public_key)})
        return key

    def head(self, artefact: str) -> str:
        rec = self.get("art/" + artefact)
        assert rec is not None
        return str(rec["head"])


@pytest.fixture(scope="module")
def live(fabric_network: Any, fabric_world: Any) -> Iterator[Live]:
    """The session's ledger (``fabric_world`` creates it first, with this admin)."""
    profile = fabric_network.profile
    admin = actor_key("admin")
    net = Live(profile, admin)
    try:
        if net.get("ledger") is None:
            from ledger.fabric.store import node_keys

            first = net.orgs[0]
            log_key = node_keys(Path(profile["orgs"][first]["node_dir"]), net.origin,
                                first).log.verifier_key
            net.do(ev.GENESIS, admin, {
                "log_key": log_key, "skew_ms": SKEW_MS,
                "org": {"id": "ccl-home", "name": "Home agency", "jurisdiction": first},
                "actor": {"id": admin.actor_id, "org": "ccl-home", "name": "Admin",
                          "roles": ["admin", "prosecutor"],
                          "public_key": _b64(admin.signer.public_key)}})
        record = net.get("actor/" + admin.actor_id)
        if record is None or record["public_key"] != _b64(admin.signer.public_key) \
                or record["status"] != "active" or "admin" not in record["roles"]:
            pytest.skip("the channel's ledger was created with another admin key; these "
                        "tests need tests.conftest.actor_key('admin') as an active admin")
        yield net
    finally:
        net.client.close()


def _admin_org(net: Live) -> tuple[str, str]:
    """(ledger organisation id, jurisdiction) of the admin."""
    actor = net.get("actor/" + net.admin.actor_id)
    assert actor is not None
    org = net.get("org/" + actor["org"])
    assert org is not None
    return str(actor["org"]), str(org["jurisdiction"]).upper()


def test_concurrent_writing_submits_are_all_valid_and_carry_their_event(live: Live) -> None:
    """Defect 1 (concurrent transactions on one chaincode stream) and defect 2 (events
    dropped): CONCURRENT artefact registrations at once, endorsed by every organisation's
    chaincode service, all VALID; every one's chaincode event is in its block."""
    org, _ = _admin_org(live)
    examiner = live.new_actor("ccl-ex", org, ["examiner"])
    case = f"CCL-{live.suffix}"
    live.do(ev.CASE_OPEN, live.admin, {"id": case, "title": "chaincode live test"})
    signed = []
    for i in range(CONCURRENT):
        d = digests_of(f"ccl-{live.suffix}-{i}".encode())
        signed.append(live.sign(ev.ARTEFACT_REGISTER, examiner, {
            "id": f"ccl-{live.suffix}-{i}", "case": case, "size": d.size,
            "digests": d.as_dict()}))
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        committed = list(pool.map(live.submit, signed))

    assert [c.code for c in committed] == ["VALID"] * CONCURRENT
    for (s, _), c in zip(signed, committed, strict=True):
        assert parse(c.payload)["event_id"] == s.event_id
    by_tx = {c.tx_id: s for (s, _), c in zip(signed, committed, strict=True)}
    seen: dict[str, list[tuple[str, bytes]]] = {}
    for org_name in live.orgs:  # every organisation's peer has the same events
        lo, hi = min(c.block for c in committed), max(c.block for c in committed)
        for block in live.client.blocks(lo, hi, org=org_name):
            for tx in block.txs:
                if tx.tx_id in by_tx:
                    assert tx.valid
                    assert seen.setdefault(tx.tx_id, tx.events) == tx.events
    assert set(seen) == set(by_tx)
    for tx_id, events in seen.items():
        assert len(events) == 1
        name, payload = events[0]
        assert name == wire.EVENT_NAME
        body = parse(payload)
        assert body["event_id"] == by_tx[tx_id].event_id
        assert body["kind"] == ev.ARTEFACT_REGISTER
        assert body["result"]["artefact"] == by_tx[tx_id].event.payload["id"]


def test_cross_border_custody_needs_both_organisations(live: Live) -> None:
    """State-based endorsement: dispatch (gate of the receiver + artefact of the sender)
    and receipt (artefact under AND(sender, receiver)) need both organisations."""
    home_org, sender = _admin_org(live)
    others = [o for o in live.orgs if o != sender]
    if sender not in live.orgs or not others:
        pytest.skip("needs two Fabric organisations, one of them the admin's jurisdiction")
    receiver = others[0]
    s = live.suffix
    foreign = f"ccl-org-{s}"
    live.do(ev.ORG_REGISTER, live.admin, {"id": foreign, "name": "Receiving agency",
                                          "jurisdiction": receiver})
    gate = live.get(wire.GATE_PREFIX + receiver)
    assert gate is not None  # created with the first organisation of that jurisdiction
    examiner = live.new_actor("ccl-ex2", home_org, ["examiner"])
    custodian = live.new_actor("ccl-cust", foreign, ["custodian"])
    case = f"CCL2-{s}"
    live.do(ev.CASE_OPEN, live.admin, {"id": case, "title": "cross-border"})
    live.do(ev.CASE_ADD_MEMBER, live.admin, {"case": case, "org": foreign})
    live.do(ev.LEGAL_BASIS, live.admin, {
        "id": f"ccl-lb-{s}", "instrument": "mlat", "reference": "CCL-" + s,
        "issuing_state": receiver, "executing_state": sender, "valid_from": "2020-01-01",
        "valid_until": "2099-12-31", "case": case})
    art = f"ccl-art-{s}"
    d = digests_of(b"cross-border " + s.encode())
    live.do(ev.ARTEFACT_REGISTER, examiner, {"id": art, "case": case, "size": d.size,
                                             "digests": d.as_dict()})

    def refused(signed_at: tuple[ev.SignedEvent, int], endorsers: list[str]) -> None:
        with pytest.raises(RuleViolation) as info:
            live.submit(signed_at, endorsers)
        assert info.value.rule == "endorsement-policy", info.value.message

    # Is a single organisation enough where no key-level policy applies (the chaincode's
    # own policy)? Only then can a one-organisation endorsement show the key policies.
    single: RuleViolation | None = None
    try:
        live.do(ev.ACCESS, examiner, {"artefact": art, "action": "view", "purpose": "check",
                                      "outcome": "success"}, endorsers=[sender])
    except RuleViolation as exc:
        single = exc
    assert single is None or single.rule == "endorsement-policy", single
    single_ok = single is None

    dispatch = live.sign(ev.DISPATCH, examiner, {
        "transfer": f"ccl-tr-{s}", "artefact": art, "to_org": foreign, "purpose": "analysis",
        "legal_basis": f"ccl-lb-{s}"}, prev=live.head(art))
    refused(dispatch, [sender])
    refused(dispatch, [receiver])
    assert live.submit(dispatch, [sender, receiver]).code == "VALID"
    assert live.get("art/" + art)["open_transfer"] == f"ccl-tr-{s}"  # type: ignore[index]

    receipt = live.sign(ev.RECEIPT, custodian, {
        "transfer": f"ccl-tr-{s}", "artefact": art, "outcome": "accepted",
        "recomputed": d.as_dict(), "reason": ""}, prev=live.head(art))
    refused(receipt, [receiver])
    refused(receipt, [sender])
    assert live.submit(receipt, [sender, receiver]).code == "VALID"
    assert live.get("art/" + art)["custodian"] == foreign  # type: ignore[index]

    if single_ok:  # the receiver alone now holds the artefact's policy
        live.do(ev.ACCESS, custodian, {"artefact": art, "action": "view",
                                       "purpose": "check", "outcome": "success"},
                endorsers=[receiver])
