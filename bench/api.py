"""API server throughput and latency, against references measured in the same run.

* Durable writes: distinct pre-signed ``access.record`` events POSTed to ``/v1/events``
  over 32 connections to ONE uvicorn worker, vs two in-process references on an
  identical ledger: ``SqlStore.append`` one durable commit per event (measured just
  before and just after the API run; the mean is the reference; target >= 0.70x, p99
  <= 50 ms at 32 connections), and ``append_many`` group commit (the ceiling the API's
  group committer can approach).
* Reads: artefact record (``GET /v1/state/art/ID``), custody history
  (``GET /v1/artefacts/ID/history``) and an inclusion proof, repeated at one log size
  (what the server's per-size caches serve), and an inclusion proof of a random index
  each time (mostly computed from the store), vs a FastAPI hello-world
  (``async def`` route) on uvicorn with the same worker count, load generator and
  settings. Both servers run side by side and the figures are measured in interleaved
  rounds (hello, record, history, proof, hello, ...), so a change of the machine's load
  hits both sides of each ratio; the ratio is the median of the per-round ratios
  (target >= 0.50x). The same with 2 workers on each side (``workers_2``).

Server settings: production, as ``custody serve --production`` runs it, except the
per-address and per-actor rate limits (one client sends every request here).

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

from ledger import keys
from ledger.core import _sodium
from ledger.core import events as ev
from ledger.core.note import NoteSigner
from ledger.evidence import Digests
from ledger.service import ActorKey, Custody
from ledger.store.remote import login
from ledger.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "bench.example/custody"
CONNECTIONS = 32
GROUP_BATCH = 256  # the API's default group_commit_max
#: Production settings, except the per-address and per-actor rate limits: one client
#: address and one actor send every request here, so the limits (200/s, 100/s) would
#: answer most of them 429 and the figures would measure refusals.
NO_RATE_LIMITS = {"CUSTODY_RATE_LIMIT_PER_ADDRESS": "0", "CUSTODY_RATE_LIMIT_PER_ACTOR": "0"}
#: Events about the read artefact: a realistic custody history (one page).
READ_HISTORY = 40
HELLO = '''from fastapi import FastAPI
app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
'''
#: GET an inclusion proof of a random index each time (mostly not answered before).
RANDOM_PROOF_LUA = r'''
math.randomseed(os.time())
function request()
  local i = math.random(0, %(size)d - 1)
  return wrk.format("GET", "/v1/log/proofs/inclusion?index=" .. i .. "&size=%(size)d")
end
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
  return wrk.format("POST", "%(target)s", nil, bodies[i])
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


#: Several uvicorn workers on one socket, as ``uvicorn --workers N`` runs them, except
#: that the socket is bound as a TCP socket by name: uvicorn binds it with protocol 0,
#: asyncio then never sets TCP_NODELAY on the accepted connections, and each answer
#: waits 40 ms for the client's delayed ACK (``api.server.listening_socket``). The same
#: launcher for the API and the hello world, so both are measured alike.
LAUNCH_WORKERS = r"""
import socket, sys
import uvicorn
from uvicorn.supervisors import Multiprocess
app, port, workers, factory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = uvicorn.Config(app, host="127.0.0.1", port=port, workers=workers,
                        factory=factory == "factory", log_level="warning", access_log=False)
sock = config.bind_socket()
sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
Multiprocess(config, sockets=[sock]).run()
"""


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Uvicorn:
    def __init__(self, app: str, env: dict[str, str], cwd: Path, workers: int = 1,
                 factory: bool = False) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        if workers == 1:
            cmd = [sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), app,
                   "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                   "--no-access-log"]
        else:
            cmd = [sys.executable, "-c", LAUNCH_WORKERS, app, str(self.port), str(workers),
                   "factory" if factory else "app"]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self, path: str) -> None:
        deadline = time.monotonic() + 60
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
        stop_process(self.proc)


def api_server(ledger: Ledger, directory: Path, log_seed: bytes, workers: int = 1) -> Uvicorn:
    """``uvicorn --factory api.app:create_app`` over ``ledger`` (production settings, no
    rate limits), started; the caller stops it."""
    key_path = directory / "log.key"
    if not key_path.exists():
        keys.write_key(key_path, ORIGIN, log_seed, None)
    server = Uvicorn("api.app:create_app", {
        "CUSTODY_DATABASE_URL": ledger.url, "CUSTODY_LOG_KEY_PATH": str(key_path),
        "CUSTODY_ORIGIN": ORIGIN, "CUSTODY_ENVIRONMENT": "production",
        "CUSTODY_TOKEN_SECRET": os.urandom(24).hex(), **NO_RATE_LIMITS}, ROOT, workers,
        factory=True)
    try:
        server.wait("/v1/health")
    except BaseException:
        server.stop()
        raise
    return server


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
        script: Path | None = None, connections: int = CONNECTIONS) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
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
    res["connections"] = connections
    return res


async def _drive(base: str, requests: list[tuple[str, str, dict[str, Any]]],
                 expect: set[int], connections: int) -> dict[str, Any]:
    """Fallback client: ``requests`` over ``connections`` concurrent httpx connections."""
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    lat: list[float] = []
    codes: dict[int, int] = {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                method, path, kwargs = queue.get_nowait()
                t0 = time.perf_counter()
                resp = await client.request(method, path, **kwargs)
                lat.append(time.perf_counter() - t0)
                codes[resp.status_code] = codes.get(resp.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {"value": round(len(requests) / elapsed, 1), "unit": "requests/s",
            "p50_ms": _pct(lat, 0.5), "p90_ms": _pct(lat, 0.9), "p99_ms": _pct(lat, 0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3), "n": len(requests),
            "duration_ms": round(elapsed * 1000, 1),
            "non_2xx": sum(n for c, n in codes.items() if not 200 <= c < 300),
            "unexpected_statuses": {c: n for c, n in codes.items() if c not in expect},
            "connections": connections, "status_201": codes.get(201, 0),
            "status_200": codes.get(200, 0),
            "status_other": sum(n for c, n in codes.items() if c not in (200, 201))}


class Load:
    """The load generator of this run: wrk if installed, else the httpx client."""

    def __init__(self, seconds: float, read_n: int, connections: int = CONNECTIONS) -> None:
        self.wrk = shutil.which("wrk") is not None
        self.seconds = seconds
        self.read_n = read_n
        self.connections = connections
        self.name = (f"wrk -t1 -c{connections} --latency (C, epoll)" if self.wrk else
                     f"httpx AsyncClient, {connections} connections (wrk not found)")

    def get(self, base: str, path: str, headers: dict[str, str] | None = None,
            seconds: float | None = None, script: Path | None = None) -> dict[str, Any]:
        if self.wrk:
            return wrk(base + path, seconds or self.seconds, headers, script,
                       connections=self.connections)
        return asyncio.run(_drive(base, [("GET", path, {"headers": headers or {}})]
                                  * self.read_n, {200}, self.connections))

    def post(self, base: str, path: str, bodies: list[bytes], headers: dict[str, str],
             tmp: Path) -> dict[str, Any]:
        """POST each body once (in order, over the connections); stops when used up."""
        if self.wrk:
            data = tmp / f"bodies-{os.getpid()}-{time.monotonic_ns()}.jsonl"
            data.write_bytes(b"\n".join(bodies) + b"\n")
            script = data.with_suffix(".lua")
            script.write_text(WRITE_LUA % {"path": str(data), "target": path})
            try:
                return wrk(base + path, self.seconds, headers, script, self.connections)
            finally:
                data.unlink()
                script.unlink()
        hdrs = {**headers, "Content-Type": "application/json"}
        return asyncio.run(_drive(base, [("POST", path, {"content": b, "headers": hdrs})
                                         for b in bodies], {200, 201}, self.connections))

    def post_events(self, base: str, bodies: list[bytes], token: str,
                    tmp: Path) -> dict[str, Any]:
        return self.post(base, "/v1/events", bodies, {"Authorization": "Bearer " + token}, tmp)


# ---- the runs -------------------------------------------------------------------------

def durable_writes(server: Uvicorn, ledger: Ledger, load: Load, bodies: list[bytes],
                   directory: Path) -> dict[str, Any]:
    """POST the distinct signed events; the rate is of NEW log entries."""
    token, _ = login(server.base, ledger.actor)
    size_before = httpx.get(server.base + "/v1/log").json()["size"]
    write = load.post_events(server.base, bodies, token, directory)
    size = httpx.get(server.base + "/v1/log").json()["size"]
    write["new_entries"] = size - size_before
    write["events_available"] = len(bodies)
    write["exhausted"] = write["new_entries"] >= len(bodies)
    # wrk's duration is its -d; when the bodies ran out earlier, the run was shorter
    # than that: the rate below is then a lower bound (the JSON says so).
    write["requests_per_s"] = write["value"]
    write["value"] = round(write["new_entries"] / (write["duration_ms"] / 1000), 1)
    write["unit"] = "new entries/s"
    return write


Target = tuple[str, str, dict[str, str], Path | None]  # base URL, path, headers, script


def interleaved(load: Load, targets: dict[str, Target],
                rounds: int, seconds: float) -> dict[str, list[dict[str, Any]]]:
    """Each target measured once per round, in order, ``rounds`` times."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for r in range(rounds):
        for name, (base, path, headers, script) in targets.items():
            _log(f"round {r + 1}/{rounds}: {name} ...")
            res = load.get(base, path, headers, seconds, script)
            if res.get("non_2xx"):
                raise RuntimeError(f"GET {path}: {res['non_2xx']} answers were not 2xx")
            out[name].append(res)
    return out


def read_figures(samples: dict[str, list[dict[str, Any]]],
                 reference: str = "hello") -> dict[str, dict[str, Any]]:
    """Median rate and the median of the per-round ratios to ``reference``."""
    ref = samples[reference]
    figures: dict[str, dict[str, Any]] = {}
    for name, runs in samples.items():
        best = sorted(runs, key=lambda x: x["value"])[len(runs) // 2]
        figures[name] = {
            "value": round(statistics.median(x["value"] for x in runs), 1),
            "unit": "requests/s", "p50_ms": best.get("p50_ms"), "p99_ms": best.get("p99_ms"),
            "rounds": [round(x["value"], 1) for x in runs],
            **({} if name == reference else {"ratio_to_hello_world": round(statistics.median(
                x["value"] / h["value"] for x, h in zip(runs, ref, strict=True)), 3)})}
    return figures


def hello_server(directory: Path, workers: int = 1) -> Uvicorn:
    (directory / "hello_app.py").write_text(HELLO)
    server = Uvicorn("hello_app:app", {}, directory, workers)
    try:
        server.wait("/hello")
    except BaseException:
        server.stop()
        raise
    return server


def reads(ledger: Ledger, directory: Path, log_seed: bytes, load: Load, rounds: int,
          seconds: float, workers: int) -> dict[str, Any]:
    api = api_server(ledger, directory, log_seed, workers)
    hello = None
    try:
        hello = hello_server(directory, workers)
        token, _ = login(api.base, ledger.actor)
        auth = {"Authorization": "Bearer " + token}
        size = httpx.get(api.base + "/v1/log").json()["size"]
        paths = {"artefact": "/v1/state/art/art-r", "history": "/v1/artefacts/art-r/history",
                 "inclusion_proof": f"/v1/log/proofs/inclusion?index={size // 2}&size={size}"}
        for path in paths.values():
            check = httpx.get(api.base + path, headers=auth)
            if check.status_code != 200:
                raise RuntimeError(f"GET {path}: {check.status_code} {check.text[:300]}")
        targets: dict[str, Target] = {
            "hello": (hello.base, "/hello", {}, None),
            **{name: (api.base, path, auth, None) for name, path in paths.items()}}
        if load.wrk:
            script = directory / f"random-proof-{workers}.lua"
            script.write_text(RANDOM_PROOF_LUA % {"size": size})
            targets["inclusion_proof_random_index"] = (api.base, "/", {}, script)
        return read_figures(interleaved(load, targets, rounds, seconds))
    finally:
        api.stop()
        if hello is not None:
            hello.stop()


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(quick: bool) -> dict[str, Any]:
    seconds, single_n, group_n, read_n = (3, 300, 2000, 300) if quick else (10, 2000,
                                                                            20000, 3000)
    rounds, read_s = (1, 2) if quick else (3, 4)
    load = Load(seconds, read_n)
    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="custody-bench-api-") as tmp:
        base = Path(tmp)
        for sub in ("single", "single2", "group", "api", "reads"):
            (base / sub).mkdir()
        _log(f"in-process reference: {group_n} appends by append_many ...")
        group = in_process_group(base / "group", group_n)
        log_seed = os.urandom(32)
        ledger = Ledger(base / "api", log_seed, os.urandom(32), read_history=READ_HISTORY)
        expected = min(group["value"], 4000.0)
        n_events = (int(expected * seconds * 1.5) + CONNECTIONS if load.wrk
                    else read_n * 2)
        _log(f"signing {n_events} distinct events ...")
        bodies = [s.canonical_bytes() for s in ledger.events(n_events)]
        ledger.store.close()
        _log(f"in-process reference: {single_n} single appends ...")
        ref_before = in_process_appends(base / "single", single_n)
        server = api_server(ledger, base / "api", log_seed)
        try:
            _log(f"durable writes over {CONNECTIONS} connections ({load.name}) ...")
            write = durable_writes(server, ledger, load, bodies, base / "api")
            log_size = httpx.get(server.base + "/v1/log").json()["size"]
        finally:
            server.stop()
        _log(f"in-process reference again: {single_n} single appends ...")
        ref_after = in_process_appends(base / "single2", single_n)
        ref_rate = (ref_before["value"] + ref_after["value"]) / 2
        _log("reads, 1 worker, interleaved with the hello-world ...")
        one = reads(ledger, base / "api", log_seed, load, rounds, read_s, 1)
        _log("reads, 2 workers, interleaved with the hello-world on 2 workers ...")
        two = reads(ledger, base / "reads", log_seed, load, max(1, rounds - 1), read_s, 2)
    read_names = tuple(n for n in ("artefact", "history", "inclusion_proof",
                                   "inclusion_proof_random_index") if n in one)
    ratio = round(write["value"] / ref_rate, 3)
    return {
        "load_generator": load.name,
        "durable_write": {**write,
                          "write_vs_in_process_single": ratio,
                          "write_vs_group": round(write["value"] / group["value"], 3),
                          "target_ratio": 0.70, "target_p99_ms": 50,
                          "method": "POST /v1/events of distinct pre-signed access.record "
                                    "events (client-signed), 1 uvicorn worker, group commit, "
                                    "SQLite WAL synchronous=FULL; 201 only after commit; "
                                    "value = new log entries per second; reference = mean "
                                    "of the in-process single-append rate just before and "
                                    "just after"},
        "in_process_append": {**ref_before, "after": ref_after, "mean": round(ref_rate, 1)},
        "in_process_group_commit": group,
        "reads": {name: one[name] for name in read_names},
        "reads_vs_hello": {name: one[name]["ratio_to_hello_world"] for name in read_names},
        "reads_target_ratio": 0.50,
        "hello_world": {**one["hello"],
                        "method": "FastAPI hello world (async def GET returning a small JSON "
                                  "object), uvicorn 1 worker, same load generator and "
                                  "concurrency, measured in the same interleaved rounds"},
        "workers_2": {"reads": {name: two[name] for name in read_names},
                      "reads_vs_hello": {name: two[name]["ratio_to_hello_world"]
                                         for name in read_names},
                      "hello_world": two["hello"],
                      "method": "2 uvicorn workers on one TCP_NODELAY socket for both the "
                                "API and the hello world (LAUNCH_WORKERS)"},
        "summary": {
            "write_vs_in_process_single": ratio,
            "write_vs_group": round(write["value"] / group["value"], 3),
            "reads_vs_hello": {name: one[name]["ratio_to_hello_world"] for name in read_names},
            "reads_vs_hello_2_workers": {name: two[name]["ratio_to_hello_world"]
                                         for name in read_names},
            "write_p50_ms": write.get("p50_ms"), "write_p99_ms": write.get("p99_ms"),
            "read_p99_ms": {name: one[name].get("p99_ms") for name in read_names}},
        "log_size_after_writes": log_size,
        "load_average_1_5_15": {"before": load_before, "after": _load_average()},
        "note": "client and server share the machine's vCPUs; ratios are what to compare",
    }
