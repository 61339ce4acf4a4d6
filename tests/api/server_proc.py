"""Start the real API server (uvicorn, one process) on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger import keys
from ledger.store.sql import SqlStore
from tests.api import world as w
from tests.conftest import seed_of

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, *, timeout: float = 60,
                 verify: Any = True) -> None:
    """Until ``base``'s ``/v1/health`` answers 200; RuntimeError with the server's log if
    the process exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the API server exited:\n" + log.read_text())
        try:
            if httpx.get(base + "/v1/health", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not start:\n" + log.read_text())
        time.sleep(0.1)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    evidence: Path
    log: Path


def prepare(tmp: Path, database_url: str | None = None) -> tuple[str, Path]:
    """Log key file (0600) and a ledger with its genesis entry, appended locally."""
    key_path = tmp / "log.key"
    keys.write_key(key_path, w.ORIGIN, seed_of("api-log"), None)
    url = database_url or f"sqlite:///{tmp}/ledger.db"
    store = SqlStore.open(url, signer=w.log_signer(), clock=w.now_ms, create=True)
    try:
        w.genesis(store)
    finally:
        store.close()
    return url, key_path


@contextmanager
def running(tmp: Path, database_url: str | None = None,
            **env: str) -> Iterator[Server]:
    url, key_path = prepare(tmp, database_url)
    port = free_port()
    evidence = tmp / "evidence"
    log = tmp / "server.log"
    environ = {**os.environ, "CUSTODY_DATABASE_URL": url,
               "CUSTODY_LOG_KEY_PATH": str(key_path), "CUSTODY_ORIGIN": w.ORIGIN,
               "CUSTODY_ENVIRONMENT": "production", "CUSTODY_TOKEN_SECRET": "t" * 40,
               "CUSTODY_EVIDENCE_DIR": str(evidence), **env}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, log, timeout=30)
        yield Server(base, proc, evidence, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
