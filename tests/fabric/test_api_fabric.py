"""The API in consortium mode: a server over one organisation's view of the Fabric
network (settings fabric_network + fabric_org), used through RemoteStore like any server."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from api.app import create_app
from api.settings import Settings
from ledger.core.bundle import verify_bundle
from ledger.core.errors import RuleViolation
from ledger.store.remote import ActorLogin, RemoteStore
from tests.fabric.world import FabricWorld

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.fabric


@pytest.fixture
def nl_server(fabric_world: FabricWorld) -> Iterator[tuple[TestClient, RemoteStore]]:
    settings = Settings(fabric_network=fabric_world.dir, fabric_org="NL",  # type: ignore[call-arg]
                        origin=fabric_world.svc.origin)
    app = create_app(settings)
    with TestClient(app) as client:
        login = ActorLogin(str(client.base_url), fabric_world.nl, client=client)
        logins = {fabric_world.nl.actor_id: login}

        def token_of(actor: str) -> str:
            return logins[actor]() if actor in logins else login()

        yield client, RemoteStore(str(client.base_url), token=login, signer_tokens=token_of,
                                  client=client)


def test_settings_need_an_organisation_with_a_network(fabric_world: FabricWorld) -> None:
    with pytest.raises(ValueError, match="fabric_org is required"):
        Settings(fabric_network=fabric_world.dir, origin="x")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="database_url and log_key_path are required"):
        Settings(origin="x")  # type: ignore[call-arg]


def test_a_server_on_the_network_serves_proofs_signed_by_its_organisation(
        fabric_world: FabricWorld, nl_server: tuple[TestClient, RemoteStore]) -> None:
    w = fabric_world
    client, remote = nl_server
    art, _, digests = w.new_artefact("api")
    sent = w.svc.dispatch(w.admin, artefact=art, to_org="nfi", purpose="p",
                          legal_basis="lb-nl")
    nl_key = w.store.nodes["NL"].log_key
    info = client.get("/v1/log/verifier-key")
    assert info.status_code == 200, info.text
    assert nl_key in info.text  # the NL node signs this server's checkpoints
    # A write through the server is a Fabric transaction endorsed by every organisation.
    receipt = w.service(remote).receive(w.nl, transfer=sent.result["transfer"],
                                        digests=digests)
    assert receipt.result["custodian"] == "nfi"
    w.store.sync()
    assert w.store.find_event(receipt.event_id) == receipt.index  # DE's node has it too
    bundle, faults = remote.bundle(artefact_id=art)
    assert faults == []
    result = verify_bundle(bundle, log_key=nl_key, evidence_sha256=digests.sha256)
    assert result.verdict == "authentic", result
    # The rules refuse through the server exactly as on SQLite.
    with pytest.raises(RuleViolation) as refused:
        w.service(remote).dispatch(w.nl, artefact=art, to_org="nfi", purpose="p")
    assert refused.value.rule == "self-dispatch"
