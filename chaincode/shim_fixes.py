"""Fixes for fabric-chaincode-python 2.5.4, pinned to that exact version.

Read against the installed source (``fabric_chaincode_python/fabric_shim``):

1. ``Handler.chat_with_peer`` hands the peer stream's ``grpc.aio`` context to every
   message task; concurrent transactions then call ``context.write`` at the same time
   (``GRPC_CALL_ERROR_TOO_MANY_OPERATIONS``) and endorsements hang until the peer's
   time-out. Replaced: the same loop, with one lock around every write to the stream
   (handler replies and ``MsgQueueHandler`` requests both go through it), and without
   its per-message INFO lines that format whole proposals and payloads.
2. ``Handler.handle_stub_interaction`` builds the COMPLETED message without the event
   stored by ``ChaincodeStub.set_event``, so chaincode events never reach the block.
   Replaced: the same reply, carrying the stub's (last) event as Fabric's shims do; an
   exception in the chaincode becomes an error response instead of a silent hang.
3. ``ChaincodeStub`` has no state-based endorsement call (the interface method is an
   empty placeholder). Added ``set_state_validation_parameter(key, policy_bytes)``:
   a PUT_STATE_METADATA request with metakey ``VALIDATION_PARAMETER``.

Also: the shim logs every message (and payloads) at INFO/WARNING on the ``asyncio``
logger; its records below ERROR are dropped. :func:`server_options` are gRPC server
keep-alive settings that accept the peer's client pings (no ``too_many_pings``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import logging
import os
from typing import Any

SHIM_DIST = "fabric-chaincode-python"
SHIM_VERSION = "2.5.4"
#: Largest gRPC message accepted/sent (the peer's default is 100 MiB).
_MAX_MESSAGE = 100 * 1024 * 1024

_applied = False


def check_version(installed: str | None = None) -> None:
    """Raise RuntimeError unless exactly the pinned shim version is installed."""
    if installed is None:
        try:
            installed = importlib.metadata.version(SHIM_DIST)
        except importlib.metadata.PackageNotFoundError:
            installed = "none"
    if installed != SHIM_VERSION:
        raise RuntimeError(
            f"chaincode.shim_fixes patches {SHIM_DIST} {SHIM_VERSION} only, but {installed} "
            "is installed; re-check the two shim defects against that version's source "
            "and update chaincode/shim_fixes.py before running the chaincode.")


def server_options() -> list[tuple[str, int]]:
    """gRPC server options for the chaincode service."""
    return [
        # The peer (a Go gRPC client) pings every minute by default; gRPC's C core
        # answers pings more frequent than 5 min with GOAWAY "too_many_pings".
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        # Our own pings keep the long-lived stream alive through idle periods.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_send_message_length", _MAX_MESSAGE),
    ]


class _SerialWriter:
    """The servicer context with one writer at a time on the stream."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._lock = asyncio.Lock()

    async def write(self, message: Any) -> None:
        async with self._lock:
            await self._context.write(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _QuietShim(logging.Filter):
    """Drop the shim's own records below ERROR (they carry whole payloads)."""

    def __init__(self, shim_dir: str) -> None:
        super().__init__()
        self._dir = shim_dir

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(self._dir)


def apply() -> None:
    """Check the version and install the fixes (idempotent)."""
    global _applied
    check_version()
    if _applied:
        return
    import fabric_chaincode_python
    from fabric_chaincode_python.fabric_shim import handler as shim_handler
    from fabric_chaincode_python.fabric_shim import stub as shim_stub
    from fabric_chaincode_python.fabric_shim.logging import LOGGER
    from fabric_protos.peer import chaincode_pb2 as cc_pb
    from fabric_protos.peer import chaincode_shim_pb2 as shim_pb
    from fabric_protos.peer import proposal_response_pb2 as pr_pb

    handler_cls = shim_handler.Handler
    msg_type = shim_pb.ChaincodeMessage

    async def chat_with_peer(self: Any, stream: Any, context: Any) -> None:
        self.state = shim_handler.STATES.CREATED
        self.context = _SerialWriter(context)
        self.msg_queue_handler = shim_handler.MsgQueueHandler(self)
        register = msg_type(type=msg_type.REGISTER,
                            payload=self.chaincode_id.SerializeToString())
        register.timestamp.FromDatetime(dt.datetime.now(dt.UTC).replace(tzinfo=None))
        await self.context.write(register)
        async for message in stream:
            self._track_task(self.handle_message(message))
        if self._pending_tasks:
            await asyncio.gather(*self._pending_tasks, return_exceptions=True)

    async def handle_stub_interaction(self: Any, msg: Any, action: str = "Invoke") -> None:
        stub = None
        try:
            cc_input = cc_pb.ChaincodeInput.FromString(msg.payload)
            stub = shim_stub.ChaincodeStub(self, msg.channel_id, msg.txid, cc_input,
                                           msg.proposal)
            if (action or "").lower() == "init":
                resp = await self.chaincode.init(stub)
            else:
                resp = await self.chaincode.invoke(stub)
            if not resp or not resp.status:
                resp = pr_pb.Response(status=500, message="chaincode returned no response")
        except Exception as exc:  # the peer must always get a reply
            LOGGER.error("chaincode %s failed: %s", action, type(exc).__name__)
            resp = pr_pb.Response(status=500, message="chaincode internal error")
        reply = msg_type(type=msg_type.COMPLETED, payload=resp.SerializeToString(),
                         txid=msg.txid, channel_id=msg.channel_id)
        events = stub.get_events() if stub is not None else []
        if events:
            reply.chaincode_event.CopyFrom(events[-1])
        await self.context.write(reply)

    async def set_state_validation_parameter(self: Any, key: str, policy: bytes) -> None:
        request = shim_pb.PutStateMetadata(
            key=key, collection="",
            metadata=shim_pb.StateMetadata(metakey=shim_stub.VALIDATION_PARAMETER,
                                           value=bytes(policy)))
        message = msg_type(type=msg_type.PUT_STATE_METADATA,
                           payload=request.SerializeToString(),
                           txid=self.tx_id, channel_id=self.channel_id)
        answer = await self.client._Handler__ask_peer_and_listen(message, "PutStateMetadata")
        if answer.type == msg_type.ERROR:
            raise RuntimeError("the peer refused a key-level endorsement policy")

    handler_cls.chat_with_peer = chat_with_peer
    handler_cls.handle_stub_interaction = handle_stub_interaction
    shim_stub.ChaincodeStub.set_state_validation_parameter = set_state_validation_parameter
    LOGGER.addFilter(_QuietShim(os.path.dirname(fabric_chaincode_python.__file__)))
    _applied = True
