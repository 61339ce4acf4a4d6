"""Fixtures for the tests that run a REAL Hyperledger Fabric network (marker ``fabric``).

``fabric_network`` brings up ONE network per test session: organisations DE, NL and FR
(one peer and one chaincode service each) and 3 Raft orderers, in a temporary directory,
through :func:`network.up`; it is stopped (``network.down``) when the session ends. It
returns a :class:`network.Profile`: ``.dir`` (the network's directory) and ``.profile``
(``network.json`` parsed).

Nothing is skipped: without Go and without cached binaries (``$CUSTODY_FABRIC_CACHE``,
default ``~/.cache/custody-ledger/fabric/<version>``) the fixture FAILS, saying what to
install. The first run builds the binaries (70-140 s on 2 cores).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import network
from tests.fabric.world import FabricWorld, build

ORGS = ("DE", "NL", "FR")
ORDERERS = 3


@pytest.fixture(scope="session")
def fabric_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[network.Profile]:
    folder = tmp_path_factory.mktemp("fabric") / "network"
    profile = network.up(list(ORGS), folder, orderers=ORDERERS)
    try:
        yield profile
    finally:
        network.down(folder)


@pytest.fixture(scope="session")
def fabric_world(fabric_network: network.Profile) -> Iterator[FabricWorld]:
    """The one custody ledger on the session's network (tests/fabric/world.py)."""
    world = build(fabric_network.dir)
    try:
        yield world
    finally:
        world.close()
