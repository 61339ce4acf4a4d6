"""Running Fabric's command-line programs (``peer``, ``osnadmin``, ``configtxgen``) for
one step of bringing a network up, with their output appended to that step's log."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from network import procs
from network.nodes import HOST

#: A step's reason is cut to this many characters in the one-sentence error.
REASON_MAX = 240


class StepFailed(Exception):
    """A step of ``network up`` failed: what it was doing, the log to read, and why."""

    def __init__(self, what: str, log: Path | None, reason: str = "") -> None:
        super().__init__(what)
        self.what, self.log, self.reason = what, log, reason

    def sentence(self, prefix: str = "network up failed") -> str:
        text = f"{prefix} while {self.what}"
        if self.reason:
            text += f": {self.reason}"
        if self.log is not None:
            text += f" (see {self.log})"
        return text


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else "no output"
    return line if len(line) <= REASON_MAX else line[:REASON_MAX - 1] + "…"


def run(argv: Sequence[str], env: dict[str, str], log: Path, what: str,
        timeout: float = 120.0) -> str:
    """Run a program to completion; returns its stdout. Raises StepFailed (naming ``log``)
    when it exits non-zero or runs longer than ``timeout`` seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        proc = subprocess.run(list(argv), env=procs.child_env(env), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        _append(log, started, argv, str(exc.stdout or ""), str(exc.stderr or ""), None)
        raise StepFailed(what, log, f"no answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise StepFailed(what, log, str(exc)) from None
    _append(log, started, argv, proc.stdout, proc.stderr, proc.returncode)
    if proc.returncode != 0:
        raise StepFailed(what, log, last_line(proc.stderr or proc.stdout))
    return proc.stdout


def _append(log: Path, started: str, argv: Sequence[str], out: str, err: str,
            code: int | None) -> None:
    with log.open("a") as f:
        f.write(f"---- {started} {' '.join(argv)}\n{out}{err}---- exit {code}\n")


def run_all(jobs: Sequence[tuple[Sequence[str], dict[str, str], Path, str]],
            timeout: float = 120.0) -> list[str]:
    """:func:`run` several programs at once; the first failure (in job order) is raised
    once all have finished."""
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(run, argv, env, log, what, timeout)
                   for argv, env, log, what in jobs]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_listening(proc: procs.Proc, ports: Sequence[int], deadline: float) -> None:
    """Wait until ``proc`` listens on every port; StepFailed (naming its log) if it exits
    or the deadline passes."""
    what = f"starting {proc.name}"
    for port in ports:
        while not listening(port):
            if not procs.alive(proc):
                raise StepFailed(what, Path(proc.log), "the process exited")
            if time.monotonic() > deadline:
                raise StepFailed(what, Path(proc.log), f"nothing listens on port {port}")
            time.sleep(0.1)
    if not procs.alive(proc):  # another program may hold the port it tried to bind
        raise StepFailed(what, Path(proc.log), "the process exited")
