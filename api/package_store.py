"""A content-addressed store of evidence packages, with resumable uploads.

A package is an age-encrypted file (opaque here: the server never holds a key that
opens it), named by its SHA-256. Paths derive ONLY from a validated lowercase hex
SHA-256 (threat T9), never from anything a client names::

    ROOT/sha256/<2 hex>/<64 hex>    complete packages: digest-verified, fsync'ed
    ROOT/partial/<64 hex>           an upload in progress (bytes 0 .. its size)
    ROOT/partial/<64 hex>.json      that upload's announced length and organisation

An upload announces its total length (``Upload-Length``) and where its body starts
(``Upload-Offset``, which must equal the partial file's current size). The body is
appended to the partial file under an exclusive ``flock`` (one writer per package, across
the threads and worker processes of a server). An interrupted body leaves what arrived
(fsync'ed) for the next request to continue. When the partial file reaches the announced
length its SHA-256 is checked: a mismatch deletes it; a match is fsync'ed and renamed to
its final path. Nothing half-written is ever visible at a final path.

:class:`PackageIndex` answers "which organisations are party to a transfer whose
dispatch names this package" from the ledger's ``tr/`` records (``package.sha256``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from api.evidence_store import Chunks, check_sha256, fsync_dir
from ledger.core.errors import Conflict, NotFound, PayloadTooLarge, VerificationError
from ledger.core.state import TRANSFER
from ledger.store.base import LedgerStore

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackageState:
    """What the store holds of one package: complete, partial or nothing."""

    sha256: str
    #: ``complete``, ``partial`` or ``absent``.
    status: str
    #: Bytes held: the package's size when complete, the upload offset when partial.
    offset: int = 0
    #: The announced total (``Upload-Length``); the size when complete.
    length: int | None = None
    #: The organisation uploading a partial package.
    org: str | None = None


@dataclass(frozen=True)
class UploadResult:
    """The outcome of one upload request."""

    sha256: str
    #: ``created`` (this request completed it), ``exists`` (it was already complete:
    #: nothing rewritten) or ``partial`` (continue at ``offset``).
    status: str
    offset: int
    length: int

    @property
    def complete(self) -> bool:
        return self.status != "partial"


class PackageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial = root / "partial"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.partial.mkdir(exist_ok=True, mode=0o700)
        (root / "sha256").mkdir(exist_ok=True, mode=0o700)

    # ---- paths (only from a validated digest) ------------------------------------------

    def path_for(self, sha256: str) -> Path:
        digest = check_sha256(sha256)
        return self.root / "sha256" / digest[:2] / digest

    def _partial(self, sha256: str) -> Path:
        return self.partial / check_sha256(sha256)

    def _meta(self, sha256: str) -> Path:
        return self.partial / (check_sha256(sha256) + ".json")

    # ---- reads -------------------------------------------------------------------------

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> Path:
        """The final path of a complete package (NotFound otherwise)."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise NotFound(f"no package with SHA-256 {sha256}")
        return path

    def state(self, sha256: str) -> PackageState:
        final = self.path_for(sha256)
        with contextlib.suppress(FileNotFoundError):
            size = final.stat().st_size
            return PackageState(sha256, "complete", size, size)
        try:
            offset = self._partial(sha256).stat().st_size
        except FileNotFoundError:
            return PackageState(sha256, "absent")
        meta = self._read_meta(sha256)
        if meta is None:
            return PackageState(sha256, "absent")
        return PackageState(sha256, "partial", offset, meta["length"], meta["org"])

    def _read_meta(self, sha256: str) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._meta(sha256).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("length"), int) \
                or not isinstance(meta.get("org"), str):
            return None
        return meta

    def _write_meta(self, sha256: str, length: int, org: str) -> None:
        meta = self._meta(sha256)
        tmp = meta.with_name(meta.name + ".tmp")
        with tmp.open("wb") as out:
            out.write(json.dumps({"length": length, "org": org}).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, meta)

    # ---- uploads -----------------------------------------------------------------------

    def put(self, sha256: str, chunks: Chunks, *, length: int, offset: int, org: str,
            max_bytes: int) -> UploadResult:
        """Append a streamed body at ``offset`` to the upload of ``sha256`` announced with
        ``length`` bytes in all; verify and publish it when it is complete."""
        final = self.path_for(sha256)
        if length > max_bytes:
            raise PayloadTooLarge(f"the package of {length} bytes exceeds the limit of "
                                  f"{max_bytes} bytes")
        if final.is_file():
            size = final.stat().st_size
            return UploadResult(sha256, "exists", size, size)
        with self._locked_partial(sha256) as sink:
            current = os.fstat(sink.fileno()).st_size
            if final.is_file():  # completed by a writer that ended meanwhile
                if not current:  # the empty file this request created
                    self._partial(sha256).unlink()
                size = final.stat().st_size
                return UploadResult(sha256, "exists", size, size)
            self._begin(sha256, sink, current, length=length, offset=offset, org=org)
            try:
                written, hasher = self._append(sink, chunks, offset, length - offset)
            except PayloadTooLarge:
                if offset == 0:  # nothing of this upload is left: no record either
                    self._discard(sha256)
                raise
            done = offset + written
            if done < length:
                return UploadResult(sha256, "partial", done, length)
            return self._finish(sha256, sink, final, length, hasher)

    @contextlib.contextmanager
    def _locked_partial(self, sha256: str) -> Iterator[BinaryIO]:
        """The partial file, created if absent, under an exclusive lock. The lock is on
        the inode: if another writer renamed or removed the file meanwhile, the path
        no longer names it and this writer must not go on."""
        path = self._partial(sha256)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        sink = os.fdopen(fd, "r+b")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise Conflict("upload-in-progress", "another upload of this package is "
                                   "in progress; retry when it has ended") from None
                raise
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise Conflict("upload-in-progress", "another upload of this package has "
                               "just ended; ask for its state (HEAD) and retry")
            yield sink
        finally:
            sink.close()  # releases the lock

    def _begin(self, sha256: str, sink: BinaryIO, current: int, *, length: int,
               offset: int, org: str) -> None:
        """Check the request against the upload in progress (or begin one)."""
        meta = self._read_meta(sha256) if current else None
        if meta is None:
            # Nothing received yet (or an orphan without its record): a new upload,
            # whoever began one before.
            if current:
                sink.truncate(0)
            if offset != 0:
                with contextlib.suppress(FileNotFoundError):
                    self._partial(sha256).unlink()
                raise Conflict("upload-offset", f"no bytes of this package have been "
                               f"received; start at Upload-Offset 0, not {offset}")
            self._write_meta(sha256, length, org)
            return
        if meta["org"] != org:
            raise Conflict("upload-in-progress", "another organisation is uploading this "
                           "package")
        if meta["length"] != length:
            raise Conflict("upload-length", f"this upload was begun with Upload-Length "
                           f"{meta['length']}, not {length}")
        if offset != current:
            raise Conflict("upload-offset", f"the upload of this package is at offset "
                           f"{current}; continue with Upload-Offset: {current}")

    def _append(self, sink: BinaryIO, chunks: Chunks, offset: int,
                remaining: int) -> tuple[int, Any]:
        """Append the body; at most ``remaining`` bytes (a longer body is refused and
        what it appended removed). Whatever arrived before an interruption is kept,
        fsync'ed, for the next request to continue from."""
        hasher = hashlib.sha256() if offset == 0 else None
        sink.seek(offset)
        written = 0
        try:
            while (chunk := chunks()) is not None:
                if written + len(chunk) > remaining:
                    sink.truncate(offset)
                    written = 0
                    raise PayloadTooLarge(f"the body is longer than the {remaining} bytes "
                                          "left of the announced Upload-Length")
                sink.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                written += len(chunk)
        finally:
            sink.flush()
            os.fsync(sink.fileno())
        return written, hasher

    def _finish(self, sha256: str, sink: BinaryIO, final: Path, length: int,
                hasher: Any) -> UploadResult:
        if hasher is None:  # resumed: hash the whole file once
            hasher = hashlib.sha256()
            sink.seek(0)
            while block := sink.read(_READ_CHUNK):
                hasher.update(block)
        got = hasher.hexdigest()
        if got != sha256:
            self._discard(sha256)
            raise VerificationError(f"the uploaded package has SHA-256 {got}, not the "
                                    f"announced {sha256}; nothing was kept")
        final.parent.mkdir(exist_ok=True, mode=0o700)
        os.replace(self._partial(sha256), final)
        fsync_dir(final.parent)
        fsync_dir(self.partial)
        with contextlib.suppress(FileNotFoundError):
            self._meta(sha256).unlink()
        return UploadResult(sha256, "created", length, length)

    def _discard(self, sha256: str) -> None:
        for path in (self._partial(sha256), self._meta(sha256)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class PackageIndex:
    """Which organisations are party (sender or receiver) to a transfer whose dispatch
    names a package: read from the ``tr/`` records (``package.sha256``), and read again
    only when the log has grown since (a state record changes only with an append)."""

    def __init__(self) -> None:
        self._size = -1
        self._parties: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def parties(self, store: LedgerStore, sha256: str) -> frozenset[str]:
        size = store.size()
        with self._lock:
            if size != self._size:
                found: dict[str, set[str]] = {}
                for _key, record in store.state_items(TRANSFER):
                    package = record.get("package")
                    digest = package.get("sha256") if isinstance(package, dict) else None
                    if isinstance(digest, str):
                        found.setdefault(digest, set()).update(
                            str(record[k]) for k in ("from_org", "to_org") if record.get(k))
                self._parties = {k: frozenset(v) for k, v in found.items()}
                self._size = size
            return self._parties.get(sha256, frozenset())
