"""Login: challenge, signed challenge → bearer token; who am I."""

from __future__ import annotations

import base64

from fastapi import APIRouter

from api.auth import AUTH_DOMAIN
from api.deps import CallerDep, RuntimeDep
from api.models import ChallengeRequest, ChallengeResponse, TokenRequest, TokenResponse
from api.routes import problems

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/challenge", operation_id="createChallenge", response_model=ChallengeResponse,
             responses=problems(413, 422, 503))
def create_challenge(body: ChallengeRequest, runtime: RuntimeDep) -> ChallengeResponse:
    """A fresh single-use challenge for ``actor`` (valid for one minute).

    Issued for any well-formed actor id (known or not), so it reveals nothing."""
    challenge, expires = runtime.auth.challenge(body.actor)
    return ChallengeResponse(challenge=challenge, expires_at=expires,
                             sign=AUTH_DOMAIN.decode() + "<challenge>")


@router.post("/token", operation_id="createToken", response_model=TokenResponse,
             responses=problems(401, 413, 422, 502, 503))
def create_token(body: TokenRequest, runtime: RuntimeDep) -> TokenResponse:
    """Exchange a challenge signed with the actor's enrolled Ed25519 key for a token."""
    signature = base64.b64decode(body.signature)
    token, expires = runtime.auth.token_for(runtime.store, body.actor, body.challenge,
                                            signature)
    return TokenResponse(access_token=token, expires_at=expires, actor=body.actor)


@router.get("/me", operation_id="whoAmI", response_model=dict[str, object],
            responses=problems(401, 502, 503))
def who_am_i(caller: CallerDep) -> dict[str, object]:
    """The authenticated actor's ledger record."""
    return {"id": caller.id, "record": caller.record}
