"""HTTP routes. No SQL and no HTTPException here: routes parse, authorise through
:mod:`ledger.core.policy`, call the store or the service, and let ledger exceptions through to
:mod:`api.problems`."""

from __future__ import annotations

from typing import Any

from api.problems import MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    401: "no or invalid bearer token", 403: "authenticated but not allowed",
    404: "unknown, or not visible to the caller", 409: "a custody rule refused the event",
    413: "the body exceeds its size cap", 422: "invalid input",
    503: "busy; retry after Retry-After seconds", 502: "the database failed",
    429: "too many requests or failed logins; retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem+json answers."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {s: {"description": _DESCRIPTIONS[s], "model": Problem,
                "content": {MEDIA_TYPE: {"schema": schema}}} for s in statuses}


READ = problems(401, 404, 422, 429, 502, 503)
PUBLIC = problems(404, 422, 429, 502, 503)
WRITE = problems(401, 403, 404, 409, 413, 422, 429, 502, 503)
