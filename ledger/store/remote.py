"""A :class:`~ledger.store.base.LedgerStore` that talks to the API server over HTTP.

With it every use case in :mod:`ledger.service` runs unchanged against a server: events
are built and signed where the private key lives (the client) and sent with
``POST /v1/events``; reads go to the authorised read endpoints. A problem+json answer is
turned back into the SAME :mod:`ledger.core.errors` class the local store would raise (by its
``code``), so the CLI's exit codes are identical in both modes. Answers from the server
are checked before use (threat T19): leaf bytes must hash to the stated leaf hash, hashes
must be 32 bytes, sizes integers.

Evidence packages (the encrypted files of the sealed exchange) move with
:meth:`RemoteStore.upload_package` and :meth:`RemoteStore.download_package`: both resume
where an interrupted attempt stopped (``Upload-Offset`` / ``Range``), and a download is
published at its destination only once its SHA-256 is the expected one.

Transport: ``https://`` servers are verified against the system's trust store, or
against ``tls.ca`` (pinned in the home by ``custody join --ca``), and a client
certificate is presented when ``tls.cert`` is set (mutual TLS). There is no fallback to
plain HTTP, and plain ``http://`` is refused for any host but a loopback address (unless
``CUSTODY_ALLOW_PLAIN_HTTP=1``). A certificate problem is one sentence naming the host.

Tokens: ``token`` is a bearer token, a callable returning one (e.g. :class:`ActorLogin`,
which logs in by signing a challenge and renews the token before it expires), or None
for public reads only. Appends are sent with the token of the event's signer when
``signer_tokens`` is given (the server refuses an event signed by someone else than the
authenticated actor).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx

from ledger.core import errors as e
from ledger.core import merkle
from ledger.core.bundle import Bundle, Fault
from ledger.core.events import SignedEvent
from ledger.core.state import MAPPED, NONCE
from ledger.fsutil import fsync_dir
from ledger.store.base import AppendResult, StoredEntry

if TYPE_CHECKING:
    from ledger.core.audit import AuditReport
    from ledger.home import Home
    from ledger.service import ActorKey
    from ledger.store.repair import Repair

AUTH_DOMAIN = b"custody-ledger/v1/auth\n"
TokenSource = Callable[[], str] | str | None
PAGE = 1000
#: ``progress(done, total)``: bytes moved so far (resumed bytes included) of the total.
TransferProgress = Callable[[int, int], None]
#: Attempts of one package upload or download (each resumes where the last stopped).
PACKAGE_ATTEMPTS = 5
_CHUNK = 1 << 20
#: Throughput assumed for a read timeout that covers the server hashing a package.
_SLOW_BYTES_PER_S = 20 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def _codes() -> dict[str, type[e.LedgerError]]:
    table: dict[str, type[e.LedgerError]] = {}
    stack: list[type[e.LedgerError]] = [e.LedgerError]
    while stack:
        cls = stack.pop()
        table.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return table


def to_exception(status: int, body: object) -> e.LedgerError:
    """The ledger exception a problem+json answer stands for."""
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        if status == 404:
            return e.NotFound(f"not found (HTTP {status})")
        return e.UpstreamError(f"the server answered HTTP {status} without a problem body")
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    cls = _codes().get(body["code"])
    if cls is None:
        if status == 404:
            return e.NotFound(detail)
        return e.InvalidInput(detail) if 400 <= status < 500 else e.UpstreamError(detail)
    if issubclass(cls, e.RuleViolation):
        return cls(str(body.get("rule") or "unknown"), detail)
    if issubclass(cls, e.Backpressure):
        retry = body.get("retry_after")
        return cls(detail, float(retry) if isinstance(retry, int | float) else 1.0)
    if issubclass(cls, e.IntegrityFault):
        index = body.get("index")
        return cls(detail, index if isinstance(index, int) else None)
    return cls(detail)


def _hash(hexval: object, what: str) -> bytes:
    try:
        raw = bytes.fromhex(hexval) if isinstance(hexval, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise e.UpstreamError(f"the server sent a malformed {what}")
    return raw


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise e.UpstreamError(f"the server sent a malformed {what}")
    return value


#: The state namespaces a server lists (``nonce/`` replay bookkeeping is not compared,
#: except for an auditor, who is shown everything).
SERVED_STATE = MAPPED


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How this client trusts the server and proves its own agency (mutual TLS)."""

    #: CA certificates (PEM) the server's certificate must chain to; None: system store.
    ca: Path | None = None
    #: Client certificate chain and key (PEM), presented when the server asks.
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise e.InvalidInput(f"cannot read the CA file {self.ca}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            try:
                ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
            except (OSError, ssl.SSLError) as exc:
                raise e.InvalidInput(f"cannot use the client certificate {self.cert}: "
                                     f"{getattr(exc, 'strerror', None) or exc}") from None
        return ctx

    @classmethod
    def from_config(cls, home_path: Path, conf: object) -> ClientTls | None:
        """The ``tls`` member of a home's config (paths relative to the home)."""
        if not isinstance(conf, dict):
            return None

        def path(name: str) -> Path | None:
            value = conf.get(name)
            return home_path / str(value) if value else None

        return cls(path("ca"), path("cert"), path("key"))


def _loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(base_url: str, tls: ClientTls | None) -> str:
    """The server's host, after refusing what would cross a network in clear text."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise e.InvalidInput(f"{base_url!r} is not a server URL (https://host:port)")
    if parts.scheme == "http":
        if tls is not None and (tls.ca or tls.cert):
            raise e.InvalidInput(f"a CA or client certificate is configured but {base_url} "
                                 "is plain HTTP; use https://")
        if not _loopback(host) and os.environ.get("CUSTODY_ALLOW_PLAIN_HTTP") != "1":
            raise e.InvalidInput(f"refusing plain HTTP to {host}: tokens and evidence would "
                                 "cross the network in clear; use https:// (or set "
                                 "CUSTODY_ALLOW_PLAIN_HTTP=1 on a network you control)")
    return host


def _tls_failure(host: str, exc: BaseException) -> e.LedgerError | None:
    """One sentence for a certificate or handshake failure found in ``exc``'s chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            reason = seen.verify_message or seen.reason or str(seen)
            return e.VerificationError(f"the TLS certificate of {host} is not trusted: "
                                       f"{reason}")
        if isinstance(seen, ssl.SSLError):
            return e.UpstreamError(f"the TLS handshake with {host} failed: "
                                   f"{seen.reason or seen}")
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return e.VerificationError(f"the TLS certificate of {host} is not trusted: {text}")
    return None


class RemoteStore:
    """The ledger behind an API server, as a LedgerStore."""

    def __init__(self, base_url: str, *, token: TokenSource = None, timeout: float = 30.0,
                 signer_tokens: Callable[[str], str] | None = None,
                 client: httpx.Client | None = None, tls: ClientTls | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.tls = tls
        self._token = token
        self._signer_tokens = signer_tokens
        self._owns_client = client is None
        self.host = check_transport(self.base_url, tls) if client is None else \
            (urlsplit(self.base_url).hostname or self.base_url)
        verify: ssl.SSLContext | bool = True
        if client is None and self.base_url.startswith("https://"):
            verify = (tls or ClientTls()).context()
        self._client = client or httpx.Client(
            base_url=self.base_url, timeout=timeout, verify=verify,
            headers={"User-Agent": "custody-ledger-remote/1"})

    @classmethod
    def for_home(cls, home: Home, server: str, actor_id: str | None = None) -> RemoteStore:
        """A remote store for a CLI home: reads as ``actor_id`` (default actor), appends
        as whoever signed the event, logging in with the home's local keys."""
        logins: dict[str, ActorLogin] = {}
        lock = threading.Lock()
        tls = ClientTls.from_config(home.path, home.config.get("tls"))

        def token_of(actor: str | None) -> str:
            key = home.actor(actor)
            with lock:
                login_ = logins.setdefault(key.actor_id, ActorLogin(server, key, tls=tls))
            return login_()

        return cls(server, token=lambda: token_of(actor_id), signer_tokens=token_of, tls=tls)

    # ---- HTTP plumbing -------------------------------------------------------------

    def _bearer(self, token: TokenSource) -> dict[str, str]:
        value = token() if callable(token) else token
        return {"Authorization": f"Bearer {value}"} if value else {}

    def _request(self, method: str, path: str, *, token: TokenSource = None,
                 use_default_token: bool = True, **kwargs: Any) -> httpx.Response:
        headers = self._bearer(token if token is not None else
                               self._token if use_default_token else None)
        headers.update(kwargs.pop("headers", {}))
        try:
            resp = self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise e.UpstreamError(f"the ledger server at {self.base_url} timed out") from exc
        except httpx.HTTPError as exc:
            tls_error = _tls_failure(self.host, exc)
            if tls_error is not None:
                raise tls_error from exc
            raise e.UpstreamError(f"cannot reach the ledger server at {self.base_url}: "
                                  f"{exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            raise to_exception(resp.status_code, body)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError as exc:
            raise e.UpstreamError(f"the server sent invalid JSON for {path}") from exc

    def _get_or_none(self, path: str, **kwargs: Any) -> Any:
        try:
            return self._json("GET", path, **kwargs)
        except e.NotFound:
            return None

    # ---- writes --------------------------------------------------------------------

    def _signer_token(self, signed: SignedEvent) -> TokenSource:
        if self._signer_tokens is None:
            return None
        signer_tokens, actor = self._signer_tokens, signed.event.signer
        return lambda: signer_tokens(actor)

    def append(self, signed: SignedEvent) -> AppendResult:
        data = self._json("POST", "/v1/events", content=signed.canonical_bytes(),
                          token=self._signer_token(signed),
                          headers={"Content-Type": "application/json"})
        return _receipt(data)

    def append_many(self, batch: Sequence[SignedEvent]) -> list[AppendResult | e.LedgerError]:
        if not batch:
            return []
        signers = {s.event.signer for s in batch}
        if len(signers) != 1:
            # One token per request: several signers means one request per event.
            out: list[AppendResult | e.LedgerError] = []
            for signed in batch:
                try:
                    out.append(self.append(signed))
                except e.LedgerError as exc:
                    out.append(exc)
            return out
        data = self._json("POST", "/v1/events/batch",
                          json={"events": [s.to_json() for s in batch]},
                          token=self._signer_token(batch[0]))
        outcomes = data.get("outcomes") if isinstance(data, dict) else None
        if not isinstance(outcomes, list) or len(outcomes) != len(batch):
            raise e.UpstreamError("the server answered a batch with the wrong number of "
                                  "outcomes")
        return [_receipt(o["receipt"]) if o.get("receipt") is not None
                else to_exception(int(o.get("status", 500)), o.get("problem"))
                for o in outcomes]

    # ---- reads ---------------------------------------------------------------------

    def _log(self) -> dict[str, Any]:
        data = self._json("GET", "/v1/log", use_default_token=False)
        if not isinstance(data, dict):
            raise e.UpstreamError("the server sent a malformed log summary")
        return data

    def log_info(self) -> dict[str, Any]:
        """The public log summary: origin, size, checkpoint, verifier key (no token)."""
        return self._log()

    def size(self) -> int:
        return _int(self._log().get("size"), "log size")

    def latest_checkpoint(self) -> str | None:
        note = self._log().get("checkpoint")
        return note if isinstance(note, str) else None

    def entries_at(self, indices: Sequence[int]) -> list[StoredEntry]:
        return [self.entry(i) for i in indices]

    def entry(self, index: int) -> StoredEntry:
        return _entry(self._json("GET", f"/v1/log/entries/{int(index)}"))

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]:
        nxt: int | None = start
        while nxt is not None and (end is None or nxt < end):
            limit = PAGE if end is None else min(PAGE, end - nxt)
            data = self._json("GET", "/v1/log/entries",
                              params={"start": nxt, "limit": limit})
            items = data.get("items", [])
            for item in items:
                stored = _entry(item)
                if end is not None and stored.index >= end:
                    return
                yield stored
            nxt = data.get("next_start")
            if not items:
                return

    def find_event(self, event_id: str) -> int | None:
        data = self._get_or_none(f"/v1/events/{quote(event_id, safe='')}")
        return None if data is None else _int(data.get("index"), "index")

    def state(self, key: str) -> dict[str, Any] | None:
        data = self._get_or_none(f"/v1/state/{quote(key, safe='/')}")
        if data is None:
            return None
        value = data.get("value")
        if not isinstance(value, dict):
            raise e.UpstreamError(f"the server sent a malformed record for {key}")
        return value

    def caller_roles(self) -> set[str]:
        """The roles of the actor this client reads as (GET /v1/auth/me)."""
        data = self._json("GET", "/v1/auth/me")
        record = data.get("record") if isinstance(data, dict) else None
        roles = record.get("roles") if isinstance(record, dict) else None
        return {str(r) for r in roles} if isinstance(roles, list) else set()

    def cached_state(self, key: str) -> dict[str, Any] | None:
        """What the server serves (the server verifies its own reads)."""
        return self.state(key)

    def state_items(self, prefix: str, after: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            data = self._json("GET", "/v1/state",
                              params={"prefix": prefix, "after": after, "limit": PAGE})
            for item in data.get("items", []):
                yield str(item["key"]), dict(item["value"])
            if data.get("next_after") is None:
                return
            after = str(data["next_after"])

    def refs(self, ref: str) -> list[int]:
        out: list[int] = []
        after = -1
        while True:
            data = self._json("GET", f"/v1/refs/{quote(ref, safe='')}",
                              params={"after": after, "limit": PAGE})
            out.extend(_int(i, "index") for i in data.get("indices", []))
            if data.get("next_after") is None:
                return out
            after = _int(data["next_after"], "index")

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        while True:
            data = self._json("GET", "/v1/log/checkpoints", use_default_token=False,
                              params={"after": after, "limit": PAGE})
            for item in data.get("items", []):
                yield _int(item.get("size"), "checkpoint size"), str(item.get("note"))
            if data.get("next_after") is None:
                return
            after = _int(data["next_after"], "checkpoint size")

    def root(self, size: int) -> bytes:
        data = self._json("GET", "/v1/log/root", use_default_token=False,
                          params={"size": size})
        return _hash(data.get("root"), "root hash")

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        data = self._json("GET", "/v1/log/proofs/inclusion", use_default_token=False,
                          params={"index": index, "size": size})
        return [_hash(h, "proof hash") for h in data.get("proof", [])]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        data = self._json("GET", "/v1/log/proofs/consistency", use_default_token=False,
                          params={"old": old, "new": new})
        return [_hash(h, "proof hash") for h in data.get("proof", [])]

    def bundle(self, *, artefact_id: str | None = None, sha256: str | None = None,
               size: int | None = None) -> tuple[Bundle, list[Fault]]:
        """The server's court bundle; the CALLER verifies it (ledger.core.bundle) against its
        pinned log key — nothing the server says here is trusted."""
        params: dict[str, Any] = {k: v for k, v in (("artefact", artefact_id),
                                                    ("sha256", sha256)) if v}
        if size is not None:
            params["size"] = size
        data = self._json("GET", "/v1/bundles", params=params)
        if not isinstance(data, dict):
            raise e.UpstreamError("the server sent a malformed bundle response")
        faults = []
        for f in data.get("cache_faults") or []:
            if isinstance(f, dict) and isinstance(f.get("detail"), str):
                faults.append(Fault("cache", "the server reports: " + f["detail"],
                                    key=f.get("key") if isinstance(f.get("key"), str)
                                    else None))
        return Bundle.from_json(data.get("bundle")), faults

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # ---- the ledger as a whole -------------------------------------------------------

    def audit(self, *, trusted_checkpoint: str | None = None,
              log_verifier_key: str | None = None,
              progress: Callable[[int], None] | None = None) -> AuditReport:
        """Replay the served log up to one size HERE, against the pinned key, and compare
        the state records the server serves this caller (its cache) with the replayed
        ones: an edited server state is a ``state`` failure naming the key. A log that
        grows meanwhile is audited again (once) rather than reported as a false
        difference."""
        from ledger.core.audit import audit as replay

        auditor = "auditor" in self.caller_roles()  # shown the whole state: all must match

        def at(size: int) -> AuditReport:
            shown = ((k, v) for prefix in (*SERVED_STATE, *((NONCE,) if auditor else ()))
                     for k, v in self.state_items(prefix))
            return replay(self.entries(0, size),
                          ((s, n) for s, n in self.checkpoints() if s <= size),
                          log_verifier_key=log_verifier_key,
                          trusted_checkpoint=trusted_checkpoint, progress=progress,
                          state=shown if auditor else None,
                          served_state=None if auditor else shown)

        size = self.size()
        report = at(size)
        if not report.ok and report.kind == "state" and self.size() != size:
            report = at(self.size())  # the log grew while the state was read
        return report

    def rebuild_state(self, log_key: str) -> Repair:
        raise e.InvalidInput("rebuild-state works on the ledger database itself: run it on "
                             "the server's machine with that server's home")

    # ---- evidence packages (api/routes/packages.py) ----------------------------------

    def package_state(self, sha256: str) -> tuple[str, int, int | None]:
        """``(status, offset, length)`` of a package on the server (``HEAD``): status
        ``complete`` (offset = its size), ``partial`` (continue at offset) or ``absent``."""
        try:
            resp = self._request("HEAD", f"/v1/packages/{_digest(sha256)}")
        except e.NotFound:
            return "absent", 0, None
        offset = _header_int(resp, "Upload-Offset")
        length = _header_int(resp, "Upload-Length")
        if resp.status_code == 200:
            size = length if length is not None else _header_int(resp, "Content-Length")
            if size is None:
                raise e.UpstreamError("the server did not say the package's size")
            return "complete", size, size
        if resp.status_code == 204 and offset is not None:
            return "partial", offset, length
        raise e.UpstreamError(f"the server answered HEAD with HTTP {resp.status_code}")

    def upload_package(self, path: str | os.PathLike[str], sha256: str,
                       progress: TransferProgress | None = None,
                       attempts: int = PACKAGE_ATTEMPTS) -> dict[str, Any]:
        """Upload the package file at ``path`` (whose SHA-256 is ``sha256``): ask where
        the server stands (``HEAD``), then ``PUT`` the rest from that offset. A failed
        attempt (network, a busy server, the server still finishing the interrupted
        request) is resumed from wherever the server got to, up to ``attempts`` times.
        Returns ``{"sha256", "size", "status": "uploaded"|"present", "resumed_from"}``."""
        digest = _digest(sha256)
        size = os.stat(path).st_size
        report = progress or (lambda _done, _total: None)
        resumed_from: int | None = None
        for attempt in range(attempts):
            status, offset, length = self.package_state(digest)
            if status == "complete":
                report(size, size)
                return {"sha256": digest, "size": offset, "resumed_from": resumed_from,
                        "status": "present" if resumed_from is None else "uploaded"}
            if length is not None and length != size:
                raise e.Conflict("upload-length", f"the server holds part of an upload of "
                                 f"this package announced with {length} bytes, but "
                                 f"{os.fspath(path)} has {size}")
            resumed_from = offset if resumed_from is None else resumed_from
            try:
                resp = self._request(
                    "PUT", f"/v1/packages/{digest}",
                    content=_file_chunks(path, offset, size, report),
                    headers={"Upload-Length": str(size), "Upload-Offset": str(offset),
                             "Content-Length": str(size - offset),
                             "Content-Type": "application/octet-stream"},
                    **self._transfer_timeout(size))
            except (e.UpstreamError, e.Backpressure) as exc:
                if attempt + 1 == attempts:
                    raise
                _pause(attempt, exc)
                continue
            except e.Conflict as exc:  # e.g. the interrupted request still holds the upload
                if exc.rule not in ("upload-offset", "upload-in-progress") \
                        or attempt + 1 == attempts:
                    raise
                _pause(attempt, exc)
                continue
            if resp.status_code in (200, 201):
                report(size, size)
                return {"sha256": digest, "size": size, "resumed_from": resumed_from,
                        "status": "uploaded"}
        raise e.UpstreamError(f"the upload of {os.fspath(path)} did not complete in "
                              f"{attempts} attempts")

    def download_package(self, sha256: str, dest: str | os.PathLike[str],
                         progress: TransferProgress | None = None,
                         attempts: int = PACKAGE_ATTEMPTS) -> dict[str, Any]:
        """Download a package to ``dest`` through ``dest.part``: a part left by an
        interrupted download is continued (``Range: bytes=N-``). When complete its
        SHA-256 must be ``sha256``: then it is fsync'ed and renamed to ``dest``;
        otherwise the part is deleted and :class:`~ledger.core.errors.VerificationError`
        raised. Returns ``{"sha256", "size", "path", "resumed_from"}``."""
        digest = _digest(sha256)
        final = Path(dest)
        part = final.with_name(final.name + ".part")
        report = progress or (lambda _done, _total: None)
        resumed_from = part.stat().st_size if part.exists() else 0
        for attempt in range(attempts):
            try:
                total = self._download_into(part, digest, report)
                break
            except (e.UpstreamError, e.Backpressure) as exc:
                if attempt + 1 == attempts:
                    raise
                _pause(attempt, exc)
        hasher = hashlib.sha256()
        with part.open("rb") as fh:
            while block := fh.read(_CHUNK):
                hasher.update(block)
            os.fsync(fh.fileno())
        got = hasher.hexdigest()
        if got != digest:
            part.unlink()
            raise e.VerificationError(f"the package downloaded from the server has SHA-256 "
                                      f"{got}, not the expected {digest}; it was deleted")
        os.replace(part, final)
        _fsync_dir(final.parent)
        return {"sha256": digest, "size": total, "path": str(final),
                "resumed_from": resumed_from}

    def _download_into(self, part: Path, digest: str, report: TransferProgress) -> int:
        """Fetch what ``part`` lacks; return the package's size."""
        have = part.stat().st_size if part.exists() else 0
        headers = self._bearer(self._token)
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with self._client.stream("GET", f"/v1/packages/{digest}",
                                     headers=headers) as resp:
                if resp.status_code == 422 and have:
                    # The part already holds as much as the server has: check it as is.
                    resp.read()
                    return have
                if resp.status_code >= 400:
                    resp.read()
                    raise to_exception(resp.status_code, _json_or_none(resp))
                if resp.status_code == 206:
                    start, total = _content_range(resp.headers.get("Content-Range"))
                    if start != have:
                        raise e.UpstreamError(f"the server sent bytes from {start}, not from "
                                              f"{have} as asked")
                    mode = "ab"
                elif resp.status_code == 200:
                    have, mode = 0, "wb"  # the whole package again
                    total = _header_int(resp, "Content-Length") or 0
                else:
                    raise e.UpstreamError(f"the server answered HTTP {resp.status_code} to "
                                          "a package download")
                with part.open(mode) as out:
                    done = have
                    report(done, total)
                    try:
                        for chunk in resp.iter_bytes(_CHUNK):
                            out.write(chunk)
                            done += len(chunk)
                            report(done, total)
                    finally:
                        out.flush()
                        os.fsync(out.fileno())
                return total
        except httpx.TimeoutException as exc:
            raise e.UpstreamError(f"the ledger server at {self.base_url} timed out") from exc
        except httpx.HTTPError as exc:
            raise (_tls_failure(self.host, exc) or e.UpstreamError(
                f"the download from {self.base_url} failed: {exc}")) from exc

    def _transfer_timeout(self, size: int) -> dict[str, Any]:
        """Connect and write as usual; the answer may wait for the server to hash the
        whole package (a resumed upload is hashed from its first byte): a larger read
        timeout when that could take more than half the usual one."""
        hashing = size / _SLOW_BYTES_PER_S
        if hashing <= self.timeout / 2:
            return {}
        return {"timeout": httpx.Timeout(self.timeout, read=self.timeout + hashing)}

    # ---- witness cosignatures (public endpoints, no token; api/routes/witness.py) ----

    def add_cosignature(self, size: int, witness_key: str, line: str) -> str:
        """POST a witness cosignature; return the line the server stored."""
        data = self._json("POST", "/v1/log/cosignatures", use_default_token=False,
                          json={"size": size, "witness_key": witness_key,
                                "cosignature": line})
        stored = data.get("cosignature") if isinstance(data, dict) else None
        if not isinstance(stored, str):
            raise e.UpstreamError("the server sent a malformed cosignature answer")
        return stored

    def _witnessed(self, data: object) -> tuple[int, str, dict[str, str]]:
        if not isinstance(data, dict) or not isinstance(data.get("note"), str) \
                or not isinstance(data.get("cosignatures"), list):
            raise e.UpstreamError("the server sent a malformed witnessed checkpoint")
        lines = {str(item.get("witness_key")): str(item.get("cosignature"))
                 for item in data["cosignatures"] if isinstance(item, dict)}
        return _int(data.get("size"), "checkpoint size"), str(data["note"]), lines

    def cosignatures(self, size: int) -> dict[str, str]:
        data = self._json("GET", f"/v1/log/checkpoints/{int(size)}/cosigned",
                          use_default_token=False)
        return self._witnessed(data)[2]

    def cosigned_note(self, size: int) -> str:
        data = self._json("GET", f"/v1/log/checkpoints/{int(size)}/cosigned",
                          use_default_token=False)
        return self._witnessed(data)[1]

    def witnessed_checkpoint(self, min_witnesses: int = 1) -> tuple[int, str] | None:
        data = self._get_or_none("/v1/log/checkpoints/witnessed", use_default_token=False,
                                 params={"min_witnesses": min_witnesses})
        if data is None:
            return None
        size, note, _lines = self._witnessed(data)
        return size, note


def _digest(sha256: str) -> str:
    if not isinstance(sha256, str) or re.fullmatch(r"[0-9a-f]{64}", sha256) is None:
        raise e.InvalidInput("a package is named by its SHA-256: 64 lowercase hex characters")
    return sha256


def _header_int(resp: httpx.Response, name: str) -> int | None:
    value = resp.headers.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise e.UpstreamError(f"the server sent a malformed {name} header")
    return int(value)


def _content_range(value: str | None) -> tuple[int, int]:
    match = _CONTENT_RANGE.fullmatch(value or "")
    if match is None:
        raise e.UpstreamError("the server sent a partial answer without a valid "
                              "Content-Range")
    return int(match[1]), int(match[3])


def _json_or_none(resp: httpx.Response) -> object:
    try:
        return resp.json()
    except ValueError:
        return None


def _file_chunks(path: str | os.PathLike[str], offset: int, size: int,
                 report: TransferProgress) -> Iterator[bytes]:
    """The file from ``offset``, in 1 MiB chunks, reporting progress as they are sent."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        done = offset
        report(done, size)
        while done < size and (chunk := fh.read(min(_CHUNK, size - done))):
            yield chunk
            done += len(chunk)
            report(done, size)


def _pause(attempt: int, exc: e.LedgerError) -> None:
    retry = getattr(exc, "retry_after", None)
    time.sleep(min(5.0, retry if isinstance(retry, float) else 0.2 * (attempt + 1)))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs a directory
        fsync_dir(path)


def _receipt(data: object) -> AppendResult:
    if not isinstance(data, dict):
        raise e.UpstreamError("the server sent a malformed append receipt")
    try:
        return AppendResult(
            index=_int(data["index"], "index"), leaf_hash=_hash(data["leaf_hash"], "leaf hash"),
            event_id=str(data["event_id"]), ledger_time=_int(data["ledger_time"], "time"),
            checkpoint=str(data["checkpoint"]), result=dict(data.get("result") or {}),
            duplicate=bool(data.get("duplicate", False)))
    except (KeyError, TypeError, ValueError) as exc:
        raise e.UpstreamError("the server sent a malformed append receipt") from exc


def _entry(data: object) -> StoredEntry:
    if not isinstance(data, dict):
        raise e.UpstreamError("the server sent a malformed log entry")
    try:
        leaf = base64.b64decode(str(data["leaf"]), validate=True)
    except (KeyError, binascii.Error, ValueError) as exc:
        raise e.UpstreamError("the server sent a malformed log entry") from exc
    leaf_hash = _hash(data.get("leaf_hash"), "leaf hash")
    if merkle.leaf_hash(leaf) != leaf_hash:
        raise e.VerificationError(f"entry {data.get('index')}: the leaf bytes the server "
                                  "sent do not hash to its leaf hash")
    return StoredEntry(_int(data.get("index"), "index"), leaf, leaf_hash,
                       _int(data.get("ledger_time"), "time"))


# ---- login -----------------------------------------------------------------------------

def login(base_url: str, actor_key: ActorKey, *, timeout: float = 30.0,
          client: httpx.Client | None = None,
          tls: ClientTls | None = None) -> tuple[str, int]:
    """Log in by signing a server challenge; return ``(token, expires_at_ms)``."""
    store = RemoteStore(base_url, timeout=timeout, client=client, tls=tls)
    try:
        ch = store._json("POST", "/v1/auth/challenge", json={"actor": actor_key.actor_id})
        challenge = str(ch["challenge"])
        sig = actor_key.signer.sign(AUTH_DOMAIN + challenge.encode("ascii"))
        tok = store._json("POST", "/v1/auth/token", json={
            "actor": actor_key.actor_id, "challenge": challenge,
            "signature": base64.b64encode(sig).decode()})
        return str(tok["access_token"]), _int(tok["expires_at"], "expiry")
    finally:
        store.close()


class ActorLogin:
    """A token source for one actor: logs in on first use and again before expiry."""

    def __init__(self, base_url: str, actor_key: ActorKey, *, margin_s: float = 30.0,
                 client: httpx.Client | None = None, tls: ClientTls | None = None) -> None:
        self.base_url = base_url
        self.tls = tls
        self.actor_key = actor_key
        self.margin_ms = int(margin_s * 1000)
        self.client = client
        self._token: str | None = None
        self._expires = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.time() * 1000 > self._expires - self.margin_ms:
                self._token, self._expires = login(self.base_url, self.actor_key,
                                                   client=self.client, tls=self.tls)
            return self._token
