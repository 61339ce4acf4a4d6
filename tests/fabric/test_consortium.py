"""The custody ledger on a real Fabric network of three jurisdictions (DE, NL, FR).

Every test runs against the session's network (tests/fabric/conftest.py) and the one
ledger on it (tests/fabric/world.py)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.core import events as ev
from ledger.core.bundle import verify_bundle
from ledger.core.checkpoint import verify_checkpoint, verify_cosignatures
from ledger.core.errors import Conflict, LedgerError, RuleViolation, UpstreamError
from ledger.core.note import split_note
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore
from tests.conftest import digests_of
from tests.fabric.world import FabricWorld

pytestmark = pytest.mark.fabric


def test_cross_border_story_with_both_endorsements_and_court_verdicts(
        fabric_world: FabricWorld) -> None:
    w = fabric_world
    art, data, digests = w.new_artefact("story")
    sent = w.svc.dispatch(w.admin, artefact=art, to_org="nfi", purpose="analysis",
                          legal_basis="lb-nl")
    transfer = sent.result["transfer"]
    nl_store = w.open("NL")
    nl_svc = w.service(nl_store)
    got = nl_svc.receive(w.nl, transfer=transfer, digests=digests)
    assert got.result["outcome"] == "accepted"
    w.store.sync()  # another process wrote: catch up now rather than within FRESH_MS
    assert w.store.state("art/" + art)["custodian"] == "nfi"  # type: ignore[index]
    # The court's bundle from NL's node: NL's key signs, DE and FR cosign (quorum 2).
    bundle, faults = nl_store.bundle(artefact_id=art)
    assert faults == []
    witnesses = list(nl_store.witness_keys().values())
    good = verify_bundle(bundle, log_key=nl_store.log_key, evidence_sha256=digests.sha256,
                         witnesses=witnesses, quorum=2)
    assert good.verdict == "authentic", good
    tampered = digests_of(data[:-1] + b"\x00").sha256
    bad = verify_bundle(bundle, log_key=nl_store.log_key, evidence_sha256=tampered,
                        witnesses=witnesses, quorum=2)
    assert bad.verdict == "mismatch"


def test_cross_border_dispatch_endorsed_by_the_sender_only_is_rejected_at_validation(
        fabric_world: FabricWorld) -> None:
    w = fabric_world
    art, _, _ = w.new_artefact("one-sided")
    before = w.store.size()
    head = w.store.state("art/" + art)
    one_sided = w.service(w.open("DE", endorsers=["DE"]))
    with pytest.raises(RuleViolation) as info:
        one_sided.dispatch(w.admin, artefact=art, to_org="nfi", purpose="p",
                           legal_basis="lb-nl")
    assert info.value.rule == "endorsement-policy"
    assert "NL" in str(info.value)
    assert w.store.size() == before
    assert w.store.state("art/" + art) == head
    # A domestic step needs only the custodian: DE alone may record an access.
    one_sided.access(w.admin, artefact=art, action="view", purpose="check")
    w.store.sync()
    assert w.store.size() == before + 1


def test_receipt_of_a_cross_border_transfer_needs_both_organisations(
        fabric_world: FabricWorld) -> None:
    w = fabric_world
    art, _, digests = w.new_artefact("receipt-both")
    transfer = w.svc.dispatch(w.admin, artefact=art, to_org="gn", purpose="p",
                              legal_basis="lb-fr").result["transfer"]
    fr_only = w.service(w.open("FR", endorsers=["FR"]))
    with pytest.raises(RuleViolation) as info:
        fr_only.receive(w.fr, transfer=transfer, digests=digests)
    assert info.value.rule == "endorsement-policy"
    w.store.sync()
    assert w.store.state("art/" + art)["custodian"] == "bka"  # type: ignore[index]
    both = w.service(w.open("FR", endorsers=["FR", "DE"]))
    assert both.receive(w.fr, transfer=transfer, digests=digests).result["custodian"] == "gn"


def test_two_concurrent_dispatches_of_one_artefact_exactly_one_is_valid(
        fabric_world: FabricWorld) -> None:
    w = fabric_world
    art, _, _ = w.new_artefact("race")
    head = w.store.state("art/" + art)["head"]  # type: ignore[index]
    stores = [w.open("DE"), w.open("DE")]
    events = [w.svc.event(ev.DISPATCH, w.admin, {
        "transfer": f"tr-race-{n}-{art}", "artefact": art, "to_org": to, "to_actor": None,
        "purpose": "race", "legal_basis": lb, "transport": {"method": "", "reference": ""},
        "seals": []}, prev=head) for n, (to, lb) in enumerate((("nfi", "lb-nl"),
                                                               ("gn", "lb-fr")))]
    outcomes: list[Any] = [None, None]
    barrier = threading.Barrier(2)

    def run(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = stores[n].append(events[n])
        except LedgerError as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.store.sync()
    won = [o for o in outcomes if not isinstance(o, LedgerError)]
    lost = [o for o in outcomes if isinstance(o, LedgerError)]
    assert len(won) == 1, outcomes
    assert len(lost) == 1
    assert isinstance(lost[0], Conflict)  # MVCC conflict or stale head / open dispatch
    rec = w.store.state("art/" + art)
    assert rec is not None
    assert rec["open_transfer"] == won[0].result["transfer"]
    assert [w.store.find_event(e.event_id) is not None for e in events].count(True) == 1


def test_every_organisation_derives_the_same_checkpoint_at_every_block(
        fabric_world: FabricWorld) -> None:
    w = fabric_world
    w.new_artefact("same-root")
    nodes = w.store.nodes
    for _ in range(50):  # peers commit a block moments apart: wait until all have it
        w.store.sync()
        heights = {org: n.store.fabric_height() for org, n in nodes.items()}
        if len(set(heights.values())) == 1:
            break
        time.sleep(0.2)
    assert len({h for h in heights.values()}) == 1, heights  # same block number and hash
    sizes = {org: {b: n.store.fabric_block_size(b) for b in range(heights["DE"][0] + 1)}
             for org, n in nodes.items()}  # type: ignore[index]
    assert sizes["DE"] == sizes["NL"] == sizes["FR"]
    for size in sorted({s for s in sizes["DE"].values() if s}):
        bodies = {org: split_note(n.store.checkpoint_at(size))[0] for org, n in nodes.items()}
        assert len(set(bodies.values())) == 1, (size, bodies)
    # Each node signs with its own key; the other two cosign its newest checkpoint.
    latest = nodes["DE"].store.size()
    for org, node in nodes.items():
        note = node.store.cosigned_note(latest)
        verify_checkpoint(note, node.log_key)
        others = [n.keys.witness_key for o, n in nodes.items() if o != org]
        assert len(verify_cosignatures(note, others, 2)) == 2


def test_audit_passes_on_every_node_and_catches_a_tampered_node(
        fabric_world: FabricWorld, tmp_path: Path) -> None:
    w = fabric_world
    w.new_artefact("audit")
    w.store.sync()
    keys = w.store.node_keys()
    for node in w.store.nodes.values():
        report = audit_store(node.store, log_verifier_key=node.log_key, genesis_log_keys=keys)
        assert report.ok, report
    # Tamper with a copy of NL's derived log: one leaf's ledger time changed.
    nl = w.store.nodes["NL"]
    copy = tmp_path / "nl.db"
    with sqlite3.connect(nl.dir / "ledger.db") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as db:
        db.execute("DROP TRIGGER entries_no_update")
        db.execute("UPDATE entries SET ledger_time = ledger_time + 1 WHERE idx = 3")
    tampered = SqlStore.open(f"sqlite:///{copy}", signer=None, clock=lambda: 0)
    try:
        report = audit_store(tampered, log_verifier_key=nl.log_key, genesis_log_keys=keys)
    finally:
        tampered.close()
    assert not report.ok
    assert report.first_bad_index == 3


def test_a_retried_submission_is_idempotent(fabric_world: FabricWorld) -> None:
    w = fabric_world
    art, _, _ = w.new_artefact("retry")
    signed = w.svc.event(ev.ACCESS, w.admin, {"artefact": art, "action": "view",
                                              "purpose": "retry", "outcome": "success"})
    first = w.store.append(signed)
    again = w.open("DE").append(signed)
    assert again.duplicate
    assert (again.index, again.leaf_hash) == (first.index, first.leaf_hash)


def test_raft_leader_killed_during_a_stream_of_submits(fabric_world: FabricWorld) -> None:
    import network

    w = fabric_world
    if len(w.profile["orderers"]) < 3:
        pytest.skip("needs 3 Raft orderers")
    art, _, _ = w.new_artefact("raft")
    store = w.open("DE")
    svc = w.service(store)
    acknowledged: dict[str, int] = {}
    events = [svc.event(ev.ACCESS, w.admin, {"artefact": art, "action": "view",
                                             "purpose": f"raft-{n}", "outcome": "success"})
              for n in range(24)]
    leader = network.raft_leader(w.dir)
    stopped = False
    for n, signed in enumerate(events):
        if n == 8:
            network.stop_orderer(w.dir, leader)
            stopped = True
        deadline = time.monotonic() + 120
        while True:  # a client retries the SAME signed event until it is acknowledged
            try:
                acknowledged[signed.event_id] = store.append(signed).index
                break
            except (UpstreamError, LedgerError) as exc:
                if isinstance(exc, RuleViolation) and not isinstance(exc, Conflict):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    if stopped:
        network.start_orderer(w.dir, leader)
        assert network.raft_leader(w.dir, timeout=60) is not None  # leave a leader behind
    assert len(acknowledged) == len(events)
    for signed in events:
        assert store.find_event(signed.event_id) == acknowledged[signed.event_id]
    indices = sorted(acknowledged.values())
    assert len(set(indices)) == len(indices)  # nothing duplicated
    logged = [e for e in store.entries(indices[0], indices[-1] + 1)]
    assert len(logged) == indices[-1] - indices[0] + 1
    # The stream continues after the election.
    svc.access(w.admin, artefact=art, action="view", purpose="after")


def test_a_node_copy_left_behind_catches_up_from_its_peer(fabric_world: FabricWorld,
                                                          tmp_path: Path) -> None:
    """A node directory restored from an older copy takes in the missing blocks and ends
    at the same checkpoint as the others."""
    w = fabric_world
    fr = w.store.nodes["FR"]
    shutil.copytree(fr.dir, tmp_path / "fr-old")
    w.new_artefact("catch-up")
    profile = dict(w.profile)
    profile["orgs"] = {**profile["orgs"],
                       "FR": {**profile["orgs"]["FR"], "node_dir": str(tmp_path / "fr-old")}}
    # And a node whose derived log was moved away (keys kept) derives it again from block 0.
    fresh = tmp_path / "fr-fresh"
    fresh.mkdir()
    for key in ("log.key", "witness.key"):
        shutil.copy2(fr.dir / key, fresh / key)
    from ledger.fabric.client import FabricClient
    from ledger.fabric.store import FabricStore
    from ledger.home import now_ms

    old = FabricStore(profile, "FR", clock=now_ms,
                      chains={"FR": FabricClient.from_profile(profile, "FR")})
    profile2 = {**profile, "orgs": {**profile["orgs"],
                                    "FR": {**profile["orgs"]["FR"], "node_dir": str(fresh)}}}
    again = FabricStore(profile2, "FR", clock=now_ms,
                        chains={"FR": FabricClient.from_profile(profile2, "FR")})
    try:
        w.store.sync()
        size = min(again.node.store.size(), w.store.nodes["FR"].store.size())
        assert size > 10
        assert split_note(again.node.store.checkpoint_at(size))[0] == \
            split_note(w.store.nodes["FR"].store.checkpoint_at(size))[0]
        assert again.node.log_key == fr.log_key
    finally:
        again.close()
    try:
        w.store.sync()
        assert old.node.store.fabric_height() == w.store.nodes["FR"].store.fabric_height()
        caught_up = split_note(old.node.store.latest_checkpoint() or "")[0]
        assert caught_up == split_note(w.store.nodes["FR"].store.latest_checkpoint() or "")[0]
        size = old.node.store.size()  # DE's peer may be a block ahead: compare at one size
        assert caught_up == split_note(w.store.nodes["DE"].store.checkpoint_at(size))[0]
    finally:
        old.close()
