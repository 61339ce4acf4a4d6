"""Sealed evidence packages: age v1 (X25519 recipients) in one streaming pass.

This module is an adapter (it does file I/O), not part of the pure core. The format is
the stock age v1 format (https://age-encryption.org/v1), written and read by
``pyrage``, so a receiving agency can open a package with the ``age`` tool alone.

``seal`` reads the evidence ONCE: the bytes go through a reader that hashes them
(SHA-256 and SHA-512, as :mod:`ledger.evidence` does) into ``pyrage.encrypt_io``, and
the package bytes it writes go through a writer that hashes them (SHA-256) into a
temporary file in the output's directory. Only when everything has been written is the
file flushed, fsync'ed and linked under its name: nothing half-written is ever left.

``open_package`` reads the package ONCE: the reader hashes the package (SHA-256) while
``pyrage.decrypt_io`` decrypts it into a temporary file next to the destination, through
a writer that hashes the plaintext. The result is kept only if ALL of these hold, in
this order of reasons (each a stable code in :data:`REASONS`):

``package-digest``   the package's SHA-256 is the one dispatched;
``wrong-recipient``  the header holds a file key for one of our identities (age cannot
                     tell a stanza for another key from a damaged stanza: both are this);
``corrupt``          the header and every payload chunk authenticate, and the stream ends
                     exactly after the final chunk (a truncated, altered or extended
                     package fails here);
``plaintext-digest`` the plaintext's SHA-256, SHA-512 (and BLAKE3 when registered) and
                     size are the registered artefact's.

On any failure the temporary file is deleted and :class:`PackageRejected` (a
:class:`~ledger.core.errors.VerificationError`) is raised with ``reason`` set. A failure of
our own machine (the package cannot be read, the disk is full) is NOT a rejection: it
raises :class:`~ledger.core.errors.InvalidInput` and the caller signs nothing.

Memory is constant: the hashing threads work on a small ring of 1 MiB buffers (see
:class:`_Hashing`), age works on 64 KiB chunks, and the files are streamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

import pyrage  # type: ignore[import-untyped]  # no stubs: used through the few calls below

from ledger.core.errors import InvalidInput, NotFound, VerificationError
from ledger.evidence import Digests, HashWorker
from ledger.fsutil import fsync_dir

__all__ = ["FORMAT", "REASONS", "Opened", "PackageRejected", "Sealed", "open_package",
           "recipient_of", "seal"]

#: The ``format`` of a package in a dispatch event.
FORMAT: Final = "age-v1"
#: Why a package is refused, in the order they are checked (stable codes).
REASONS: Final = ("package-digest", "wrong-recipient", "corrupt", "plaintext-digest")

Progress = Callable[[int], None]

_CHUNK: Final = 1 << 20  # hashing buffers, and the file buffers
_RING: Final = 4  # buffers in the ring: one filling while up to three are hashed
_IO_BUFFER: Final = 1 << 20


class PackageRejected(VerificationError):
    """A package that must not be accepted; ``reason`` is one of :data:`REASONS`.

    ``package_sha256`` is the SHA-256 of the package that arrived (the whole file), and
    ``plaintext`` the digests of the bytes it yielded before it was refused (every
    chunk age authenticated; nothing for a header that does not open): what a signed
    rejection records. Those bytes themselves are deleted."""

    code = "package-rejected"

    def __init__(self, reason: str, message: str, *, package_sha256: str | None = None,
                 plaintext: Digests | None = None) -> None:
        if reason not in REASONS:  # pragma: no cover - a programming error
            raise ValueError(f"unknown package rejection reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.package_sha256 = package_sha256
        self.plaintext = plaintext


@dataclass(frozen=True)
class Sealed:
    """A package written by :func:`seal`: its own SHA-256 and size, and the digests of
    the plaintext it holds (from the same read)."""

    package_sha256: str
    package_size: int
    plaintext: Digests


@dataclass(frozen=True)
class Opened:
    """A package opened by :func:`open_package`: where the plaintext now is, its digests
    (equal to the registered ones), and the package's SHA-256."""

    path: Path
    digests: Digests
    package_sha256: str


def recipient_of(identity: str) -> str:
    """The ``age1…`` recipient of an ``AGE-SECRET-KEY-1…`` identity."""
    return str(_identity(identity).to_public())


# ---- sealing -------------------------------------------------------------------------


def seal(src: Path, out: Path, recipients: Sequence[str], progress: Progress | None = None,
         *, blake3: bool = False) -> Sealed:
    """Encrypt ``src`` to every recipient (``age1…``) into a new file ``out``, in one
    read of ``src``; return the package's SHA-256 and size and the plaintext's digests.

    ``out`` must not exist; it appears only once complete and fsync'ed. Raises
    ``NotFound`` for a missing ``src`` and ``InvalidInput`` for a source that is not a
    regular file or block device, a bad recipient, or an output that cannot be written.
    """
    if not recipients:
        raise InvalidInput("a package needs at least one recipient")
    parsed = [_recipient(r) for r in recipients]
    _check_source(src)
    _check_new(out)
    plain = _Hashing(("sha256", "sha512", *(("blake3",) if blake3 else ())))
    package = _Hashing(("sha256",))
    try:
        with _open_input(src) as fin, _TempFile(out) as tmp:
            reader = _Reader(fin, plain, progress, what=str(src))
            writer = _Writer(tmp.file, package, what=str(out))
            try:
                pyrage.encrypt_io(reader, writer, parsed)
            except Exception as exc:
                _io_error(reader, writer)
                raise InvalidInput(f"cannot seal {src}: {exc}") from None
            _io_error(reader, writer)
            reader.report()
            digests = plain.finish()
            package_sha256 = package.finish()["sha256"]
            tmp.keep()
    finally:
        plain.close()
        package.close()
    return Sealed(package_sha256, writer.total, Digests(
        sha256=digests["sha256"], sha512=digests["sha512"], blake3=digests.get("blake3"),
        size=reader.total))


# ---- opening -------------------------------------------------------------------------


def open_package(package: Path, identities: Sequence[str], dest: Path, *,
                 expected_package_sha256: str | None, expected: Digests,
                 progress: Progress | None = None) -> Opened:
    """Decrypt ``package`` with one of ``identities`` (``AGE-SECRET-KEY-1…``) into a new
    file ``dest``, keeping it only if the package is the one dispatched
    (``expected_package_sha256``; None skips that check, e.g. for a file that was never
    dispatched) and its plaintext has the ``expected`` (registered) digests and size.

    One read of the package. Raises :class:`PackageRejected` (``reason`` in
    :data:`REASONS`) when the package must be refused, having deleted every byte of
    plaintext; ``NotFound``/``InvalidInput`` when the package cannot be read or ``dest``
    cannot be written (nothing about the package is decided then).
    """
    if not identities:
        raise InvalidInput("no identity to open the package with: this home holds no key "
                           "of the receiving organisation")
    parsed = [_identity(i) for i in identities]
    want_sha = None if expected_package_sha256 is None else expected_package_sha256.lower()
    _check_package(package)
    _check_new(dest)
    names = ("sha256", "sha512", *(("blake3",) if expected.blake3 is not None else ()))
    plain = _Hashing(names)
    pack = _Hashing(("sha256",))
    try:
        with _open_input(package) as fin, _TempFile(dest) as tmp:
            reader = _Reader(fin, pack, progress, what=str(package))
            writer = _Writer(tmp.file, plain, what=str(dest))
            failure: Exception | None = None
            try:
                pyrage.decrypt_io(reader, writer, parsed)
            except Exception as exc:  # decided below, once the package is hashed whole
                failure = exc
            _io_error(reader, writer)
            reader.drain()  # the rest of a package age refused, for its digest
            _io_error(reader, writer)
            reader.report()
            package_sha256 = pack.finish()["sha256"]
            got = plain.finish()
            digests = Digests(sha256=got["sha256"], sha512=got["sha512"],
                              blake3=got.get("blake3"), size=writer.total)
            rejected: PackageRejected | None = None
            if want_sha is not None and not hmac.compare_digest(package_sha256, want_sha):
                rejected = PackageRejected(
                    "package-digest", f"package-digest: the package's SHA-256 is "
                    f"{package_sha256}, not the dispatched {want_sha}: this is not the "
                    "package that was sent")
            elif failure is not None:
                rejected = _refusal(failure)
            elif differ := _differences(expected, digests):
                rejected = PackageRejected(
                    "plaintext-digest", "plaintext-digest: the package decrypts, but its "
                    f"content does not match the registered artefact ({'; '.join(differ)})")
            if rejected is not None:
                rejected.package_sha256 = package_sha256
                rejected.plaintext = digests
                raise rejected
            tmp.keep()
    finally:
        plain.close()
        pack.close()
    return Opened(dest, digests, package_sha256)


def _refusal(exc: Exception) -> PackageRejected:
    """The reason age refused a package (its errors are not typed by cause)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, pyrage.DecryptError) and "no matching keys" in text.lower():
        return PackageRejected(
            "wrong-recipient", "wrong-recipient: no recipient stanza in the package's header "
            "opens with this organisation's keys (it was sealed to another key, or the "
            "stanza is damaged)")
    where = "header" if isinstance(exc, pyrage.DecryptError) else "payload"
    return PackageRejected(
        "corrupt", f"corrupt: the package's {where} does not authenticate ({text}): it was "
        "altered, truncated or extended after sealing")


def _differences(expected: Digests, got: Digests) -> list[str]:
    out = []
    if got.size != expected.size:
        out.append(f"{got.size} bytes, registered {expected.size}")
    for name, want in expected.as_dict().items():
        have = got.as_dict().get(name)
        if have is not None and not hmac.compare_digest(have, want.lower()):
            out.append(f"{name} {have}, registered {want}")
    return out


# ---- inputs and outputs --------------------------------------------------------------


def _recipient(value: str) -> Any:
    try:
        return pyrage.x25519.Recipient.from_str(value.strip())
    except Exception:
        raise InvalidInput(f"{value[:80]!r} is not an age X25519 recipient "
                           "(age1…)") from None


def _identity(value: str) -> Any:
    try:
        return pyrage.x25519.Identity.from_str(value.strip())
    except Exception:
        # Never echo any part of a secret key.
        raise InvalidInput("an organisation key is not an age X25519 identity "
                           "(AGE-SECRET-KEY-1…)") from None


_REFUSED = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe), which has no fixed content and blocks when opened"),
    (stat.S_ISCHR, "a character device, which has no fixed size (it may never end)"),
    (stat.S_ISSOCK, "a socket"),
)


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except OSError:
        return None  # opening it reports that in one sentence


def _check_source(path: Path) -> None:
    """Evidence to seal: a regular file or a block device, as :mod:`ledger.evidence`
    accepts; anything that can block or never end is refused before it is opened."""
    mode = _mode(path)
    for test, what in _REFUSED:
        if mode is not None and test(mode):
            raise InvalidInput(f"{path} is {what}, not an evidence file: give a regular "
                               "file or a block device")


def _check_package(path: Path) -> None:
    mode = _mode(path)
    if mode is not None and not stat.S_ISREG(mode):
        raise InvalidInput(f"{path} is not a regular file: a package is a file")


def _open_input(path: Path) -> BinaryIO:
    """``path`` opened for one buffered read (the caller closes it)."""
    try:
        return open(path, "rb", buffering=_IO_BUFFER)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot open {path}: {exc.strerror or exc}") from None


def _check_new(path: Path) -> None:
    if os.path.lexists(path):
        raise InvalidInput(f"{path} exists; refusing to overwrite it (choose another name)")
    parent = path.parent
    if not parent.is_dir():
        raise InvalidInput(f"cannot write {path}: {parent} is not a directory")


class _TempFile:
    """A temporary file next to ``target`` (mode 0600) that becomes ``target`` on
    :meth:`keep` (flush, fsync, link without overwriting, fsync of the directory) and is
    deleted otherwise, whatever happens."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._keep = False
        try:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
        except OSError as exc:
            raise InvalidInput(f"cannot write to {target.parent}: "
                               f"{exc.strerror or exc}") from None
        self.name = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=_IO_BUFFER)

    def __enter__(self) -> _TempFile:
        return self

    def keep(self) -> None:
        self._keep = True

    def __exit__(self, *exc: object) -> None:
        try:
            if self._keep and exc[0] is None:
                self._commit()
                return
        finally:
            with contextlib.suppress(OSError):
                self.file.close()
            if not (self._keep and exc[0] is None):
                self.name.unlink(missing_ok=True)

    def _commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            try:
                os.link(self.name, self.target)  # atomic, and never overwrites
            except FileExistsError:
                raise InvalidInput(f"{self.target} appeared meanwhile; refusing to "
                                   "overwrite it") from None
            except OSError:  # a file system without hard links
                if os.path.lexists(self.target):
                    raise InvalidInput(f"{self.target} appeared meanwhile; refusing to "
                                       "overwrite it") from None
                os.rename(self.name, self.target)
            self.name.unlink(missing_ok=True)
            fsync_dir(self.target.parent)
        except OSError as exc:
            self.name.unlink(missing_ok=True)
            raise InvalidInput(f"cannot write {self.target}: {exc.strerror or exc}") from None
        except BaseException:
            self.name.unlink(missing_ok=True)
            raise


def _io_error(reader: _Reader, writer: _Writer) -> None:
    """Re-raise what failed on our side of age's callbacks, which age only reports as
    its own error: an I/O failure of ours is never a verdict on the package (one
    sentence, InvalidInput), and an interrupt (Ctrl-C) stays an interrupt."""
    for side in (reader, writer):
        if side.interrupted is not None:
            raise side.interrupted
        if side.error is not None:
            raise InvalidInput(side.error) from None


class _Side:
    """What went wrong in a callback of age, kept to be raised once age returns."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.total = 0
        self.error: str | None = None
        self.interrupted: BaseException | None = None

    def _failed(self, exc: BaseException, doing: str) -> None:
        if isinstance(exc, OSError):
            self.error = f"cannot {doing} {self.what}: {exc.strerror or exc}"
        elif isinstance(exc, Exception):
            self.error = f"cannot {doing} {self.what}: {exc}"
        else:  # KeyboardInterrupt, SystemExit: not ours to turn into a message
            self.interrupted = exc


class _Reader(_Side):
    """What age reads from: the file's bytes, hashed on the way."""

    def __init__(self, fin: BinaryIO, hashing: _Hashing, progress: Progress | None, *,
                 what: str) -> None:
        super().__init__(what)
        self.fin = fin
        self.hashing = hashing
        self.progress = progress
        self._shown = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.fin.read(n if n is not None and n >= 0 else _CHUNK)
            if data:
                self.hashing.update(data)
                self.total += len(data)
                if self.progress is not None and self.total - self._shown >= _CHUNK:
                    self._shown = self.total
                    self.progress(self.total)
        except BaseException as exc:
            self._failed(exc, "read")
            raise
        return data

    def readinto(self, view: Any) -> int:  # pragma: no cover - age calls read()
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readable(self) -> bool:  # pragma: no cover
        return True

    def drain(self) -> None:
        """Read (and hash) whatever age did not."""
        with contextlib.suppress(OSError):
            while self.read(_CHUNK):
                pass

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.total)


class _Writer(_Side):
    """Where age writes: a file, hashed on the way."""

    def __init__(self, fout: BinaryIO, hashing: _Hashing, *, what: str) -> None:
        super().__init__(what)
        self.fout = fout
        self.hashing = hashing

    def write(self, data: bytes) -> int:
        try:
            self.fout.write(data)
            self.hashing.update(data)
        except BaseException as exc:
            self._failed(exc, "write")
            raise
        self.total += len(data)
        return len(data)

    def flush(self) -> None:
        try:
            self.fout.flush()
        except BaseException as exc:
            self._failed(exc, "write")
            raise

    def writable(self) -> bool:  # pragma: no cover
        return True


# ---- hashing a stream fed in pieces --------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def _new_hasher(name: str) -> _Hasher:
    if name == "blake3":
        try:
            module = importlib.import_module("blake3")
        except ImportError:
            raise InvalidInput("the registered BLAKE3 digest cannot be recomputed: the "
                               "'blake3' package is not installed (custody-ledger[blake3])"
                               ) from None
        hasher: _Hasher = module.blake3()
        return hasher
    return hashlib.new(name)


class _Hashing:
    """Several digests of a stream that arrives in pieces of any size (age reads and
    writes 8-64 KiB at a time): the pieces are gathered into a ring of 1 MiB buffers,
    and each full buffer is hashed by every algorithm on its own thread. ``hashlib``
    releases the GIL on large updates, so the hashing runs beside age's own work.

    Buffer ownership is that of :mod:`ledger.evidence`: a buffer is refilled only after
    every worker has acknowledged it (FIFO queues, so the oldest in flight is released
    by one acknowledgement from each worker)."""

    def __init__(self, names: Sequence[str]) -> None:
        self._views = [memoryview(bytearray(_CHUNK)) for _ in range(_RING)]
        self._workers = [HashWorker(n, _new_hasher(n)) for n in names]
        self._slot = 0
        self._fill = 0
        self._in_flight = 0
        self._closed = False
        for worker in self._workers:
            worker.start()

    def update(self, data: bytes | memoryview) -> None:
        src = memoryview(data)
        while len(src):
            view = self._views[self._slot]
            n = min(len(src), _CHUNK - self._fill)
            view[self._fill:self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == _CHUNK:
                self._dispatch()

    def _dispatch(self) -> None:
        chunk = self._views[self._slot][:self._fill]
        for worker in self._workers:
            worker.inbox.put(chunk)
        self._in_flight += 1
        self._slot = (self._slot + 1) % _RING
        self._fill = 0
        if self._in_flight == _RING:  # the next buffer is the oldest in flight
            self._release_oldest()

    def _release_oldest(self) -> None:
        for worker in self._workers:
            worker.done.get()
            if worker.error is not None:
                raise worker.error
        self._in_flight -= 1

    def finish(self) -> dict[str, str]:
        """The hex digests of everything fed; the workers are stopped."""
        if self._fill:
            self._dispatch()
        while self._in_flight:
            self._release_oldest()
        self.close()
        return {w.algorithm: w.hasher.hexdigest() for w in self._workers}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.inbox.put(None)
        for worker in self._workers:
            worker.join()
