"""Physical reference measurements, taken on this machine in the same run.

The machines are shared and noisy, so every benchmark reports its figure as a ratio
to one of these references measured moments before (see design/performance.md).
Each function returns a dict with at least ``value``, ``unit`` and ``method`` (a
sentence saying exactly what was measured), so a reader can reproduce it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

GIB = 1 << 30
CHUNK = 1 << 20
RECORD = 4096


def _gib(value: float) -> float:
    return round(value / GIB, 3)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- hashing ----------------------------------------------------------------------


def openssl_speed(algorithm: str, seconds: int = 2) -> dict[str, Any]:
    """``openssl speed -evp ALG -bytes 16384 -seconds N``, parsed into bytes/s.

    Falls back to hashlib over an in-memory 16 KiB buffer when ``openssl`` is not
    installed, and says so in ``method`` and ``fallback``.
    """
    exe = shutil.which("openssl")
    cmd = ["openssl", "speed", "-evp", algorithm, "-bytes", "16384", "-seconds", str(seconds)]
    if exe is None:
        return _hashlib_in_memory(algorithm, seconds)
    proc = subprocess.run(
        [exe, *cmd[1:]], capture_output=True, text=True, check=True, timeout=seconds * 10 + 30
    )
    # Table row, e.g. "sha256         1394851.84k": the unit is 1000s of bytes per second.
    match = re.search(rf"^{re.escape(algorithm)}\s+([\d.]+)k\s*$", proc.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"cannot parse `{' '.join(cmd)}` output:\n{proc.stdout}")
    value = float(match.group(1)) * 1000
    version = subprocess.run(
        [exe, "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "value": value,
        "unit": "bytes/s",
        "gib_s": _gib(value),
        "method": f"`{' '.join(cmd)}` ({version}), one core",
        "fallback": False,
    }


def _hashlib_in_memory(algorithm: str, seconds: float) -> dict[str, Any]:
    block = os.urandom(16384)
    h = hashlib.new(algorithm)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(256):
            h.update(block)
        done += 256 * len(block)
    value = done / (time.perf_counter() - start)
    return {
        "value": value,
        "unit": "bytes/s",
        "gib_s": _gib(value),
        "method": f"openssl not installed: FALLBACK to hashlib.{algorithm} over an in-memory "
        "16 KiB buffer",
        "fallback": True,
    }


def openssl_sha256(seconds: int = 2) -> dict[str, Any]:
    return openssl_speed("sha256", seconds)


def openssl_sha512(seconds: int = 2) -> dict[str, Any]:
    return openssl_speed("sha512", seconds)


def hashlib_stream(path: str | os.PathLike[str], algorithm: str) -> dict[str, Any]:
    """One hashlib digest alone over a (cached) file: ``readinto`` a 1 MiB memoryview."""
    h = hashlib.new(algorithm)
    view = memoryview(bytearray(CHUNK))
    size = 0
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            h.update(view[:n])
            size += n
    elapsed = time.perf_counter() - start
    value = size / elapsed
    return {
        "value": value,
        "unit": "bytes/s",
        "gib_s": _gib(value),
        "seconds": elapsed,
        "method": f"hashlib.{algorithm} alone, readinto 1 MiB memoryview, cached file of "
        f"{size} bytes, one thread",
    }


def hashlib_sha512_stream(path: str | os.PathLike[str]) -> dict[str, Any]:
    return hashlib_stream(path, "sha512")


def hashlib_sha256_stream(path: str | os.PathLike[str]) -> dict[str, Any]:
    return hashlib_stream(path, "sha256")


# -- durability -------------------------------------------------------------------


def fsync_loop(directory: str | os.PathLike[str], n: int = 2000) -> dict[str, Any]:
    """Append a 4 KiB record and ``fsync`` it, ``n`` times: the durable-write ceiling."""
    path = Path(directory) / f"fsync-loop-{os.getpid()}.bin"
    record = os.urandom(RECORD)
    latencies: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, record)
            os.fsync(fd)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {
        "value": n / elapsed,
        "unit": "writes/s",
        "p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3),
        "n": n,
        "method": f"os.write of a 4 KiB record + os.fsync, {n} times, O_APPEND file in {directory}",
    }


def sqlite_raw_durable_commit(directory: str | os.PathLike[str], n: int = 2000) -> dict[str, Any]:
    """Raw ``sqlite3`` WAL + synchronous=FULL: single-row commits/s and batched inserts/s."""
    path = Path(directory) / f"sqlite-ref-{os.getpid()}.db"
    payload = os.urandom(300)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (body) VALUES (?)", (payload,))
            conn.execute("COMMIT")
            latencies.append(time.perf_counter() - t0)
        single = n / (time.perf_counter() - start)

        batch, batches = 1000, max(5, n // 100)
        rows = [(payload,)] * batch
        start = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (body) VALUES (?)", rows)
            conn.execute("COMMIT")
        batched = batch * batches / (time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "value": single,
        "unit": "commits/s",
        "p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3),
        "n": n,
        "method": "raw sqlite3, journal_mode=WAL, synchronous=FULL, one 300-byte row per "
        f"transaction, {n} transactions",
        "batched": {
            "value": batched,
            "unit": "rows/s",
            "method": f"same database, {batch} rows per transaction (executemany), "
            f"{batches} transactions",
        },
    }


# -- signatures -------------------------------------------------------------------


def pynacl_verify_rate(n: int = 20000) -> dict[str, Any]:
    """Ed25519 verifications per second with PyNaCl on one core (200-byte message)."""
    from nacl.signing import SigningKey

    key = SigningKey(os.urandom(32))
    signed = key.sign(os.urandom(200))
    verify = key.verify_key.verify
    start = time.perf_counter()
    for _ in range(n):
        verify(signed)
    elapsed = time.perf_counter() - start
    return {
        "value": n / elapsed,
        "unit": "verifications/s",
        "n": n,
        "method": f"PyNaCl VerifyKey.verify of one 200-byte signed message, {n} times, one core",
    }


def run(quick: bool) -> dict[str, Any]:
    """Every reference at once (``python -m bench refs``)."""
    with tempfile.TemporaryDirectory(prefix="bench-refs-", dir=os.environ.get("BENCH_TMPDIR")) as d:
        n = 300 if quick else 3000
        return {
            "openssl_sha256": openssl_sha256(1 if quick else 2),
            "openssl_sha512": openssl_sha512(1 if quick else 2),
            "fsync_loop": fsync_loop(d, n),
            "sqlite_raw_durable_commit": sqlite_raw_durable_commit(d, n),
            "pynacl_verify": pynacl_verify_rate(2000 if quick else 30000),
        }
