"""The Fabric backend's derived log, on a fake chain (fast; the real network is in
tests/fabric/). The fake chain orders transactions into blocks and applies the same rules
with ``history=False``, as the chaincode does; each organisation's node derives the log
from the blocks alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.core import events as ev
from ledger.core.bundle import verify_bundle
from ledger.core.checkpoint import verify_checkpoint, verify_cosignatures
from ledger.core.errors import Conflict, IntegrityFault, RuleViolation
from ledger.core.rules import Context, MemoryState, apply
from ledger.fabric import wire
from ledger.fabric.store import FabricStore
from ledger.service import Custody
from tests.conftest import CountingRandom, FakeClock, actor_key, digests_of

ORIGIN = "custody.consortium"


@dataclass
class Tx:
    tx_id: str
    timestamp_ms: int
    code: str
    chaincode: str | None
    fn: str | None
    args: list[bytes]


@dataclass
class Block:
    number: int
    header_hash: bytes
    previous_hash: bytes
    txs: list[Tx] = field(default_factory=list)


@dataclass
class Committed:
    tx_id: str
    block: int
    code: str


class FakeChain:
    """One ordering service shared by every organisation's view."""

    def __init__(self) -> None:
        self.world = MemoryState()
        genesis = Block(0, hashlib.sha256(b"config").digest(), b"", [Tx("cfg", 0, "VALID",
                                                                         None, None, [])])
        self.blocks_: list[Block] = [genesis]
        self.pending: list[Tx] = []
        self.batch = 1  # transactions per block

    def _cut(self) -> None:
        prev = self.blocks_[-1]
        number = prev.number + 1
        digest = hashlib.sha256(prev.header_hash + repr(number).encode()
                                + b"".join(t.tx_id.encode() for t in self.pending)).digest()
        self.blocks_.append(Block(number, digest, prev.header_hash, self.pending))
        self.pending = []

    def submit(self, chaincode: str, fn: str, args: list[bytes], **kw: Any) -> Committed:
        signed = ev.SignedEvent.from_json(json.loads(args[0]))
        effects = apply(self.world, signed, Context(0, kw["timestamp_ms"], history=False))
        self.world.commit(effects)
        tx = Tx(hashlib.sha256(args[0]).hexdigest(), kw["timestamp_ms"], "VALID", chaincode,
                fn, list(args))
        self.pending.append(tx)
        if len(self.pending) >= self.batch:
            self._cut()
        return Committed(tx.tx_id, self.blocks_[-1].number, "VALID")

    def invalid(self, args: list[bytes]) -> None:
        """A transaction that failed validation (e.g. MVCC): in a block, not VALID."""
        self.pending.append(Tx("bad", 1, "MVCC_READ_CONFLICT", wire.CHAINCODE, wire.FN_SUBMIT,
                               args))
        self._cut()

    def view(self) -> OrgView:
        return OrgView(self)


@dataclass
class OrgView:
    chain: FakeChain
    closed: bool = False

    def submit(self, chaincode: str, fn: str, args: list[bytes], **kw: Any) -> Committed:
        return self.chain.submit(chaincode, fn, args, **kw)

    def height(self, org: str | None = None) -> int:
        return len(self.chain.blocks_)

    def blocks(self, start: int, stop: int | None = None, *,
               org: str | None = None) -> Iterator[Block]:
        stop = len(self.chain.blocks_) - 1 if stop is None else stop
        yield from self.chain.blocks_[start:stop + 1]

    def close(self) -> None:
        self.closed = True


def profile(tmp: Path, orgs: Sequence[str]) -> dict[str, Any]:
    return {"origin": ORIGIN, "channel": "custody", "chaincode": "custody",
            "orgs": {o: {"msp_id": wire.msp_id(o), "node_dir": str(tmp / o / "node")}
                     for o in orgs}}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[FakeChain, FabricStore, Custody, FakeClock]]:
    chain, clock = FakeChain(), FakeClock()
    store = FabricStore(profile(tmp_path, ["DE", "NL", "FR"]), "DE", clock=clock,
                        chains={o: chain.view() for o in ("DE", "NL", "FR")})
    svc = Custody(store, origin=ORIGIN, clock=clock, random=CountingRandom("fab"))
    yield chain, store, svc, clock
    store.close()


def story(store: FabricStore, svc: Custody) -> dict[str, Any]:
    admin, nl = actor_key("admin"), actor_key("nl-cust")
    svc.genesis(admin, org_id="bka", org_name="BKA", jurisdiction="DE", actor_name="A",
                roles=["admin", "examiner", "custodian", "prosecutor"], log_key=store.log_key)
    svc.add_org(admin, "nfi", "NFI", "NL")
    svc.enrol(admin, actor_id="nl-cust", org="nfi", name="N", roles=["custodian"],
              public_key=nl.signer.public_key)
    svc.open_case(admin, "CASE-1", "t")
    svc.add_member(admin, "CASE-1", "nfi")
    d = digests_of(b"evidence")
    svc.register(admin, case="CASE-1", digests=d, artefact_id="art-1")
    svc.add_legal_basis(admin, instrument="mlat", reference="M", issuing_state="NL",
                        executing_state="DE", valid_from="2020-01-01",
                        valid_until="2099-01-01", case="CASE-1", basis_id="lb-1")
    return {"admin": admin, "nl": nl, "digests": d}


def test_every_node_derives_the_same_log_and_cosigns_the_others(net: Any) -> None:
    chain, store, svc, _ = net
    story(store, svc)
    store.sync()  # the other local nodes follow, and cosign, at a sync
    roots = {o: n.store.latest_checkpoint() for o, n in store.nodes.items()}
    bodies = {o: note.split("\n\n")[0] for o, note in roots.items()}  # type: ignore[union-attr]
    assert len(set(bodies.values())) == 1  # same origin, size, root and state-map root
    size = store.size()
    assert size == 7
    for org, node in store.nodes.items():
        note = node.store.cosigned_note(size)
        verify_checkpoint(note, node.log_key)
        others = [n.keys.witness_key for o2, n in store.nodes.items() if o2 != org]
        assert len(verify_cosignatures(note, others, 2)) == 2
    # Fabric world state and the derived state agree on every custody record.
    for key, value in chain.world.records.items():
        if not key.startswith(("nonce/",)):
            derived = store.state(key)
            assert derived is not None
            assert {k: v for k, v in derived.items() if not k.endswith("_at")} == \
                {k: v for k, v in value.items() if not k.endswith("_at")}


def test_receipts_positions_and_history_come_from_block_order(net: Any) -> None:
    _chain, store, svc, _ = net
    w = story(store, svc)
    receipt = svc.dispatch(w["admin"], artefact="art-1", to_org="nfi", purpose="p",
                           legal_basis="lb-1")
    assert receipt.index == 7
    assert not receipt.duplicate
    assert store.entry(7).leaf_hash == receipt.leaf_hash
    hist = store.state("hist/art/art-1")
    assert hist is not None
    assert hist["n"] == 2
    assert hist["last"] == 7
    bundle, faults = store.bundle(artefact_id="art-1")
    assert faults == []
    result = verify_bundle(bundle, log_key=store.log_key, evidence_sha256=w["digests"].sha256,
                           witnesses=list(store.witness_keys().values()), quorum=2)
    assert result.verdict == "authentic", result
    tampered = verify_bundle(bundle, log_key=store.log_key, evidence_sha256="00" * 32)
    assert tampered.verdict == "mismatch"


def test_a_retried_event_returns_the_original_receipt(net: Any) -> None:
    _, store, svc, _ = net
    w = story(store, svc)
    signed = svc.event(ev.ACCESS, w["admin"], {"artefact": "art-1", "action": "view",
                                               "purpose": "x", "outcome": "success"})
    first = store.append(signed)
    again = store.append(signed)
    assert again.duplicate
    assert (again.index, again.leaf_hash) == (first.index, first.leaf_hash)
    assert store.size() == first.index + 1


def test_a_refused_event_is_raised_and_writes_nothing(net: Any) -> None:
    _, store, svc, _ = net
    w = story(store, svc)
    before = store.size()
    with pytest.raises(RuleViolation) as info:
        svc.dispatch(w["nl"], artefact="art-1", to_org="bka", purpose="p", legal_basis="lb-1")
    assert info.value.rule == "not-custodian"
    assert store.size() == before


def test_invalid_transactions_and_several_per_block_are_taken_in_correctly(net: Any) -> None:
    chain, store, svc, clock = net
    w = story(store, svc)
    chain.batch = 3
    events = [svc.event(ev.ACCESS, w["admin"], {"artefact": "art-1", "action": "view",
                                                "purpose": str(i), "outcome": "success"})
              for i in range(3)]
    for s in events[:2]:
        chain.submit(wire.CHAINCODE, wire.FN_SUBMIT, [json.dumps(s.to_json()).encode()],
                     timestamp_ms=clock())
    chain.invalid([json.dumps(events[2].to_json()).encode()])  # cuts the block
    store.sync()
    assert store.size() == 9  # the two VALID ones, not the MVCC-invalid one
    assert store.find_event(events[2].event_id) is None
    assert {o: n.store.size() for o, n in store.nodes.items()} == {"DE": 9, "NL": 9, "FR": 9}


def test_a_node_whose_log_was_edited_stops_with_a_divergence(net: Any, tmp_path: Path) -> None:
    chain, store, svc, _ = net
    story(store, svc)
    # A block whose VALID transaction carries no signed event: the chain and the rules
    # disagree, nothing of the block is taken in.
    chain.pending.append(Tx("junk", 1, "VALID", wire.CHAINCODE, wire.FN_SUBMIT, [b"{}"]))
    chain._cut()
    before = store.node.store.size()
    with pytest.raises(IntegrityFault) as info:
        store.sync()
    assert info.value.kind == "divergence"
    assert store.node.store.size() == before


def test_replay_refused_by_the_chain_when_the_log_lacks_it_is_raised(net: Any) -> None:
    chain, store, svc, _ = net
    w = story(store, svc)
    signed = svc.event(ev.ACCESS, w["admin"], {"artefact": "art-1", "action": "view",
                                               "purpose": "x", "outcome": "success"})
    chain.world.records["nonce/" + signed.event.nonce] = {"event_id": "other"}
    with pytest.raises(Conflict):
        store.append(signed)


def test_each_node_audits_against_its_own_key_and_a_genesis_naming_a_node_key(net: Any) -> None:
    from ledger.store.audit_sql import audit_store

    _, store, svc, _ = net
    story(store, svc)
    store.sync()
    for node in store.nodes.values():
        report = audit_store(node.store, log_verifier_key=node.log_key,
                             genesis_log_keys=store.node_keys())
        assert report.ok, report
        assert report.tree_size == 7
    nl = store.nodes["NL"]
    # Without the founding node's key, the genesis names an unknown key: refused.
    bad = audit_store(nl.store, log_verifier_key=nl.log_key, genesis_log_keys=[nl.log_key])
    assert not bad.ok
    assert bad.kind == "checkpoint"
    # Without genesis_log_keys the ordinary rule holds: the genesis key is DE's, not NL's.
    assert not audit_store(nl.store, log_verifier_key=nl.log_key).ok
