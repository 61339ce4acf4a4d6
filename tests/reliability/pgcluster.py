"""A throwaway PostgreSQL cluster OF ITS OWN for the crash campaign.

The campaign SIGKILLs the server, so it never touches the shared test cluster
(``.ci/postgres.sh``): :class:`Cluster` runs ``initdb`` into a temporary directory and
``pg_ctl start`` on a free loopback port, with ``fsync=on`` and
``synchronous_commit=on`` (the durability settings under test). :meth:`Cluster.crash`
sends SIGKILL to the postmaster and every one of its processes at once (what a power
cut does to the processes; the kernel's page cache survives, see docs/reliability.md),
and :meth:`Cluster.start` then runs PostgreSQL's crash recovery from its WAL.

As root (CI, this container) the server runs as the ``postgres`` OS user, as
``.ci/postgres.sh`` does: initdb refuses to run as root.

A killed postmaster must be REAPED before it can be restarted: PostgreSQL refuses to
start while the PID in ``postmaster.pid`` still exists, and a zombie still exists. In a
container whose PID 1 does not reap orphans, the process that owns the cluster makes
itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the daemonised postmaster and
its backends become its children and are reaped by :meth:`Cluster.crash`.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.procfs import child_pids

PG_USER = "postgres"


def bindir() -> Path | None:
    """The directory with ``initdb`` and ``pg_ctl`` (Debian's versioned one first)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK) and \
                os.access(Path(candidate) / "pg_ctl", os.X_OK):
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    return None


def available() -> bool:
    if bindir() is None:
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_strays() -> int:
    """Reap every exited child not waited for yet (orphans handed to a subreaper)."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


class Cluster:
    """``with Cluster() as pg: url = pg.create_database("x")``; ``pg.crash(); pg.start()``."""

    def __init__(self) -> None:
        found = bindir()
        if found is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self.bindir = found
        self.base = Path(tempfile.mkdtemp(prefix="custody-crash-pg."))
        self.datadir = self.base / "data"
        self.logfile = self.base / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.crashes = 0
        become_subreaper()
        if self.as_root:
            shutil.chown(self.base, PG_USER)
        os.chmod(self.base, 0o700)
        self._run(["initdb", "-D", str(self.datadir), "-U", PG_USER, "--auth=trust",
                   "-E", "UTF8", "--no-locale", "--no-sync"])
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.base}'\n"
                       "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n"
                       "max_connections = 200\nshared_buffers = 32MB\n"
                       "log_min_messages = warning\n")
        self.start()

    # ---- process control --------------------------------------------------------------

    def _run(self, argv: list[str], check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True,
                              text=True, cwd=self.base)

    def start(self) -> float:
        """Start the server (after a crash: PostgreSQL's crash recovery); returns the
        seconds it took until it accepts connections."""
        t0 = time.monotonic()
        result = self._run(["pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile),
                            "-w", "-t", "120", "start"], check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n"
                               + self.log_tail())
        return time.monotonic() - t0

    def running(self) -> bool:
        """Whether the server runs (``pg_ctl status``)."""
        return self._run(["pg_ctl", "-D", str(self.datadir), "status"], check=False,
                         timeout=30).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self) -> list[int]:
        """The postmaster and all its children."""
        root = self.postmaster_pid()
        if root is None:
            return []
        return [root, *child_pids(root)]

    def crash(self) -> None:
        """SIGKILL the server: the postmaster and every backend, checkpointer, WAL writer
        at once. No shutdown checkpoint is written; the next start recovers from WAL."""
        pids = self.processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:  # our children when we are their subreaper
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.01)
        root = pids[0] if pids else None
        if root is not None and _exists(root):
            # A zombie we cannot reap (no subreaper): it would block the restart, and
            # it holds no shared memory any more; the lock file is stale.
            with contextlib.suppress(FileNotFoundError):
                (self.datadir / "postmaster.pid").unlink()
        self.crashes += 1

    def stop(self) -> None:
        self._run(["pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                  check=False)

    def shutdown(self, mode: str = "fast") -> None:
        """Stop the server the way an operator does: ``fast`` (every session terminated,
        a shutdown checkpoint), ``smart`` (waits for sessions to end) or ``immediate``
        (no checkpoint: crash recovery at the next start). Waits until it is down."""
        if mode not in ("fast", "smart", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        root = self.postmaster_pid()
        result = self._run(["pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "120",
                            "stop"], check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed: {result.stdout}{result.stderr}")
        if root is not None:  # our child when we are its subreaper: reap it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(root, 0)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- databases --------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        self._run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
                   "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", statement])

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()
