"""``python -m bench hashing`` without the ``blake3`` extra: the BLAKE3 figure is skipped,
with the reason in the JSON, and every other figure is still measured."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bench import hashing, refs


def _fake_openssl(seconds: int = 1) -> dict[str, Any]:
    return {"value": float(1 << 30), "unit": "bytes/s", "method": "stand-in for the test"}


@pytest.fixture
def no_openssl_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The openssl references take seconds each and are not what is tested here."""
    monkeypatch.setattr(refs, "openssl_sha256", _fake_openssl)
    monkeypatch.setattr(refs, "openssl_sha512", _fake_openssl)


def test_hashing_skips_blake3_when_the_extra_is_absent(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_openssl_wait: None) -> None:
    monkeypatch.setitem(sys.modules, "blake3", None)  # import blake3 -> ImportError
    monkeypatch.setenv("BENCH_TMPDIR", str(tmp_path))
    assert not hashing.blake3_available()
    result = hashing.measure(size_mib=1, runs=3, openssl_seconds=1)
    assert result["evidence_hash_file_sha256_sha512_blake3"] is None
    assert "blake3" in result["skipped"]["evidence_hash_file_sha256_sha512_blake3"]
    assert "triple" not in result["samples_gib_s"]
    assert result["evidence_hash_file_sha256_sha512"] > 0
    assert result["stream_sha256_alone"] > 0


def test_hashing_measures_blake3_when_it_is_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_openssl_wait: None) -> None:
    pytest.importorskip("blake3")
    monkeypatch.setenv("BENCH_TMPDIR", str(tmp_path))
    result = hashing.measure(size_mib=1, runs=3, openssl_seconds=1)
    assert result["evidence_hash_file_sha256_sha512_blake3"] > 0
    assert result["skipped"] == {}
