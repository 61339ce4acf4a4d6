"""Evidence packages: resumable upload, probe and ranged download of the encrypted files
that carry evidence from one agency to another.

A package is an age-encrypted file named by its SHA-256; the server stores it opaquely
(it holds no key that opens it) in :class:`api.package_store.PackageStore`. The signed
dispatch of a transfer names it (``package.sha256``), and so does the transfer's state
record ``tr/ID``.

Who may do what:

* Upload (``PUT``): any authenticated actor with a custodial role (examiner, custodian),
  like evidence uploads. Storing bytes grants nothing: they are ciphertext, nobody can
  read them back unless a transfer between their organisations names them, and the
  SHA-256 is checked before anything is published.
* Probe (``HEAD``): custodial roles (an uploader asks where to resume; a complete
  package tells them nothing they could not learn by uploading it) and the parties to a
  transfer naming the package. A partial upload shows only to its own organisation.
* Download (``GET``): actors of an organisation that sends or receives a transfer whose
  dispatch names this package. Anything else is 404, exactly like an absent package.
"""

from __future__ import annotations

import re
from typing import Annotated

import anyio
from fastapi import Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from api import deps
from api.deps import CallerDep, RuntimeDep
from api.evidence_store import check_sha256
from api.models import Hex64
from api.package_store import PackageState, PackageStore, UploadResult
from api.routes import READ, problems
from api.routes.artefacts import UPLOAD_BODY, _chunk_source
from api.runtime import Runtime
from ledger.core.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from ledger.core.policy import Caller
from ledger.core.vocab import CUSTODIAL_ROLES

router = deps.router(tags=["packages"])
#: Paths whose bodies this router streams itself (no small-body cap).
PREFIX = "/v1/packages/"
UPLOAD_LENGTH, UPLOAD_OFFSET = "Upload-Length", "Upload-Offset"
MAX_LENGTH = 2**62
_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{0,19})")


class PackageUpload(BaseModel):
    """Where an upload stands: ``offset`` bytes of ``length`` are stored."""

    sha256: str
    length: int
    offset: int
    complete: bool


UploadLength = Annotated[int, Header(
    alias=UPLOAD_LENGTH, ge=1, le=MAX_LENGTH,
    description="the package's total size in bytes (the same on every request of one "
    "upload)")]
UploadOffset = Annotated[int, Header(
    alias=UPLOAD_OFFSET, ge=0, le=MAX_LENGTH,
    description="where this body starts: the size already stored (HEAD tells it)")]
RangeHeader = Annotated[str | None, Header(
    alias="Range", pattern=r"^bytes=\d{1,19}-\d{0,19}$", max_length=64,
    description="one byte range, 'bytes=N-' (from N to the end) or 'bytes=N-M'")]


def _store(runtime: Runtime) -> PackageStore:
    if runtime.packages is None:
        raise NotFound("this server has no package store (CUSTODY_PACKAGES_DIR or "
                       "CUSTODY_EVIDENCE_DIR)")
    return runtime.packages


def _party(runtime: Runtime, caller: Caller, sha256: str) -> bool:
    """Is the caller's organisation a party to a transfer whose dispatch names it?"""
    return caller.org in runtime.package_index.parties(runtime.store, sha256)


def _progress_headers(length: int | None, offset: int) -> dict[str, str]:
    headers = {UPLOAD_OFFSET: str(offset)}
    if length is not None:
        headers[UPLOAD_LENGTH] = str(length)
    return headers


@router.put(PREFIX + "{sha256}", operation_id="uploadPackage", status_code=201,
            response_model=PackageUpload, openapi_extra=UPLOAD_BODY, responses={
                200: {"model": PackageUpload, "description": "already complete; nothing "
                      "was rewritten"},
                202: {"model": PackageUpload, "description": "the body is stored; the upload "
                      "continues at Upload-Offset"},
                **problems(401, 403, 404, 409, 413, 422, 502, 503)})
async def upload_package(sha256: Hex64, request: Request, runtime: RuntimeDep,
                         caller: CallerDep, upload_length: UploadLength,
                         upload_offset: UploadOffset = 0) -> JSONResponse:
    """Stream (part of) a package. A new upload starts at ``Upload-Offset: 0``; an
    interrupted one continues at the size already stored (``HEAD``), else ``409``. When
    all ``Upload-Length`` bytes are in, their SHA-256 must be the one in the path (``422``
    and nothing kept otherwise); the package is then published (``201``). A length over
    the upload cap is refused before the body is read (``413``). Custodial roles only."""
    if not caller.roles & CUSTODIAL_ROLES:
        raise Forbidden("only examiners and custodians may upload packages")
    store, digest = _store(runtime), check_sha256(sha256)
    cap = runtime.limits.max_upload_bytes
    if upload_length > cap:
        raise PayloadTooLarge(f"the package of {upload_length} bytes exceeds the limit of "
                              f"{cap} bytes")
    if upload_offset > upload_length:
        raise InvalidInput(f"{UPLOAD_OFFSET} {upload_offset} is past {UPLOAD_LENGTH} "
                           f"{upload_length}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() \
            and int(declared) > upload_length - upload_offset:
        raise PayloadTooLarge(f"a body of {declared} bytes is longer than the "
                              f"{upload_length - upload_offset} bytes left of the package")
    chunks = _chunk_source(request)
    try:
        result = await anyio.to_thread.run_sync(
            lambda: store.put(digest, chunks, length=upload_length, offset=upload_offset,
                              org=caller.org, max_bytes=cap))
    except ClientDisconnect:
        # An interrupted upload is expected, not a server error: what arrived is kept
        # for the next request (this answer reaches nobody; HEAD tells the client).
        state = store.state(digest)
        result = UploadResult(digest, "partial", state.offset, upload_length)
    status = {"created": 201, "exists": 200, "partial": 202}[result.status]
    body = PackageUpload(sha256=digest, length=result.length, offset=result.offset,
                         complete=result.complete)
    return JSONResponse(body.model_dump(), status_code=status,
                        headers=_progress_headers(result.length, result.offset))


@router.head(PREFIX + "{sha256}", operation_id="probePackage", status_code=200,
             response_class=Response, responses={
                 200: {"description": "complete: Content-Length is its size"},
                 204: {"description": "an upload in progress: Upload-Offset bytes of "
                       "Upload-Length are stored"},
                 **problems(401, 404, 422, 502, 503)})
def probe_package(sha256: Hex64, runtime: RuntimeDep, caller: CallerDep) -> Response:
    """Is the package here (``200``, ``Content-Length``), partly uploaded (``204``,
    ``Upload-Offset``: where to continue) or not (``404``)?"""
    store, digest = _store(runtime), check_sha256(sha256)
    state: PackageState = store.state(digest)
    custodial = bool(caller.roles & CUSTODIAL_ROLES)
    if state.status == "complete" and (custodial or _party(runtime, caller, digest)):
        return Response(status_code=200, headers={
            "Content-Length": str(state.offset), "Accept-Ranges": "bytes",
            **_progress_headers(state.length, state.offset)})
    if state.status == "partial" and custodial and state.org == caller.org:
        return Response(status_code=204, headers=_progress_headers(state.length,
                                                                    state.offset))
    raise NotFound(f"no package with SHA-256 {digest}")


@router.get(PREFIX + "{sha256}", operation_id="downloadPackage", response_class=FileResponse,
            responses={
                200: {"content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}},
                      "description": "the package"},
                206: {"content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}},
                      "description": "the requested range of the package (Content-Range)"},
                **READ})
def download_package(sha256: Hex64, runtime: RuntimeDep, caller: CallerDep,
                     range_: RangeHeader = None) -> FileResponse:
    """The package's bytes, streamed; ``Range: bytes=N-`` continues an interrupted
    download (``206``). Only for the organisations of a transfer whose dispatch names
    it; for anyone else it does not exist (``404``)."""
    store, digest = _store(runtime), check_sha256(sha256)
    if not _party(runtime, caller, digest):
        raise NotFound(f"no package with SHA-256 {digest}")
    path = store.open(digest)
    if range_ is not None:
        _check_range(range_, path.stat().st_size)
    return FileResponse(path, media_type="application/octet-stream",
                        filename=f"{digest}.age")


def _check_range(value: str, size: int) -> None:
    """Only a satisfiable single range is served (FileResponse then answers 206)."""
    match = _RANGE.fullmatch(value)
    if match is None:
        raise InvalidInput("Range must be one range, 'bytes=N-' or 'bytes=N-M'")
    start, end = int(match[1]), match[2]
    if start >= size or (end and int(end) < start):
        raise InvalidInput(f"the range {value} is outside the package ({size} bytes)")
