"""Artefacts: register, search, details (logged), history, content (logged), evidence
upload, and verification (digest or upload → verdict + timeline + proofs).

Access logging: the server never holds an actor's key, so it cannot sign "X viewed Y"
itself. The details and content endpoints therefore require the header
``X-Custody-Access-Event``: a signed ``access.record`` event (base64url of its JSON) by
the caller, for this artefact, with action ``view``/``view-content`` (details) or
``download`` (content) and outcome ``success``. The server appends it FIRST; only a
committed access event (fresh: a replayed one is refused) unlocks the answer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

import anyio
import anyio.from_thread
from fastapi import Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from api import deps
from api.deps import CallerDep, RuntimeDep, StoreDep
from api.evidence_store import check_sha256, hash_chunks
from api.models import (
    AppendReceipt,
    ArtefactList,
    ArtefactOut,
    BundleOut,
    Digests,
    Hex64,
    History,
    IdStr,
    Limit,
    SignedEventBody,
    TimelineStep,
    VerifyOut,
    VerifyRequest,
)
from api.routes import READ, WRITE, problems
from api.routes.events import APPENDED
from api.runtime import Runtime, Snapshot
from api.writes import admit, append, json_answer, parse_signed, view, write
from ledger import views
from ledger.core import events as ev
from ledger.core.bundle import VerifyResult
from ledger.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from ledger.core.events import Entry
from ledger.core.policy import VERIFY_BY_BYTES_ROLES, Caller, can_see_artefact, visible
from ledger.core.rules import StateView
from ledger.core.state import ARTEFACT, actor_key, artefact_key, digest_ref, org_key
from ledger.core.vocab import CUSTODIAL_ROLES
from ledger.store.base import AppendResult, LedgerStore, StoredEntry

router = deps.router(tags=["artefacts"])
ACCESS_HEADER = "X-Custody-Access-Event"
AccessHeader = Annotated[str, Header(alias=ACCESS_HEADER, min_length=1, max_length=16384,
                                     description="base64url(JSON of a signed access.record "
                                     "event by the caller for this artefact)")]
UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def artefact_for(store: LedgerStore, caller: Caller, artefact_id: str) -> dict[str, Any]:
    record = visible(view(store, caller), caller, artefact_key(artefact_id))
    if record is None:
        raise NotFound(f"unknown artefact {artefact_id!r}")
    return record


def timeline_step(v: StateView, entry: Entry) -> TimelineStep:
    """One custody step; ``v`` is the request's cached view (actor and org read once)."""
    event = entry.signed.event
    actor = v.get(actor_key(event.signer))
    org = v.get(org_key(actor["org"])) if actor else None
    return TimelineStep(index=entry.index, event_id=entry.signed.event_id, kind=event.kind,
                        ledger_time=entry.ledger_time, claimed_time=event.claimed_time,
                        signer=event.signer, org=actor["org"] if actor else None,
                        jurisdiction=org["jurisdiction"] if org else None,
                        payload=event.payload)


def _about(entry: Entry, artefact_id: str) -> bool:
    event = entry.signed.event
    return bool(event.payload.get("id" if event.kind == ev.ARTEFACT_REGISTER
                                  else "artefact") == artefact_id)


def history_entries(store: LedgerStore, artefact_id: str, after: int, limit: int,
                    indices: list[int] | None = None
                    ) -> tuple[list[tuple[StoredEntry, Entry]], int | None]:
    """Entries about the artefact, for a caller who may see it: every event whose subject
    is a visible artefact is visible (:func:`ledger.core.policy.can_see_event`), so no per-entry
    check is needed beyond "is this entry about this artefact" (a derived artefact naming
    this one as parent is about the derived one). One ``entries_at`` query per page."""
    todo = [i for i in (store.refs(artefact_id) if indices is None else indices) if i > after]
    out: list[tuple[StoredEntry, Entry]] = []
    while todo:
        chunk, todo = todo[:limit + 1 - len(out)], todo[limit + 1 - len(out):]
        for stored in store.entries_at(chunk):
            entry = Entry.from_leaf(stored.leaf, check_canonical=False)
            if not _about(entry, artefact_id):
                continue
            if len(out) == limit:
                return out, out[-1][1].index
            out.append((stored, entry))
    return out, None


async def logged_access(runtime: Runtime, caller: Caller, artefact_id: str, header: str,
                        actions: tuple[str, ...]) -> AppendResult:
    """Check and append the caller's signed access event from the header."""
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{ACCESS_HEADER} is not base64url") from exc
    signed = parse_signed(raw)
    admit(runtime.store, caller, signed, kind=ev.ACCESS, match={"artefact": artefact_id})
    p = signed.event.payload
    if p.get("action") not in actions or p.get("outcome") != "success":
        raise InvalidInput(f"{ACCESS_HEADER} must record a successful "
                           f"{' or '.join(actions)} of {artefact_id}")
    result = await append(runtime, caller, signed)
    if result.duplicate:
        raise Conflict("replay", "this access event was already used; sign a new one")
    return result


@router.post("/v1/artefacts", operation_id="registerArtefact", status_code=201,
             response_model=AppendReceipt, responses={**APPENDED, **WRITE})
async def register_artefact(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                            caller: CallerDep) -> JSONResponse:
    """Register an artefact by its digests (signed ``artefact.register``; examiner)."""
    return await write(request, runtime, caller, kind=ev.ARTEFACT_REGISTER)


@router.get("/v1/artefacts", operation_id="listArtefacts", response_model=ArtefactList,
            responses=READ)
def list_artefacts(store: StoreDep, caller: CallerDep,
                   sha256: Annotated[Hex64 | None, Query()] = None,
                   case: Annotated[IdStr | None, Query()] = None,
                   after: Annotated[str, Query(max_length=64)] = "",
                   limit: Limit = 100) -> ArtefactList:
    """Artefacts the caller may see, optionally by SHA-256 or case."""
    v, items = view(store, caller), []  # type: ignore[var-annotated]
    keys: Iterable[tuple[str, dict[str, Any] | None]]
    if sha256 is not None:
        keys = [(artefact_key(i), v.get(artefact_key(i)))
                for i in sorted(registered(store, sha256))]
    else:
        keys = store.state_items(ARTEFACT, artefact_key(after) if after else "")
    for key, record in keys:
        if record is None or key[len(ARTEFACT):] <= after \
                or not can_see_artefact(v, caller, record):
            continue
        if case is not None and record["case"] != case:
            continue
        if len(items) == limit:
            return ArtefactList(items=items, next_after=items[-1]["id"])
        items.append(record)
    return ArtefactList(items=items, next_after=None)


@router.get("/v1/artefacts/{artefact_id}", operation_id="getArtefact",
            response_model=ArtefactOut, responses=WRITE)
async def get_artefact(artefact_id: IdStr, runtime: RuntimeDep, caller: CallerDep,
                       access_event: AccessHeader) -> ArtefactOut:
    """An artefact's details. The read is logged: see the module notes on the header."""
    artefact_for(runtime.store, caller, artefact_id)
    receipt = await logged_access(runtime, caller, artefact_id, access_event,
                                  ("view", "view-content"))
    record = artefact_for(runtime.store, caller, artefact_id)
    return ArtefactOut(artefact=record, access=AppendReceipt(**receipt.to_json()))


#: The history page of a request without query parameters: (after, limit).
HISTORY_DEFAULTS = (-1, 100)


def history_key(artefact_id: str, after: int, limit: int) -> tuple[str, str, int, int]:
    """The snapshot memo key of a history page."""
    return ("history", artefact_id, after, limit)


@router.get("/v1/artefacts/{artefact_id}/history", operation_id="getArtefactHistory",
            response_model=History, responses=READ)
async def get_history(runtime: RuntimeDep, caller: CallerDep, artefact_id: IdStr,
                      after: Annotated[int, Query(ge=-1, le=2**62)] = HISTORY_DEFAULTS[0],
                      limit: Limit = HISTORY_DEFAULTS[1]) -> Response:
    """The custody timeline: every visible event about the artefact, with signer,
    organisation, jurisdiction, ledger time and log index."""
    store = runtime.store
    v = view(store, caller)
    if await runtime.run_read(visible, v, caller, artefact_key(artefact_id)) is None:
        raise NotFound(f"unknown artefact {artefact_id!r}")

    def build() -> History:
        entries, nxt = history_entries(store, artefact_id, after, limit)
        return History(artefact=artefact_id, steps=[timeline_step(v, e) for _, e in entries],
                       next_after=nxt)

    # The same page for everyone who may see the artefact, at this log size: built once
    # (entries read and parsed in a worker thread: a page can be long), then reused.
    key = history_key(artefact_id, after, limit)
    if isinstance(v, Snapshot) and v.memoised(key):
        return json_answer(v, key, build)
    return await anyio.to_thread.run_sync(json_answer, v, key, build)


@router.get("/v1/artefacts/{artefact_id}/content", operation_id="downloadArtefact",
            response_class=FileResponse, responses={
                200: {"content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}},
                      "description": "the evidence bytes"}, **WRITE})
async def download(artefact_id: IdStr, runtime: RuntimeDep, caller: CallerDep,
                   access_event: AccessHeader) -> FileResponse:
    """The stored evidence bytes (logged as a ``download`` access event)."""
    record = artefact_for(runtime.store, caller, artefact_id)
    if runtime.evidence is None or not runtime.evidence.has(record["digests"]["sha256"]):
        raise NotFound(f"the server holds no bytes of artefact {artefact_id}")
    await logged_access(runtime, caller, artefact_id, access_event, ("download",))
    path = runtime.evidence.open(record["digests"]["sha256"])
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{artefact_id}.bin")


# ---- uploads and verification --------------------------------------------------------

def _content_length(request: Request, cap: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"the upload of {declared} bytes exceeds the limit of {cap} "
                              "bytes")


def _chunk_source(request: Request) -> Any:
    stream: AsyncIterator[bytes] = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    return lambda: anyio.from_thread.run(next_chunk)


@router.put("/v1/evidence/{sha256}", operation_id="uploadEvidence", status_code=201,
            response_model=Digests, responses=problems(401, 403, 413, 422, 502, 503),
            openapi_extra=UPLOAD_BODY)
async def upload_evidence(sha256: Hex64, request: Request, runtime: RuntimeDep,
                          caller: CallerDep) -> Digests:
    """Stream evidence bytes into the content-addressed store. The SHA-256 is verified
    while streaming; a size over the cap (413) or a different digest (422) stores
    nothing. Custodial roles (examiner, custodian) only."""
    if not caller.roles & CUSTODIAL_ROLES:
        raise Forbidden("only examiners and custodians may upload evidence")
    if runtime.evidence is None:
        raise NotFound("this server has no evidence store (CUSTODY_EVIDENCE_DIR)")
    cap = runtime.limits.max_upload_bytes
    _content_length(request, cap)
    store, digest = runtime.evidence, check_sha256(sha256)
    got = await anyio.to_thread.run_sync(store.put, digest, _chunk_source(request), cap)
    return Digests(sha256=got.sha256, sha512=got.sha512, size=got.size)


def registered(store: LedgerStore, sha256: str) -> list[str]:
    """Ids of the artefacts registered with this SHA-256, in log order (one query)."""
    events = [Entry.from_leaf(s.leaf).signed.event
              for s in store.entries_at(store.refs(digest_ref(sha256)))]
    return list(dict.fromkeys(e.payload["id"] for e in events
                              if e.kind == ev.ARTEFACT_REGISTER))


def visible_target(runtime: Runtime, caller: Caller, sha256: str,
                    artefact_id: str | None) -> tuple[str | None, VerifyResult | None]:
    """The artefact to verify: the one named (if visible), else the first visible
    artefact that the checkpoint PROVES was registered with ``sha256`` (never the refs
    index). Without one, the proven answer for the digest itself when it is
    ``not-registered`` (or a fault): it reveals nothing about invisible artefacts."""
    store, key = runtime.store, runtime.verifier_key
    if key is None:
        raise NotFound("the ledger has no genesis event yet")
    holder = bool(sha256) and holds_bytes_capability(caller)
    if artefact_id is not None and not holder:
        return str(artefact_for(store, caller, artefact_id)["id"]), None
    by_digest = views.verify(store, log_key=key, sha256=sha256)
    proven = [a for a in (by_digest.artefact_id, *by_digest.also_registered_as) if a]
    if artefact_id is not None:  # a court naming an artefact: visible, or proven for sha256
        if artefact_id in proven:
            return artefact_id, None
        return str(artefact_for(store, caller, artefact_id)["id"]), None
    if by_digest.verdict in ("not-registered", "fault") and by_digest.artefact_id is None:
        return None, by_digest
    v = view(store, caller)
    for art_id in proven:
        record = v.get(artefact_key(art_id))
        if record is not None and (holder or can_see_artefact(v, caller, record)):
            return art_id, None
    return None, VerifyResult("not-registered", None, sha256)


def holds_bytes_capability(caller: Caller) -> bool:
    """Holding the file is the capability: a court (and an auditor) verifies ANY artefact
    that the checkpoint proves was registered with the SHA-256 of bytes it holds, and
    sees that artefact's custody chain, case or no case (never by the refs index)."""
    return bool(caller.roles & VERIFY_BY_BYTES_ROLES)


def verdict_for(runtime: Runtime, caller: Caller, sha256: str,
                artefact_id: str | None) -> VerifyOut:
    """The court verification of :func:`ledger.views.verify` (the one verification every
    client runs: from the artefact's bundle, against the log key), for the artefacts the
    caller may see. A digest registered only for artefacts the caller may not see is
    answered ``not-registered`` with ``complete`` false: nothing about them is revealed."""
    target, answer = visible_target(runtime, caller, sha256, artefact_id)
    if target is None:
        assert answer is not None  # noqa: S101 - one of the two is always set
        return VerifyOut(**answer.to_json())
    key = runtime.verifier_key
    assert key is not None  # noqa: S101 - checked by _visible_target
    result = views.verify(runtime.store, log_key=key, sha256=sha256, artefact_id=target)
    return VerifyOut(**result.to_json())


@router.get("/v1/bundles", operation_id="getBundle", response_model=BundleOut,
            responses=READ)
def get_bundle(runtime: RuntimeDep, caller: CallerDep,
               artefact: Annotated[IdStr | None, Query()] = None,
               sha256: Annotated[Hex64 | None, Query()] = None,
               size: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> BundleOut:
    """The court bundle (docs/bundle.md) of an artefact the caller may see (or, for a court
    or an auditor giving the SHA-256 of bytes it holds, any artefact proven registered
    with them), or of a SHA-256 digest, proven at checkpoint ``size`` (default: latest).
    Clients verify it themselves against the log key they pinned; ``cache_faults`` lists where the
    server's own caches disagree with what is proven."""
    store = runtime.store
    if artefact is None and sha256 is None:
        raise InvalidInput("give 'artefact', 'sha256' or both (a court or an auditor that "
                           "holds the bytes names both)")
    digest = "" if sha256 is None else sha256.lower()
    target, answer = visible_target(runtime, caller, digest, artefact)
    if target is not None:
        bundle, faults = store.bundle(artefact_id=target, size=size)
    elif answer is not None and answer.checkpoint is not None:
        # The digest's own proven answer (not registered, or a fault the client must see):
        # its bundle, so the client reaches that answer itself.
        bundle, faults = store.bundle(sha256=digest, size=size)
    else:
        raise NotFound("no artefact with this SHA-256 is visible to you")
    return BundleOut(bundle=bundle.to_json(), cache_faults=[f.to_json() for f in faults])


@router.post("/v1/verify", operation_id="verifyDigest", response_model=VerifyOut,
             responses=READ)
def verify_digest(body: VerifyRequest, runtime: RuntimeDep, caller: CallerDep) -> VerifyOut:
    """Verify a digest (optionally against one artefact): verdict, timeline, proofs
    against the latest checkpoint. Only artefacts the caller may see are considered."""
    return verdict_for(runtime, caller, body.sha256.lower(), body.artefact)


@router.put("/v1/verify/upload", operation_id="verifyUpload", response_model=VerifyOut,
            responses=problems(401, 404, 413, 422, 502, 503), openapi_extra=UPLOAD_BODY)
async def verify_upload(request: Request, runtime: RuntimeDep, caller: CallerDep,
                        artefact: Annotated[IdStr | None, Query()] = None) -> VerifyOut:
    """Stream a file (never stored), hash it, and verify its SHA-256 as above."""
    cap = runtime.limits.max_upload_bytes
    _content_length(request, cap)
    got = await anyio.to_thread.run_sync(hash_chunks, _chunk_source(request), cap)
    return await anyio.to_thread.run_sync(verdict_for, runtime, caller, got.sha256, artefact)
