"""Fast lanes: the most frequent requests without FastAPI's per-request machinery.

FastAPI's routing, dependency resolution, parameter and body handling cost more CPU per
request than what the hottest endpoints do themselves (measured in process on this
machine: about 250 µs of some 400 for a durable write, about 100 of 150 for a cached
read). Two ASGI middlewares answer the plain case of those endpoints themselves and hand
everything else to the app unchanged:

* :class:`FastAppend`: ``POST /v1/events`` on its ordinary path (see its notes).
* :class:`FastReads`: ``GET`` of an answer the route has already computed at the
  current log size (a state record, a custody history page) or that never changes (an
  inclusion proof for an index and size). The route computed it after validating the
  request; here only the bytes are looked up, after the caller's token and right to see
  the object have been checked against the log size read for this request, exactly as
  the route does (:func:`api.deps.authorise`, :func:`ledger.core.policy.visible`).

Both sit inside the body cap, the rate limits, CORS and the security headers, so those
apply as before; the responses are the routes' own bytes. Anything unusual (a query
string the lane does not parse exactly, a missing or invalid token, an object not yet
answered at this size, any exception) goes to the app, which answers as it always did:
the lanes only look things up, so doing it twice changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from typing import Any

from fastapi.responses import Response

from api import deps
from api.models import SignedEventBody
from api.problems import problem_response
from api.routes.artefacts import HISTORY_DEFAULTS, history_key
from api.routes.events import prepare_event, state_key
from api.routes.log import inclusion_key, inclusion_out
from api.runtime import Runtime, Snapshot
from api.writes import append, receipt_response
from ledger.core.errors import LedgerError
from ledger.core.policy import visible
from ledger.core.state import artefact_key

Scope = dict[str, Any]


def _headers(scope: Scope, *names: bytes) -> list[bytes | None]:
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in names and name not in found:  # the first, as Starlette's headers.get
            found[name] = value
    return [found.get(n) for n in names]


class FastAppend:
    """``POST /v1/events`` for the plain case: a JSON body of declared length, a bearer
    token of an active actor, a body that passes the route's model
    (:class:`SignedEventBody`) and the ledger's parser, and the checks of
    :func:`api.routes.events.prepare_event`, with no hidden denial to record. The append
    and its answer are the route's own (:func:`api.writes.append`,
    :func:`api.writes.receipt_response`, :func:`api.problems.problem_response`)."""

    PATH = "/v1/events"

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" \
                or scope["path"] != self.PATH or scope.get("query_string") \
                or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        token, typed, declared = _headers(scope, b"authorization", b"content-type",
                                          b"content-length")
        if typed != b"application/json" or declared is None or token is None \
                or not token.startswith(b"Bearer "):
            await self.app(scope, receive, send)
            return
        messages: list[Any] = []
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break  # a disconnect: the route sees it as it would have
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except Exception as exc:  # e.g. the body cap: raised again to the route
            await self.app(scope, _replay(messages, receive, exc), send)
            return
        runtime = self.runtime
        try:
            if messages[-1]["type"] != "http.request":
                raise ConnectionError
            raw = b"".join(chunks)
            caller = await runtime.run_read(
                deps.authorise, runtime, runtime.auth.check(token[7:].decode("latin-1")))
            SignedEventBody.model_validate(json.loads(raw))  # the route's contract
            signed, hidden = await runtime.run_read(prepare_event, runtime, caller, raw)
            if hidden:
                raise LookupError
        except Exception:  # the route answers whatever is not the plain path
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            result = await append(runtime, caller, signed)
        except LedgerError as exc:
            await problem_response(exc)(scope, receive, send)
            return
        await receipt_response(result)(scope, receive, send)


def _replay(messages: list[Any], receive: Any, error: Exception | None = None) -> Any:
    """A ``receive`` that hands out ``messages`` again, then raises ``error`` (what the
    connection's ``receive`` raised) or goes on with the connection's own."""
    pending = list(messages)

    async def replayed() -> Any:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replayed


_STATE = re.compile(r"/v1/state/([\x21-\x7e]{1,200})")
_HISTORY = re.compile(r"/v1/artefacts/([^/]{1,64})/history")
_PROOF = "/v1/log/proofs/inclusion"
_PROOF_QUERY = re.compile(rb"index=(\d{1,19})&size=(\d{1,19})")
#: The routes' bound on an index or a size (``api.routes.log.IndexQ``): beyond it, 422.
_MAX = 2**62


class FastReads:
    """``GET`` of an already computed answer: a state record or a history page (default
    page) that the route answered at the current log size, or an inclusion proof."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body: bytes | None = None
        if scope["type"] == "http" and scope["method"] == "GET" \
                and not scope.get("root_path"):
            try:
                body = self._answer(scope)
            except Exception:  # the route answers (and reports) whatever this was
                body = None
        if body is None:
            await self.app(scope, receive, send)
            return
        await Response(body, media_type="application/json")(scope, receive, send)

    def _answer(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        query: bytes = scope.get("query_string", b"")
        runtime = self.runtime
        if path == _PROOF:  # public: no token; computed here too on SQLite (a read of
            q = _PROOF_QUERY.fullmatch(query)  # some 50 µs, less than the route's own work)
            if q is None:
                return None
            index, size = int(q.group(1)), int(q.group(2))
            proof = inclusion_key(index, size)
            answer = runtime.reads.cached_immutable(proof)
            if answer is None and runtime.reads.inline and index <= _MAX and size <= _MAX:
                store = runtime.store  # a size beyond the log raises: the route answers it
                answer = runtime.reads.immutable(
                    proof, lambda: inclusion_out(store, index, size).model_dump_json().encode())
            return answer  # type: ignore[no-any-return]
        if query or not runtime.reads.inline:
            return None  # (a store read in threads: through the route)
        key: Hashable
        if (m := _STATE.fullmatch(path)) is not None:
            key, target = state_key(m.group(1)), m.group(1)
        elif (m := _HISTORY.fullmatch(path)) is not None:
            key, target = history_key(m.group(1), *HISTORY_DEFAULTS), artefact_key(m.group(1))
        else:
            return None
        (token,) = _headers(scope, b"authorization")
        if token is None or not token.startswith(b"Bearer "):
            return None
        caller = deps.authorise(runtime, runtime.auth.check(token[7:].decode("latin-1")))
        snap = caller.view
        answer = snap.peek(key)
        if answer is None or not isinstance(snap, Snapshot) \
                or visible(snap, caller, target) is None:
            return None
        return answer  # type: ignore[no-any-return]
