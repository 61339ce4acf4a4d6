"""Organisation encryption keys, sealed dispatches and repeated bytes on a real SQL store
(SQLite, and PostgreSQL with ``CUSTODY_TEST_PG_URL``), through the service use cases.

Every story ends with a full audit (the rules replayed from the log, the state map and
checkpoints recomputed) and, where custody moved, the court's verification from proofs,
which must agree with the state on custodian and integrity incidents."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ledger import views
from ledger.core import events as ev
from ledger.core.errors import NotFound, RuleViolation
from ledger.store.audit_sql import audit_store
from tests.conftest import digests_of
from tests.integration.conftest import EVIDENCE, World

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def recipient(label: str) -> str:
    raw = hashlib.sha256(label.encode()).digest() * 2
    return "age1" + "".join(_BECH32[b % 32] for b in raw[:58])


def _audited(world: World) -> None:
    report = audit_store(world.store)
    assert report.ok, report


def _log_key(world: World) -> str:
    return str(world.store.state("ledger")["log_key"])  # type: ignore[index]


def _package(world: World, **kw: Any) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(b"age " + EVIDENCE).hexdigest(),
            "size": len(EVIDENCE) + 200, "format": "age-v1",
            "recipient": ev.org_key_id(recipient("nfi-1")),
            "digests": world.digests.as_dict(), **kw}


def test_org_keys_through_the_service(world: World) -> None:
    svc, admin = world.svc, world.admin
    first = svc.enrol_org_key(admin, "nfi", recipient("nfi-1"))
    assert first.result["key_id"] == ev.org_key_id(recipient("nfi-1"))
    svc.enrol_org_key(admin, "nfi", recipient("nfi-2"))
    rec = svc.org_keys("nfi")
    assert rec["current"] == ev.org_key_id(recipient("nfi-2"))
    assert rec["keys"][first.result["key_id"]]["status"] == "retired"
    size = world.store.size()
    with pytest.raises(RuleViolation) as info:
        svc.enrol_org_key(admin, "nfi", recipient("nfi-1"))
    assert info.value.rule == "duplicate-id"
    with pytest.raises(NotFound):
        svc.revoke_org_key(admin, "nfi", "00" * 8, "no such key")
    with pytest.raises(NotFound):
        svc.enrol_org_key(admin, "nowhere", recipient("x"))
    assert world.store.size() == size  # refusals write nothing
    svc.revoke_org_key(admin, "nfi", rec["current"], "laptop stolen")
    rec = svc.org_keys("nfi")
    assert rec["current"] is None
    assert rec["keys"][ev.org_key_id(recipient("nfi-2"))]["reason"] == "laptop stolen"
    assert svc.org_keys("lka") == {"org": "lka", "current": None, "keys": {}}
    _audited(world)


def test_a_sealed_transfer_with_a_seal_discrepancy(world: World) -> None:
    svc, admin = world.svc, world.admin
    svc.enrol_org_key(admin, "bka", recipient("bka-1"))
    svc.enrol_org_key(admin, "nfi", recipient("nfi-1"))
    package = _package(world, also_to=[ev.org_key_id(recipient("bka-1"))])
    # Sealed to the sender's own key only: refused, nothing written.
    size = world.store.size()
    with pytest.raises(RuleViolation) as info:
        svc.dispatch(admin, artefact=world.art, to_org="nfi", purpose="analysis",
                     legal_basis=world.lb, seals=["S-1", "S-2"],
                     package={**package, "recipient": ev.org_key_id(recipient("bka-1"))})
    assert info.value.rule == "package-recipient"
    assert world.store.size() == size
    tr = svc.dispatch(admin, artefact=world.art, to_org="nfi", purpose="analysis",
                      legal_basis=world.lb, seals=["S-1", "S-2"], package=package,
                      transfer_id="tr-sealed").result["transfer"]
    rec = world.store.state("tr/" + tr)
    assert rec is not None
    assert rec["seals"] == ["S-1", "S-2"]
    assert rec["package"] == package
    # One seal is missing: acceptance needs the discrepancy stated.
    with pytest.raises(RuleViolation) as info:
        svc.receive(world.nl, transfer=tr, digests=world.digests, seals=["S-1"],
                    package_sha256=package["sha256"])
    assert info.value.rule == "seal-mismatch"
    receipt = svc.receive(world.nl, transfer=tr, digests=world.digests, seals=["S-1"],
                          package_sha256=package["sha256"],
                          seal_discrepancy="seal S-2 torn off in transit")
    assert receipt.result["outcome"] == "accepted"
    art = world.store.state("art/" + world.art)
    rec = world.store.state("tr/" + tr)
    assert art is not None
    assert rec is not None
    assert (art["custodian"], art["incidents"]) == ("nfi", 1)
    assert (rec["package_received"], rec["seal_discrepancy"]) == (
        package["sha256"], "seal S-2 torn off in transit")
    _audited(world)
    # The court's verdict, from proofs alone, agrees with the state.
    result = views.verify(world.store, log_key=_log_key(world), sha256=world.digests.sha256)
    assert result.verdict == "authentic", result.faults
    assert (result.custodian, result.incidents) == ("nfi", 1)


def test_a_different_package_is_rejected_by_the_service(world: World) -> None:
    svc, admin = world.svc, world.admin
    svc.enrol_org_key(admin, "nfi", recipient("nfi-1"))
    package = _package(world)
    tr = svc.dispatch(admin, artefact=world.art, to_org="nfi", purpose="analysis",
                      legal_basis=world.lb, package=package).result["transfer"]
    receipt = svc.receive(world.nl, transfer=tr, digests=world.digests,
                          package_sha256="ee" * 32)
    assert receipt.result["outcome"] == "rejected"
    rec = world.store.state("tr/" + tr)
    assert rec is not None
    assert rec["package_received"] == "ee" * 32
    assert world.store.state("art/" + world.art)["custodian"] == "bka"  # type: ignore[index]
    _audited(world)


def test_the_same_bytes_twice_in_a_case(world: World) -> None:
    svc, admin = world.svc, world.admin
    size = world.store.size()
    with pytest.raises(RuleViolation) as info:
        svc.register(admin, case="CASE-1", digests=world.digests, artefact_id="art-copy")
    assert info.value.rule == "duplicate-bytes"
    assert "already registered in case CASE-1 as art-1" in info.value.message
    assert world.store.size() == size
    assert world.store.state("art/art-copy") is None
    svc.register(admin, case="CASE-1", digests=world.digests, artefact_id="art-copy",
                 duplicate_of="art-1", exhibit="DE-01b")
    svc.register(admin, case="CASE-1", digests=world.digests, artefact_id="art-derived",
                 parents=["art-copy"])
    svc.open_case(admin, "CASE-2")
    svc.register(admin, case="CASE-2", digests=world.digests, artefact_id="art-other")
    with pytest.raises(RuleViolation) as info:
        svc.register(admin, case="CASE-2", digests=digests_of(b"something else"),
                     artefact_id="art-wrong", duplicate_of="art-1")
    assert info.value.rule == "duplicate-of"
    index = world.store.state("sha/" + world.digests.sha256)
    assert index == {"artefacts": [
        {"id": "art-1", "case": "CASE-1"}, {"id": "art-copy", "case": "CASE-1"},
        {"id": "art-derived", "case": "CASE-1"}, {"id": "art-other", "case": "CASE-2"}]}
    assert world.store.state("art/art-copy")["duplicate_of"] == "art-1"  # type: ignore[index]
    _audited(world)


def test_org_keys_through_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Server mode: ``org add`` and ``org key rotate`` create the key on the admin's own
    machine and submit the signed event; only the organisation's own admin may rotate
    it once it has one; ``org key show`` reads the directory record through the server."""
    from tests.integration.test_server_story import custody, join, ok, serving

    monkeypatch.delenv("CUSTODY_SERVER", raising=False)
    monkeypatch.delenv("CUSTODY_PASSPHRASE", raising=False)
    op, nl = tmp_path / "operator", tmp_path / "nfi-admin"
    ok(custody(op, "init", "--origin", "hub.example/custody", "--org-name", "Hub",
               "--org-id", "hub", "--jurisdiction", "NL", "--no-passphrase", "--json"))
    with serving(op) as url:
        added = ok(custody(op, "org", "add", "--name", "NFI", "--jurisdiction", "NL",
                           "--json", server=url)).json
        assert (op / "keys" / "orgs" / "nfi.key").exists()
        key = join(nl, url, "nl-admin")
        ok(custody(op, "actor", "enrol", "--org", "nfi", "--name", "NL Admin", "--role",
                   "admin", "--id", "nl-admin", "--public-key", key, server=url))
        refused = custody(op, "org", "key", "rotate", "nfi", server=url)
        assert refused.code == 3, refused.err
        assert "only an admin of nfi" in refused.err
        assert sorted(p.name for p in (op / "keys" / "orgs").iterdir()) == ["hub.key",
                                                                            "nfi.key"]
        rotated = ok(custody(nl, "org", "key", "rotate", "nfi", "--json")).json
        assert rotated["retired"] == added["org_key_id"]
        assert (nl / "keys" / "orgs" / "nfi.key").exists()
        shown = ok(custody(nl, "org", "key", "show", "nfi", "--json")).json
        assert shown["current"] == rotated["key_id"]
        assert [k["local"] for k in shown["keys"]] == [False, True]
        ok(custody(nl, "org", "key", "revoke", "nfi", added["org_key_id"], "--reason",
                   "held by the operator"))
        shown = ok(custody(op, "org", "key", "show", "nfi", "--json", server=url)).json
        assert [k["status"] for k in shown["keys"]] == ["revoked", "current"]
    assert ok(custody(op, "audit", "--json")).json["ok"] is True
