"""FastAPI dependencies (``Annotated``): the runtime, the store, the calling actor."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Token, check_active
from api.runtime import Runtime, Snapshot
from ledger.core.errors import InvalidInput, Unauthenticated
from ledger.core.policy import Caller
from ledger.core.state import actor_key
from ledger.store.base import LedgerStore

_bearer = HTTPBearer(auto_error=False, description="a token from POST /v1/auth/token")


# Dependencies without I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# the thread pool, a hop per dependency per request.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_store(runtime: RuntimeDep) -> LedgerStore:
    return runtime.store


StoreDep = Annotated[LedgerStore, Depends(get_store)]


@dataclass(frozen=True, slots=True)
class CallerAt(Caller):
    """The caller, with the state snapshot its request was authorised against (the
    policy checks of the request read it: :func:`api.writes.view`)."""

    view: Snapshot


def authorise(runtime: Runtime, token: Token) -> CallerAt:
    """The token's actor as the ledger says NOW: the log size is read from the database
    first, so a revocation or role change committed before this request began is seen."""
    snap = runtime.reads.snapshot()
    return CallerAt(token.actor, check_active(snap.get(actor_key(token.actor)), token.actor),
                    snap)


async def current_actor(request: Request,
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                        ) -> Caller:
    """The actor named by a valid bearer token, still active on the ledger at the log size
    read for this request (see :mod:`api.runtime`)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthenticated("this endpoint needs a bearer token (POST /v1/auth/token)")
    runtime: Runtime = request.app.state.runtime
    token = runtime.auth.check(creds.credentials)
    return await runtime.run_read(authorise, runtime, token)


CallerDep = Annotated[Caller, Depends(current_actor)]


class StrictQueryRoute(APIRoute):
    """A route that refuses query parameters it does not declare (strict requests, T8),
    with a 422 before anything else runs. (A route class rather than an app-wide
    dependency: FastAPI resolves each dependency of every request at some cost.)"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = frozenset(f.alias for f in get_flat_params(self.dependant)
                            if isinstance(f.field_info, params.Query))

        async def strict_handler(request: Request) -> Response:
            if request.scope.get("query_string"):
                check_query(request, allowed)
            return await handler(request)

        return strict_handler


def check_query(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise InvalidInput("unknown query parameter(s): " + ", ".join(unknown[:5])[:200])


def router(**kwargs: Any) -> APIRouter:
    """An ``APIRouter`` whose routes are :class:`StrictQueryRoute`."""
    return APIRouter(route_class=StrictQueryRoute, **kwargs)
