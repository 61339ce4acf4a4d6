"""The channel's configuration (``configtx.yaml``) for ``configtxgen -outputBlock``.

Written as JSON, which is YAML too, so no YAML library is needed. One profile,
:data:`PROFILE`: an application channel with V2_0 capabilities everywhere, Raft ordering
by the orderer organisation, one anchor peer per organisation, and the v2 lifecycle
policies (approvals and commits need a MAJORITY of the organisations).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from network.msp import Org

PROFILE = "CustodyChannel"
#: Raft: a new leader about ElectionTick x TickInterval after the old one disappears.
RAFT_OPTIONS = {"TickInterval": "500ms", "ElectionTick": 10, "HeartbeatTick": 1,
                "MaxInflightBlocks": 5, "SnapshotIntervalSize": "16 MB"}
BATCH_TIMEOUT = "200ms"
V2 = {"V2_0": True}


@dataclass(frozen=True)
class OrdererNode:
    host: str
    port: int
    tls_cert: Path


@dataclass(frozen=True)
class PeerOrg:
    org: Org
    anchor_host: str
    anchor_port: int


def _sig(rule: str) -> dict[str, str]:
    return {"Type": "Signature", "Rule": rule}


def _meta(rule: str) -> dict[str, str]:
    return {"Type": "ImplicitMeta", "Rule": rule}


def peer_org(p: PeerOrg) -> dict[str, Any]:
    m = p.org.msp_id
    return {
        "Name": m, "ID": m, "MSPDir": str(p.org.msp_dir),
        "Policies": {
            "Readers": _sig(f"OR('{m}.admin', '{m}.peer', '{m}.client')"),
            "Writers": _sig(f"OR('{m}.admin', '{m}.client')"),
            "Admins": _sig(f"OR('{m}.admin')"),
            "Endorsement": _sig(f"OR('{m}.peer')"),
        },
        "AnchorPeers": [{"Host": p.anchor_host, "Port": p.anchor_port}],
    }


def orderer_org(org: Org, nodes: list[OrdererNode]) -> dict[str, Any]:
    m = org.msp_id
    return {
        "Name": m, "ID": m, "MSPDir": str(org.msp_dir),
        "Policies": {
            "Readers": _sig(f"OR('{m}.member')"),
            "Writers": _sig(f"OR('{m}.member')"),
            "Admins": _sig(f"OR('{m}.admin')"),
        },
        "OrdererEndpoints": [f"{n.host}:{n.port}" for n in nodes],
    }


def profile(orderer: dict[str, Any], orgs: list[dict[str, Any]],
            nodes: list[OrdererNode]) -> dict[str, Any]:
    consenters = [{"Host": n.host, "Port": n.port, "ClientTLSCert": str(n.tls_cert),
                   "ServerTLSCert": str(n.tls_cert)} for n in nodes]
    return {
        "Capabilities": V2,
        "Policies": {"Readers": _meta("ANY Readers"), "Writers": _meta("ANY Writers"),
                     "Admins": _meta("MAJORITY Admins")},
        "Orderer": {
            "OrdererType": "etcdraft",
            "BatchTimeout": BATCH_TIMEOUT,
            "BatchSize": {"MaxMessageCount": 100, "AbsoluteMaxBytes": "10 MB",
                          "PreferredMaxBytes": "2 MB"},
            "EtcdRaft": {"Consenters": consenters, "Options": RAFT_OPTIONS},
            "Organizations": [orderer],
            "Policies": {"Readers": _meta("ANY Readers"), "Writers": _meta("ANY Writers"),
                         "Admins": _meta("MAJORITY Admins"),
                         "BlockValidation": _meta("ANY Writers")},
            "Capabilities": V2,
        },
        "Application": {
            "Organizations": orgs,
            "Policies": {"Readers": _meta("ANY Readers"), "Writers": _meta("ANY Writers"),
                         "Admins": _meta("MAJORITY Admins"),
                         "LifecycleEndorsement": _meta("MAJORITY Endorsement"),
                         "Endorsement": _meta("MAJORITY Endorsement")},
            "Capabilities": V2,
        },
    }


def write(path: Path, orderer: Org, nodes: list[OrdererNode], peers: list[PeerOrg]) -> None:
    """Write ``configtx.yaml`` with the one profile :data:`PROFILE`."""
    document = {"Profiles": {PROFILE: profile(
        orderer_org(orderer, nodes), [peer_org(p) for p in peers], nodes)}}
    path.write_text(json.dumps(document, indent=2) + "\n")
