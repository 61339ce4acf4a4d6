"""The ONE mapping of the ledger's exception tree onto RFC 9457 problem details.

Every error response of the API is ``application/problem+json``::

    {"type": ".../problems/<code>", "title", "status", "detail", "code",
     "rule"?, "retry_after"?, "index"?, "errors"?}

``code`` is the ledger exception's stable code (``ledger.core.errors``) so a client such as
:class:`ledger.store.remote.RemoteStore` can raise the very same exception class again;
``rule`` names the custody rule of a 409. Routers never build error responses themselves.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from ledger.core import errors as e

PROBLEM_BASE = "https://custody-ledger.example/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("custody.api")

#: Most specific class first; the first match wins.
STATUS: tuple[tuple[type[e.LedgerError], int, str], ...] = (
    (e.PayloadTooLarge, 413, "Payload too large"),
    (e.InvalidInput, 422, "Invalid input"),
    (e.NotFound, 404, "Not found"),
    (e.Unauthenticated, 401, "Authentication required"),
    (e.Forbidden, 403, "Forbidden"),
    (e.Conflict, 409, "Conflict"),
    (e.RuleViolation, 409, "Custody rule violated"),
    (e.InvalidSignature, 422, "Invalid signature"),
    (e.VerificationError, 422, "Verification failed"),
    (e.RateLimited, 429, "Too many requests"),
    (e.StorageFull, 503, "Storage full"),
    (e.StoreUnavailable, 503, "Ledger database unavailable"),
    (e.Backpressure, 503, "Service busy"),
    (e.UpstreamError, 502, "Upstream failure"),
    (e.IntegrityFault, 500, "Ledger integrity fault"),
)


class Problem(BaseModel):
    """An RFC 9457 problem details object (documented in the OpenAPI schema)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str
    rule: str | None = None
    retry_after: float | None = None


def status_of(exc: e.LedgerError) -> tuple[int, str]:
    for cls, status, title in STATUS:
        if isinstance(exc, cls):
            return status, title
    return 500, "Ledger error"


def problem_body(exc: e.LedgerError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of the problem for ``exc``."""
    status, title = status_of(exc)
    code = next((c.code for c, _, _ in STATUS if isinstance(exc, c)), e.LedgerError.code)
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status,
                            "detail": exc.message, "code": code}
    headers: dict[str, str] = {}
    if isinstance(exc, e.RuleViolation):
        body["rule"] = exc.rule
    if isinstance(exc, e.Backpressure):
        body["retry_after"] = exc.retry_after
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, e.IntegrityFault) and exc.index is not None:
        body["index"] = exc.index
    if isinstance(exc, e.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="custody-ledger"'
    return status, body, headers


def problem_response(exc: e.LedgerError) -> JSONResponse:
    status, body, headers = problem_body(exc)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
    errors = [{"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
              for err in exc.errors()[:20]]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    status, body, headers = problem_body(e.InvalidInput(f"{where}: {first['msg']}"))
    body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type
    if exc.status_code == 400:
        # FastAPI wraps any error raised while reading the body, including our own (the
        # body cap's PayloadTooLarge): answer with that error, not a generic 400.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, e.LedgerError):
            return problem_response(cause)
        # e.g. a body that is not JSON: invalid input like any other
        return problem_response(e.InvalidInput(f"malformed request: {exc.detail}"))
    # Only the framework raises these (unknown route, wrong method): map them too.
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    body = {"type": PROBLEM_BASE + code, "title": str(exc.detail), "status": exc.status_code,
            "detail": str(exc.detail), "code": code}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers,
                        media_type=MEDIA_TYPE)


def _ledger(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.LedgerError)  # noqa: S101 - registered for this type
    return problem_response(exc)


def database_error(exc: BaseException) -> e.LedgerError | None:
    """The ledger error for a database failure that escaped the store untranslated (the
    store maps its own; this is the safety net, as ``cli.main.database_error`` is for
    the CLI): a server that cannot be reached is ``StoreUnavailable`` (503 with
    Retry-After), never a 500. None when ``exc`` is not a database failure."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return None
    from ledger.store.sql import describe_database_error

    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return e.Backpressure("every connection to the ledger database is busy; retry "
                              "shortly", 1.0)
    if isinstance(exc, sa_exc.DBAPIError):
        return describe_database_error(exc)
    dbapi = sys.modules.get("psycopg")
    if dbapi is not None and isinstance(exc, dbapi.Error):  # the driver's own, unwrapped
        return describe_database_error(exc)
    return None


def _database(request: Request, exc: Exception) -> JSONResponse:
    translated = database_error(exc)
    if translated is None:  # pragma: no cover - registered for database errors only
        return _unexpected(request, exc)
    log.warning("a database error escaped the store on %s %s: %s", request.method,
                request.url.path, translated.message)
    return problem_response(translated)


def _database_errors() -> list[type[Exception]]:
    """The database exception classes the safety net handles (``_database``): those of
    the modules already loaded (the store is opened before the app is built; a driver
    that is not loaded raises nothing)."""
    classes: list[type[Exception]] = []
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None:
        classes += [sa_exc.DBAPIError, sa_exc.TimeoutError]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        classes.append(psycopg.Error)
    return classes


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if database_error(exc) is not None:
        return _database(request, exc)
    # A bug: log it with its traceback, tell the client nothing about internals.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = {"type": PROBLEM_BASE + "internal", "title": "Internal error", "status": 500,
            "detail": "an unexpected error occurred; it has been logged", "code": "internal"}
    return JSONResponse(body, status_code=500, media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.LedgerError, _ledger)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for cls in _database_errors():  # its own handler: no traceback logged for a 503
        app.add_exception_handler(cls, _database)
    app.add_exception_handler(Exception, _unexpected)

