"""A hard cap on request bodies (threat T8), enforced before anything parses them.

Pure ASGI middleware: a declared ``Content-Length`` over the cap is answered 413 at
once; a chunked body is counted as it streams and cut off with 413 past the cap, so
memory stays bounded whatever the client sends. Streamed evidence uploads have their
own, larger cap and are checked by their routes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response
from ledger.core.errors import PayloadTooLarge

#: Paths whose bodies are streamed by the route itself, with the upload cap.
STREAMED = ("/v1/evidence/", "/v1/verify/upload")


class BodyLimit:
    def __init__(self, app: ASGIApp, cap_for: Callable[[str], int | None]) -> None:
        self.app = app
        self.cap_for = cap_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["path"])
        if cap is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _too_large(cap)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise PayloadTooLarge(f"the request body exceeds the limit of {cap} bytes")
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(cap: int) -> Any:
    return problem_response(PayloadTooLarge(f"the request body exceeds the limit of {cap} "
                                            "bytes"))
