"""Evidence hashing throughput versus the same machine's references.

Figures (median of several runs over a page-cached temp file):

* ``sha256_vs_openssl``: SHA-256 alone streamed from the file (hashlib, ``readinto``
  1 MiB memoryview, the method ``ledger.evidence`` uses) / ``openssl speed`` SHA-256.
  Target >= 0.80.
* ``dual_vs_sha512``: ``ledger.evidence.hash_file`` (SHA-256 + SHA-512 from one read,
  on separate threads) / SHA-512 alone streamed from the file. Target >= 0.80.

Standalone: ``python -m bench.hashing [--size-mib N] [--runs N] [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import refs
from ledger.evidence import hash_file

GIB = 1 << 30
TARGET_SHA256_VS_OPENSSL = 0.80
TARGET_DUAL_VS_SHA512 = 0.80


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_file(directory: Path, size_mib: int) -> Path:
    """A file of ``size_mib`` MiB of random-looking bytes (a 16 MiB random block repeated)."""
    path = directory / "evidence.bin"
    block = os.urandom(min(16, size_mib) << 20)
    remaining = size_mib << 20
    with path.open("wb") as fh:
        while remaining:
            part = block[: min(len(block), remaining)]
            fh.write(part)
            remaining -= len(part)
    return path


def warm(path: Path) -> None:
    """Read the whole file once so every measured run reads from the page cache."""
    view = memoryview(bytearray(1 << 20))
    with path.open("rb", buffering=0) as fh:
        while fh.readinto(view):
            pass


def _timed(fn: Callable[[], object], size: int) -> float:
    start = time.perf_counter()
    fn()
    return size / (time.perf_counter() - start)


def blake3_available() -> bool:
    """Whether the optional ``blake3`` extra is installed (``custody-ledger[blake3]``)."""
    try:
        importlib.import_module("blake3")
    except ImportError:
        return False
    return True


def _paired(numerators: list[float], denominators: list[float]) -> float:
    """Median of the per-run ratios: less sensitive to the machine drifting between runs."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def measure(size_mib: int = 1024, runs: int = 3, openssl_seconds: int = 2) -> dict[str, Any]:
    runs = max(3, runs)
    with_blake3 = blake3_available()
    if not with_blake3:
        _log("hashing: the 'blake3' extra is not installed: the SHA-256 + SHA-512 + BLAKE3 "
             "figure is skipped (pip install 'custody-ledger[blake3]' to measure it)")
    tmp_root = os.environ.get("BENCH_TMPDIR")
    with tempfile.TemporaryDirectory(prefix="bench-hashing-", dir=tmp_root) as d:
        path = make_file(Path(d), size_mib)
        size = path.stat().st_size
        warm(path)
        samples: dict[str, list[float]] = {
            "sha512": [],
            "sha256": [],
            "dual": [],
            "triple": [],
            "openssl_sha256": [],
        }
        for i in range(runs):
            # Interleave the variants so machine noise hits them alike.
            samples["sha512"].append(refs.hashlib_sha512_stream(path)["value"])
            samples["dual"].append(_timed(lambda: hash_file(path), size))
            samples["sha256"].append(refs.hashlib_sha256_stream(path)["value"])
            if with_blake3:
                samples["triple"].append(_timed(lambda: hash_file(path, blake3=True), size))
            # openssl inside the loop too, so both sides of the ratio see the same moment.
            ossl256 = refs.openssl_sha256(openssl_seconds)
            samples["openssl_sha256"].append(ossl256["value"])
            figures = ", ".join(f"{k} {v[-1] / GIB:.2f} GiB/s" for k, v in samples.items() if v)
            _log(f"hashing: run {i + 1}/{runs}: {figures}")
    ossl512 = refs.openssl_sha512(openssl_seconds)
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    sha256_vs_openssl = med["sha256"] / med["openssl_sha256"]
    dual_vs_sha512 = med["dual"] / med["sha512"]
    return {
        "file_mib": size_mib,
        "runs": runs,
        "unit": "GiB/s (median)",
        "evidence_hash_file_sha256_sha512": round(med["dual"] / GIB, 3),
        "evidence_hash_file_sha256_sha512_blake3": round(med["triple"] / GIB, 3)
        if with_blake3 else None,
        "skipped": {} if with_blake3 else {
            "evidence_hash_file_sha256_sha512_blake3": "the 'blake3' extra is not installed "
            "(pip install 'custody-ledger[blake3]')"},
        "stream_sha256_alone": round(med["sha256"] / GIB, 3),
        "stream_sha512_alone": round(med["sha512"] / GIB, 3),
        "openssl_sha256": round(med["openssl_sha256"] / GIB, 3),
        "openssl_sha512": round(ossl512["value"] / GIB, 3),
        "sha256_vs_openssl": round(sha256_vs_openssl, 3),
        "sha256_vs_openssl_paired": round(_paired(samples["sha256"], samples["openssl_sha256"]), 3),
        "dual_vs_sha512": round(dual_vs_sha512, 3),
        "dual_vs_sha512_paired": round(_paired(samples["dual"], samples["sha512"]), 3),
        "sha512_stream_vs_openssl": round(med["sha512"] / ossl512["value"], 3),
        "targets": {
            "sha256_vs_openssl": TARGET_SHA256_VS_OPENSSL,
            "dual_vs_sha512": TARGET_DUAL_VS_SHA512,
        },
        "meets_targets": {
            "sha256_vs_openssl": sha256_vs_openssl >= TARGET_SHA256_VS_OPENSSL,
            "dual_vs_sha512": dual_vs_sha512 >= TARGET_DUAL_VS_SHA512,
        },
        "samples_gib_s": {k: [round(x / GIB, 3) for x in v] for k, v in samples.items() if v},
        "references": {"openssl_sha256": ossl256, "openssl_sha512": ossl512},
        "method": "temp file written then read once to warm the page cache; per run, in this "
        "order: SHA-512 alone stream, ledger.evidence.hash_file (SHA-256+SHA-512), SHA-256 "
        "alone stream, hash_file with BLAKE3 (when the extra is installed), openssl speed "
        "sha256; ratios are of medians "
        "(*_paired: median of per-run ratios); streams use readinto into a 1 MiB memoryview",
    }


def run(quick: bool) -> dict[str, Any]:
    if quick:
        return measure(size_mib=64, runs=3, openssl_seconds=1)
    return measure(size_mib=1024, runs=5, openssl_seconds=2)


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure evidence hashing throughput.")
    parser.add_argument("--size-mib", type=int, default=1024, help="temp file size in MiB.")
    parser.add_argument("--runs", type=int, default=5, help="runs per variant (at least 3).")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 3 runs, 1 s openssl.")
    args = parser.parse_args()
    result = run(True) if args.quick else measure(args.size_mib, args.runs)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
