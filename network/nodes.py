"""Where everything of a network lives, and how each Fabric program is configured.

Every node reads Fabric's own ``core.yaml`` / ``orderer.yaml`` (copied into
``DIR/config``) and is configured on top with environment variables: addresses, MSP and
TLS paths, data directories, keep-alive and gossip timings. All addresses are on
127.0.0.1; every peer and orderer listener uses TLS.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from network import package

if TYPE_CHECKING:  # network.msp needs cryptography (the fabric extra): load it only to up
    from network.msp import Identity, Org

HOST = "127.0.0.1"
ORDERER_MSP = "OrdererMSP"
#: Clients (the Python client, the chaincode's peer connection) may ping this often.
KEEPALIVE_MIN = "5s"
#: Gossip on loopback: fast membership so that every organisation's peer knows the
#: others (anchor peers) within seconds rather than half a minute.
GOSSIP = {
    "ALIVETIMEINTERVAL": "1s", "ALIVEEXPIRATIONTIMEOUT": "10s", "RECONNECTINTERVAL": "2s",
    "MEMBERSHIPTRACKERINTERVAL": "1s", "PULLINTERVAL": "1s",
    "REQUESTSTATEINFOINTERVAL": "1s", "PUBLISHSTATEINFOINTERVAL": "1s",
    "PUBLISHCERTPERIOD": "5s", "DIALTIMEOUT": "2s", "CONNTIMEOUT": "2s",
    "USELEADERELECTION": "false", "ORGLEADER": "true",
}


@dataclass(frozen=True)
class Layout:
    """The paths of a network directory."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "config"

    @property
    def crypto(self) -> Path:
        return self.dir / "crypto"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def block(self) -> Path:
        return self.config / "custody.block"

    @property
    def builder(self) -> Path:
        return self.dir / "builder"

    @property
    def profile(self) -> Path:
        return self.dir / "network.json"

    def org(self, cc: str) -> Path:
        return self.dir / "orgs" / cc

    def node_dir(self, cc: str) -> Path:
        return self.org(cc) / "node"

    def package(self, cc: str) -> Path:
        return self.org(cc) / "chaincode.tar.gz"

    def orderer(self, i: int) -> Path:
        return self.dir / "orderers" / f"orderer{i}"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def addr(port: int) -> str:
    return f"{HOST}:{port}"


def orderer_env(lay: Layout, i: int, node: Identity, tls_ca: Path,
                ports: dict[str, int]) -> dict[str, str]:
    data = lay.orderer(i)
    tls = {"CERTIFICATE": str(node.tls_cert), "PRIVATEKEY": str(node.tls_key)}
    return {
        "FABRIC_CFG_PATH": str(lay.config),
        "FABRIC_LOGGING_SPEC": "info",
        "ORDERER_GENERAL_LISTENADDRESS": HOST,
        "ORDERER_GENERAL_LISTENPORT": str(ports["listen"]),
        "ORDERER_GENERAL_LOCALMSPID": ORDERER_MSP,
        "ORDERER_GENERAL_LOCALMSPDIR": str(node.msp_dir),
        "ORDERER_GENERAL_BOOTSTRAPMETHOD": "none",
        "ORDERER_GENERAL_TLS_ENABLED": "true",
        **{f"ORDERER_GENERAL_TLS_{k}": v for k, v in tls.items()},
        "ORDERER_GENERAL_TLS_ROOTCAS": f"[{tls_ca}]",
        "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE": str(node.tls_cert),
        "ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY": str(node.tls_key),
        "ORDERER_GENERAL_CLUSTER_ROOTCAS": f"[{tls_ca}]",
        "ORDERER_GENERAL_KEEPALIVE_SERVERMININTERVAL": KEEPALIVE_MIN,
        "ORDERER_FILELEDGER_LOCATION": str(data / "ledger"),
        "ORDERER_CONSENSUS_WALDIR": str(data / "etcdraft" / "wal"),
        "ORDERER_CONSENSUS_SNAPDIR": str(data / "etcdraft" / "snapshot"),
        "ORDERER_CHANNELPARTICIPATION_ENABLED": "true",
        "ORDERER_ADMIN_LISTENADDRESS": addr(ports["admin"]),
        "ORDERER_ADMIN_TLS_ENABLED": "true",
        **{f"ORDERER_ADMIN_TLS_{k}": v for k, v in tls.items()},
        "ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED": "true",
        "ORDERER_ADMIN_TLS_CLIENTROOTCAS": f"[{tls_ca}]",
        "ORDERER_OPERATIONS_LISTENADDRESS": addr(ports["operations"]),
        "ORDERER_METRICS_PROVIDER": "prometheus",
    }


def peer_env(lay: Layout, org: Org, ports: dict[str, int]) -> dict[str, str]:
    peer = org.identities["peer"]
    data = lay.org(org.name) / "peer"
    address = addr(ports["listen"])
    builders = json.dumps([{"name": package.BUILDER_NAME, "path": str(lay.builder)}])
    return {
        "FABRIC_CFG_PATH": str(lay.config),
        "FABRIC_LOGGING_SPEC": "info",
        "CORE_PEER_ID": f"peer.{org.name.lower()}.custody",
        "CORE_PEER_NETWORKID": "custody",
        "CORE_PEER_LISTENADDRESS": address,
        "CORE_PEER_ADDRESS": address,
        "CORE_PEER_CHAINCODELISTENADDRESS": addr(ports["chaincode_listen"]),
        "CORE_PEER_CHAINCODEADDRESS": addr(ports["chaincode_listen"]),
        "CORE_PEER_GOSSIP_BOOTSTRAP": address,
        "CORE_PEER_GOSSIP_ENDPOINT": address,
        "CORE_PEER_GOSSIP_EXTERNALENDPOINT": address,
        **{f"CORE_PEER_GOSSIP_{k}": v for k, v in GOSSIP.items()},
        "CORE_PEER_LOCALMSPID": org.msp_id,
        "CORE_PEER_MSPCONFIGPATH": str(peer.msp_dir),
        "CORE_PEER_TLS_ENABLED": "true",
        "CORE_PEER_TLS_CERT_FILE": str(peer.tls_cert),
        "CORE_PEER_TLS_KEY_FILE": str(peer.tls_key),
        "CORE_PEER_TLS_ROOTCERT_FILE": str(org.tls_ca),
        "CORE_PEER_KEEPALIVE_MININTERVAL": KEEPALIVE_MIN,
        "CORE_PEER_FILESYSTEMPATH": str(data),
        "CORE_LEDGER_SNAPSHOTS_ROOTDIR": str(data / "snapshots"),
        "CORE_OPERATIONS_LISTENADDRESS": addr(ports["operations"]),
        "CORE_METRICS_PROVIDER": "prometheus",
        "CORE_VM_ENDPOINT": "",
        "CORE_CHAINCODE_EXTERNALBUILDERS": builders,
        "CORE_CHAINCODE_EXECUTETIMEOUT": "30s",
    }


def chaincode_env(address: str, package_id: str) -> dict[str, str]:
    """The chaincode service's two variables; PYTHONPATH finds the project's packages
    even when it runs from a source tree that is not installed."""
    source = str(Path(__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH", "")
    return {"CHAINCODE_SERVER_ADDRESS": address, "CORE_CHAINCODE_ID_NAME": package_id,
            "PYTHONPATH": source + (os.pathsep + inherited if inherited else ""),
            "PYTHONUNBUFFERED": "1"}


def admin_env(lay: Layout, msp_id: str, admin_msp: Path, peer_address: str,
              peer_tls_ca: Path) -> dict[str, str]:
    """The ``peer`` command line acting as an organisation's admin against its peer."""
    return {
        "FABRIC_CFG_PATH": str(lay.config),
        "FABRIC_LOGGING_SPEC": "warning",
        "CORE_PEER_LOCALMSPID": msp_id,
        "CORE_PEER_MSPCONFIGPATH": str(admin_msp),
        "CORE_PEER_ADDRESS": peer_address,
        "CORE_PEER_TLS_ENABLED": "true",
        "CORE_PEER_TLS_ROOTCERT_FILE": str(peer_tls_ca),
    }
