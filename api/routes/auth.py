"""Login: challenge, signed challenge → bearer token; who am I."""

from __future__ import annotations

import base64
import os
from typing import NoReturn

from fastapi import Request

from api import deps
from api.auth import AUTH_DOMAIN, now_ms
from api.deps import CallerDep, RuntimeDep
from api.models import ChallengeRequest, ChallengeResponse, TokenRequest, TokenResponse
from api.routes import problems
from api.runtime import Runtime
from api.security import client_address
from api.tls import PEER_CERT, CertIdentity, certificate_identity
from ledger.core import events as ev
from ledger.core.errors import Forbidden, Unauthenticated
from ledger.core.state import actor_key
from ledger.service import ActorKey, Custody

router = deps.router(prefix="/v1/auth", tags=["auth"])


@router.post("/challenge", operation_id="createChallenge", response_model=ChallengeResponse,
             responses=problems(413, 422, 503))
async def create_challenge(body: ChallengeRequest, runtime: RuntimeDep) -> ChallengeResponse:
    """A fresh single-use challenge for ``actor`` (valid for one minute).

    Issued for any well-formed actor id (known or not), so it reveals nothing."""
    challenge, expires = runtime.auth.challenge(body.actor)
    return ChallengeResponse(challenge=challenge, expires_at=expires,
                             sign=AUTH_DOMAIN.decode() + "<challenge>")


@router.post("/token", operation_id="createToken", response_model=TokenResponse,
             responses=problems(401, 403, 413, 422, 429, 502, 503))
def create_token(body: TokenRequest, runtime: RuntimeDep, request: Request) -> TokenResponse:
    """Exchange a challenge signed with the actor's enrolled Ed25519 key for a token.

    Failed logins are throttled per actor and per address (429 with Retry-After). With
    mutual TLS, the client certificate's organisation must be the actor's: otherwise 403,
    and the refused login is recorded on the log (``auth.denied``)."""
    address = client_address(request.scope)
    throttle = runtime.login_throttle
    if throttle is not None:
        throttle.check(body.actor, address)
    try:
        signature = base64.b64decode(body.signature)
        token, expires = runtime.auth.token_for(runtime.store, body.actor, body.challenge,
                                                signature)
    except Unauthenticated:
        if throttle is not None:
            throttle.failed(body.actor, address)
        raise
    if runtime.security.mtls:
        _check_certificate(runtime, request, body.actor, address)
    if throttle is not None:
        throttle.succeeded(body.actor)
    return TokenResponse(access_token=token, expires_at=expires, actor=body.actor)


def _check_certificate(runtime: Runtime, request: Request, actor: str, address: str) -> None:
    """The client certificate must name (subject O) the organisation of ``actor``."""
    der = getattr(request.state, PEER_CERT, None)
    record = runtime.store.state(actor_key(actor)) or {}
    org = str(record.get("org", ""))
    if der is None:
        _refuse(runtime, actor, address, None, f"actor {actor} logged in without a client "
                "certificate")
    ident = certificate_identity(der)
    if ident.org != org:
        _refuse(runtime, actor, address, ident,
                f"the client certificate is of organisation {ident.org or '(none)'!r}, not "
                f"{org!r} of actor {actor}")


def _refuse(runtime: Runtime, actor: str, address: str, ident: CertIdentity | None,
            reason: str) -> NoReturn:
    """Record the refused login on the log (signed by the server's security actor), then
    answer 403."""
    signer = runtime.security.security_actor
    origin = runtime.origin
    if isinstance(signer, ActorKey) and origin:
        custody = Custody(runtime.store, origin=origin, clock=now_ms, random=os.urandom)
        payload: dict[str, object] = {"actor": actor, "reason": reason,
                                      "address": address[:100]}
        if ident is not None:
            payload |= {"certificate_org": ident.org[:256],
                        "certificate_subject": ident.subject[:512],
                        "certificate_sha256": ident.sha256}
        signed = custody.event(ev.AUTH_DENIED, signer, payload)
        runtime.committer.submit(signed).result(timeout=60)
    raise Forbidden(reason)


@router.get("/me", operation_id="whoAmI", response_model=dict[str, object],
            responses=problems(401, 502, 503))
async def who_am_i(caller: CallerDep) -> dict[str, object]:
    """The authenticated actor's ledger record."""
    return {"id": caller.id, "record": caller.record}
