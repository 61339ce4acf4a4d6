"""A content-addressed evidence store on the local file system.

A blob lives at ``ROOT/sha256/<2 hex>/<64 hex>``: the path is derived ONLY from a
validated lowercase hex SHA-256 (threat T9), never from a client-supplied name. An upload
is streamed into a temporary file in ``ROOT/tmp`` (same file system) while every digest
is computed in one pass (:func:`ledger.evidence.hash_stream`, hard size cap, threat T8);
only when the size is within the cap AND the SHA-256 equals the announced one is the
file fsync'ed and renamed into place. On any failure the temporary file is removed, so
nothing half-written or mismatched is ever visible (no orphan).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ledger.core.errors import InvalidInput, NotFound, StorageFull, VerificationError
from ledger.evidence import Digests, hash_stream
from ledger.fsutil import fsync_dir as fsync_dir  # re-exported for api.package_store

_HEX64 = re.compile(r"[0-9a-f]{64}")
Chunks = Callable[[], bytes | None]  # next chunk of the body, None at the end


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise InvalidInput("a SHA-256 digest is 64 lowercase hex characters")
    return value


class _TeeReader:
    """``readinto`` over a chunk source that also writes every byte to ``sink``."""

    def __init__(self, chunks: Chunks, sink: BinaryIO | None) -> None:
        self._chunks = chunks
        self._sink = sink
        self._buf = memoryview(b"")

    def readinto(self, view: memoryview) -> int:
        while not self._buf:
            chunk = self._chunks()
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        if self._sink is not None:
            self._sink.write(view[:n])
        return n


def hash_chunks(chunks: Chunks, max_bytes: int) -> Digests:
    """Digests of a streamed body without storing it (bounded memory)."""
    return hash_stream(_TeeReader(chunks, None), max_bytes=max_bytes)


class EvidenceStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        (root / "sha256").mkdir(exist_ok=True, mode=0o700)

    def path_for(self, sha256: str) -> Path:
        digest = check_sha256(sha256)
        return self.root / "sha256" / digest[:2] / digest

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> Path:
        path = self.path_for(sha256)
        if not path.is_file():
            raise NotFound(f"no stored evidence with SHA-256 {sha256}")
        return path

    def put(self, sha256: str, chunks: Chunks, max_bytes: int) -> Digests:
        """Store a streamed blob whose SHA-256 must be ``sha256``; return its digests."""
        final = self.path_for(sha256)
        fd, tmp_name = tempfile.mkstemp(prefix="upload-", dir=self.tmp)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as sink:
                digests = hash_stream(_TeeReader(chunks, sink), max_bytes=max_bytes)
                if digests.sha256 != sha256:
                    raise VerificationError(
                        f"the uploaded bytes have SHA-256 {digests.sha256}, not the announced "
                        f"{sha256}; nothing was stored")
                sink.flush()
                os.fsync(sink.fileno())
            final.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(tmp, final)  # same digest => same bytes: replacing is harmless
            fsync_dir(final.parent)
            return digests
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StorageFull("the evidence store's disk is full, so the upload was not "
                                  "stored; free some space and retry", retry_after=30) from None
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
