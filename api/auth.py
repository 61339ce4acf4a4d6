"""Login without passwords: a signed challenge buys a short-lived bearer token.

Flow::

    POST /v1/auth/challenge {actor}                 -> {challenge, expires_at}
    signature = Ed25519(actor key, "custody-ledger/v1/auth\\n" || challenge)
    POST /v1/auth/token {actor, challenge, signature} -> {access_token, expires_at}

Both the challenge and the token are stateless, HMAC-SHA256-authenticated strings
(``<base64url JSON>.<base64url MAC>``) under the server's token secret, with distinct
domain tags so one can never pass for the other. A challenge names the ledger origin and
the actor and expires after ``challenge_ttl_s``; it is single use: its id is kept as
spent until it expires, in the ledger database, where every worker process sees it
(:mod:`api.challenges`). A token names the actor and expires after ``token_ttl_s``;
every request reads the log size first and takes the actor's record as of that size
(:mod:`api.runtime`), so a revocation takes effect at the first request after its commit.
The public key comes from the ledger state ``actor/ID``; the Ed25519 check goes through
:mod:`ledger.core._sodium`, the one module that touches the primitive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from api.challenges import ProcessChallenges, SpentChallenges
from ledger.core import _sodium
from ledger.core.errors import InvalidSignature, Unauthenticated
from ledger.core.state import actor_key
from ledger.store.base import LedgerStore

AUTH_DOMAIN: Final = b"custody-ledger/v1/auth\n"
_CHALLENGE_TAG: Final = b"custody-ledger/v1/challenge-mac\n"
_TOKEN_TAG: Final = b"custody-ledger/v1/token-mac\n"
MAX_TOKENS: Final = 10_000
Clock = Callable[[], int]


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def auth_message(challenge: str) -> bytes:
    """The bytes an actor signs to log in (domain tag + challenge)."""
    return AUTH_DOMAIN + challenge.encode("ascii")


@dataclass(frozen=True, slots=True)
class Token:
    actor: str
    expires_at: int  # ms


class Authenticator:
    """Issues and checks challenges and tokens for one ledger origin."""

    def __init__(self, key: bytes, origin: str, *, challenge_ttl_ms: int, token_ttl_ms: int,
                 clock: Clock, spent: SpentChallenges | None = None) -> None:
        self._key = key
        self.origin = origin
        self.challenge_ttl_ms = challenge_ttl_ms
        self.token_ttl_ms = token_ttl_ms
        self.clock = clock
        #: Where redeemed challenge ids are kept (:mod:`api.challenges`): the ledger
        #: database, seen by every worker process; by default this process's memory.
        self.spent: SpentChallenges = spent or ProcessChallenges(clock)
        #: Tokens whose seal was checked (token -> claims), at most MAX_TOKENS.
        self._tokens: dict[str, Token] = {}

    # ---- sealed strings -----------------------------------------------------------

    def _seal(self, tag: bytes, claims: dict[str, Any]) -> str:
        body = _b64u(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self._key, tag + body.encode(), hashlib.sha256).digest()
        return body + "." + _b64u(mac)

    def _open(self, tag: bytes, sealed: str, what: str) -> dict[str, Any]:
        body, _, mac = sealed.partition(".")
        want = hmac.new(self._key, tag + body.encode(), hashlib.sha256).digest()
        try:
            ok = hmac.compare_digest(_unb64u(mac), want)
            claims = json.loads(_unb64u(body)) if ok else None
        except (ValueError, UnicodeDecodeError):
            ok, claims = False, None
        if not ok or not isinstance(claims, dict):
            raise Unauthenticated(f"the {what} is not valid")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < self.clock():
            raise Unauthenticated(f"the {what} has expired")
        return claims

    # ---- challenges ---------------------------------------------------------------

    def challenge(self, actor: str) -> tuple[str, int]:
        expires = self.clock() + self.challenge_ttl_ms
        claims = {"origin": self.origin, "actor": actor, "exp": expires,
                  "id": secrets.token_hex(16)}
        return self._seal(_CHALLENGE_TAG, claims), expires

    def token_for(self, store: LedgerStore, actor: str, challenge: str,
                  signature: bytes) -> tuple[str, int]:
        """Check a signed challenge and issue a token; raise :class:`Unauthenticated`."""
        claims = self._open(_CHALLENGE_TAG, challenge, "challenge")
        if claims.get("actor") != actor or claims.get("origin") != self.origin:
            raise Unauthenticated("the challenge was issued for another actor or ledger")
        record = active_actor(store, actor)
        try:
            _sodium.verify(base64.b64decode(record["public_key"]), auth_message(challenge),
                           signature)
        except InvalidSignature:
            raise Unauthenticated("the challenge signature does not verify with the "
                                  f"enrolled key of {actor}") from None
        self._spend(str(claims.get("id")), int(claims["exp"]))
        expires = self.clock() + self.token_ttl_ms
        token = self._seal(_TOKEN_TAG, {"actor": actor, "exp": expires,
                                        "jti": secrets.token_hex(8)})
        return token, expires

    def _spend(self, challenge_id: str, expires: int) -> None:
        self.spent.spend(challenge_id, expires)

    # ---- tokens -------------------------------------------------------------------

    def check(self, token: str) -> Token:
        """The token's claims if its seal holds and it has not expired. A token that was
        checked once is remembered (its seal cannot change), so a client's every
        request costs a dictionary look-up and the expiry comparison."""
        known = self._tokens.get(token)
        if known is not None:
            if known.expires_at < self.clock():
                raise Unauthenticated("the bearer token has expired")
            return known
        claims = self._open(_TOKEN_TAG, token, "bearer token")
        actor = claims.get("actor")
        if not isinstance(actor, str):
            raise Unauthenticated("the bearer token is not valid")
        checked = Token(actor, int(claims["exp"]))
        if len(self._tokens) >= MAX_TOKENS:
            now = self.clock()
            self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at >= now}
            if len(self._tokens) >= MAX_TOKENS:
                self._tokens.clear()
        self._tokens[token] = checked
        return checked


def active_actor(store: LedgerStore, actor: str) -> dict[str, Any]:
    """The actor's record, or :class:`Unauthenticated` if unknown or revoked."""
    return check_active(store.state(actor_key(actor)), actor)


def check_active(record: dict[str, Any] | None, actor: str) -> dict[str, Any]:
    """``record`` (the state ``actor/ID``) if it is an active actor's, else
    :class:`Unauthenticated`."""
    if record is None or record.get("status") != "active":
        # One message for both: do not tell a guesser which actor ids exist.
        raise Unauthenticated(f"actor {actor} is unknown or revoked")
    return record


def now_ms() -> int:
    return time.time_ns() // 1_000_000
