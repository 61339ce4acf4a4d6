"""A real Hyperledger Fabric network on this machine, for the consortium mode.

No Docker: Fabric's own binaries (built once from source, :mod:`network.binaries`) run as
local processes on 127.0.0.1, one peer per organisation (an ISO 3166-1 country code,
MSP id ``<CC>MSP``), 3 or 1 Raft orderers, and one chaincode service per organisation
(``python -m chaincode``) that its peer reaches through the external builder in
``network/builder``. Everything lives in one directory::

    DIR/network.json        the connection profile (written once the network is up)
    DIR/processes.json      pid, start time, command and environment of each process
    DIR/logs/*.log          one log per process and per setup step
    DIR/crypto/             MSP material (network.msp); DIR/config/ core.yaml,
                            orderer.yaml, configtx.yaml, the genesis block
    DIR/orgs/<CC>/node/     empty: kept for the organisation's derived log

The API: :func:`up`, :func:`down`, :func:`status`, :func:`load_profile`,
:func:`raft_leader`, :func:`stop_orderer` / :func:`start_orderer` (and
:func:`stop_node` / :func:`start_node` for any process), :func:`check_msp`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from network.binaries import VERSION
from network.control import (
    down,
    raft_leader,
    start_node,
    start_orderer,
    status,
    stop_node,
    stop_orderer,
)
from network.launch import DEFAULT_ORIGIN, Interrupted, Profile, load_profile, up

if TYPE_CHECKING:
    from network.msp import BadCertificate


def check_msp(folder: Path | str) -> BadCertificate | None:
    """The first wrong certificate of a network's MSP tree (``DIR/crypto``), or None
    (:func:`network.msp.first_bad_certificate`)."""
    from network.msp import first_bad_certificate

    return first_bad_certificate(Path(folder).expanduser().resolve() / "crypto")


__all__ = [
    "DEFAULT_ORIGIN",
    "VERSION",
    "Interrupted",
    "Profile",
    "check_msp",
    "down",
    "load_profile",
    "raft_leader",
    "start_node",
    "start_orderer",
    "status",
    "stop_node",
    "stop_orderer",
    "up",
]
