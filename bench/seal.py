"""Sealed packages: ``ledger.seal`` throughput beside the stock ``age`` tool, same file,
same run.

Figures (median of interleaved runs over a page-cached temp file; MiB/s of plaintext):

* ``seal`` — :func:`ledger.seal.seal`: ONE read that hashes the plaintext (SHA-256 +
  SHA-512) and the package (SHA-256) while age-encrypting it, fsync'ed and renamed.
* ``open`` — :func:`ledger.seal.open_package`: ONE read that hashes the package while
  decrypting it, hashes the plaintext, compares both with what was dispatched and
  registered, fsync'ed and renamed.
* ``age_encrypt`` / ``age_decrypt`` — the ``age`` CLI (``age -r`` / ``age -d -i``) on the
  same file, written to the same folder (no digests, no fsync): the reference.
* ``pyrage_encrypt_raw`` / ``pyrage_decrypt_raw`` — ``pyrage.encrypt_io``/``decrypt_io``
  straight between two files: what our hashing and checks cost on top of age's Rust code.
* ``chacha20poly1305`` — the cipher alone (``cryptography``, 64 KiB chunks as age uses),
  reading the file: the physical floor, and the reference when ``age`` is missing.
* ``evidence_hash`` — :func:`ledger.evidence.hash_file` (SHA-256 + SHA-512) alone.
* ``stock_seal_procedure`` / ``stock_open_procedure`` — the same work with stock tools,
  one after the other: ``openssl dgst -sha256`` and ``-sha512`` of the evidence,
  ``age -r``, ``openssl dgst -sha256`` of the package (and in reverse to open): what the
  one-pass design saves. (OpenSSL rather than coreutils: ``sha256sum`` here is 3x slower.)

Ratios: ``seal_vs_age_encrypt``, ``open_vs_age_decrypt`` (1.0 = as fast as age, which
computes no digest), ``*_vs_stock_procedure`` (1.0 = as fast as age plus the digests
with OpenSSL, one pass each), ``*_vs_pyrage_raw`` and ``*_vs_chacha20poly1305``. Peak memory:
a fresh interpreter seals and opens the file, and reports the growth of its peak
resident set (VmHWM) over its baseline.

Standalone: ``python -m bench.seal [--size-mib N] [--runs N] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.hashing import make_file, warm
from ledger.evidence import hash_file
from ledger.seal import open_package, recipient_of, seal

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rate(fn: Callable[[], object], size: int) -> float:
    start = time.perf_counter()
    fn()
    return size / (time.perf_counter() - start) / MIB


def _gone(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _pyrage_raw(src: Path, dst: Path, recipient: str | None, identity: str | None) -> None:
    import pyrage  # type: ignore[import-untyped]

    with src.open("rb") as fin, dst.open("wb") as fout:
        if recipient is not None:
            pyrage.encrypt_io(fin, fout, [pyrage.x25519.Recipient.from_str(recipient)])
        else:
            pyrage.decrypt_io(fin, fout, [pyrage.x25519.Identity.from_str(identity)])


def _stock(*commands: list[str]) -> None:
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def _chacha(src: Path) -> None:
    """ChaCha20-Poly1305 over the file in 64 KiB chunks (age's STREAM chunk size)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(os.urandom(32))
    buf = bytearray(64 * 1024)
    view = memoryview(buf)
    counter = 0
    with src.open("rb", buffering=0) as fin:
        while n := fin.readinto(view):
            aead.encrypt(counter.to_bytes(12, "big"), bytes(view[:n]), None)
            counter += 1


_PEAK = r"""
import json, sys
from pathlib import Path
from ledger.seal import open_package, recipient_of, seal
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
src, folder, identity = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
base = hwm()
sealed = seal(src, folder / "peak.age", [recipient_of(identity)])
after_seal = hwm()
open_package(folder / "peak.age", [identity], folder / "peak.out",
             expected_package_sha256=sealed.package_sha256, expected=sealed.plaintext)
print(json.dumps({"baseline": base, "seal": after_seal - base, "open": hwm() - base}))
"""


def _peak_memory(src: Path, folder: Path, identity: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _PEAK, str(src), str(folder), identity],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    _gone(folder / "peak.age", folder / "peak.out")
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    figures = json.loads(done.stdout)
    return {"baseline_mib": round(figures["baseline"] / MIB, 1),
            "seal_growth_mib": round(figures["seal"] / MIB, 1),
            "open_growth_mib": round(figures["open"] / MIB, 1),
            "method": "a fresh interpreter seals then opens the file; growth of VmHWM "
                      "(peak resident set) over its baseline"}


def measure(size_mib: int = 1024, runs: int = 3) -> dict[str, Any]:
    from pyrage import x25519

    runs = max(3, runs)
    age = shutil.which("age")
    openssl = shutil.which("openssl")
    dgst = [openssl or "openssl", "dgst", "-r"]
    try:
        import cryptography  # noqa: F401
        have_crypto = True
    except ImportError:
        have_crypto = False
    identity = str(x25519.Identity.generate())
    recipient = recipient_of(identity)
    tmp_root = os.environ.get("BENCH_TMPDIR")
    with tempfile.TemporaryDirectory(prefix="bench-seal-", dir=tmp_root) as d:
        folder = Path(d)
        src = make_file(folder, size_mib)
        size = src.stat().st_size
        warm(src)
        keyfile = folder / "identity.txt"
        keyfile.write_text(identity + "\n")
        keyfile.chmod(0o600)
        pkg, out = folder / "p.age", folder / "p.out"
        ref_pkg, ref_out = folder / "ref.age", folder / "ref.out"
        digests = hash_file(src)
        samples: dict[str, list[float]] = {}

        def sample(name: str, fn: Callable[[], object]) -> None:
            samples.setdefault(name, []).append(_rate(fn, size))

        sealed: dict[str, Any] = {}
        for i in range(runs):
            _gone(pkg, out, ref_pkg, ref_out)
            sample("seal", lambda: sealed.update(s=seal(src, pkg, [recipient])))
            if age:
                sample("age_encrypt", lambda: subprocess.run(
                    [age, "-r", recipient, "-o", str(ref_pkg), str(src)], check=True))
            sample("open", lambda: open_package(
                pkg, [identity], out, expected_package_sha256=sealed["s"].package_sha256,
                expected=digests))
            if age:
                sample("age_decrypt", lambda: subprocess.run(
                    [age, "-d", "-i", str(keyfile), "-o", str(ref_out), str(pkg)],
                    check=True))
            if age and openssl:
                _gone(ref_pkg, ref_out)
                sample("stock_seal_procedure", lambda: _stock(
                    [*dgst, "-sha256", str(src)], [*dgst, "-sha512", str(src)],
                    [age, "-r", recipient, "-o", str(ref_pkg), str(src)],
                    [*dgst, "-sha256", str(ref_pkg)]))
                sample("stock_open_procedure", lambda: _stock(
                    [*dgst, "-sha256", str(pkg)],
                    [age, "-d", "-i", str(keyfile), "-o", str(ref_out), str(pkg)],
                    [*dgst, "-sha256", str(ref_out)], [*dgst, "-sha512", str(ref_out)]))
            _gone(ref_pkg, ref_out)
            sample("pyrage_encrypt_raw", lambda: _pyrage_raw(src, ref_pkg, recipient, None))
            sample("pyrage_decrypt_raw", lambda: _pyrage_raw(pkg, ref_out, None, identity))
            if have_crypto:
                sample("chacha20poly1305", lambda: _chacha(src))
            sample("evidence_hash", lambda: hash_file(src))
            _log(f"seal: run {i + 1}/{runs}: " + ", ".join(
                f"{k} {v[-1]:.0f} MiB/s" for k, v in samples.items()))
        _gone(pkg, out, ref_pkg, ref_out)
        peak = _peak_memory(src, folder, identity)
    med = {k: statistics.median(v) for k, v in samples.items()}

    def ratio(a: str, b: str) -> float | None:
        return round(med[a] / med[b], 3) if a in med and b in med else None

    return {
        "file_mib": size_mib,
        "runs": runs,
        "unit": "MiB/s of plaintext (median)",
        **{k: round(v, 1) for k, v in med.items()},
        "seal_vs_age_encrypt": ratio("seal", "age_encrypt"),
        "open_vs_age_decrypt": ratio("open", "age_decrypt"),
        "seal_vs_stock_procedure": ratio("seal", "stock_seal_procedure"),
        "open_vs_stock_procedure": ratio("open", "stock_open_procedure"),
        "seal_vs_pyrage_raw": ratio("seal", "pyrage_encrypt_raw"),
        "open_vs_pyrage_raw": ratio("open", "pyrage_decrypt_raw"),
        "seal_vs_chacha20poly1305": ratio("seal", "chacha20poly1305"),
        "open_vs_chacha20poly1305": ratio("open", "chacha20poly1305"),
        "age_cli": age,
        "peak_memory": peak,
        "samples_mib_s": {k: [round(x, 1) for x in v] for k, v in samples.items()},
        "method": "temp file written then read once to warm the page cache; per run, in "
        "this order: seal, age -r, open_package (package digest + plaintext digests "
        "checked), age -d, the stock procedures (openssl dgst and age, one after the "
        "other), pyrage encrypt_io/decrypt_io between plain files, "
        "ChaCha20-Poly1305 over 64 KiB chunks read from the file, hash_file; ours fsync "
        "and rename their output, age does not",
    }


def run(quick: bool) -> dict[str, Any]:
    if quick:
        return measure(size_mib=64, runs=3)
    return measure(size_mib=1024, runs=3)


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure sealing and opening throughput.")
    parser.add_argument("--size-mib", type=int, default=1024, help="temp file size in MiB.")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (at least 3).")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 3 runs.")
    args = parser.parse_args()
    result = run(True) if args.quick else measure(args.size_mib, args.runs)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
