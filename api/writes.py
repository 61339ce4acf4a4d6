"""The one write path: a client-signed event → checks → group commit → receipt.

Checks, in order (each failure is a ledger exception, mapped once to a problem):

1. the raw body parses with the ledger's strict parser (size already capped);
2. the event's signer IS the authenticated actor (else 403): a token never lets anyone
   append what somebody else signed, so every write is signed by the person who acted;
3. every object the event names (case, artefact) is visible to the signer (else 404,
   the same answer as for an unknown id: existence does not leak);
4. the kind and path ids match the endpoint (typed endpoints);
5. the custody rules run inside the store's transaction (signature, key validity,
   replay, clock skew, compare-and-swap on the artefact head, legal basis...).

A 201 is sent after the commit (durability contract); the same signed event again is
answered 200 with the original receipt and the log does not grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.runtime import Runtime, Snapshot
from ledger.core.canonical import parse
from ledger.core.errors import Forbidden, InvalidInput, NotFound
from ledger.core.events import SignedEvent
from ledger.core.policy import Caller, hidden_reference
from ledger.core.rules import StateView
from ledger.core.state import actor_key
from ledger.store.base import AppendResult, CachedView, LedgerStore


def parse_signed(raw: bytes | str) -> SignedEvent:
    return SignedEvent.from_json(parse(raw))


def admit(store: LedgerStore, caller: Caller, signed: SignedEvent, *,
          kind: str | None = None, match: Mapping[str, str] | None = None,
          state: StateView | None = None, created: frozenset[str] = frozenset()) -> None:
    """Steps 2-4 above; raise on refusal. ``state``: the request's view, if it has one;
    ``created``: objects the caller's earlier events of the same batch create."""
    if signed.event.signer != caller.id:
        raise Forbidden(f"the event is signed by {signed.event.signer}, but you are "
                        f"authenticated as {caller.id}; sign events with your own key")
    if kind is not None and signed.event.kind != kind:
        raise InvalidInput(f"this endpoint takes {kind} events, not {signed.event.kind}")
    for field, value in (match or {}).items():
        if signed.event.payload.get(field) != value:
            raise InvalidInput(f"the event's payload.{field} does not match the URL "
                               f"({value!r})")
    hidden = hidden_reference(state or view(store, caller), caller, signed, created)
    if hidden is not None:
        raise NotFound(f"unknown {hidden}")


async def append(runtime: Runtime, caller: Caller, signed: SignedEvent) -> AppendResult:
    return await asyncio.wrap_future(runtime.committer.submit(signed))


def json_answer(state: StateView, key: Hashable, build: Callable[[], BaseModel]) -> Response:
    """``build()`` as a JSON response (the bytes FastAPI would send for the model). When
    ``state`` is the request's :class:`~api.runtime.Snapshot`, the bytes are computed once
    per log size: only for answers that depend on the log alone, not on who asks (the
    caller's right to see them is checked before)."""
    def render() -> bytes:
        return build().model_dump_json().encode()

    body = state.memo(key, render) if isinstance(state, Snapshot) else render()
    return Response(body, media_type="application/json")


def receipt_json(result: AppendResult) -> dict[str, Any]:
    return result.to_json()


def receipt_response(result: AppendResult) -> JSONResponse:
    return JSONResponse(receipt_json(result), status_code=200 if result.duplicate else 201)


def parse_and_admit(store: LedgerStore, caller: Caller, raw: bytes, *,
                    kind: str | None = None,
                    match: Mapping[str, str] | None = None) -> SignedEvent:
    signed = parse_signed(raw)
    admit(store, caller, signed, kind=kind, match=match)
    return signed


async def write(request: Request, runtime: Runtime, caller: Caller, *, kind: str | None = None,
                match: Mapping[str, str] | None = None) -> JSONResponse:
    """The handler body of every event-submitting endpoint. The body is parsed once by the
    ledger's strict parser; the checks read the request's state snapshot (on SQLite on
    the event loop, elsewhere in a worker thread: :meth:`Runtime.run_read`)."""
    raw = await request.body()
    signed = await runtime.run_read(
        lambda: parse_and_admit(runtime.store, caller, raw, kind=kind, match=match))
    return receipt_response(await append(runtime, caller, signed))


def view(store: LedgerStore, caller: Caller | None = None) -> StateView:
    """The state as the request sees it: the snapshot its caller was authorised against
    (:class:`api.runtime.Snapshot`, shared by the requests at the same log size), or
    else a per-request cached view (seeded with the caller's own record)."""
    snap = getattr(caller, "view", None)
    if snap is not None and snap.store is store:
        return snap  # type: ignore[no-any-return]
    return CachedView(store, None if caller is None else {actor_key(caller.id): caller.record})
