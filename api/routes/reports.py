"""The court report over HTTP: the same documents as ``custody report`` (docs/court.md).

``GET /v1/reports?artefact=ID&format=html|pdf|bundle|verify-page&lang=…&size=N`` returns
one of the three files of a report at checkpoint ``size`` (default: the latest; the
response header ``X-Custody-Tree-Size`` names it, so the other two files can be fetched
at exactly the same size and the bundle's SHA-256 printed in the report matches).
The verdict is computed from the artefact's bundle verified against the server's own log
key; a client that distrusts the server verifies the bundle itself.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import Response

from api import deps
from api.deps import CallerDep, RuntimeDep
from api.models import IdStr
from api.routes import READ
from api.routes.artefacts import visible_target
from ledger.core.bundle import verify_bundle
from ledger.core.errors import NotFound

router = deps.router(tags=["court"])

MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf",
         "bundle": "application/json", "verify-page": "text/html; charset=utf-8"}


@router.get("/v1/reports", operation_id="getReport", responses={
    **READ, 200: {"description": "The document", "content": {
        "text/html": {}, "application/pdf": {}, "application/json": {}}}},
    response_class=Response)
def get_report(runtime: RuntimeDep, caller: CallerDep,
               artefact: Annotated[IdStr, Query()],
               format: Annotated[Literal["html", "pdf", "bundle", "verify-page"],
                                 Query()] = "html",
               lang: Annotated[Literal["en", "de", "fr", "nl"], Query()] = "en",
               size: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Response:
    """The court report of an artefact the caller may see (HTML or PDF), the bundle it
    reads, or the verification page, proven at checkpoint ``size``."""
    from ledger.court.output import court_documents

    key = runtime.verifier_key
    if key is None:
        raise NotFound("the ledger has no genesis event yet")
    target, _answer = visible_target(runtime, caller, "", artefact)
    if target is None:
        raise NotFound(f"unknown artefact {artefact!r}")
    bundle, cache_faults = runtime.store.bundle(artefact_id=target, size=size)
    result = verify_bundle(bundle, log_key=key).with_faults(cache_faults)
    if result.verdict == "not-registered":
        raise NotFound(f"unknown artefact {artefact!r}")
    tree_size = result.checkpoint.size if result.checkpoint else 0
    stem = f"{target}-{tree_size}"
    docs = court_documents(
        bundle, result, fmt="pdf" if format == "pdf" else "html", lang=lang, log_key=key,
        bundle_name=f"{stem}.bundle.json", page_name=f"{stem}.verify.html",
        evidence_name=None, witnesses=(), quorum=0, generated_at=int(time.time() * 1000)) \
        if format in ("html", "pdf") else None
    if format == "bundle":
        body, name = bundle.to_bytes(), f"{stem}.bundle.json"
    elif format == "verify-page":
        from ledger.court.verify_page import render_verify_page

        body = render_verify_page(lang=lang, bundle=bundle.to_json(), log_key=key,
                                  title=target).encode()
        name = f"{stem}.verify.html"
    else:
        assert docs is not None  # noqa: S101 - built above for html and pdf
        body, name = docs.report, f"{stem}.report.{format}"
    return Response(body, media_type=MEDIA[format], headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Custody-Tree-Size": str(tree_size), "X-Custody-Verdict": result.verdict,
        "X-Custody-Bundle-SHA256": hashlib.sha256(bundle.to_bytes()).hexdigest()})
