"""Smoke test of the benchmark harness: ``python -m bench hashing --quick`` (< 30 s).

This checks the harness runs and reports the right keys; it never asserts on speed
(a slow shared machine must not fail CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(90)


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )


def test_quick_hashing_bench_prints_json_with_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    start = time.monotonic()
    proc = run_bench("hashing", "--quick", "--out", str(out))
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "custody-ledger-bench/1"
    assert doc["quick"] is True
    assert doc["errors"] == {}
    hashing = doc["results"]["hashing"]
    for key in ("sha256_vs_openssl", "dual_vs_sha512"):
        assert isinstance(hashing[key], float)
        assert hashing[key] > 0
    assert hashing["references"]["openssl_sha256"]["unit"] == "bytes/s"
    assert json.loads(out.read_text()) == doc
    assert elapsed < 60  # the brief asks for < 30 s; leave room for a noisy machine


def test_unknown_benchmark_is_a_usage_error() -> None:
    proc = run_bench("no-such-bench")
    assert proc.returncode == 2
    assert "unknown benchmark" in proc.stderr


def test_registry_discovers_benchmark_modules() -> None:
    from bench.registry import available, load

    names = available()
    assert names[:2] == ["refs", "hashing"]
    assert "registry" not in names
    assert callable(load("hashing"))


@pytest.mark.timeout(200)
@pytest.mark.parametrize("name", ["append", "audit", "startup", "api", "refs", "seal"])
def test_each_quick_benchmark_runs_to_its_figures(name: str) -> None:
    """Each benchmark of 'all' (except the long peer, fabric and scale runs, and the
    hashing one above) runs its quick form to the end: a renamed module or helper fails
    here, not weeks later in a measurement session."""
    proc = subprocess.run([sys.executable, "-m", "bench", name, "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=190, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["errors"] == {}, doc["errors"]
    result = doc["results"][name]
    assert isinstance(result, dict)
    assert result
    assert "skipped" not in result, result.get("skipped")
