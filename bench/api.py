"""API server throughput and latency, against references measured in the same run.

* Durable writes: pre-signed ``access.record`` events POSTed to ``/v1/events`` by 32
  concurrent connections (httpx, asyncio) to ONE uvicorn worker, vs the in-process
  ``SqlStore.append`` rate of the same kind of events on an identical ledger, measured
  moments before (target: >= 0.70x; p99 <= 50 ms at 32 connections).
* Reads: artefact record (``GET /v1/state/art/ID``), history
  (``GET /v1/artefacts/ID/history``) and an inclusion proof, vs a FastAPI hello-world
  app on uvicorn, same worker count, same client (target: >= 0.50x).

The load generator runs on the same 2-vCPU machine as the server, so absolute figures
include its cost; the ratios are what to compare. Progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ledger import _sodium, keys
from ledger import events as ev
from ledger.note import NoteSigner
from ledger.service import ActorKey, Custody
from ledger.store.remote import login
from ledger.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "bench.example/custody"
CONNECTIONS = 32
HELLO = '''from fastapi import FastAPI
app = FastAPI()


@app.get("/hello")
def hello() -> dict[str, str]:
    return {"hello": "world"}
'''


def _log(msg: str) -> None:
    print(f"bench api: {msg}", file=sys.stderr, flush=True)


def _now() -> int:
    return time.time_ns() // 1_000_000


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


class Ledger:
    """A ledger with one org, an admin+examiner actor, a case and an artefact."""

    def __init__(self, directory: Path, log_seed: bytes, actor_seed: bytes) -> None:
        self.url = f"sqlite:///{directory}/ledger.db"
        self.signer = NoteSigner(ORIGIN, log_seed)
        self.actor = ActorKey("bench-admin", _sodium.Signer(actor_seed))
        store = SqlStore.open(self.url, signer=self.signer, clock=_now, create=True)
        svc = Custody(store, origin=ORIGIN, clock=_now, random=os.urandom)
        svc.genesis(self.actor, org_id="bka", org_name="BKA", jurisdiction="DE",
                    actor_name="Bench", roles=["admin", "prosecutor", "examiner", "custodian"],
                    log_key=self.signer.verifier_key)
        svc.open_case(self.actor, "CASE-B")
        import hashlib

        data = b"bench evidence"
        from ledger.evidence import Digests

        digests = Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
                          None, len(data))
        svc.register(self.actor, case="CASE-B", digests=digests, artefact_id="art-b")
        self.store = store
        self.svc = svc

    def events(self, n: int) -> list[ev.SignedEvent]:
        return [self.svc.event(ev.ACCESS, self.actor, {
            "artefact": "art-b", "action": "view", "purpose": "benchmark",
            "outcome": "success", "source": "api"}) for _ in range(n)]


def in_process_appends(directory: Path, n: int) -> dict[str, Any]:
    ledger = Ledger(directory, os.urandom(32), os.urandom(32))
    batch = ledger.events(n)
    lat: list[float] = []
    start = time.perf_counter()
    for signed in batch:
        t0 = time.perf_counter()
        ledger.store.append(signed)
        lat.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    ledger.store.close()
    return {"value": round(n / elapsed, 1), "unit": "appends/s", "p50_ms": _pct(lat, 0.5),
            "p99_ms": _pct(lat, 0.99), "n": n,
            "method": "SqlStore.append of pre-signed access.record events, one at a time, "
                      "SQLite WAL synchronous=FULL, one commit each, in process"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Uvicorn:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "warning", "--no-access-log", "--workers", "1"],
            cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)

    def wait(self, path: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("uvicorn exited: " + self.proc.stderr.read().decode()[-2000:]
                                   if self.proc.stderr else "")
            try:
                if httpx.get(self.base + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _drive(base: str, requests: list[tuple[str, str, dict[str, Any]]],
                 expect: set[int]) -> dict[str, Any]:
    """Send ``requests`` over CONNECTIONS concurrent connections; rate and latencies."""
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    lat: list[float] = []
    bad: dict[int, int] = {}
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                method, path, kwargs = queue.get_nowait()
                t0 = time.perf_counter()
                resp = await client.request(method, path, **kwargs)
                lat.append(time.perf_counter() - t0)
                if resp.status_code not in expect:
                    bad[resp.status_code] = bad.get(resp.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    return {"value": round(len(requests) / elapsed, 1), "unit": "requests/s",
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3), "n": len(requests),
            "unexpected_statuses": bad, "connections": CONNECTIONS}


def api_figures(directory: Path, writes: int, reads: int) -> dict[str, Any]:
    log_seed, actor_seed = os.urandom(32), os.urandom(32)
    ledger = Ledger(directory, log_seed, actor_seed)
    events = ledger.events(writes)
    ledger.store.close()
    key_path = directory / "log.key"
    keys.write_key(key_path, ORIGIN, log_seed, None)
    server = Uvicorn(["--factory", "api.app:create_app"], {
        "CUSTODY_DATABASE_URL": ledger.url, "CUSTODY_LOG_KEY_PATH": str(key_path),
        "CUSTODY_ORIGIN": ORIGIN, "CUSTODY_ENVIRONMENT": "production",
        "CUSTODY_TOKEN_SECRET": os.urandom(24).hex()}, ROOT)
    try:
        server.wait("/v1/health")
        token, _ = login(server.base, ledger.actor)
        auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        _log(f"{writes} durable writes over {CONNECTIONS} connections ...")
        write = asyncio.run(_drive(server.base, [
            ("POST", "/v1/events", {"content": s.canonical_bytes(), "headers": auth})
            for s in events], {201}))
        size = httpx.get(server.base + "/v1/log").json()["size"]
        out: dict[str, Any] = {"write": write}
        for name, path in (("artefact", "/v1/state/art/art-b"),
                           ("history", "/v1/artefacts/art-b/history"),
                           ("inclusion_proof",
                            f"/v1/log/proofs/inclusion?index={size // 2}&size={size}")):
            _log(f"{reads} reads of {name} ...")
            out[name] = asyncio.run(_drive(server.base, [("GET", path, {"headers": auth})]
                                           * reads, {200}))
        out["log_size"] = size
        return out
    finally:
        server.stop()


def hello_world(directory: Path, n: int) -> dict[str, Any]:
    (directory / "hello_app.py").write_text(HELLO)
    server = Uvicorn(["hello_app:app"], {}, directory)
    try:
        server.wait("/hello")
        _log(f"{n} hello-world requests ...")
        res = asyncio.run(_drive(server.base, [("GET", "/hello", {})] * n, {200}))
    finally:
        server.stop()
    res["method"] = ("FastAPI hello world (one GET returning a small JSON object), uvicorn "
                     "1 worker, same client and concurrency")
    return res


def run(quick: bool) -> dict[str, Any]:
    writes, reads, hello_n = (300, 100, 500) if quick else (6000, 3000, 6000)
    with tempfile.TemporaryDirectory(prefix="custody-bench-api-") as tmp:
        base = Path(tmp)
        (base / "inproc").mkdir()
        (base / "api").mkdir()
        _log(f"in-process reference: {writes} appends ...")
        ref = in_process_appends(base / "inproc", writes)
        api = api_figures(base / "api", writes, reads)
        hello = hello_world(base, hello_n)
    write = api["write"]
    reads_out = {name: {**api[name], "ratio_to_hello_world": round(
        api[name]["value"] / hello["value"], 3)} for name in
        ("artefact", "history", "inclusion_proof")}
    return {
        "durable_write": {**write, "ratio_to_in_process_append": round(
            write["value"] / ref["value"], 3), "target_ratio": 0.70, "target_p99_ms": 50,
            "method": "POST /v1/events of pre-signed access.record events (client-signed), "
                      "1 uvicorn worker, group commit, SQLite WAL synchronous=FULL; 201 only "
                      "after commit"},
        "in_process_append": ref,
        "reads": reads_out,
        "reads_target_ratio": 0.50,
        "hello_world": hello,
        "log_size_after_writes": api["log_size"],
        "note": "client and server share the machine's 2 vCPUs",
    }
