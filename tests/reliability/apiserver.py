"""A real API server (uvicorn, one process, group commit) for the outage and soak runs.

``python -m uvicorn --factory api.app:create_app`` on a free loopback port, configured
from ``CUSTODY_*`` variables exactly as ``custody serve`` / a deployment would be, with
the per-address and per-actor rate limits OFF (these runs measure the server and the
database, not the limiter; 429s would hide the capacity) and tokens valid for an hour,
the most production allows (a run never has to log in again while the database is
down). The server is its own process, so its memory (RSS) can be read from ``/proc``.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ledger.service import ActorKey
from tests.reliability import pgcluster
from tests.reliability import world as W

ROOT = Path(__file__).resolve().parents[2]
AUTH_DOMAIN = b"custody-ledger/v1/auth\n"


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        """The server process's resident set size (VmRSS), in KiB."""
        return rss_kib(self.pid)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def write_log_key(folder: Path) -> Path:
    """The log key file of the reliability world (0600, no passphrase)."""
    from ledger import keys
    from tests.conftest import seed_of

    path = folder / "log.key"
    if not path.exists():
        keys.write_key(path, W.ORIGIN, seed_of("log:" + W.ORIGIN), None)
    return path


def start(database_url: str, workdir: Path, *, origin: str = W.ORIGIN,
          log_key: Path | None = None, **env: str) -> ApiServer:
    """Start the server on ``database_url`` (a ledger that exists) and wait until
    ``/v1/health`` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = pgcluster.free_port()
    log = workdir / f"api-{port}.log"
    environ = {**os.environ, "CUSTODY_DATABASE_URL": database_url,
               "CUSTODY_LOG_KEY_PATH": str(log_key or write_log_key(workdir)),
               "CUSTODY_ORIGIN": origin, "CUSTODY_ENVIRONMENT": "production",
               "CUSTODY_TOKEN_SECRET": "r" * 40, "CUSTODY_TOKEN_TTL_S": "3600",
               "CUSTODY_RATE_LIMIT_PER_ADDRESS": "0", "CUSTODY_RATE_LIMIT_PER_ACTOR": "0",
               **env}
    for name in ("CUSTODY_LOG_KEY_PASSPHRASE", "CUSTODY_EVIDENCE_DIR"):
        if name not in env:
            environ.pop(name, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log"],
            cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    server = ApiServer(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the API server exited:\n" + server.log_text())
            try:
                if client.get(server.url + "/v1/health").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("the API server did not start:\n" + server.log_text())
            time.sleep(0.05)


def login(client: httpx.Client, base: str, key: ActorKey) -> str:
    """A bearer token for ``key``'s actor (challenge, signature, token)."""
    r = client.post(base + "/v1/auth/challenge", json={"actor": key.actor_id})
    r.raise_for_status()
    challenge = str(r.json()["challenge"])
    sig = key.signer.sign(AUTH_DOMAIN + challenge.encode("ascii"))
    r = client.post(base + "/v1/auth/token", json={
        "actor": key.actor_id, "challenge": challenge,
        "signature": base64.b64encode(sig).decode()})
    r.raise_for_status()
    return str(r.json()["access_token"])
