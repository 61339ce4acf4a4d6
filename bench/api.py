"""API server throughput and latency, against references measured in the same run.

* Durable writes: distinct pre-signed ``access.record`` events POSTed to ``/v1/events``
  over 32 connections to ONE uvicorn worker, vs two in-process references on an
  identical ledger measured moments before: ``SqlStore.append`` one durable commit per
  event (target: >= 0.70x; p99 <= 50 ms at 32 connections), and ``append_many`` group
  commit (the ceiling the API's group committer can approach).
* Reads: artefact record (``GET /v1/state/art/ID``), custody history
  (``GET /v1/artefacts/ID/history``) and an inclusion proof, vs a FastAPI hello-world
  (``async def`` route) on uvicorn, same worker count, same load generator and settings,
  measured in the same run (target: >= 0.50x).

Load generator: ``wrk -t1 -c32 --latency`` when ``wrk`` is on the PATH (a C client that
leaves the CPU to the server); otherwise an httpx asyncio client (which takes a large
share of the 2 vCPUs itself, so its ratios are pessimistic). The JSON says which.

Each signed event can be appended once: the write run cycles through a file of
``rate x duration x 1.5`` distinct events (one JSON body a line) and stops when they are
used up. A repeated event is answered 200 (idempotent) and is not a new write: the
server's log size before and after gives the number of new entries, and the Lua script
counts 201s and 200s. Progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
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
from ledger.evidence import Digests
from ledger.note import NoteSigner
from ledger.service import ActorKey, Custody
from ledger.store.remote import login
from ledger.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "bench.example/custody"
CONNECTIONS = 32
GROUP_BATCH = 256  # the API's default group_commit_max
#: Events about the read artefact: a realistic custody history (one page).
READ_HISTORY = 40
HELLO = '''from fastapi import FastAPI
app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
'''
WRITE_LUA = r'''
bodies = {}
n = 0
i = 0
sent = 0
c201 = 0
c200 = 0
other = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.headers["Content-Type"] = "application/json"
  for line in io.lines("%(path)s") do
    n = n + 1
    bodies[n] = line
  end
end

function request()
  sent = sent + 1
  i = (sent - 1) %% n + 1
  return wrk.format("POST", "/v1/events", nil, bodies[i])
end

function response(status, headers, body)
  if status == 201 then c201 = c201 + 1
  elseif status == 200 then c200 = c200 + 1
  else other = other + 1 end
  if sent >= n then wrk.thread:stop() end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("CUSTODY-STATUS %%d %%d %%d %%d\n", t:get("c201"), t:get("c200"),
                           t:get("other"), t:get("n")))
  end
end
'''


def _log(msg: str) -> None:
    print(f"bench api: {msg}", file=sys.stderr, flush=True)


def _now() -> int:
    return time.time_ns() // 1_000_000


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


class Ledger:
    """A ledger with one org, an admin+examiner actor, a case and two artefacts: ``art-b``
    (the write target) and ``art-r`` (the read target, with a short custody history)."""

    def __init__(self, directory: Path, log_seed: bytes, actor_seed: bytes,
                 read_history: int = 0) -> None:
        self.url = f"sqlite:///{directory}/ledger.db"
        self.signer = NoteSigner(ORIGIN, log_seed)
        self.actor = ActorKey("bench-admin", _sodium.Signer(actor_seed))
        store = SqlStore.open(self.url, signer=self.signer, clock=_now, create=True)
        svc = Custody(store, origin=ORIGIN, clock=_now, random=os.urandom)
        svc.genesis(self.actor, org_id="bka", org_name="BKA", jurisdiction="DE",
                    actor_name="Bench", roles=["admin", "prosecutor", "examiner", "custodian"],
                    log_key=self.signer.verifier_key)
        svc.open_case(self.actor, "CASE-B")
        for art, data in (("art-b", b"bench evidence"), ("art-r", b"read evidence")):
            digests = Digests(hashlib.sha256(data).hexdigest(),
                              hashlib.sha512(data).hexdigest(), None, len(data))
            svc.register(self.actor, case="CASE-B", digests=digests, artefact_id=art)
        self.store = store
        self.svc = svc
        if read_history:
            store.append_many(self.events(read_history, "art-r"))

    def events(self, n: int, artefact: str = "art-b") -> list[ev.SignedEvent]:
        return [self.svc.event(ev.ACCESS, self.actor, {
            "artefact": artefact, "action": "view", "purpose": "benchmark",
            "outcome": "success", "source": "api"}) for _ in range(n)]


def in_process_appends(directory: Path, n: int) -> dict[str, Any]:
    """One durable commit per event: the reference the API write target is set against."""
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


def in_process_group(directory: Path, n: int, batch_size: int = GROUP_BATCH) -> dict[str, Any]:
    """``append_many`` in batches of the API's group size: the group-commit ceiling."""
    ledger = Ledger(directory, os.urandom(32), os.urandom(32))
    events = ledger.events(n)
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        for outcome in ledger.store.append_many(events[i:i + batch_size]):
            if isinstance(outcome, Exception):
                raise outcome
    elapsed = time.perf_counter() - start
    ledger.store.close()
    return {"value": round(n / elapsed, 1), "unit": "appends/s", "n": n,
            "batch": batch_size,
            "method": f"SqlStore.append_many of pre-signed access.record events in batches "
                      f"of {batch_size}, one commit per batch, in process"}


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


# ---- load generators -----------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return round(float(m.group(1)) * _UNITS[m.group(2)], 3)


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/sec, latency percentiles and error counts from ``wrk --latency`` output."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if rate is None or total is None:
        raise RuntimeError("unexpected wrk output:\n" + out[-2000:])
    res: dict[str, Any] = {"value": float(rate.group(1)), "unit": "requests/s",
                           "n": int(total.group(1)), "duration_ms": _ms(total.group(2))}
    for q, lat in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M):
        res[f"p{q}_ms"] = _ms(lat)
    mean = re.search(r"Latency\s+(\S+)", out)
    if mean:
        res["mean_ms"] = _ms(mean.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors:\s+(.*)", out)
    if sock:
        res["socket_errors"] = sock.group(1).strip()
    return res


def wrk(url: str, seconds: float, headers: dict[str, str] | None = None,
        script: Path | None = None) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    res = parse_wrk(out)
    status = re.search(r"CUSTODY-STATUS (\d+) (\d+) (\d+) (\d+)", out)
    if status:
        res["status_201"], res["status_200"], res["status_other"], res["bodies"] = (
            int(g) for g in status.groups())
    res["connections"] = CONNECTIONS
    return res


async def _drive(base: str, requests: list[tuple[str, str, dict[str, Any]]],
                 expect: set[int]) -> dict[str, Any]:
    """Fallback client: ``requests`` over CONNECTIONS concurrent httpx connections."""
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    lat: list[float] = []
    codes: dict[int, int] = {}
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                method, path, kwargs = queue.get_nowait()
                t0 = time.perf_counter()
                resp = await client.request(method, path, **kwargs)
                lat.append(time.perf_counter() - t0)
                codes[resp.status_code] = codes.get(resp.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    return {"value": round(len(requests) / elapsed, 1), "unit": "requests/s",
            "p50_ms": _pct(lat, 0.5), "p90_ms": _pct(lat, 0.9), "p99_ms": _pct(lat, 0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3), "n": len(requests),
            "non_2xx": sum(n for c, n in codes.items() if not 200 <= c < 300),
            "unexpected_statuses": {c: n for c, n in codes.items() if c not in expect},
            "connections": CONNECTIONS, **({"status_201": codes.get(201, 0),
                                            "status_200": codes.get(200, 0)}
                                           if 201 in expect else {})}


class Load:
    """The load generator of this run: wrk if installed, else the httpx client."""

    def __init__(self, seconds: float, read_n: int) -> None:
        self.wrk = shutil.which("wrk") is not None
        self.seconds = seconds
        self.read_n = read_n
        self.name = ("wrk -t1 -c32 --latency (C, epoll)" if self.wrk else
                     "httpx AsyncClient, 32 connections (wrk not found)")

    def get(self, base: str, path: str, headers: dict[str, str] | None = None,
            seconds: float | None = None) -> dict[str, Any]:
        if self.wrk:
            return wrk(base + path, seconds or self.seconds, headers)
        return asyncio.run(_drive(base, [("GET", path, {"headers": headers or {}})]
                                  * self.read_n, {200}))

    def post_events(self, base: str, bodies: list[bytes], token: str,
                    tmp: Path) -> dict[str, Any]:
        auth = {"Authorization": "Bearer " + token}
        if self.wrk:
            data = tmp / "events.jsonl"
            data.write_bytes(b"\n".join(bodies) + b"\n")
            script = tmp / "post_events.lua"
            script.write_text(WRITE_LUA % {"path": str(data)})
            return wrk(base + "/v1/events", self.seconds, auth, script)
        headers = {**auth, "Content-Type": "application/json"}
        return asyncio.run(_drive(base, [("POST", "/v1/events", {"content": b, "headers":
                                                                   headers})
                                         for b in bodies], {201}))


# ---- the runs -------------------------------------------------------------------------

def api_figures(directory: Path, load: Load, expected_rate: float) -> dict[str, Any]:
    log_seed, actor_seed = os.urandom(32), os.urandom(32)
    ledger = Ledger(directory, log_seed, actor_seed, read_history=READ_HISTORY)
    n_events = (int(expected_rate * load.seconds * 1.5) + CONNECTIONS if load.wrk
                else load.read_n * 2)
    _log(f"signing {n_events} distinct events ...")
    bodies = [s.canonical_bytes() for s in ledger.events(n_events)]
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
        size_before = httpx.get(server.base + "/v1/log").json()["size"]
        _log(f"durable writes over {CONNECTIONS} connections ({load.name}) ...")
        write = load.post_events(server.base, bodies, token, directory)
        size = httpx.get(server.base + "/v1/log").json()["size"]
        write["new_entries"] = size - size_before
        write["events_available"] = len(bodies)
        write["exhausted"] = write["new_entries"] >= len(bodies)
        if load.wrk:  # the rate of NEW entries, not of answered requests
            write["requests_per_s"] = write["value"]
            write["value"] = round(write["new_entries"] / (write["duration_ms"] / 1000), 1)
            write["unit"] = "new entries/s"
        out: dict[str, Any] = {"write": write}
        auth = {"Authorization": "Bearer " + token}
        for name, path in (("artefact", "/v1/state/art/art-r"),
                           ("history", "/v1/artefacts/art-r/history"),
                           ("inclusion_proof",
                            f"/v1/log/proofs/inclusion?index={size // 2}&size={size}")):
            check = httpx.get(server.base + path, headers=auth)
            if check.status_code != 200:
                raise RuntimeError(f"GET {path}: {check.status_code} {check.text[:300]}")
            _log(f"reads of {name} ...")
            out[name] = load.get(server.base, path, auth)
        out["log_size"] = size
        return out
    finally:
        server.stop()


def hello_world(directory: Path, load: Load) -> dict[str, Any]:
    (directory / "hello_app.py").write_text(HELLO)
    server = Uvicorn(["hello_app:app"], {}, directory)
    try:
        server.wait("/hello")
        _log("hello-world requests ...")
        res = load.get(server.base, "/hello")
    finally:
        server.stop()
    res["method"] = ("FastAPI hello world (async def GET returning a small JSON object), "
                     "uvicorn 1 worker, same load generator and concurrency")
    return res


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(quick: bool) -> dict[str, Any]:
    seconds, single_n, group_n, read_n = (3, 300, 2000, 300) if quick else (10, 3000,
                                                                            20000, 3000)
    load = Load(seconds, read_n)
    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="custody-bench-api-") as tmp:
        base = Path(tmp)
        for sub in ("single", "group", "api"):
            (base / sub).mkdir()
        _log(f"in-process reference: {single_n} single appends ...")
        ref = in_process_appends(base / "single", single_n)
        _log(f"in-process reference: {group_n} appends by append_many ...")
        group = in_process_group(base / "group", group_n)
        api = api_figures(base / "api", load, min(group["value"], 3 * ref["value"]))
        hello = hello_world(base, load)
    write = api["write"]
    reads_out = {name: {**api[name], "ratio_to_hello_world": round(
        api[name]["value"] / hello["value"], 3)} for name in
        ("artefact", "history", "inclusion_proof")}
    return {
        "load_generator": load.name,
        "durable_write": {**write,
                          "write_vs_in_process_single": round(write["value"] / ref["value"], 3),
                          "write_vs_group": round(write["value"] / group["value"], 3),
                          "target_ratio": 0.70, "target_p99_ms": 50,
                          "method": "POST /v1/events of distinct pre-signed access.record "
                                    "events (client-signed), 1 uvicorn worker, group commit, "
                                    "SQLite WAL synchronous=FULL; 201 only after commit; "
                                    "value = new log entries per second"},
        "in_process_append": ref,
        "in_process_group_commit": group,
        "reads": reads_out,
        "reads_vs_hello": {name: r["ratio_to_hello_world"] for name, r in reads_out.items()},
        "reads_target_ratio": 0.50,
        "hello_world": hello,
        "summary": {
            "write_vs_in_process_single": round(write["value"] / ref["value"], 3),
            "write_vs_group": round(write["value"] / group["value"], 3),
            "reads_vs_hello": {name: r["ratio_to_hello_world"] for name, r in
                               reads_out.items()},
            "write_p50_ms": write.get("p50_ms"), "write_p99_ms": write.get("p99_ms"),
            "read_p99_ms": {name: r.get("p99_ms") for name, r in reads_out.items()}},
        "log_size_after_writes": api["log_size"],
        "load_average_1_5_15": {"before": load_before, "after": _load_average()},
        "note": "client and server share the machine's vCPUs; ratios are what to compare",
    }
