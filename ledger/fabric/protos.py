"""The typed boundary for Fabric's generated protobuf message modules.

``fabric_protos`` has no type information: every message module is re-exported here as
``Any``, once, so :mod:`ledger.fabric.blocks` and :mod:`ledger.fabric.client` share one
boundary and only plain Python values leave them. The gRPC service stubs (``*_pb2_grpc``)
stay in ``client``, the one module that talks to the network.
"""

from __future__ import annotations

from typing import Any

from fabric_protos.common import common_pb2 as _common_pb2
from fabric_protos.common import ledger_pb2 as _ledger_pb2
from fabric_protos.msp import identities_pb2 as _identities_pb2
from fabric_protos.orderer import ab_pb2 as _ab_pb2
from fabric_protos.peer import chaincode_event_pb2 as _chaincode_event_pb2
from fabric_protos.peer import chaincode_pb2 as _chaincode_pb2
from fabric_protos.peer import proposal_pb2 as _proposal_pb2
from fabric_protos.peer import proposal_response_pb2 as _proposal_response_pb2
from fabric_protos.peer import transaction_pb2 as _transaction_pb2

__all__ = ["ab_pb2", "chaincode_event_pb2", "chaincode_pb2", "common_pb2", "identities_pb2",
           "ledger_pb2", "proposal_pb2", "proposal_response_pb2", "transaction_pb2"]

ab_pb2: Any = _ab_pb2
chaincode_event_pb2: Any = _chaincode_event_pb2
chaincode_pb2: Any = _chaincode_pb2
common_pb2: Any = _common_pb2
identities_pb2: Any = _identities_pb2
ledger_pb2: Any = _ledger_pb2
proposal_pb2: Any = _proposal_pb2
proposal_response_pb2: Any = _proposal_response_pb2
transaction_pb2: Any = _transaction_pb2
