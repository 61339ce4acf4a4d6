"""The Fabric shim's ``Chaincode`` for :mod:`chaincode.contract` (imports the shim)."""

from __future__ import annotations

from typing import Any

from fabric_chaincode_python.fabric_shim import response
from fabric_chaincode_python.fabric_shim.interfaces import Chaincode
from fabric_protos.peer import chaincode_shim_pb2 as shim_pb

from chaincode import contract


class _Stub:
    """The shim's stub with failures of PutState reported (the shim returns the peer's
    ERROR reply as if it were a success)."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub

    def get_function_and_parameters(self) -> tuple[str, list[str]]:
        fn, params = self._stub.get_function_and_parameters()
        return str(fn), list(params)

    def get_tx_timestamp(self) -> Any:
        return self._stub.get_tx_timestamp()

    def get_txid(self) -> str:
        return str(self._stub.get_txid())

    async def get_state(self, key: str) -> bytes:
        return bytes(await self._stub.get_state(key) or b"")

    async def put_state(self, key: str, value: bytes) -> None:
        answer = await self._stub.put_state(key, value)
        if getattr(answer, "type", None) == shim_pb.ChaincodeMessage.ERROR:
            raise RuntimeError("the peer refused a state write")

    async def set_state_validation_parameter(self, key: str, policy: bytes) -> None:
        # Added by chaincode.shim_fixes.apply().
        await self._stub.set_state_validation_parameter(key, policy)

    def set_event(self, name: str, payload: bytes) -> None:
        self._stub.set_event(name, payload)


class CustodyChaincode(Chaincode):
    async def init(self, stub: Any) -> Any:
        return response.success(b"")

    async def invoke(self, stub: Any) -> Any:
        outcome = await contract.invoke(_Stub(stub))
        if outcome.ok:
            return response.success(outcome.payload)
        return response.error(outcome.message)
