"""The Fabric client (ledger/fabric/client.py) against the real network of the session
(``fabric_network`` from tests/fabric/conftest.py): endorse at every organisation, order,
wait for the validation code, read blocks back; fail over to the next orderer when one is
unreachable or stopped (a stopped Raft leader included).

The refusal of a one-organisation endorsement by the state-based endorsement policies
(ENDORSEMENT_POLICY_FAILURE -> RuleViolation ``endorsement-policy``) is exercised through
this client by tests/fabric/test_chaincode_live.py, which builds the custody records that
carry those policies.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from ledger.core import errors as er
from ledger.fabric import wire
from ledger.fabric.client import Endpoint, FabricClient

pytestmark = pytest.mark.fabric


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dead_endpoint(like: Endpoint) -> Endpoint:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Endpoint(f"127.0.0.1:{port}", like.tls_ca_pem, like.server_name)


@pytest.fixture(scope="module")
def profile(fabric_network: Any) -> dict[str, Any]:
    return dict(fabric_network.profile)


@pytest.fixture(scope="module")
def orgs(profile: dict[str, Any]) -> list[str]:
    return sorted(profile["orgs"])


@pytest.fixture(scope="module")
def client(profile: dict[str, Any], orgs: list[str]) -> Iterator[FabricClient]:
    with FabricClient.from_profile(profile, orgs[0], timeout=60.0) as c:
        yield c


def test_ping_through_every_organisation_is_valid(client: FabricClient, orgs: list[str],
                                                  profile: dict[str, Any]) -> None:
    before = client.height()
    stamp = _now_ms()
    done = client.submit(wire.CHAINCODE, wire.FN_PING, [], timestamp_ms=stamp)
    assert done.code == "VALID"
    assert done.block >= before
    assert done.payload == b"pong"
    (block,) = client.blocks(done.block, done.block)
    (tx,) = [t for t in block.txs if t.tx_id == done.tx_id]
    assert tx.code == "VALID"
    assert tx.type == "ENDORSER_TRANSACTION"
    assert (tx.chaincode, tx.fn, tx.args) == (wire.CHAINCODE, wire.FN_PING, [])
    assert tx.timestamp_ms == stamp
    assert tx.creator_msp == profile["orgs"][orgs[0]]["msp_id"]
    assert sorted(tx.endorsers) == sorted(profile["orgs"][o]["msp_id"] for o in orgs)
    assert tx.response_payload == b"pong"
    assert block.data_hash_ok
    # every organisation's peer holds the same block
    for org in orgs[1:]:
        (theirs,) = client.blocks(done.block, done.block, org=org, timeout=30)
        assert theirs.header_hash == block.header_hash


def test_submit_args_and_one_endorser(client: FabricClient, orgs: list[str]) -> None:
    """ping ignores its arguments (UTF-8: the Python shim decodes them as text); the
    chaincode-level policy accepts one organisation."""
    args = ["ünïcode".encode(), b"", b"two words", b"\x00nul"]
    done = client.submit(wire.CHAINCODE, wire.FN_PING, args, endorsers=[orgs[-1]])
    assert done.code == "VALID"
    (block,) = client.blocks(done.block, done.block)
    (tx,) = [t for t in block.txs if t.tx_id == done.tx_id]
    assert tx.args == args
    assert len(tx.endorsers) == 1


def test_evaluate_get_of_a_missing_key_is_empty(client: FabricClient, orgs: list[str]) -> None:
    key = f"no-such-record/{os.urandom(8).hex()}".encode()
    for org in orgs:
        assert client.evaluate(wire.CHAINCODE, wire.FN_GET, [key], org=org) == b""


def test_a_refusal_is_the_ledger_exception(client: FabricClient) -> None:
    """A malformed event is refused by the chaincode with its own exception class."""
    with pytest.raises(er.LedgerError) as info:
        client.submit(wire.CHAINCODE, wire.FN_SUBMIT, [b"{not json"])
    assert not isinstance(info.value, er.UpstreamError), info.value.message


def test_blocks_from_genesis(client: FabricClient) -> None:
    height = client.height()
    chain = list(client.blocks(0))
    assert [b.number for b in chain] == list(range(height))
    genesis = chain[0]
    assert genesis.txs[0].type == "CONFIG"
    assert genesis.txs[0].chaincode is None
    assert genesis.txs[0].code == "VALID"
    for a, b in itertools.pairwise(chain):
        assert b.previous_hash == a.header_hash, f"block {b.number} does not link"
    assert all(b.data_hash_ok for b in chain)
    stamps = [t.timestamp_ms for b in chain for t in b.txs if t.type == "ENDORSER_TRANSACTION"]
    assert all(s > 1_600_000_000_000 for s in stamps)


def test_heights_agree(client: FabricClient, orgs: list[str]) -> None:
    done = client.submit(wire.CHAINCODE, wire.FN_PING, [])
    for org in orgs:
        deadline = time.monotonic() + 30
        while client.height(org) <= done.block:
            assert time.monotonic() < deadline, f"{org}'s peer did not reach block {done.block}"
            time.sleep(0.2)


def test_concurrent_submits_through_one_client(client: FabricClient) -> None:
    with ThreadPoolExecutor(12) as pool:
        done = list(pool.map(lambda _: client.submit(wire.CHAINCODE, wire.FN_PING, []),
                             range(36)))
    assert {d.code for d in done} == {"VALID"}
    assert len({d.tx_id for d in done}) == 36


def test_an_unreachable_orderer_is_skipped(profile: dict[str, Any], orgs: list[str]) -> None:
    c = FabricClient.from_profile(profile, orgs[0], timeout=60.0)
    with FabricClient(c.identity, c.channel, c.peers,
                      [_dead_endpoint(c.orderers[0]), *c.orderers], timeout=60.0) as tricky:
        assert tricky.submit(wire.CHAINCODE, wire.FN_PING, []).code == "VALID"
    c.close()


class RecordingClient(FabricClient):
    """Records every Broadcast attempt: (orderer address, status or gRPC code)."""

    attempts: list[tuple[str, str]]

    def _broadcast_once(self, endpoint: Endpoint, env: Any, timeout: float) -> tuple[int, str]:
        try:
            status, info = super()._broadcast_once(endpoint, env, timeout)
        except grpc.RpcError as exc:
            self.attempts.append((endpoint.address, str(exc.code())))
            raise
        self.attempts.append((endpoint.address, str(status)))
        return status, info


def test_a_stopped_raft_leader_is_skipped(fabric_network: Any, profile: dict[str, Any],
                                          orgs: list[str]) -> None:
    import network

    if len(profile["orderers"]) < 3:
        pytest.skip("a stopped orderer needs a 3-orderer network to keep a Raft quorum")
    leader = network.raft_leader(fabric_network.dir, timeout=30)
    assert leader is not None, "no Raft leader"
    c = FabricClient.from_profile(profile, orgs[0], timeout=60.0)
    # the stopped leader first in the list: the client must move on to the others
    order = [c.orderers[leader], *(o for i, o in enumerate(c.orderers) if i != leader)]
    assert network.stop_orderer(fabric_network.dir, leader)
    try:
        with RecordingClient(c.identity, c.channel, c.peers, order, timeout=60.0) as tricky:
            tricky.attempts = []
            t0 = time.monotonic()
            done = tricky.submit(wire.CHAINCODE, wire.FN_PING, [], commit_timeout=60)
            assert done.code == "VALID"
            elapsed = time.monotonic() - t0
            attempts = list(tricky.attempts)
            assert attempts[0][0] == order[0].address      # the stopped leader came first
            assert "UNAVAILABLE" in attempts[0][1]
            assert attempts[-1] == (attempts[-1][0], "200")
            again = tricky.submit(wire.CHAINCODE, wire.FN_PING, [])
            assert again.block > done.block
            assert tricky.attempts[-1][0] == attempts[-1][0]   # the good orderer stays first
        print(f"\nfirst submit with the Raft leader down: {elapsed:.1f} s, attempts: {attempts}")
    finally:
        c.close()
        network.start_orderer(fabric_network.dir, leader)
    assert network.raft_leader(fabric_network.dir, timeout=30) is not None
