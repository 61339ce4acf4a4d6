"""The protocol endpoints that back :class:`ledger.store.remote.RemoteStore`: append
signed events, find an event, read world state and refs (all authorised per object)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Path, Query, Request
from fastapi.responses import JSONResponse, Response

from api import deps
from api.deps import CallerDep, RuntimeDep, StoreDep
from api.models import (
    PAGE_MAX,
    AppendReceipt,
    BatchBody,
    BatchOutcome,
    BatchResult,
    EventLocation,
    Limit,
    RefPage,
    SignedEventBody,
    StatePage,
    StateRecord,
)
from api.problems import problem_body
from api.routes import READ, WRITE
from api.runtime import Runtime
from api.writes import admit, append, json_answer, parse_signed, receipt_response, view
from ledger.core import events as ev
from ledger.core.canonical import canonical
from ledger.core.errors import Conflict, LedgerError, NotFound
from ledger.core.events import Entry, SignedEvent
from ledger.core.policy import Caller, can_see_event, can_see_state, created_keys, visible
from ledger.core.rules import StateView
from ledger.core.state import artefact_key
from ledger.store.base import AppendResult

router = deps.router(tags=["events"])
KeyPath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
RefPath = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[\x21-\x7e]+$")]

APPENDED: dict[int | str, dict[str, Any]] = {200: {"model": AppendReceipt,
                  "description": "the same signed event was already on the log (idempotent)"}}


@router.post("/v1/events", operation_id="appendEvent", status_code=201,
             response_model=AppendReceipt, responses={**APPENDED, **WRITE})
async def append_event(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                       caller: CallerDep) -> JSONResponse:
    """Append a signed event of any kind (what ``LedgerStore.append`` does remotely).

    201: committed, with its index and the checkpoint covering it. 200: this exact
    signed event is already on the log; the original receipt is returned.

    A DENIED ``access.record`` about an artefact the caller may not see is appended when
    that artefact exists, and answered 404 exactly like an unknown artefact: every denied
    attempt is on the log, and the answer does not reveal that the artefact exists."""
    raw = await request.body()
    signed, hidden = await runtime.run_read(prepare_event, runtime, caller, raw)
    if hidden:
        await _append_quietly(runtime, signed)
        raise hidden_answer(signed)
    return receipt_response(await append(runtime, caller, signed))


def prepare_event(runtime: Runtime, caller: Caller, raw: bytes) -> tuple[SignedEvent, bool]:
    """The body parsed once by the ledger's strict parser, and either admitted
    (:func:`api.writes.admit`; ``False``) or a hidden denial to record quietly
    (:func:`hidden_denial`; ``True``)."""
    signed = parse_signed(raw)
    if hidden_denial_of(runtime, caller, signed) is not None:
        return signed, True
    admit(runtime.store, caller, signed)
    return signed, False


def hidden_denial(runtime: Runtime, caller: Caller, raw: bytes,
                  state: StateView | None = None) -> SignedEvent | None:
    """The caller's own denied access event about an artefact it may not see: to be
    recorded (when the artefact exists) and answered as not found. ``None`` for anything
    else, which takes the ordinary write path (an unknown artefact raises the same 404
    here, so both answers are one code path)."""
    try:
        signed = parse_signed(raw)
    except LedgerError:
        return None
    return hidden_denial_of(runtime, caller, signed, state)


def hidden_denial_of(runtime: Runtime, caller: Caller, signed: SignedEvent,
                     state: StateView | None = None) -> SignedEvent | None:
    """:func:`hidden_denial` of an event already parsed."""
    event, v = signed.event, state or view(runtime.store, caller)
    art = event.payload.get("artefact")
    if (event.kind != ev.ACCESS or event.signer != caller.id or not isinstance(art, str)
            or event.payload.get("outcome") != "denied"
            or visible(v, caller, artefact_key(art)) is not None):
        return None
    if v.get(artefact_key(art)) is None:
        raise hidden_answer(signed)
    return signed


def hidden_answer(signed: SignedEvent) -> NotFound:
    return NotFound(f"unknown artefact {signed.event.payload['artefact']!r}")


async def _append_quietly(runtime: Runtime, signed: SignedEvent) -> None:
    """Append; any refusal (skew, replay...) is answered as the same 404, not revealed."""
    with contextlib.suppress(LedgerError):
        await asyncio.wrap_future(runtime.committer.submit(signed))


@router.post("/v1/events/batch", operation_id="appendEvents", response_model=BatchResult,
             responses=WRITE)
async def append_events(body: BatchBody, runtime: RuntimeDep, caller: CallerDep) -> BatchResult:
    """Append several signed events (``LedgerStore.append_many``); each is accepted or
    refused on its own, with a status and a receipt or a problem."""
    def prepare() -> list[SignedEvent | LedgerError]:  # state reads: off the event loop
        v = view(runtime.store, caller)
        out: list[SignedEvent | LedgerError] = []
        created: frozenset[str] = frozenset()  # by the caller's earlier events here
        seen: set[str] = set()
        for item in body.events:
            try:
                raw = canonical(item.model_dump())
                hidden = hidden_denial(runtime, caller, raw, state=v)
                if hidden is not None:
                    hidden_ids.add(hidden.event_id)
                    out.append(hidden)
                    continue
                signed = parse_signed(raw)
                if signed.event_id in seen:  # as LedgerStore.append_many answers it
                    raise Conflict("duplicate-in-batch", f"event {signed.event_id} is twice "
                                   "in this batch")
                seen.add(signed.event_id)
                admit(runtime.store, caller, signed, state=v, created=created)
                created |= frozenset(created_keys(signed))
                out.append(signed)
            except LedgerError as exc:
                out.append(exc)
        return out

    hidden_ids: set[str] = set()
    prepared = await anyio.to_thread.run_sync(prepare)
    futures: list[asyncio.Future[AppendResult] | LedgerError] = [
        item if isinstance(item, LedgerError) else
        asyncio.wrap_future(runtime.committer.submit(item)) for item in prepared]
    outcomes: list[BatchOutcome] = []
    for item, fut in zip(prepared, futures, strict=True):
        try:
            if isinstance(fut, LedgerError):
                raise fut
            try:
                result = await fut
            except LedgerError:
                if isinstance(item, SignedEvent) and item.event_id in hidden_ids:
                    raise hidden_answer(item) from None
                raise
            if isinstance(item, SignedEvent) and item.event_id in hidden_ids:
                raise hidden_answer(item)
        except LedgerError as exc:
            status, problem, _ = problem_body(exc)
            outcomes.append(BatchOutcome(status=status, problem=problem))
            continue
        data = result.to_json()
        outcomes.append(BatchOutcome(status=200 if data["duplicate"] else 201,
                                     receipt=AppendReceipt(**data)))
    return BatchResult(outcomes=outcomes)


@router.get("/v1/events/{event_id}", operation_id="findEvent", response_model=EventLocation,
            responses=READ)
def find_event(store: StoreDep, caller: CallerDep,
               event_id: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]) -> EventLocation:
    """The log index of an event id, if the caller may see the event."""
    index = store.find_event(event_id)
    if index is None or not can_see_event(
            view(store, caller), caller, Entry.from_leaf(store.entry(index).leaf).signed):
        raise NotFound(f"no event {event_id} on the log")
    return EventLocation(event_id=event_id, index=index)


@router.get("/v1/state/{key:path}", operation_id="getState", response_model=StateRecord,
            responses=READ)
async def get_state(runtime: RuntimeDep, caller: CallerDep, key: KeyPath) -> Response:
    """One world-state record (``ledger``, ``org/ID``, ``actor/ID``, ``case/ID``,
    ``lb/ID``, ``art/ID``, ``tr/ID``), if the caller may see it."""
    return await runtime.run_read(state_answer, runtime, caller, key)


def state_answer(runtime: Runtime, caller: Caller, key: str) -> Response:
    v = view(runtime.store, caller)
    record = visible(v, caller, key)
    if record is None:
        raise NotFound(f"no record {key!r}")
    return json_answer(v, state_key(key), lambda: StateRecord(key=key, value=record))


def state_key(key: str) -> tuple[str, str]:
    """The snapshot memo key of the answer for the state record ``key``."""
    return ("state", key)


@router.get("/v1/state", operation_id="listState", response_model=StatePage, responses=READ)
def list_state(store: StoreDep, caller: CallerDep,
               prefix: Annotated[str, Query(max_length=200,
                                            pattern=r"^[\x21-\x7e]*$")] = "",
               after: Annotated[str, Query(max_length=200)] = "",
               limit: Limit = 100) -> StatePage:
    """Records whose key starts with ``prefix`` (every record without one), in key order,
    after ``after``; records the caller may not see are left out."""
    v = view(store, caller)
    items: list[StateRecord] = []
    for key, value in store.state_items(prefix, after):
        if not can_see_state(v, caller, key, value):
            continue
        if len(items) == limit:
            return StatePage(items=items, next_after=items[-1].key)
        items.append(StateRecord(key=key, value=value))
    return StatePage(items=items, next_after=None)


@router.get("/v1/refs/{ref}", operation_id="listRefs", response_model=RefPage, responses=READ)
def list_refs(store: StoreDep, caller: CallerDep, ref: RefPath,
              after: Annotated[int, Query(ge=-1, le=2**62)] = -1,
              limit: Limit = PAGE_MAX) -> RefPage:
    """Indices of the entries about ``ref`` (an object id or ``sha256:HEX``) that the
    caller may see, ascending, after index ``after``."""
    v = view(store, caller)
    out: list[int] = []
    todo = [i for i in store.refs(ref) if i > after]
    while todo:  # one entries_at query per page (more only when entries are hidden)
        chunk, todo = todo[:limit + 1 - len(out)], todo[limit + 1 - len(out):]
        for stored in store.entries_at(chunk):
            if not can_see_event(v, caller, Entry.from_leaf(stored.leaf).signed):
                continue
            if len(out) == limit:
                return RefPage(ref=ref, indices=out, next_after=out[-1])
            out.append(stored.index)
    return RefPage(ref=ref, indices=out, next_after=None)

