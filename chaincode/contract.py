"""The custody chaincode: the same pure rules as SQLite, over Fabric's world state.

Functions (names in :mod:`ledger.fabric.wire`):

* ``ping()`` -> ``b"pong"`` without touching state (the benchmark's no-op);
* ``get(key)`` -> the key's JSON bytes, or ``b""`` (a query);
* ``submit(signed_event_json)`` -> canonical ``{"event_id", "result"}``. The event is
  checked by :func:`ledger.core.rules.apply` with ``ledger_time`` = the transaction's
  timestamp in ms (the only time source) and ``Context(index=0, history=False)``: no
  ``hist/`` keys, provisional ``index`` fields (the derived log assigns positions from
  block order). Every write is a PutState of RFC 8785 bytes, in sorted key order; the
  key-level endorsement policies and gate keys come from :mod:`chaincode.policy`; one
  chaincode event ``wire.EVENT_NAME`` carries canonical ``{"event_id", "kind",
  "result"}``. A refusal fails the transaction with ``wire.encode_error(exc)``.

The stub is anything with the async ``get_state`` / ``put_state`` /
``set_state_validation_parameter`` and the plain ``set_event`` / ``get_tx_timestamp`` /
``get_txid`` / ``get_function_and_parameters`` of the Fabric shim (see
:mod:`chaincode.service`); the unit tests use a dict-backed fake. Nothing here reads a
clock, draws randomness, depends on dict order, or logs payloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from chaincode import policy
from ledger.core import errors as er
from ledger.core import events as ev
from ledger.core import rules
from ledger.core.canonical import canonical, parse
from ledger.core.state import HISTORY
from ledger.fabric import wire

#: Generic message for failures that are not ledger refusals (no details: they could
#: carry payload fragments).
INTERNAL_ERROR = "chaincode internal error"
#: How long a rules thread waits for one world-state read.
_READ_TIMEOUT_S = 60.0

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


class Stub(Protocol):
    def get_function_and_parameters(self) -> tuple[str, list[str]]: ...
    def get_tx_timestamp(self) -> Any: ...
    def get_txid(self) -> str: ...
    async def get_state(self, key: str) -> bytes: ...
    async def put_state(self, key: str, value: bytes) -> Any: ...
    async def set_state_validation_parameter(self, key: str, policy: bytes) -> None: ...
    def set_event(self, name: str, payload: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the chaincode answers: ``ok`` with ``payload``, or an error ``message``."""

    ok: bool
    payload: bytes = b""
    message: str = ""


def _rules_pool() -> concurrent.futures.ThreadPoolExecutor:
    # The rules are synchronous; world-state reads are coroutines on the event loop. The
    # rules run in a worker thread that waits for each read (one thread per transaction
    # being evaluated, reads stay on the loop, no re-evaluation).
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=16,
                                                          thread_name_prefix="custody-rules")
        return _pool


class _WorldView:
    """``rules.StateView`` over GetState, JSON-decoded and cached per transaction; used
    from the rules thread while the stub's coroutines run on ``loop``."""

    def __init__(self, stub: Stub, loop: asyncio.AbstractEventLoop) -> None:
        self._stub = stub
        self._loop = loop
        self._cache: dict[str, rules.Record | None] = {}

    def get(self, key: str) -> rules.Record | None:
        if key not in self._cache:
            future = asyncio.run_coroutine_threadsafe(self._stub.get_state(key), self._loop)
            raw = future.result(timeout=_READ_TIMEOUT_S)
            if not raw:
                self._cache[key] = None
            else:
                value = json.loads(raw)
                if not isinstance(value, dict):
                    raise er.IntegrityFault(f"world-state value of {key} is not a JSON object",
                                            kind="state")
                self._cache[key] = value
        return self._cache[key]


def tx_time_ms(stub: Stub) -> int:
    """The transaction's timestamp (from its signed channel header) in ms."""
    ts = stub.get_tx_timestamp()
    if ts is None:
        raise er.InvalidInput("the transaction carries no timestamp")
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def _evaluate(signed: ev.SignedEvent, ledger_time: int,
              view: _WorldView) -> tuple[rules.Effects, policy.Plan]:
    effects = rules.apply(view, signed, rules.Context(index=0, ledger_time=ledger_time,
                                                      history=False))
    return effects, policy.plan(signed.event.kind, effects.writes, view)


async def submit(stub: Stub, raw: str) -> bytes:
    """Apply one signed custody event; raise a LedgerError when refused."""
    try:
        signed = ev.SignedEvent.from_json(parse(raw))
    except RecursionError as exc:
        raise er.InvalidInput("the signed event is nested too deeply") from exc
    ledger_time = tx_time_ms(stub)
    loop = asyncio.get_running_loop()
    view = _WorldView(stub, loop)
    effects, plan = await loop.run_in_executor(_rules_pool(), _evaluate, signed, ledger_time,
                                               view)
    if any(key.startswith((HISTORY, wire.GATE_PREFIX)) for key in effects.writes):
        raise er.IntegrityFault("the rules wrote a key the chaincode must not write",
                                kind="state")
    puts: dict[str, bytes] = {key: canonical(rec) for key, rec in effects.writes.items()}
    for gate, jurisdiction in plan.new_gates:
        puts[gate] = canonical({"jurisdiction": jurisdiction})
    for gate in plan.blind_gates:
        puts[gate] = canonical({"tx": stub.get_txid()})
    for key in sorted(puts):
        await stub.put_state(key, puts[key])
    for key, msp_ids in plan.policies:
        await stub.set_state_validation_parameter(key, policy.signature_policy(msp_ids))
    stub.set_event(wire.EVENT_NAME, canonical({"event_id": signed.event_id,
                                               "kind": signed.event.kind,
                                               "result": effects.result}))
    return canonical({"event_id": signed.event_id, "result": effects.result})


def _encode(exc: er.LedgerError) -> str:
    """``wire.encode_error`` of ``exc``, or of its nearest class the client knows."""
    message = wire.encode_error(exc)
    if wire.decode_error(message) is not None:
        return message
    for cls in type(exc).__mro__[1:]:
        if isinstance(cls, type) and issubclass(cls, er.LedgerError):
            args: tuple[Any, ...] = ((getattr(exc, "rule", "unknown"), exc.message)
                                     if issubclass(cls, er.RuleViolation) else (exc.message,))
            message = wire.encode_error(cls(*args))
            if wire.decode_error(message) is not None:
                return message
    return wire.encode_error(er.LedgerError(exc.message))


async def invoke(stub: Stub) -> Outcome:
    """Dispatch one invocation; never raises."""
    try:
        fn, args = stub.get_function_and_parameters()
        if fn == wire.FN_PING:
            return Outcome(True, b"pong")
        if fn == wire.FN_GET:
            if len(args) != 1:
                raise er.InvalidInput("get takes exactly one argument: the state key")
            return Outcome(True, bytes(await stub.get_state(args[0]) or b""))
        if fn == wire.FN_SUBMIT:
            if len(args) != 1:
                raise er.InvalidInput("submit takes exactly one argument: the signed event")
            return Outcome(True, await submit(stub, args[0]))
        raise er.InvalidInput(f"unknown chaincode function {fn[:64]!r}")
    except er.LedgerError as exc:
        return Outcome(False, message=_encode(exc))
    except Exception:
        return Outcome(False, message=INTERNAL_ERROR)
