"""Safe defaults for a server that other countries connect to.

* :class:`SecurityHeaders`: on every response, ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``, a Content-Security-Policy
  (``default-src 'none'`` for the API's JSON; the offline ``/docs`` page may load its own
  assets; the court documents of ``/v1/reports`` carry their own policy), ``Cache-Control:
  no-store`` on login answers, and HSTS when the server speaks TLS.
* :class:`RateLimit`: token buckets per client address and per authenticated actor;
  beyond them, 429 problem+json with ``Retry-After`` (never a 5xx).
* :class:`LoginThrottle`: failed logins counted per actor and per address in a sliding
  window; past the limit, further attempts get 429 until the window has passed.

All state is in memory, bounded, and per process: with several workers each enforces
its own limits (documented in docs/api.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response
from ledger.core.errors import RateLimited, Unauthenticated

API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
DOCS_CSP = (b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' "
            b"'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
            b"frame-ancestors 'none'; base-uri 'none'")
#: Most tracked keys per table (addresses, actors): the least recently seen is dropped.
MAX_TRACKED = 50_000


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"cross-origin-resource-policy", b"same-origin")]
                if path == "/docs" or path.startswith("/docs/"):
                    extra.append((b"content-security-policy", DOCS_CSP))
                elif not path.startswith("/v1/reports"):
                    extra.append((b"content-security-policy", API_CSP))
                if path.startswith("/v1/auth/"):
                    extra.append((b"cache-control", b"no-store"))
                if self.tls:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Buckets:
    """Token buckets (``rate`` per second, ``burst`` deep) keyed by string; thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; return 0 if granted, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, last = self._state.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._state[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._state) > MAX_TRACKED:
                self._state.popitem(last=False)
        return wait


@dataclass(frozen=True, slots=True)
class Limits:
    per_address: float  # requests per second per client address (0: off)
    per_actor: float  # requests per second per authenticated actor (0: off)
    burst: int


@dataclass(frozen=True)
class SecurityConfig:
    """What :func:`api.app.create_app` turns on. The defaults (all off) are for
    in-process tests; a server built from :class:`~api.settings.Settings` gets the
    settings' values (limits on)."""

    tls: bool = False
    #: Client certificates required: the certificate's organisation must be the actor's.
    mtls: bool = False
    rate: Limits = Limits(0.0, 0.0, 1)
    login_failures_per_actor: int = 0
    login_failures_per_address: int = 0
    login_window_s: float = 300.0
    cors_origins: tuple[str, ...] = ()
    #: Signs the record of a refused login (``auth.denied``): the server's security actor.
    security_actor: object | None = None  # ledger.service.ActorKey

    def summary(self, uploads: bool) -> str:
        """The startup line's list of what is on."""
        parts: list[str] = []  # TLS and client certificates: api.tls.describe, before this
        if self.mtls:
            parts.append("the client certificate's organisation checked at login")
        if self.rate.per_address or self.rate.per_actor:
            parts.append(f"rate limits {self.rate.per_address:g}/s per address, "
                         f"{self.rate.per_actor:g}/s per actor (burst {self.rate.burst})")
        else:
            parts.append("no rate limits")
        if self.login_failures_per_actor or self.login_failures_per_address:
            parts.append(f"logins throttled after {self.login_failures_per_actor} failures "
                         f"per actor / {self.login_failures_per_address} per address in "
                         f"{int(self.login_window_s)} s")
        parts.append("CORS for " + ", ".join(self.cors_origins) if self.cors_origins
                     else "no CORS")
        parts.append("evidence uploads on" if uploads else "evidence uploads off")
        return "; ".join(parts)


class RateLimit:
    """429 + Retry-After beyond the per-address or per-actor rate."""

    def __init__(self, app: ASGIApp, *, limits: Limits,
                 actor_of: Callable[[str], str | None]) -> None:
        self.app = app
        self.limits = limits
        self.actor_of = actor_of
        self.by_address = Buckets(limits.per_address, limits.burst) \
            if limits.per_address > 0 else None
        self.by_actor = Buckets(limits.per_actor, limits.burst) if limits.per_actor > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wait = 0.0
        if self.by_address is not None:
            wait = self.by_address.take(client_address(scope))
        if not wait and self.by_actor is not None:
            token = _bearer(scope)
            actor = self.actor_of(token) if token else None
            if actor is not None:
                wait = self.by_actor.take(actor)
        if wait:
            await problem_response(RateLimited(
                "too many requests; slow down and retry after the time in Retry-After",
                retry_after=float(max(1, math.ceil(wait)))))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token else None
    return None


class LoginThrottle:
    """At most ``per_actor`` failed logins per actor and ``per_address`` per address in
    ``window_s``; past that, every attempt is refused (429) until the window has passed."""

    def __init__(self, *, per_actor: int, per_address: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_actor, self.per_address, self.window_s = per_actor, per_address, window_s
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def check(self, actor: str, address: str) -> None:
        """Raise :class:`RateLimited` if this actor or address is throttled."""
        now = self.clock()
        with self._lock:
            for key, limit in (("actor:" + actor, self.per_actor),
                               ("addr:" + address, self.per_address)):
                times = self._recent(key, now)
                if limit and len(times) >= limit:
                    wait = times[0] + self.window_s - now
                    raise RateLimited(f"too many failed logins ({len(times)} in "
                                      f"{int(self.window_s)} s); retry later",
                                      retry_after=float(max(1, math.ceil(wait))))

    def failed(self, actor: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in ("actor:" + actor, "addr:" + address):
                times = self._recent(key, now)
                times.append(now)
                self._failures.pop(key, None)
                self._failures[key] = times
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def succeeded(self, actor: str) -> None:
        with self._lock:
            self._failures.pop("actor:" + actor, None)


def actor_of_token(check: Callable[[str], object]) -> Callable[[str], str | None]:
    """The actor a bearer token names, if its seal and expiry hold (no store read)."""

    def actor_of(token: str) -> str | None:
        try:
            return str(check(token).actor)  # type: ignore[attr-defined]
        except Unauthenticated:
            return None

    return actor_of
