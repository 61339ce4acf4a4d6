"""The custody chaincode without Fabric: a dict-backed fake stub, and the real shim
(``python -m chaincode``) driven over gRPC by a fake peer.

* every accepted event leaves the same world state as the pure rules / SQLite (index
  fields aside: they are provisional on Fabric), never a ``hist/`` key;
* every refusal comes back as ``wire.encode_error`` of the same class and rule;
* key-level endorsement policies and gate keys per event;
* determinism: the same transaction twice gives identical writes, in the same order;
* the shim fixes: version pin, concurrent transactions on one stream, chaincode events.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chaincode import contract, policy, shim_fixes
from ledger.core import events as ev
from ledger.core.canonical import canonical, parse
from ledger.core.errors import Conflict, InvalidInput, LedgerError, RuleViolation
from ledger.core.rules import Effects
from ledger.fabric import wire
from tests.conftest import PureLedger, actor_key, digests_of
from tests.unit.test_rules import CASES, W

ROOT = Path(__file__).resolve().parents[2]
#: Record fields that hold a log index: provisional (0) on Fabric.
INDEX_FIELDS = frozenset({"registered_at", "enrolled_at", "revoked_at", "opened_at",
                          "recorded_at", "dispatched_at", "closed_at", "index"})


# ---- the fake stub ---------------------------------------------------------------------


class FabricWorld:
    """Committed world state (key -> bytes) and key-level policies (key -> bytes)."""

    def __init__(self, records: dict[str, Any] | None = None) -> None:
        self.state: dict[str, bytes] = {
            k: canonical(v) for k, v in (records or {}).items() if not k.startswith("hist/")}
        self.policies: dict[str, bytes] = {}

    def commit(self, stub: FakeStub) -> None:
        for op, key, value in stub.ops:
            (self.state if op == "put" else self.policies)[key] = value

    def records(self) -> dict[str, Any]:
        return {k: parse(v) for k, v in self.state.items()
                if not k.startswith(wire.GATE_PREFIX)}


class FakeStub:
    """What the chaincode sees of one transaction; records what it does."""

    def __init__(self, world: FabricWorld, fn: str, args: list[str], ts_ms: int,
                 txid: str = "tx-1") -> None:
        self.world, self.fn, self.args, self.ts_ms, self.txid = world, fn, args, ts_ms, txid
        self.reads: list[str] = []
        self.ops: list[tuple[str, str, bytes]] = []
        self.events: list[tuple[str, bytes]] = []

    def get_function_and_parameters(self) -> tuple[str, list[str]]:
        return self.fn, list(self.args)

    def get_tx_timestamp(self) -> Any:
        return SimpleNamespace(seconds=self.ts_ms // 1000, nanos=self.ts_ms % 1000 * 1_000_000)

    def get_txid(self) -> str:
        return self.txid

    async def get_state(self, key: str) -> bytes:
        self.reads.append(key)
        return self.world.state.get(key, b"")

    async def put_state(self, key: str, value: bytes) -> None:
        assert isinstance(value, bytes)
        self.ops.append(("put", key, value))

    async def set_state_validation_parameter(self, key: str, policy_bytes: bytes) -> None:
        self.ops.append(("policy", key, policy_bytes))

    def set_event(self, name: str, payload: bytes) -> None:
        self.events.append((name, payload))

    @property
    def puts(self) -> dict[str, bytes]:
        return {k: v for op, k, v in self.ops if op == "put"}

    @property
    def policies(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        return {k: decode_policy(v) for op, k, v in self.ops if op == "policy"}


def decode_policy(raw: bytes) -> tuple[int, tuple[str, ...]]:
    """(n of the n-out-of rule, MSP ids of its PEER principals)."""
    from fabric_protos.common import policies_pb2 as pol
    from fabric_protos.msp import msp_principal_pb2 as pr

    env = pol.SignaturePolicyEnvelope.FromString(raw)
    msps = []
    for ident in env.identities:
        assert ident.principal_classification == pr.MSPPrincipal.ROLE
        role = pr.MSPRole.FromString(ident.principal)
        assert role.role == pr.MSPRole.PEER
        msps.append(role.msp_identifier)
    rules = env.rule.n_out_of.rules
    assert [r.signed_by for r in rules] == list(range(len(msps)))
    return env.rule.n_out_of.n, tuple(msps)


def run(stub: FakeStub) -> contract.Outcome:
    return asyncio.run(contract.invoke(stub))


def submit_args(signed: ev.SignedEvent) -> list[str]:
    return [signed.canonical_bytes().decode()]


def normalised(records: dict[str, Any]) -> dict[str, Any]:
    def norm(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: norm(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if key in INDEX_FIELDS and isinstance(value, int):
            return 0
        return value
    return {k: norm(v) for k, v in records.items() if not k.startswith("hist/")}


class TwinLedger(PureLedger):
    """A PureLedger whose every event also goes through the chaincode on a fake Fabric
    world; both must agree on acceptance, refusal and resulting state."""

    def __init__(self) -> None:
        super().__init__()
        self.fabric = FabricWorld()
        self.last: FakeStub | None = None
        self.outcome: contract.Outcome | None = None

    def apply(self, signed: Any, ledger_time: int | None = None) -> Effects:
        ts = ledger_time or self.time
        stub = FakeStub(self.fabric, wire.FN_SUBMIT, submit_args(signed), ts,
                        txid=f"tx-{self.index}")
        outcome = run(stub)
        self.last, self.outcome = stub, outcome
        refusal: LedgerError | None = None
        try:
            effects = super().apply(signed, ledger_time)
        except LedgerError as exc:
            refusal = exc
        if refusal is not None:
            assert not outcome.ok
            assert stub.ops == []
            assert stub.events == []
            decoded = wire.decode_error(outcome.message)
            assert type(decoded) is type(refusal)
            assert getattr(decoded, "rule", None) == getattr(refusal, "rule", None)
            raise refusal
        assert outcome.ok, outcome.message
        self.fabric.commit(stub)
        assert normalised(self.fabric.records()) == normalised(self.state.records)
        return effects


def twin_world() -> tuple[TwinLedger, dict[str, Any]]:
    """BKA (DE, genesis), NFI (NL), LKA (DE), DGSI (FR); CASE-1 with all of them;
    art-1 and art-2 registered by BKA; an MLAT NL<->DE."""
    p = TwinLedger()
    keys = {name: actor_key(name) for name in ("admin", "nl-cust", "lka-cust", "fr-cust")}
    p.genesis(keys["admin"])
    p.org(keys["admin"], "nfi", "NL")
    p.org(keys["admin"], "lka", "DE")
    p.org(keys["admin"], "dgsi", "FR")
    p.enrol(keys["admin"], keys["nl-cust"], "nfi", ["custodian"])
    p.enrol(keys["admin"], keys["lka-cust"], "lka", ["custodian"])
    p.enrol(keys["admin"], keys["fr-cust"], "dgsi", ["custodian"])
    p.case(keys["admin"], "CASE-1", members=("nfi", "lka", "dgsi"))
    p.legal_basis(keys["admin"], "lb-1", "NL", "DE", case="CASE-1")
    p.register(keys["admin"], "art-1", "CASE-1")
    p.register(keys["admin"], "art-2", "CASE-1", data=b"second")
    return p, keys


# ---- ping, get, the same rules ----------------------------------------------------------


def test_ping_answers_pong_without_state() -> None:
    stub = FakeStub(FabricWorld(), wire.FN_PING, [], 0)
    assert run(stub) == contract.Outcome(True, b"pong")
    assert stub.reads == []
    assert stub.ops == []
    assert stub.events == []


def test_get_returns_the_record_bytes_or_empty() -> None:
    p, _ = twin_world()
    stub = FakeStub(p.fabric, wire.FN_GET, ["art/art-1"], 0)
    out = run(stub)
    assert out.ok
    assert parse(out.payload)["id"] == "art-1"
    assert run(FakeStub(p.fabric, wire.FN_GET, ["art/none"], 0)) == contract.Outcome(True, b"")
    assert stub.ops == []
    assert stub.events == []


def test_the_chaincode_leaves_the_same_state_as_sqlite(tmp_path: Path) -> None:
    """The realistic ledger of tests/helpers, appended on SQLite, replayed entry by entry
    through the chaincode (ledger time = tx timestamp): same records, index aside."""
    import sqlalchemy as sa

    from ledger.core.events import Entry
    from ledger.store import schema as t
    from tests.helpers.ledger_builder import build_ledger, leaves

    built = build_ledger(tmp_path / "ledger", seed=3, artefacts=4)
    world = FabricWorld()
    for idx, leaf, _hash, _time in leaves(built.store):
        entry = Entry.from_leaf(leaf)
        stub = FakeStub(world, wire.FN_SUBMIT, submit_args(entry.signed), entry.ledger_time,
                        txid=f"tx-{idx}")
        out = run(stub)
        assert out.ok, (idx, out.message)
        assert parse(out.payload) == {"event_id": entry.signed.event_id,
                                      "result": parse(out.payload)["result"]}
        world.commit(stub)
    with built.store.engine.connect() as conn:
        sql = {k: parse(v) for k, v in conn.execute(sa.select(t.state.c.key, t.state.c.value))}
    assert any(k.startswith("hist/") for k in sql)
    assert not any(k.startswith("hist/") for k in world.state)
    assert normalised(world.records()) == normalised(sql)


def test_submit_result_and_event() -> None:
    p, keys = twin_world()
    signed = p.sign(ev.DISPATCH, keys["admin"],
                    p.dispatch_payload("art-1", "nfi", "tr-1", "lb-1"), prev=p.head("art-1"))
    effects = p.apply(signed)
    assert p.outcome is not None
    assert p.last is not None
    assert p.outcome.payload == canonical({"event_id": signed.event_id,
                                           "result": effects.result})
    assert p.last.events == [(wire.EVENT_NAME, canonical({
        "event_id": signed.event_id, "kind": ev.DISPATCH, "result": effects.result}))]


# ---- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(CASES))
def test_every_refusal_comes_back_as_the_same_error(code: str) -> None:
    w = W()
    signed = CASES[code](w)
    world = FabricWorld(copy.deepcopy(w.p.state.records))
    with pytest.raises(RuleViolation) as info:
        w.p.apply(signed)
    stub = FakeStub(world, wire.FN_SUBMIT, submit_args(signed), w.p.time)
    out = run(stub)
    assert not out.ok
    assert out.message.startswith("custody-error ")
    decoded = wire.decode_error(out.message)
    assert type(decoded) is type(info.value)
    assert isinstance(decoded, RuleViolation)
    assert decoded.rule == code
    assert isinstance(decoded, Conflict) == isinstance(info.value, Conflict)
    assert decoded.message == info.value.message
    assert stub.ops == []
    assert stub.events == []


@pytest.mark.parametrize(("fn", "args"), [
    (wire.FN_SUBMIT, ["{not json"]),
    (wire.FN_SUBMIT, ['{"event": {}, "sig": "x"}']),
    (wire.FN_SUBMIT, ["[" * 5000 + "]" * 5000]),
    (wire.FN_SUBMIT, []),
    (wire.FN_GET, []),
    ("no-such-function", []),
])
def test_malformed_calls_are_invalid_input(fn: str, args: list[str]) -> None:
    stub = FakeStub(FabricWorld(), fn, args, 0)
    out = run(stub)
    assert not out.ok
    assert isinstance(wire.decode_error(out.message), InvalidInput), out.message
    assert stub.ops == []
    assert stub.events == []


def test_unexpected_failures_give_a_generic_message() -> None:
    class Broken(FakeStub):
        async def get_state(self, key: str) -> bytes:
            raise OSError("the peer went away; secret payload bytes")

    p, keys = twin_world()
    signed = p.sign(ev.ACCESS, keys["admin"], {"artefact": "art-1", "action": "view",
                                               "purpose": "review", "outcome": "success"})
    out = run(Broken(p.fabric, wire.FN_SUBMIT, submit_args(signed), p.time))
    assert out == contract.Outcome(False, message=contract.INTERNAL_ERROR)
    assert wire.decode_error(out.message) is None


def test_a_transaction_without_timestamp_is_refused() -> None:
    class NoTime(FakeStub):
        def get_tx_timestamp(self) -> Any:
            return None

    p, keys = twin_world()
    signed = p.sign(ev.ACCESS, keys["admin"], {"artefact": "art-1", "action": "view",
                                               "purpose": "review", "outcome": "success"})
    out = run(NoTime(p.fabric, wire.FN_SUBMIT, submit_args(signed), p.time))
    assert isinstance(wire.decode_error(out.message), InvalidInput)


# ---- key-level endorsement policies -----------------------------------------------------


def test_genesis_and_org_registration_create_gates_once() -> None:
    p = TwinLedger()
    admin = actor_key("admin")
    p.genesis(admin)
    assert p.last is not None
    assert p.last.policies == {"gate/DE": (1, ("DEMSP",))}
    assert "gate/DE" in p.last.reads
    assert "gate/DE" in p.last.puts
    p.org(admin, "nfi", "NL")
    assert p.last.policies == {"gate/NL": (1, ("NLMSP",))}
    p.org(admin, "lka", "DE")  # DE has its gate already: read, not rewritten
    assert "gate/DE" in p.last.reads
    assert p.last.policies == {}
    assert "gate/DE" not in p.last.puts
    assert sorted(k for k in p.fabric.state if k.startswith("gate/")) == ["gate/DE", "gate/NL"]


def test_register_gives_the_custodian_alone() -> None:
    p, keys = twin_world()
    p.register(keys["admin"], "art-3", "CASE-1", data=b"third")
    assert p.last is not None
    assert p.last.policies == {"art/art-3": (1, ("DEMSP",))}


def test_cross_border_dispatch_needs_both_and_writes_the_receiver_gate_blind() -> None:
    p, keys = twin_world()
    p.dispatch(keys["admin"], "art-1", "nfi", "tr-1", "lb-1")
    stub = p.last
    assert stub is not None
    assert stub.policies == {"art/art-1": (2, ("DEMSP", "NLMSP"))}
    assert "gate/NL" in stub.puts
    assert "gate/NL" not in stub.reads
    assert not any(k.startswith(wire.GATE_PREFIX) for k in stub.reads)
    assert [k for k in stub.puts if k.startswith(wire.GATE_PREFIX)] == ["gate/NL"]
    # the receipt writes art/art-1 (policy AND(DE, NL) as committed) and leaves NL alone
    p.receive(keys["nl-cust"], "art-1", "tr-1")
    assert p.last is not None
    assert p.last.policies == {"art/art-1": (1, ("NLMSP",))}
    assert not any(k.startswith(wire.GATE_PREFIX) for k in p.last.puts)
    assert p.fabric.policies["art/art-1"] == policy.signature_policy(("NLMSP",))


def test_a_rejected_receipt_leaves_the_sender_in_charge() -> None:
    p, keys = twin_world()
    p.dispatch(keys["admin"], "art-1", "nfi", "tr-1", "lb-1")
    p.receive(keys["nl-cust"], "art-1", "tr-1", data=b"tampered", outcome="rejected")
    assert p.last is not None
    assert p.last.policies == {"art/art-1": (1, ("DEMSP",))}


def test_domestic_dispatch_has_no_gate() -> None:
    p, keys = twin_world()
    p.dispatch(keys["admin"], "art-2", "lka", "tr-2")
    assert p.last is not None
    assert p.last.policies == {"art/art-2": (1, ("DEMSP",))}
    assert not any(k.startswith(wire.GATE_PREFIX) for k in p.last.puts)
    p.receive(keys["lka-cust"], "art-2", "tr-2", data=b"second")
    assert p.last.policies == {"art/art-2": (1, ("DEMSP",))}


def test_plan_is_pure_and_sorted() -> None:
    orgs = {"org/a": {"jurisdiction": "fr"}, "org/b": {"jurisdiction": "DE"}}
    writes = {"tr/t": {"from_org": "a", "to_org": "b"},
              "art/x": {"open_transfer": "t", "custodian": "a"}}
    plan = policy.plan(ev.DISPATCH, writes, orgs)
    assert plan == policy.Plan(new_gates=(), blind_gates=("gate/DE",),
                               policies=(("art/x", ("DEMSP", "FRMSP")),))
    assert decode_policy(policy.signature_policy(("DEMSP", "FRMSP"))) == (2, ("DEMSP", "FRMSP"))
    with pytest.raises(ValueError, match="at least one"):
        policy.signature_policy(())


# ---- determinism, no history ------------------------------------------------------------


def test_two_runs_write_identically_in_sorted_order() -> None:
    p, keys = twin_world()
    signed = p.sign(ev.DISPATCH, keys["admin"],
                    p.dispatch_payload("art-1", "nfi", "tr-1", "lb-1"), prev=p.head("art-1"))
    runs = []
    for _ in range(2):
        stub = FakeStub(copy.deepcopy(p.fabric), wire.FN_SUBMIT, submit_args(signed), p.time,
                        txid="same-tx")
        out = run(stub)
        assert out.ok, out.message
        runs.append((out, stub.reads, stub.ops, stub.events))
    assert runs[0] == runs[1]
    put_keys = [k for op, k, _ in runs[0][2] if op == "put"]
    assert put_keys == sorted(put_keys)
    ops = [op for op, _, _ in runs[0][2]]
    assert ops == sorted(ops, key=lambda op: op != "put")  # every put before the policies


def test_no_history_keys_are_read_or_written() -> None:
    p, keys = twin_world()
    p.dispatch(keys["admin"], "art-1", "nfi", "tr-1", "lb-1")
    assert p.last is not None
    assert not any(k.startswith("hist/") for k in p.last.reads)
    assert not any(k.startswith("hist/") for k in p.fabric.state)
    assert any(k.startswith("hist/") for k in p.state.records)  # the pure ledger has them


# ---- shim fixes -------------------------------------------------------------------------


def test_shim_fixes_refuse_another_version() -> None:
    with pytest.raises(RuntimeError) as info:
        shim_fixes.check_version("2.5.5")
    text = str(info.value)
    assert "2.5.4" in text
    assert "2.5.5" in text
    assert text.count(". ") == 0
    assert text.endswith(".")
    shim_fixes.check_version()  # the pinned version is what is installed


def test_server_options_accept_the_peers_pings() -> None:
    opts = dict(shim_fixes.server_options())
    assert opts["grpc.keepalive_permit_without_calls"] == 1
    assert opts["grpc.http2.min_recv_ping_interval_without_data_ms"] <= 60_000


def test_missing_environment_is_one_sentence() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CHAINCODE_SERVER_ADDRESS", "CORE_CHAINCODE_ID_NAME")}
    proc = subprocess.run([sys.executable, "-m", "chaincode"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "CHAINCODE_SERVER_ADDRESS" in proc.stderr
    assert "CORE_CHAINCODE_ID_NAME" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ---- the real shim over gRPC, with a fake peer ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chaincode_service() -> Iterator[str]:
    """``python -m chaincode`` listening on a free loopback port."""
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "CHAINCODE_SERVER_ADDRESS": address,
           "CORE_CHAINCODE_ID_NAME": "custody:0123"}
    proc = subprocess.Popen([sys.executable, "-m", "chaincode"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        host, port = address.split(":")
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
                break
            time.sleep(0.1)
        else:
            proc.kill()
            pytest.fail("chaincode service did not start: " + proc.communicate()[0].decode())
        yield address
    finally:
        proc.terminate()
        try:
            output = proc.communicate(timeout=20)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0].decode()
    assert proc.returncode == 0, output
    assert "evidence" not in output
    assert "put_state" not in output


def _signed_proposal(ts_ms: int, args: list[bytes]) -> Any:
    from fabric_protos.common import common_pb2 as cm
    from fabric_protos.msp import identities_pb2 as ids
    from fabric_protos.peer import chaincode_pb2 as cc
    from fabric_protos.peer import proposal_pb2 as pp

    chdr = cm.ChannelHeader(type=cm.ENDORSER_TRANSACTION, channel_id=wire.CHANNEL)
    chdr.timestamp.seconds, chdr.timestamp.nanos = ts_ms // 1000, ts_ms % 1000 * 1_000_000
    shdr = cm.SignatureHeader(creator=ids.SerializedIdentity(mspid="DEMSP").SerializeToString(),
                              nonce=b"n" * 24)
    header = cm.Header(channel_header=chdr.SerializeToString(),
                       signature_header=shdr.SerializeToString())
    payload = pp.ChaincodeProposalPayload(input=cc.ChaincodeInvocationSpec(
        chaincode_spec=cc.ChaincodeSpec(input=cc.ChaincodeInput(args=args))).SerializeToString())
    proposal = pp.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return pp.SignedProposal(proposal_bytes=proposal.SerializeToString(), signature=b"sig")


async def _fake_peer(address: str, world: dict[str, bytes],
                     calls: list[tuple[str, int, list[bytes]]]) -> list[Any]:
    """Connect like a peer, run every call as a concurrent transaction, answer the
    chaincode's state requests from ``world``; return the COMPLETED messages in order."""
    import grpc
    from fabric_protos.peer import chaincode_pb2 as cc
    from fabric_protos.peer import chaincode_shim_pb2 as shim
    from fabric_protos.peer import chaincode_shim_pb2_grpc as shim_grpc

    msg = shim.ChaincodeMessage
    async with grpc.aio.insecure_channel(address) as channel:
        call = shim_grpc.ChaincodeStub(channel).Connect()
        lock = asyncio.Lock()

        async def write(m: Any) -> None:
            async with lock:
                await call.write(m)

        first = await call.read()
        assert first.type == msg.REGISTER
        assert cc.ChaincodeID.FromString(first.payload).name == "custody:0123"
        await write(msg(type=msg.REGISTERED))
        await write(msg(type=msg.READY))
        loop = asyncio.get_running_loop()
        done: dict[str, asyncio.Future[Any]] = {f"tx{i}": loop.create_future()
                                                for i in range(len(calls))}

        async def answer() -> None:
            while True:
                m = await call.read()
                if m is grpc.aio.EOF:
                    return
                if m.type == msg.COMPLETED:
                    done[m.txid].set_result(m)
                elif m.type == msg.GET_STATE:
                    key = shim.GetState.FromString(m.payload).key
                    await write(msg(type=msg.RESPONSE, txid=m.txid, channel_id=m.channel_id,
                                    payload=world.get(key, b"")))
                else:  # PUT_STATE, PUT_STATE_METADATA: accepted, nothing stored
                    await write(msg(type=msg.RESPONSE, txid=m.txid, channel_id=m.channel_id))

        reader = asyncio.create_task(answer())
        await asyncio.gather(*(
            write(msg(type=msg.TRANSACTION, txid=f"tx{i}", channel_id=wire.CHANNEL,
                      payload=cc.ChaincodeInput(args=[fn.encode(), *args]).SerializeToString(),
                      proposal=_signed_proposal(ts, [fn.encode(), *args])))
            for i, (fn, ts, args) in enumerate(calls)))
        try:
            return list(await asyncio.wait_for(asyncio.gather(*done.values()), 60))
        finally:
            call.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def test_concurrent_submits_over_the_real_shim_all_complete_with_their_event(
        chaincode_service: str) -> None:
    """Regression for both shim defects: 60 concurrent transactions that each read and
    write state complete on one stream (defect 1), each COMPLETED carries its chaincode
    event (defect 2); refusals come back in the response message."""
    from fabric_protos.peer import proposal_response_pb2 as prp

    p, keys = twin_world()
    world = dict(p.fabric.state)
    calls: list[tuple[str, int, list[bytes]]] = []
    events: list[ev.SignedEvent] = []
    for i in range(60):
        d = digests_of(f"conc-{i}".encode())
        signed = p.sign(ev.ARTEFACT_REGISTER, keys["admin"], {
            "id": f"conc-{i}", "case": "CASE-1", "size": d.size, "digests": d.as_dict()})
        events.append(signed)
        calls.append((wire.FN_SUBMIT, p.time, [signed.canonical_bytes()]))
    calls.append((wire.FN_PING, p.time, []))
    calls.append((wire.FN_SUBMIT, p.time, [events[0].canonical_bytes().replace(b"conc", b"bad")]))
    replies = asyncio.run(_fake_peer(chaincode_service, world, calls))

    for signed, reply in zip(events, replies, strict=False):
        resp = prp.Response.FromString(reply.payload)
        assert resp.status == 200, resp.message
        assert parse(resp.payload)["event_id"] == signed.event_id
        assert reply.chaincode_event.event_name == wire.EVENT_NAME
        body = parse(reply.chaincode_event.payload)
        assert body["event_id"] == signed.event_id
        assert body["kind"] == ev.ARTEFACT_REGISTER
    pong = prp.Response.FromString(replies[60].payload)
    assert (pong.status, pong.payload) == (200, b"pong")
    assert not replies[60].HasField("chaincode_event")
    refused = prp.Response.FromString(replies[61].payload)
    assert refused.status == 500
    assert isinstance(wire.decode_error(refused.message), LedgerError)


def test_an_error_class_unknown_to_the_client_travels_as_its_nearest_base() -> None:
    from ledger.core.errors import CheckpointRefused, VerificationError

    message = contract._encode(CheckpointRefused("the checkpoint is not signed"))
    decoded = wire.decode_error(message)
    assert type(decoded) is VerificationError
    assert decoded.message == "the checkpoint is not signed"
