"""Durable writes beside a peer: Tessera's POSIX log (transparency-dev, v1.0.4).

Tessera is the transparency log a user would pick instead of this ledger. Its POSIX
conformance server (``cmd/conformance/posix``) takes ``POST /add`` with the entry as the
body and answers with the entry's index once the entry is sequenced durably; it checks
no signature and applies no rule per entry. Its configuration is the server's own:
batches of up to 256 entries or 1 s, a checkpoint every second, in-memory antispam
(an identical entry is answered with its first index, without a new entry).

This benchmark builds it (``go install ...@v1.0.4`` into ``~/.cache/custody-ledger/
tessera``, about 50 s the first time, then cached), runs it on a temporary directory on
loopback, runs our API (SQLite, WAL, ``synchronous=FULL``, production settings without
rate limits, one uvicorn worker; every 201 is committed) on loopback, and drives both
with the SAME load generator as ``bench/api.py`` (``wrk`` with a Lua script that POSTs
each body of a file once) at 32 and 256 concurrent connections. The bodies are distinct
signed custody events (``access.record``, pre-signed, valid) for both: ours checks each
signature and custody rule; to Tessera they are opaque entries.

Reported per connection count: durable adds/s (new entries, from the log size before
and after: Tessera's published checkpoint, our ``/v1/log``), p50/p99 latency, and our
rate as a ratio to Tessera's (median of the per-round ratios; the two servers are run
alternately). Target: >= 1.0x at 256 connections. Without Go, or when the build fails,
the benchmark is skipped with the reason, not failed.

Standalone: ``python -m bench peer [--quick]``.
"""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.api import CONNECTIONS, Ledger, Load, Uvicorn, _free_port, api_server, stop_process
from ledger.core import _sodium
from ledger.core.note import ALG_ED25519, key_hash
from ledger.store.remote import login

TESSERA_MODULE = "github.com/transparency-dev/tessera/cmd/conformance/posix"
TESSERA_VERSION = "v1.0.4"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
    / "custody-ledger" / "tessera"
TARGET_AT_256 = 1.0
#: First guesses of each server's rate (adds/s), to sign enough distinct bodies; a run
#: that uses them all up is repeated with more.
GUESS = {("tessera", 32): 60.0, ("tessera", 256): 6000.0, ("ours", 32): 2000.0,
         ("ours", 256): 2500.0, ("ours-2-workers", 256): 3000.0}


def _log(msg: str) -> None:
    print(f"bench peer: {msg}", file=sys.stderr, flush=True)


def go_binary() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() else None


def build_tessera(cache: Path | None = None) -> tuple[Path | None, str]:
    """The conformance server's binary (built once in ``cache``, default
    :data:`CACHE_DIR`, and kept with its version), or ``None`` and why not."""
    cache = CACHE_DIR if cache is None else cache
    binary = cache / "posix"
    marker = cache / "posix.version"
    if binary.is_file() and marker.is_file() and marker.read_text().strip() == TESSERA_VERSION:
        return binary, f"cached ({binary})"
    go = go_binary()
    if go is None:
        return None, "Go is not installed (no 'go' on the PATH nor in /usr/local/go/bin)"
    cache.mkdir(parents=True, exist_ok=True)
    _log(f"building Tessera's POSIX conformance server {TESSERA_VERSION} (about 50 s) ...")
    env = {**os.environ, "GOBIN": str(cache), "GOTOOLCHAIN": "local"}
    started = time.monotonic()
    try:
        done = subprocess.run([go, "install", f"{TESSERA_MODULE}@{TESSERA_VERSION}"],
                              env=env, capture_output=True, text=True, timeout=900,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"'go install {TESSERA_MODULE}@{TESSERA_VERSION}' failed: {exc}"
    if done.returncode != 0 or not binary.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return None, (f"'go install {TESSERA_MODULE}@{TESSERA_VERSION}' failed "
                      f"(exit {done.returncode}): {' | '.join(tail)}")
    marker.write_text(TESSERA_VERSION + "\n")
    return binary, f"built in {time.monotonic() - started:.0f} s ({binary})"


def note_private_key(name: str, seed: bytes) -> str:
    """A signed-note private key (``PRIVATE+KEY+name+keyid+base64(0x01 || seed)``), the
    form ``golang.org/x/mod/sumdb/note.NewSigner`` reads."""
    public = _sodium.Signer(seed).public_key
    keyid = key_hash(name, ALG_ED25519, public).hex()
    encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{keyid}+{encoded}"


class Tessera:
    """The conformance server on a fresh storage directory, on loopback."""

    def __init__(self, binary: Path, directory: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        storage = directory / "tessera-log"
        storage.mkdir()
        key = directory / "tessera.key"
        key.write_text(note_private_key("bench.example/tessera", os.urandom(32)))
        key.chmod(0o600)
        self.log_path = directory / "tessera.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), f"--storage_dir={storage}", f"--listen=127.0.0.1:{self.port}",
                 f"--private_key={key}"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.checkpoint_size() is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Tessera did not start: " + self.log_path.read_text()[-1500:])
            time.sleep(0.2)

    def checkpoint_size(self) -> int | None:
        try:
            resp = httpx.get(self.base + "/checkpoint", timeout=2)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        lines = resp.text.splitlines()
        return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None

    def settled_size(self) -> int:
        """The checkpoint size once it stops growing (one is published every second)."""
        last, deadline = self.checkpoint_size(), time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(1.2)
            now = self.checkpoint_size()
            if now is not None and now == last:
                return now
            last = now
        return last or 0

    def stop(self) -> None:
        stop_process(self.proc)


class Bodies:
    """Distinct, valid, pre-signed custody events (one JSON body each), signed on demand."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.signed = 0

    def take(self, n: int) -> list[bytes]:
        self.signed += n
        return [s.canonical_bytes() for s in self.ledger.events(n)]


def _run_one(name: str, base: str, path: str, headers: dict[str, str],
             size: Any, load: Load, bodies: Bodies, guess: float,
             tmp: Path) -> dict[str, Any]:
    """POST distinct bodies for ``load.seconds``; new entries from the size before/after.
    Repeated with more bodies when they ran out before the end of the run."""
    for attempt in (1, 2, 3):
        n = int(guess * load.seconds * 1.3) + 2 * load.connections
        batch = bodies.take(n)
        before = size()
        res = load.post(base, path, batch, headers, tmp)
        new = size() - before
        res.update(server=name, bodies=n, new_entries=new,
                   adds_per_s=round(new / (res["duration_ms"] / 1000), 1),
                   exhausted=new >= 0.97 * n, attempt=attempt)
        _log(f"{name} at {load.connections} connections: {res['adds_per_s']} adds/s, "
             f"p50 {res.get('p50_ms')} ms, p99 {res.get('p99_ms')} ms"
             + (" (ran out of bodies: again with more)" if res["exhausted"] else ""))
        if not res["exhausted"]:
            return res
        guess = max(guess * 2.5, res["adds_per_s"] * 2)
    return res


def _rounds(quick: bool) -> Iterator[tuple[int, int]]:
    """(connections, rounds): the target's 256 twice outside --quick."""
    yield 32, 1
    yield 256, 1 if quick else 2


def run(quick: bool) -> dict[str, Any]:
    seconds = 3 if quick else 10
    binary, how = build_tessera()
    if binary is None:
        _log(f"skipped: {how}")
        return {"skipped": f"Tessera could not be built here: {how}",
                "tessera": f"{TESSERA_MODULE}@{TESSERA_VERSION}"}
    load_before = _loadavg()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="custody-bench-peer-") as tmp:
        base = Path(tmp)
        (base / "ours").mkdir()
        log_seed = os.urandom(32)
        ledger = Ledger(base / "ours", log_seed, os.urandom(32))
        ledger.store.close()
        bodies = Bodies(ledger)
        ours = api_server(ledger, base / "ours", log_seed)
        tessera: Tessera | None = None
        try:
            tessera = Tessera(binary, base)
            token, _ = login(ours.base, ledger.actor)
            auth = {"Authorization": "Bearer " + token}
            servers = {
                "tessera": (tessera.base, "/add", {}, tessera.settled_size),
                "ours": (ours.base, "/v1/events", auth,
                         lambda: int(httpx.get(ours.base + "/v1/log").json()["size"])),
            }
            for connections, rounds in _rounds(quick):
                load = Load(seconds, 0, connections)
                runs: dict[str, list[dict[str, Any]]] = {"tessera": [], "ours": []}
                for r in range(rounds):
                    order = ("tessera", "ours") if r % 2 == 0 else ("ours", "tessera")
                    for name in order:
                        url, path, headers, size = servers[name]
                        runs[name].append(_run_one(
                            name, url, path, headers, size, load, bodies,
                            GUESS[(name, connections)], base))
                figures[str(connections)] = _summarise(runs, load.name)
        finally:
            ours.stop()
            if tessera is not None:
                tessera.stop()
        figures["256_ours_2_workers"] = _two_workers(ledger, base, log_seed, seconds, bodies)
    at_256 = figures["256"]["ours_vs_tessera"]
    return {
        "tessera": f"{TESSERA_MODULE}@{TESSERA_VERSION} ({how})",
        "tessera_config": "the conformance server's own: batches of up to 256 entries or "
                          "1 s, checkpoint every 1 s, in-memory antispam; no signature or "
                          "rule check per entry",
        "ours": "POST /v1/events, 1 uvicorn worker, SQLite WAL synchronous=FULL, production "
                "settings without rate limits; signature, key validity, replay and custody "
                "rules per event; 201 only after commit",
        "load_generator": Load(seconds, 0).name.replace(f"-c{CONNECTIONS}", "-cN"),
        "duration_s": seconds,
        "bodies_signed": bodies.signed,
        "connections_32": figures["32"],
        "connections_256": figures["256"],
        "connections_256_ours_2_workers": figures["256_ours_2_workers"],
        "ours_vs_tessera_at_256": at_256,
        "target_at_256": TARGET_AT_256,
        "meets_target": at_256 >= TARGET_AT_256,
        "load_average_1_5_15": {"before": load_before, "after": _loadavg()},
    }


def _summarise(runs: dict[str, list[dict[str, Any]]], generator: str) -> dict[str, Any]:
    out: dict[str, Any] = {"load_generator": generator}
    for name, results in runs.items():
        mid = sorted(results, key=lambda x: x["adds_per_s"])[len(results) // 2]
        out[name] = {"adds_per_s": round(statistics.median(x["adds_per_s"] for x in results), 1),
                     "p50_ms": mid.get("p50_ms"), "p99_ms": mid.get("p99_ms"),
                     "rounds": [x["adds_per_s"] for x in results],
                     "non_2xx": sum(x.get("non_2xx", 0) for x in results),
                     "exhausted": any(x["exhausted"] for x in results)}
    out["ours_vs_tessera"] = round(statistics.median(
        o["adds_per_s"] / t["adds_per_s"] for o, t in zip(runs["ours"], runs["tessera"],
                                                          strict=True)), 3)
    return out


def _two_workers(ledger: Ledger, base: Path, log_seed: bytes, seconds: float,
                 bodies: Bodies) -> dict[str, Any]:
    """Ours with 2 uvicorn workers at 256 connections (``custody serve --workers 2``)."""
    server: Uvicorn = api_server(ledger, base / "ours", log_seed, workers=2)
    try:
        token, _ = login(server.base, ledger.actor)
        res = _run_one("ours-2-workers", server.base, "/v1/events",
                       {"Authorization": "Bearer " + token},
                       lambda: int(httpx.get(server.base + "/v1/log").json()["size"]),
                       Load(seconds, 0, 256), bodies, GUESS[("ours-2-workers", 256)], base)
    finally:
        server.stop()
    return {"adds_per_s": res["adds_per_s"], "p50_ms": res.get("p50_ms"),
            "p99_ms": res.get("p99_ms"), "non_2xx": res.get("non_2xx", 0),
            "exhausted": res["exhausted"]}


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
