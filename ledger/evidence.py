"""Streaming evidence hashing: several digests from ONE read of the bytes.

This module is an adapter (it does file I/O), not part of the pure core.

Design (see ``docs``/design ``performance.md`` and architecture convention 6):

* The evidence is read exactly once, with ``readinto`` into a small ring of
  preallocated ~1 MiB buffers, so memory stays constant whatever the file size.
* Every digest (SHA-256, SHA-512 and optionally BLAKE3) runs on its own worker
  thread. ``hashlib`` and ``blake3`` release the GIL for large updates, so the
  digests really run in parallel and the total time is that of the slowest digest
  (SHA-512), not the sum. The reading thread only copies bytes.
* Buffer ownership protocol: the reader hands buffer *k* to every worker through
  the worker's FIFO ``inbox``; each worker answers on its own FIFO ``done`` queue
  when it has finished with a buffer. Because all queues are FIFO, the oldest
  buffer in flight is released exactly when one ``done`` token has been taken
  from *every* worker. The reader waits for that before refilling the buffer, so
  no buffer is ever overwritten while a hasher still reads it.
* A worker that fails records its exception, keeps acknowledging buffers (so the
  reader never deadlocks) and the reader re-raises the exception. Whatever
  happens, the workers receive a stop sentinel and are joined before returning.

Digests are the hex-lowercase values used in custody events (``sha256``,
``sha512``, ``blake3``); SHA-2 per FIPS 180-4, BLAKE3 per its specification.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from ledger.core.errors import InvalidInput, NotFound, PayloadTooLarge

__all__ = ["DEFAULT_CHUNK_SIZE", "Digests", "digests_match", "evidence_size", "hash_file",
           "hash_stream"]

DEFAULT_CHUNK_SIZE = 1 << 20
# Buffers in the ring: one being filled by the reader while up to three are hashed.
_RING_SIZE = 4

Progress = Callable[[int], None]


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Digests:
    """The digests of one piece of evidence (hex lowercase) and its size in bytes."""

    sha256: str
    sha512: str
    blake3: str | None
    size: int

    def as_dict(self) -> dict[str, str]:
        """The digests by algorithm name, omitting algorithms that were not computed."""
        out = {"sha256": self.sha256, "sha512": self.sha512}
        if self.blake3 is not None:
            out["blake3"] = self.blake3
        return out


def hash_file(
    path: str | os.PathLike[str],
    *,
    blake3: bool = False,
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Digests:
    """Hash the file at ``path`` in one read; SHA-256 and SHA-512, optionally BLAKE3.

    Raises ``NotFound`` if the file does not exist and ``InvalidInput`` if it is a
    directory, cannot be read, or BLAKE3 is requested but not installed.
    """
    hashers = _new_hashers(blake3)
    shown = os.fspath(path)
    _check_kind(path, shown)  # BEFORE opening: opening a FIFO blocks until a writer comes
    try:
        # Unbuffered: readinto goes straight from the page cache into our buffers.
        fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        raise NotFound(f"no such file: {shown}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{shown} is a directory, not an evidence file.") from None
    except PermissionError:
        raise InvalidInput(f"permission denied: cannot read {shown}.") from None
    except OSError as exc:
        raise InvalidInput(f"cannot open {shown}: {exc.strerror or exc}.") from None
    try:
        try:
            return _hash_readable(fh.readinto, hashers, chunk_size, progress, None)
        except IsADirectoryError:  # some platforms only fail on the first read
            raise InvalidInput(f"{shown} is a directory, not an evidence file.") from None
        except OSError as exc:
            raise InvalidInput(f"cannot read {shown}: {exc.strerror or exc}.") from None
    finally:
        fh.close()


#: What is refused, by file type, and why (never opened: each can block or never end).
_REFUSED_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe), which has no fixed content and blocks when opened"),
    (stat.S_ISCHR, "a character device, which has no fixed size (it may never end)"),
    (stat.S_ISSOCK, "a socket"),
)


def evidence_size(path: str | os.PathLike[str]) -> int | None:
    """The size of evidence at ``path``: a regular file's size, or a block device's
    (read from the device; ``st_size`` of a device node is 0). None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return os.stat(path).st_size
    if stat.S_ISBLK(mode):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    return None


def _check_kind(path: str | os.PathLike[str], shown: str) -> None:
    """Accept regular files and block devices (an examiner hashes ``/dev/sdX``); refuse
    directories, FIFOs, character devices and sockets at once, from ``os.stat`` alone."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreachable: opening it reports that in one sentence
    for test, what in _REFUSED_KINDS:
        if test(mode):
            if what == "a directory":
                raise InvalidInput(f"{shown} is a directory, not an evidence file.")
            raise InvalidInput(f"{shown} is {what}, not an evidence file: give a regular "
                               "file or a block device.")


def hash_stream(
    readable: BinaryIO | Any,
    *,
    blake3: bool = False,
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_bytes: int | None = None,
) -> Digests:
    """Hash an open binary stream to its end, in one pass.

    ``readable`` needs ``readinto`` (preferred) or ``read``. If ``max_bytes`` is
    given, ``PayloadTooLarge`` is raised as soon as more than ``max_bytes`` bytes
    have been read; a stream of exactly ``max_bytes`` bytes is accepted. Errors
    raised by the stream itself propagate unchanged. The stream is not closed.
    """
    if max_bytes is not None and max_bytes < 0:
        raise InvalidInput("max_bytes must be zero or a positive number of bytes.")
    hashers = _new_hashers(blake3)
    readinto = getattr(readable, "readinto", None)
    if readinto is None:
        readinto = _readinto_from_read(readable)
    return _hash_readable(readinto, hashers, chunk_size, progress, max_bytes)


def digests_match(expected: Mapping[str, str], actual: Digests) -> list[str]:
    """Names of the algorithms whose recorded digest differs from the computed one.

    Only algorithms present in both ``expected`` and ``actual`` are compared; the
    hex comparison is case-insensitive. An empty list means every shared digest
    matches (callers must check themselves that at least one algorithm is shared).
    """
    computed = actual.as_dict()
    mismatched = []
    for name, recorded in expected.items():
        key = name.lower()
        if key in computed and recorded.strip().lower() != computed[key]:
            mismatched.append(name)
    return mismatched


# -- internals -----------------------------------------------------------------------


def _new_hashers(with_blake3: bool) -> dict[str, _Hasher]:
    hashers: dict[str, _Hasher] = {"sha256": hashlib.sha256(), "sha512": hashlib.sha512()}
    if with_blake3:
        try:
            module = importlib.import_module("blake3")
        except ImportError:
            raise InvalidInput(
                "BLAKE3 was requested but the 'blake3' package is not installed; "
                "install custody-ledger[blake3] or hash without BLAKE3."
            ) from None
        hashers["blake3"] = module.blake3()
    return hashers


def _readinto_from_read(readable: Any) -> Callable[[memoryview], int]:
    read = getattr(readable, "read", None)
    if read is None:
        raise InvalidInput("the stream to hash has neither readinto() nor read().")

    def readinto(view: memoryview) -> int:
        data = read(len(view))
        if data is None:
            return 0
        n = len(data)
        view[:n] = data
        return n

    return readinto


class HashWorker(threading.Thread):
    """Runs one hasher over the buffers it is handed, in order (also used by
    ``ledger.seal``)."""

    def __init__(self, name: str, hasher: _Hasher) -> None:
        super().__init__(name=f"evidence-hash-{name}", daemon=True)
        self.algorithm = name
        self.hasher = hasher
        self.inbox: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.error: BaseException | None = None

    def run(self) -> None:
        while (view := self.inbox.get()) is not None:
            if self.error is None:
                try:
                    self.hasher.update(view)
                except BaseException as exc:  # re-raised by the reader thread
                    self.error = exc
            # Always acknowledge, even after a failure, so the reader never blocks.
            self.done.put(None)


def _hash_readable(
    readinto: Callable[[memoryview], int | None],
    hashers: dict[str, _Hasher],
    chunk_size: int,
    progress: Progress | None,
    max_bytes: int | None,
) -> Digests:
    if chunk_size <= 0:
        raise InvalidInput("chunk_size must be a positive number of bytes.")
    workers = [HashWorker(name, h) for name, h in hashers.items()]
    views = [memoryview(bytearray(chunk_size)) for _ in range(_RING_SIZE)]
    total = 0
    in_flight = 0  # buffers handed to the workers and not yet acknowledged by all
    started: list[HashWorker] = []
    try:
        for worker in workers:
            worker.start()
            started.append(worker)
        slot = 0
        while True:
            if in_flight == _RING_SIZE:
                _release_oldest(workers)
                in_flight -= 1
            view = views[slot]
            if max_bytes is not None:
                # Read at most one byte past the cap: enough to detect an overflow.
                view = view[: min(chunk_size, max_bytes - total + 1)]
            got = readinto(view)
            if got is None:
                raise InvalidInput("the stream to hash is non-blocking and had no data ready.")
            if got == 0:
                break
            total += got
            if max_bytes is not None and total > max_bytes:
                raise PayloadTooLarge(f"the payload exceeds the limit of {max_bytes} bytes.")
            chunk = view[:got]
            for worker in workers:
                worker.inbox.put(chunk)
            in_flight += 1
            slot = (slot + 1) % _RING_SIZE
            if progress is not None:
                progress(total)
        while in_flight:
            _release_oldest(workers)
            in_flight -= 1
    finally:
        for worker in started:
            worker.inbox.put(None)
        for worker in started:
            worker.join()
    return Digests(
        sha256=hashers["sha256"].hexdigest(),
        sha512=hashers["sha512"].hexdigest(),
        blake3=hashers["blake3"].hexdigest() if "blake3" in hashers else None,
        size=total,
    )


def _release_oldest(workers: list[HashWorker]) -> None:
    """Wait until every worker has finished the oldest buffer in flight."""
    for worker in workers:
        worker.done.get()
        if worker.error is not None:
            raise worker.error
