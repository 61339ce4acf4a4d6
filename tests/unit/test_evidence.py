"""Streaming evidence hashing: digests, buffer rotation, caps, errors, threads, memory."""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import evidence
from ledger.core.errors import InvalidInput, NotFound, PayloadTooLarge
from ledger.evidence import Digests, digests_match, hash_file, hash_stream

CHUNK = 64  # small chunk so that a few hundred bytes rotate through the whole ring


def expected(data: bytes) -> Digests:
    return Digests(
        sha256=hashlib.sha256(data).hexdigest(),
        sha512=hashlib.sha512(data).hexdigest(),
        blake3=None,
        size=len(data),
    )


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("evidence-hash-")]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 4 * CHUNK, 4 * CHUNK + 1, 5 * CHUNK - 1, 37 * CHUNK + 5],
)
def test_hash_file_matches_hashlib_at_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    path = write(tmp_path / "e.bin", data)
    assert hash_file(path, chunk_size=CHUNK) == expected(data)


def test_hash_file_default_chunk_multi_chunk(tmp_path: Path) -> None:
    chunk = evidence.DEFAULT_CHUNK_SIZE
    data = random.Random(7).randbytes(9 * chunk + 12345)
    path = write(tmp_path / "big.bin", data)
    assert hash_file(path) == expected(data)
    for size in (chunk - 1, chunk, chunk + 1):
        p = write(tmp_path / f"s{size}.bin", data[:size])
        assert hash_file(p) == expected(data[:size])


def test_empty_file_has_the_well_known_digests(tmp_path: Path) -> None:
    d = hash_file(write(tmp_path / "empty", b""))
    assert d.size == 0
    assert d.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert d.sha512.startswith("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce")


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=130))
def test_hash_stream_matches_hashlib_for_any_bytes_and_chunk(data: bytes, chunk: int) -> None:
    assert hash_stream(io.BytesIO(data), chunk_size=chunk) == expected(data)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=0, max_value=3000))
def test_hash_file_random_sizes(tmp_path_factory: pytest.TempPathFactory, size: int) -> None:
    data = os.urandom(size)
    path = write(tmp_path_factory.mktemp("h") / "e.bin", data)
    assert hash_file(path, chunk_size=CHUNK) == expected(data)


def test_blake3_matches_the_blake3_package(tmp_path: Path) -> None:
    blake3 = pytest.importorskip("blake3")
    data = random.Random(3).randbytes(10 * CHUNK + 3)
    path = write(tmp_path / "e.bin", data)
    d = hash_file(path, blake3=True, chunk_size=CHUNK)
    assert d.blake3 == blake3.blake3(data).hexdigest()
    assert d.as_dict() == {"sha256": d.sha256, "sha512": d.sha512, "blake3": d.blake3}
    assert hash_stream(io.BytesIO(data), blake3=True).blake3 == d.blake3


def test_as_dict_omits_missing_blake3(tmp_path: Path) -> None:
    d = hash_file(write(tmp_path / "e", b"x"))
    assert d.blake3 is None
    assert set(d.as_dict()) == {"sha256", "sha512"}


def test_blake3_missing_package_is_a_clear_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    real = evidence.importlib.import_module

    def fake_import(name: str, package: str | None = None) -> Any:
        if name == "blake3":
            raise ImportError("No module named 'blake3'")
        return real(name, package)

    monkeypatch.setattr(evidence.importlib, "import_module", fake_import)
    with pytest.raises(InvalidInput, match="'blake3' package is not installed"):
        hash_stream(io.BytesIO(b"abc"), blake3=True)


def test_progress_is_cumulative_monotonic_and_ends_at_size(tmp_path: Path) -> None:
    data = os.urandom(10 * CHUNK + 7)
    seen: list[int] = []
    d = hash_file(write(tmp_path / "e", data), progress=seen.append, chunk_size=CHUNK)
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[-1] == d.size == len(data)
    assert len(seen) == 11


def test_progress_not_called_for_empty_file(tmp_path: Path) -> None:
    seen: list[int] = []
    hash_file(write(tmp_path / "e", b""), progress=seen.append)
    assert seen == []


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.bin"
    with pytest.raises(NotFound, match=r"no such file: .*nope\.bin"):
        hash_file(missing)


def test_directory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is a directory"):
        hash_file(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file_is_invalid_input(tmp_path: Path) -> None:
    path = write(tmp_path / "secret", b"x")
    path.chmod(0)
    try:
        with pytest.raises(InvalidInput, match="permission denied"):
            hash_file(path)
    finally:
        path.chmod(0o600)


def test_permission_error_is_invalid_input_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(evidence, "open", denied, raising=False)
    with pytest.raises(InvalidInput, match=r"permission denied: cannot read .*secret"):
        hash_file(tmp_path / "secret")


def test_invalid_chunk_size_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        hash_stream(io.BytesIO(b"x"), chunk_size=0)


@pytest.mark.parametrize("chunk", [1, 7, CHUNK, 1 << 20])
def test_max_bytes_exact_cap_is_accepted_and_one_more_byte_is_refused(chunk: int) -> None:
    cap = 1000
    assert hash_stream(io.BytesIO(b"a" * cap), max_bytes=cap, chunk_size=chunk).size == cap
    with pytest.raises(PayloadTooLarge, match="1000 bytes"):
        hash_stream(io.BytesIO(b"a" * (cap + 1)), max_bytes=cap, chunk_size=chunk)
    assert hash_threads() == []


def test_max_bytes_stops_reading_soon_after_the_cap() -> None:
    stream = io.BytesIO(b"z" * (10 * CHUNK))
    with pytest.raises(PayloadTooLarge):
        hash_stream(stream, max_bytes=CHUNK + 3, chunk_size=CHUNK)
    assert stream.tell() == CHUNK + 4  # never more than one byte past the cap


def test_zero_cap_accepts_only_empty() -> None:
    assert hash_stream(io.BytesIO(b""), max_bytes=0).size == 0
    with pytest.raises(PayloadTooLarge):
        hash_stream(io.BytesIO(b"x"), max_bytes=0)
    with pytest.raises(InvalidInput):
        hash_stream(io.BytesIO(b""), max_bytes=-1)


class ReadOnlyStream:
    """A stream with read() but no readinto(), returning short reads."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._buf.read(min(n, 5))


def test_stream_without_readinto_and_short_reads() -> None:
    data = os.urandom(333)
    assert hash_stream(ReadOnlyStream(data), chunk_size=CHUNK) == expected(data)


class NonBlocking:
    def readinto(self, view: memoryview) -> int | None:
        return None


def test_non_blocking_stream_without_data_is_refused() -> None:
    with pytest.raises(InvalidInput, match="non-blocking"):
        hash_stream(NonBlocking())


class BrokenStream(io.RawIOBase):
    """Yields a few chunks, then fails like a dropped upload."""

    def __init__(self, good_chunks: int) -> None:
        self.left = good_chunks

    def readable(self) -> bool:
        return True

    def readinto(self, view: Any) -> int:
        if self.left == 0:
            raise ConnectionResetError("client went away")
        self.left -= 1
        view[:] = b"q" * len(view)
        return len(view)


def test_stream_error_mid_way_propagates_and_leaves_no_thread() -> None:
    before = threading.active_count()
    with pytest.raises(ConnectionResetError, match="client went away"):
        hash_stream(BrokenStream(good_chunks=9), chunk_size=CHUNK)
    assert threading.active_count() == before
    assert hash_threads() == []


class FailingHasher:
    def __init__(self, fail_after: int) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def update(self, data: memoryview) -> None:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("hasher exploded")

    def hexdigest(self) -> str:
        return "00"


def test_worker_exception_propagates_and_leaves_no_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def hashers(_: bool) -> dict[str, Any]:
        return {"sha256": hashlib.sha256(), "sha512": FailingHasher(fail_after=3)}

    monkeypatch.setattr(evidence, "_new_hashers", hashers)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="hasher exploded"):
        hash_stream(io.BytesIO(b"w" * (50 * CHUNK)), chunk_size=CHUNK)
    assert threading.active_count() == before
    assert hash_threads() == []


def test_progress_callback_exception_propagates_and_leaves_no_thread() -> None:
    def boom(done: int) -> None:
        if done > 2 * CHUNK:
            raise KeyError("stop")

    with pytest.raises(KeyError):
        hash_stream(io.BytesIO(b"p" * (20 * CHUNK)), chunk_size=CHUNK, progress=boom)
    assert hash_threads() == []


class SlowHasher:
    """Wraps a hashlib object and stalls now and then, so the reader runs ahead.

    If the reader ever refilled a buffer that this hasher had not finished, the
    digest would come out wrong.
    """

    def __init__(self, inner: Any, seed: int) -> None:
        self.inner = inner
        self.rng = random.Random(seed)

    def update(self, data: memoryview) -> None:
        if self.rng.random() < 0.3:
            time.sleep(0.001)
        first = bytes(data)
        time.sleep(0)  # let the reader thread run between our reads of the buffer
        assert bytes(data) == first
        self.inner.update(data)

    def hexdigest(self) -> str:
        return str(self.inner.hexdigest())


def test_no_buffer_is_overwritten_while_a_slow_hasher_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def hashers(_: bool) -> dict[str, Any]:
        return {
            "sha256": SlowHasher(hashlib.sha256(), 1),
            "sha512": SlowHasher(hashlib.sha512(), 2),
        }

    monkeypatch.setattr(evidence, "_new_hashers", hashers)
    data = os.urandom(200 * CHUNK + 17)
    assert hash_stream(io.BytesIO(data), chunk_size=CHUNK) == expected(data)


def test_memory_stays_bounded_on_a_256_mib_sparse_file(tmp_path: Path) -> None:
    size = 256 << 20
    path = tmp_path / "sparse.bin"
    with path.open("wb") as fh:
        fh.truncate(size)
    tracemalloc.start()
    try:
        d = hash_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.size == size
    assert peak < 16 << 20


def test_digests_match_reports_only_differing_shared_algorithms() -> None:
    d = expected(b"evidence")
    assert digests_match({"sha256": d.sha256.upper(), "sha512": d.sha512}, d) == []
    assert digests_match({"sha256": "00" * 32, "sha512": d.sha512}, d) == ["sha256"]
    assert digests_match({"sha512": "ff" * 64, "md5": "abc"}, d) == ["sha512"]
    # blake3 recorded but not computed: not comparable, so not reported
    assert digests_match({"blake3": "aa" * 32}, d) == []
    assert digests_match({}, d) == []
