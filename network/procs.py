"""The network's processes and their bookkeeping in ``DIR/processes.json``.

Each record keeps what is needed to recognise the process later and to start it again:
its pid and start time (``/proc/PID/stat`` field 22, in clock ticks since boot), its
command line, the environment variables set on top of the caller's, its working
directory and log. A pid whose start time differs is another process that reused the
number: it is reported as not alive and is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ledger.core.errors import UpstreamError

PROCESSES = "processes.json"
LOCK = ".network.lock"
#: Seconds between SIGTERM and SIGKILL.
GRACE = 10.0
#: Variables of the caller's environment that would reconfigure a Fabric node or the
#: chaincode, and are therefore never inherited.
_FOREIGN = ("CORE_", "ORDERER_", "FABRIC_", "CHAINCODE_", "OSNADMIN_")

#: Processes this Python process started and has not reaped yet (so they never linger as
#: zombies, and Popen never warns about a child still running).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class Proc:
    name: str
    role: str
    org: str | None
    index: int | None
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str
    address: str
    ports: dict[str, int] = field(default_factory=dict)
    pid: int = 0
    start_time: int = 0

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "org": self.org, "index": self.index,
                "pid": self.pid, "alive": alive(self), "address": self.address,
                "log": self.log}


def load(folder: Path) -> list[Proc]:
    path = folder / PROCESSES
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [Proc(**rec) for rec in data["processes"]]


def save(folder: Path, procs: Iterable[Proc]) -> None:
    path = folder / PROCESSES
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "processes": [asdict(p) for p in procs]},
                              indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Serialise changes to one network directory (up, down, stop/start a node)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return {**base, **overrides}


def start(proc: Proc) -> Proc:
    """Start ``proc`` in its own session (a Ctrl-C at the terminal does not reach it),
    output appended to its log; records its pid and start time."""
    Path(proc.log).parent.mkdir(parents=True, exist_ok=True)
    with open(proc.log, "ab") as log:
        log.write(f"---- {time.strftime('%Y-%m-%dT%H:%M:%S')} start {proc.argv}\n".encode())
        log.flush()
        child = subprocess.Popen(proc.argv, cwd=proc.cwd, env=child_env(proc.env),
                                 stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[child.pid] = child
    proc.pid = child.pid
    stat = _stat(child.pid)
    proc.start_time = stat[1] if stat else 0
    return proc


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a pid from /proc, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def alive(proc: Proc) -> bool:
    """Whether the recorded process is running (not a zombie, not a reused pid)."""
    if proc.pid <= 0:
        return False
    child = _CHILDREN.get(proc.pid)
    if child is None:
        return _running(proc)
    if child.poll() is None and _running(proc):
        return True
    # Our child has exited (possibly just after poll() looked): reap it now, a zombie
    # is reaped at once.
    try:
        child.wait(timeout=5.0)
    except subprocess.TimeoutExpired:  # pragma: no cover - /proc and waitpid disagree
        return False
    del _CHILDREN[proc.pid]
    return False


def _running(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == proc.start_time


def stop(procs: Iterable[Proc], grace: float = GRACE) -> list[Proc]:
    """SIGTERM every live process of ``procs``, SIGKILL what is left after ``grace``
    seconds, and check that none is left. Returns the processes that were running."""
    running = [p for p in procs if alive(p)]
    for p in running:
        _signal(p, signal.SIGTERM)
    left = _wait_gone(running, grace)
    for p in left:
        _signal(p, signal.SIGKILL)
    left = _wait_gone(left, 5.0)
    if left:
        raise UpstreamError("could not stop " + ", ".join(f"{p.name} (pid {p.pid})"
                                                           for p in left))
    return running


def _signal(proc: Proc, sig: int) -> None:
    if alive(proc):  # checked again just before: never signal a reused pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def _wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left
