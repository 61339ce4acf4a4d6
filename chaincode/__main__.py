"""``python -m chaincode``: serve the custody chaincode as a chaincode service."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

_USAGE = ("chaincode: set CHAINCODE_SERVER_ADDRESS (host:port to listen on) and "
          "CORE_CHAINCODE_ID_NAME (the chaincode package id) before starting the service.")


async def _serve(address: str, ccid: str) -> None:
    import grpc
    from fabric_chaincode_python.fabric_shim.server import ChaincodeService
    from fabric_protos.peer import chaincode_shim_pb2_grpc as shim_grpc

    from chaincode import shim_fixes
    from chaincode.service import CustodyChaincode

    server = grpc.aio.server(options=shim_fixes.server_options())
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises instead of returning 0 in newer versions
        raise OSError(f"cannot listen on {address}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    shim_grpc.add_ChaincodeServicer_to_server(ChaincodeService(ccid, CustodyChaincode()), server)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait_for_termination())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    await server.stop(2)
    for task in (waiter, stopper):
        task.cancel()


def main() -> int:
    address = os.environ.get("CHAINCODE_SERVER_ADDRESS", "").strip()
    ccid = os.environ.get("CORE_CHAINCODE_ID_NAME", "").strip()
    if not address or not ccid:
        print(_USAGE, file=sys.stderr)
        return 2
    from chaincode import shim_fixes

    try:
        shim_fixes.apply()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    # The shim configures the root logger at DEBUG when imported.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(address, ccid))
    except OSError as exc:
        print(f"chaincode: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
