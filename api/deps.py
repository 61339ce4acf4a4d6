"""FastAPI dependencies (``Annotated``): the runtime, the store, the calling actor."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import active_actor
from api.policy import Caller
from api.runtime import Runtime
from ledger.errors import InvalidInput, Unauthenticated
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


def current_actor(runtime: RuntimeDep,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                  ) -> Caller:
    """The actor named by a valid bearer token, still active on the ledger (a state read:
    a plain ``def``, so it runs in the thread pool, off the event loop)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthenticated("this endpoint needs a bearer token (POST /v1/auth/token)")
    token = runtime.auth.check(creds.credentials)
    return Caller(token.actor, active_actor(runtime.store, token.actor))


CallerDep = Annotated[Caller, Depends(current_actor)]


async def strict_query(request: Request) -> None:
    """Refuse query parameters the operation does not declare (strict requests, T8)."""
    if not request.query_params:
        return
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    allowed = {f.alias for f in get_flat_params(dependant)
               if isinstance(f.field_info, params.Query)}
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise InvalidInput("unknown query parameter(s): " + ", ".join(unknown[:5])[:200])
