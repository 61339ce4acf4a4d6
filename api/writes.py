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
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse

from api.policy import Caller, hidden_reference
from api.runtime import Runtime
from ledger.canonical import parse
from ledger.errors import Forbidden, InvalidInput, NotFound
from ledger.events import SignedEvent
from ledger.rules import StateView
from ledger.store.base import AppendResult, LedgerStore


def parse_signed(raw: bytes | str) -> SignedEvent:
    return SignedEvent.from_json(parse(raw))


def admit(store: LedgerStore, caller: Caller, signed: SignedEvent, *,
          kind: str | None = None, match: Mapping[str, str] | None = None,
          state: StateView | None = None) -> None:
    """Steps 2-4 above; raise on refusal. ``state``: the request's view, if it has one."""
    if signed.event.signer != caller.id:
        raise Forbidden(f"the event is signed by {signed.event.signer}, but you are "
                        f"authenticated as {caller.id}; sign events with your own key")
    if kind is not None and signed.event.kind != kind:
        raise InvalidInput(f"this endpoint takes {kind} events, not {signed.event.kind}")
    for field, value in (match or {}).items():
        if signed.event.payload.get(field) != value:
            raise InvalidInput(f"the event's payload.{field} does not match the URL "
                               f"({value!r})")
    hidden = hidden_reference(state or view(store, caller), caller, signed)
    if hidden is not None:
        raise NotFound(f"unknown {hidden}")


async def append(runtime: Runtime, caller: Caller, signed: SignedEvent) -> AppendResult:
    return await asyncio.wrap_future(runtime.committer.submit(signed))


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
    ledger's strict parser; the checks read the state, so they run in a worker thread
    (one hop), never on the event loop."""
    raw = await request.body()
    signed = await anyio.to_thread.run_sync(
        lambda: parse_and_admit(runtime.store, caller, raw, kind=kind, match=match))
    return receipt_response(await append(runtime, caller, signed))


class _View:
    """The state as one request sees it: each key is read at most once per request (the
    authorisation checks ask for the same case/artefact records repeatedly)."""

    __slots__ = ("_cache", "store")

    def __init__(self, store: LedgerStore, caller: Caller | None = None) -> None:
        self.store = store
        self._cache: dict[str, dict[str, Any] | None] = (
            {} if caller is None else {"actor/" + caller.id: caller.record})

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return self._cache[key]
        except KeyError:
            record = self._cache[key] = self.store.state(key)
            return record


def view(store: LedgerStore, caller: Caller | None = None) -> _View:
    """A per-request cached view of the state (seeded with the caller's own record, read
    moments before by :func:`api.deps.current_actor`)."""
    return _View(store, caller)
