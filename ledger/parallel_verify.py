"""Ed25519 signature checks spread over worker processes.

``VerifyPool`` checks ``(public key, message, signature)`` triples with exactly the check
of :func:`ledger.core._sodium.verify` (:func:`ledger.core._sodium.valid`), in worker processes,
and says which fail by their position. The answer does not depend on the number of
workers or on how the triples are cut into batches: each triple is checked on its own.

    with VerifyPool() as pool:
        bad = pool.verify(triples)        # positions of the triples that fail, sorted
        result = pool.submit(batch)       # asynchronous: result() waits for the positions

The audit also has its workers parse its leaves (``check_leaves``: the stateless part of
:func:`ledger.core.audit.audit`, signature included), the work the replaying process would
otherwise do on top of the rules. A worker sends each valid leaf's parse back with its
code (:func:`ledger.core.audit.parse_leaves`), so the replaying process does not parse it
again.

Why processes and not threads: libsodium runs without the GIL, but a thread coming back
from the C call needs the GIL again, and while another thread runs Python (the audit's
rule replay) it gets it only at the interpreter's switch interval (5 ms). Measured on
this project's 2-core machine: ~250 checks/s in a thread beside a busy thread, against
~16,000/s alone. A worker process has its own interpreter.

A worker is ``python -m ledger.parallel_verify``: it imports only this module and
PyNaCl (no ``multiprocessing`` re-import of the caller's ``__main__``, no fork of a
process that may hold locks in other threads), reads length-prefixed batches on
stdin (a reader thread drains the pipe, so a caller never blocks on a busy worker) and
writes the failing positions on stdout, in a plain length-prefixed binary framing
(:func:`_pack`, no pickle); the codes and parses of a batch of leaves go back as one
``marshal`` value (plain JSON values only, read back by the same interpreter that
started the worker, from its own pipe). A batch a dead worker cannot answer is checked
in the calling process instead, and the pool stops using workers (never a wrong
answer).

Small jobs are checked in the calling process: starting a worker costs ~0.1 s, about
2,000 checks (``start_after``); and until a worker says it is ready (it has imported
what it needs), batches are checked in the calling process too, never waited for.
"""

from __future__ import annotations

import contextlib
import importlib
import marshal
import os
import queue
import re
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Final

from ledger.core import _sodium

Triple = tuple[bytes, bytes, bytes]
_LEN: Final = struct.Struct("<Q")
_JOB: Final = struct.Struct("<QI")  # job id, count
_ID: Final = struct.Struct("<Q")
_COUNT: Final = struct.Struct("<I")
_KIND: Final = struct.Struct("<B")
#: What a worker runs on a batch: Ed25519 triples (the failing positions), or the
#: audit's entries (a code per entry, :func:`ledger.core.audit.check_leaves`; a worker
#: process answers :func:`ledger.core.audit.parse_leaves`, the codes with each valid leaf's
#: parse, in ``marshal`` form: plain values between two processes of this interpreter).
TRIPLES: Final = 0
LEAVES: Final = 1
_SIZES: Final = struct.Struct("<III")  # lengths of the three parts (a leaf may pass 64 KiB)
_POS: Final = struct.Struct("<I")
_PIPE_BYTES: Final = 1 << 20
_MODULE: Final = re.compile(r"ledger(\.[a-z_]+)+")
_F_SETPIPE_SZ: Final = 1031  # Linux fcntl


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cores() -> float:
    """Cores the machine leaves idle: the cores available minus the 1-minute load
    average (all cores when the load is unknown). Worker processes only help when there
    are some: on a saturated machine they add their overhead and take no extra CPU."""
    cores = available_cores()
    try:
        return max(0.0, cores - os.getloadavg()[0])
    except (AttributeError, OSError):
        return float(cores)


class Result:
    """The positions that fail in one submitted batch (or the codes of a
    :meth:`VerifyPool.check_leaves` batch); calling it waits for them."""

    __slots__ = ("_get", "_value")

    def __init__(self, get: Callable[[], list[Any]]) -> None:
        self._get = get
        self._value: list[Any] | None = None

    def __call__(self) -> list[Any]:
        if self._value is None:
            self._value = self._get()
        return self._value


def _done(value: list[Any]) -> Result:
    result = Result(list)
    result._value = value
    return result


class _Worker:
    def __init__(self, preload: Sequence[str] = ()) -> None:
        if not all(_MODULE.fullmatch(name) for name in preload):
            raise ValueError(f"a worker preloads only ledger modules, not {list(preload)}")
        root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}
        self.proc = subprocess.Popen(  # noqa: S603 - this module, names checked above
            [sys.executable, "-m", "ledger.parallel_verify", *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        if self.proc.stdin is None or self.proc.stdout is None:  # pragma: no cover
            raise OSError("no pipe to the verification worker")
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        _grow_pipe(self.stdin)
        #: Batches sent and not answered yet (kept to check them here if the worker dies).
        self.waiting: dict[int, list[Triple]] = {}
        self.answers: dict[int, list[Any]] = {}
        self.kinds: dict[int, int] = {}
        self.alive = True
        self._ready = False

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the worker has started (imported what it needs), waiting at most
        ``timeout`` seconds for it."""
        if self._ready or not self.alive:
            return self._ready
        try:
            readable = select.select([self.stdout], [], [], timeout)[0]
        except (OSError, ValueError):  # no select on this pipe: wait when answering
            self._ready = True
            return True
        if readable:
            try:
                job, _ = _read(self.stdout)
            except (OSError, EOFError, struct.error, ValueError):
                self.alive = False
                return False
            self._ready = job == 0
            self.alive = self._ready
        return self._ready

    def send(self, job: int, kind: int, triples: list[Triple]) -> None:
        self.waiting[job] = triples
        self.kinds[job] = kind
        data = _KIND.pack(kind) + _pack(job, triples)
        try:
            self.stdin.write(_LEN.pack(len(data)) + data)
            self.stdin.flush()
        except OSError:
            self.alive = False

    def answer(self, job: int) -> list[Any]:
        while job not in self.answers:
            if not self.alive:
                self.answers[job] = _run(self.kinds[job], self.waiting[job])
                break
            try:
                got, data = _read(self.stdout)
                self.answers[got] = _decode(self.kinds[got], data)
            except (OSError, EOFError, struct.error, ValueError, KeyError, TypeError):
                self.alive = False
        self.waiting.pop(job, None)
        self.kinds.pop(job, None)
        return self.answers.pop(job)

    def close(self) -> None:
        if self.waiting:  # answers nobody will read (e.g. an audit that stopped early)
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()


class VerifyPool:
    """Worker processes checking Ed25519 triples (see the module docstring).

    ``workers``: how many (default: the cores available; 1 or fewer checks in the
    calling process). ``start_after``: the first this many triples are checked in the
    calling process, and workers start only for a job that is larger than that.
    Not thread-safe: one caller at a time.
    """

    def __init__(self, workers: int | None = None, *, start_after: int = 2048) -> None:
        self.workers = available_cores() if workers is None else workers
        self.start_after = start_after
        self._seen = 0
        self._pool: list[_Worker] = []
        self._next = 0
        self._job = 0
        self._broken = False

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def started(self) -> int:
        """How many worker processes are running."""
        return len(self._pool)

    def start(self, preload: Sequence[str] = ()) -> None:
        """Start the workers now (they take ~0.1 s, more with ``preload``: modules they
        import before taking work, e.g. ``ledger.core.audit`` for :meth:`check_leaves`).
        Until a worker is ready, batches are checked in the calling process."""
        if self._pool or self._broken or self.workers <= 1:
            return
        try:
            self._pool = [_Worker(preload) for _ in range(self.workers)]
        except OSError:
            self._broken = True

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until every started worker is ready; whether they all are."""
        return all(worker.ready(timeout) for worker in self._pool)

    def _worker(self) -> _Worker | None:
        if self._broken or self.workers <= 1 or self._seen <= self.start_after:
            return None
        if not self._pool:
            self.start()
        alive = False
        for _ in range(len(self._pool)):
            worker = self._pool[self._next % len(self._pool)]
            self._next += 1
            if worker.ready():
                return worker
            alive = alive or worker.alive
        self._broken = not alive
        return None  # none ready yet: check here meanwhile

    def submit(self, triples: Sequence[Triple]) -> Result:
        """Start checking ``triples``; the result gives the failing positions, sorted."""
        return self._submit(TRIPLES, triples)

    def check_leaves(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> Result:
        """Start :func:`ledger.core.audit.check_leaves` on the audit's ``(leaf, leaf hash,
        public key)`` items; the result gives a code per item (from a worker: with the
        leaf's parse, :func:`ledger.core.audit.parse_leaves`)."""
        return self._submit(LEAVES, items)

    def _submit(self, kind: int, items: Sequence[Triple]) -> Result:
        batch = list(items)
        self._seen += len(batch)
        worker = self._worker() if batch else None
        if worker is None:
            return _done(_run(kind, batch))
        self._job += 1
        job = self._job
        worker.send(job, kind, batch)
        return Result(lambda: worker.answer(job))

    def verify(self, triples: Sequence[Triple], batch: int = 256) -> list[int]:
        """The positions of the triples that fail, sorted (waits for all of them)."""
        batch = max(1, min(batch, -(-len(triples) // max(self.workers, 1))))
        starts = range(0, len(triples), batch)
        results = [(start, self.submit(triples[start:start + batch])) for start in starts]
        return [start + pos for start, result in results for pos in result()]

    def close(self) -> None:
        """Stop the workers (the pool may be used again: they start again when needed)."""
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.close()


def verify_all(triples: Sequence[Triple], workers: int | None = None) -> list[int]:
    """The positions of the ``triples`` that fail, checked over ``workers`` processes
    (started for this call and stopped after it)."""
    with VerifyPool(workers, start_after=0) as pool:
        return pool.verify(triples)


def _run(kind: int, items: list[Triple]) -> list[Any]:
    """A batch checked in the calling process."""
    if kind == TRIPLES:
        return _sodium.failing(items)
    if kind == LEAVES:
        from ledger.core.audit import check_leaves

        return check_leaves(items)
    raise ValueError(f"unknown job kind {kind}")


def _work(kind: int, items: list[Triple]) -> tuple[int, bytes]:
    """A batch checked in a worker: the answer's count and bytes (:func:`_decode`)."""
    if kind == LEAVES:
        from ledger.core.audit import parse_leaves

        return len(items), marshal.dumps(parse_leaves(items))
    bad = _run(kind, items)
    return len(bad), b"".join(_POS.pack(p) for p in bad)


def _decode(kind: int, data: bytes) -> list[Any]:
    """A worker's answer (:func:`_read`) to a batch of that kind."""
    count, body = _COUNT.unpack_from(data)[0], data[_COUNT.size:]
    if kind == LEAVES:
        codes = marshal.loads(body)  # noqa: S302 - from our own worker, over its pipe
        if type(codes) is not list or len(codes) != count:
            raise ValueError("malformed answer")
        return codes
    if len(body) != count * _POS.size:
        raise ValueError("malformed answer")
    return [p for (p,) in _POS.iter_unpack(body)]


def _grow_pipe(pipe: IO[bytes]) -> None:
    """A 1 MiB pipe buffer (Linux), so a batch is written without waiting for the reader."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, OSError, ValueError):
        pass


def _pack(job: int, triples: Sequence[Triple]) -> bytes:
    """A batch: job id and count, then per triple the three lengths and the bytes."""
    parts = [_JOB.pack(job, len(triples))]
    for pk, msg, sig in triples:
        parts += (_SIZES.pack(len(pk), len(sig), len(msg)), pk, sig, msg)
    return b"".join(parts)


def _unpack(data: bytes) -> tuple[int, list[Triple]]:
    job, count = _JOB.unpack_from(data)
    at = _JOB.size
    triples: list[Triple] = []
    for _ in range(count):
        n_pk, n_sig, n_msg = _SIZES.unpack_from(data, at)
        at += _SIZES.size
        pk, sig = data[at:at + n_pk], data[at + n_pk:at + n_pk + n_sig]
        at += n_pk + n_sig
        triples.append((pk, data[at:at + n_msg], sig))
        at += n_msg
    if at != len(data):
        raise ValueError("malformed batch")
    return job, triples


def _frame(stream: IO[bytes]) -> bytes:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("the pipe is closed")
    (size,) = _LEN.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the pipe is closed")
    return data


def _read(stream: IO[bytes]) -> tuple[int, bytes]:
    """An answer: its job id, and the count and answer bytes for :func:`_decode` (the
    failing positions, or the codes of a batch of leaves)."""
    data = _frame(stream)
    if len(data) < _JOB.size:
        raise ValueError("malformed answer")
    (job,) = _ID.unpack_from(data)
    return job, data[_ID.size:]


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """A worker: check every batch read from ``inp``, answer on ``out``, until EOF."""
    jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def drain() -> None:
        try:
            while True:
                jobs.put(_frame(inp))
        except EOFError:
            pass
        finally:
            jobs.put(None)

    threading.Thread(target=drain, daemon=True).start()
    out.write(_LEN.pack(_JOB.size) + _JOB.pack(0, 0))  # ready
    out.flush()
    while (data := jobs.get()) is not None:
        (kind,) = _KIND.unpack_from(data)
        job, items = _unpack(data[_KIND.size:])
        count, body = _work(kind, items)
        answer = _JOB.pack(job, count) + body
        out.write(_LEN.pack(len(answer)) + answer)
        out.flush()


if __name__ == "__main__":
    for _name in sys.argv[1:]:
        if _MODULE.fullmatch(_name):
            importlib.import_module(_name)
    _serve(sys.stdin.buffer, sys.stdout.buffer)
