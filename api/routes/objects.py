"""Resource endpoints: organisations, actors, cases, legal bases, transfers, access.

Every write is a client-signed event of the endpoint's kind (same body as
``POST /v1/events``); reads return the world-state record when the caller may see it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from api import deps
from api.deps import CallerDep, RuntimeDep, StoreDep
from api.models import AppendReceipt, IdStr, Limit, ObjectList, ObjectOut, SignedEventBody
from api.routes import READ, WRITE
from api.routes.events import APPENDED
from api.writes import view, write
from ledger.core import events as ev
from ledger.core.errors import NotFound, VerificationError
from ledger.core.policy import Caller, can_see_state, visible
from ledger.core.state import ACTOR, CASE, LEGAL_BASIS, ORG, TRANSFER
from ledger.store.base import LedgerStore

router = deps.router()
W: dict[str, Any] = {"status_code": 201, "response_model": AppendReceipt,
                     "responses": {**APPENDED, **WRITE}}
After = Annotated[str, Query(max_length=64)]


def get_object(store: LedgerStore, caller: Caller, prefix: str, what: str,
               object_id: str) -> ObjectOut:
    record = visible(view(store, caller), caller, prefix + object_id)
    if record is None:
        raise NotFound(f"unknown {what} {object_id!r}")
    return ObjectOut(id=object_id, record=record)


def list_objects(store: LedgerStore, caller: Caller, prefix: str, after: str,
                 limit: int) -> ObjectList:
    v, items = view(store, caller), []  # type: ignore[var-annotated]
    for key, value in store.state_items(prefix, prefix + after if after else ""):
        object_id = key[len(prefix):]
        if not can_see_state(v, caller, key, value):
            continue
        if len(items) == limit:
            return ObjectList(items=items, next_after=items[-1]["id"])
        items.append({"id": object_id, **value})
    return ObjectList(items=items, next_after=None)


# ---- organisations and actors (admin) ------------------------------------------------

@router.post("/v1/orgs", operation_id="registerOrg", tags=["directory"], **W)
async def register_org(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                       caller: CallerDep) -> JSONResponse:
    """Register an organisation (signed ``org.register`` event; admin role)."""
    return await write(request, runtime, caller, kind=ev.ORG_REGISTER)


@router.get("/v1/orgs", operation_id="listOrgs", tags=["directory"], response_model=ObjectList,
            responses=READ)
def list_orgs(store: StoreDep, caller: CallerDep, after: After = "",
              limit: Limit = 100) -> ObjectList:
    """The organisations of the consortium (id, name, jurisdiction)."""
    return list_objects(store, caller, ORG, after, limit)


@router.get("/v1/orgs/{org_id}", operation_id="getOrg", tags=["directory"],
            response_model=ObjectOut, responses=READ)
async def get_org(runtime: RuntimeDep, caller: CallerDep, org_id: IdStr) -> ObjectOut:
    return await runtime.run_read(get_object, runtime.store, caller, ORG, "organisation",
                                  org_id)


@router.post("/v1/actors", operation_id="enrolActor", tags=["directory"], **W)
async def enrol_actor(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                      caller: CallerDep) -> JSONResponse:
    """Enrol an actor with their public key (signed ``actor.enrol``; admin role)."""
    return await write(request, runtime, caller, kind=ev.ACTOR_ENROL)


@router.get("/v1/actors/{actor_id}", operation_id="getActor", tags=["directory"],
            response_model=ObjectOut, responses=READ)
async def get_actor(runtime: RuntimeDep, caller: CallerDep, actor_id: IdStr) -> ObjectOut:
    """An actor's record: org, roles, public key, key id, status."""
    return await runtime.run_read(get_object, runtime.store, caller, ACTOR, "actor",
                                  actor_id)


@router.post("/v1/actors/{actor_id}/revocation", operation_id="revokeActor",
             tags=["directory"], **W)
async def revoke_actor(actor_id: IdStr, body: SignedEventBody, request: Request,
                       runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Revoke an actor's key (signed ``actor.revoke``; admin of the same org)."""
    return await write(request, runtime, caller, kind=ev.ACTOR_REVOKE,
                       match={"actor": actor_id})


# ---- cases and legal bases -----------------------------------------------------------

@router.post("/v1/cases", operation_id="openCase", tags=["cases"], **W)
async def open_case(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                    caller: CallerDep) -> JSONResponse:
    """Open a case led by the signer's organisation (prosecutor or admin)."""
    return await write(request, runtime, caller, kind=ev.CASE_OPEN)


@router.get("/v1/cases", operation_id="listCases", tags=["cases"], response_model=ObjectList,
            responses=READ)
def list_cases(store: StoreDep, caller: CallerDep, after: After = "",
               limit: Limit = 100) -> ObjectList:
    """The cases the caller's organisation leads or is a member of."""
    return list_objects(store, caller, CASE, after, limit)


@router.get("/v1/cases/{case_id}", operation_id="getCase", tags=["cases"],
            response_model=ObjectOut, responses=READ)
async def get_case(runtime: RuntimeDep, caller: CallerDep, case_id: IdStr) -> ObjectOut:
    return await runtime.run_read(get_object, runtime.store, caller, CASE, "case",
                                  case_id)


@router.post("/v1/cases/{case_id}/members", operation_id="addCaseMember", tags=["cases"], **W)
async def add_case_member(case_id: IdStr, body: SignedEventBody, request: Request,
                          runtime: RuntimeDep, caller: CallerDep) -> JSONResponse:
    """Add a member organisation (e.g. a joint investigation team partner abroad)."""
    return await write(request, runtime, caller, kind=ev.CASE_ADD_MEMBER,
                       match={"case": case_id})


@router.post("/v1/legal-bases", operation_id="recordLegalBasis", tags=["cases"], **W)
async def record_legal_basis(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                             caller: CallerDep) -> JSONResponse:
    """Record a legal basis (MLAT request, EIO, EPOC, warrant, ...)."""
    return await write(request, runtime, caller, kind=ev.LEGAL_BASIS)


@router.get("/v1/legal-bases/{basis_id}", operation_id="getLegalBasis", tags=["cases"],
            response_model=ObjectOut, responses=READ)
async def get_legal_basis(runtime: RuntimeDep, caller: CallerDep, basis_id: IdStr) -> ObjectOut:
    return await runtime.run_read(get_object, runtime.store, caller, LEGAL_BASIS, "legal basis",
                                  basis_id)


# ---- transfers and access ------------------------------------------------------------

@router.post("/v1/transfers", operation_id="dispatchArtefact", tags=["custody"], **W)
async def dispatch(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                   caller: CallerDep) -> JSONResponse:
    """Dispatch custody of an artefact (signed ``custody.dispatch`` naming the head)."""
    return await write(request, runtime, caller, kind=ev.DISPATCH)


@router.get("/v1/transfers/{transfer_id}", operation_id="getTransfer", tags=["custody"],
            response_model=ObjectOut, responses=READ)
async def get_transfer(runtime: RuntimeDep, caller: CallerDep, transfer_id: IdStr) -> ObjectOut:
    return await runtime.run_read(get_object, runtime.store, caller, TRANSFER, "transfer",
                                  transfer_id)


@router.post("/v1/transfers/{transfer_id}/receipt", operation_id="receiveArtefact",
             tags=["custody"], **W)
async def receive(transfer_id: IdStr, body: SignedEventBody, request: Request,
                  runtime: RuntimeDep, caller: CallerDep,
                  uploaded: Annotated[bool, Query(description="the received bytes were "
                                                  "uploaded to the evidence store")] = False,
                  ) -> JSONResponse:
    """Receive custody: a signed receipt with the digests the receiver recomputed.

    The ledger compares them with the registered digests BEFORE acceptance (a mismatch
    can only be recorded as a rejection). With ``uploaded=true`` the server also
    requires the bytes with the recomputed SHA-256 to be in its evidence store (uploaded
    and digest-verified by ``PUT /v1/evidence/{sha256}``)."""
    if uploaded:
        recomputed = body.event.payload.get("recomputed")
        sha = recomputed.get("sha256") if isinstance(recomputed, dict) else None
        evidence = runtime.evidence
        if not isinstance(sha, str) or evidence is None or not evidence.has(sha):
            raise VerificationError("uploaded=true, but the evidence store holds no bytes "
                                    "with the receipt's recomputed SHA-256")
    return await write(request, runtime, caller, kind=ev.RECEIPT,
                       match={"transfer": transfer_id})


@router.post("/v1/access-events", operation_id="recordAccess", tags=["custody"], **W)
async def record_access(body: SignedEventBody, request: Request, runtime: RuntimeDep,
                        caller: CallerDep) -> JSONResponse:
    """Record an access (view, copy, analysis, export...), including a denied one."""
    return await write(request, runtime, caller, kind=ev.ACCESS)
