"""Sealed packages (ledger.seal): round trip, every mutation refused with its reason and
no plaintext left behind, interoperability with the stock ``age`` tool, flat memory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from pyrage import x25519

from ledger import seal as seal_mod
from ledger.core.errors import InvalidInput, NotFound, VerificationError
from ledger.evidence import Digests
from ledger.seal import REASONS, PackageRejected, open_package, recipient_of, seal

ROOT = Path(__file__).resolve().parents[2]


def digests_of(data: bytes) -> Digests:
    return Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), None,
                   len(data))


def new_identity() -> str:
    return str(x25519.Identity.generate())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary files of a seal or an open that were not cleaned up."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def ours() -> str:
    return new_identity()


@pytest.fixture
def evidence(tmp_path: Path) -> tuple[Path, bytes]:
    # Several 64 KiB age chunks and several 1 MiB hashing buffers, and an odd tail.
    data = random.Random(11).randbytes(5 * (1 << 20) + 70_001)
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path, data


def sealed_to(tmp_path: Path, src: Path, recipients: list[str],
              name: str = "disk.img.age") -> tuple[Path, seal_mod.Sealed]:
    out = tmp_path / name
    return out, seal(src, out, recipients)


# ---- round trip ------------------------------------------------------------------------


def test_seal_then_open_round_trip_with_digests_from_the_same_pass(
        tmp_path: Path, evidence: tuple[Path, bytes], ours: str) -> None:
    src, data = evidence
    seen: list[int] = []
    out = tmp_path / "disk.img.age"
    sealed = seal(src, out, [recipient_of(ours)], progress=seen.append)
    assert sealed.plaintext == digests_of(data)
    assert sealed.package_sha256 == sha256_file(out)
    assert sealed.package_size == out.stat().st_size > len(data)
    assert out.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert seen[-1] == len(data)
    assert seen == sorted(seen)
    dest = tmp_path / "received" / "disk.img"
    dest.parent.mkdir()
    opened = open_package(out, [ours], dest, expected_package_sha256=sealed.package_sha256,
                          expected=digests_of(data))
    assert opened.path == dest
    assert dest.read_bytes() == data
    assert opened.digests == digests_of(data)
    assert opened.package_sha256 == sealed.package_sha256
    assert leftovers(tmp_path) == []
    assert leftovers(dest.parent) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("seal-hash-")]


@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 65_537, 1 << 20, (1 << 20) + 1])
def test_round_trip_at_chunk_boundaries(tmp_path: Path, ours: str, size: int) -> None:
    data = random.Random(size).randbytes(size)
    src = tmp_path / "e.bin"
    src.write_bytes(data)
    out, sealed = sealed_to(tmp_path, src, [recipient_of(ours)])
    assert sealed.plaintext == digests_of(data)
    opened = open_package(out, [ours], tmp_path / "e.out",
                          expected_package_sha256=sealed.package_sha256,
                          expected=digests_of(data))
    assert opened.path.read_bytes() == data


def test_several_recipients_each_open_it(tmp_path: Path, evidence: tuple[Path, bytes]) -> None:
    src, data = evidence
    receiver, sender = new_identity(), new_identity()
    out, sealed = sealed_to(tmp_path, src, [recipient_of(receiver), recipient_of(sender)])
    for n, who in enumerate((receiver, sender)):
        got = open_package(out, [new_identity(), who], tmp_path / f"copy{n}",
                           expected_package_sha256=sealed.package_sha256,
                           expected=digests_of(data))
        assert got.path.read_bytes() == data


def test_blake3_is_recomputed_when_registered(tmp_path: Path, ours: str) -> None:
    blake3 = pytest.importorskip("blake3")
    data = b"evidence with a blake3 digest" * 1000
    src = tmp_path / "e.bin"
    src.write_bytes(data)
    out = tmp_path / "e.age"
    sealed = seal(src, out, [recipient_of(ours)], blake3=True)
    want = blake3.blake3(data).hexdigest()
    assert sealed.plaintext.blake3 == want
    registered = Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
                         want, len(data))
    opened = open_package(out, [ours], tmp_path / "e.out",
                          expected_package_sha256=sealed.package_sha256, expected=registered)
    assert opened.digests.blake3 == want
    wrong = Digests(registered.sha256, registered.sha512, "0" * 64, len(data))
    with pytest.raises(PackageRejected) as info:
        open_package(out, [ours], tmp_path / "e.out2",
                     expected_package_sha256=sealed.package_sha256, expected=wrong)
    assert info.value.reason == "plaintext-digest"
    assert "blake3" in str(info.value)


# ---- what seal refuses, and that it never leaves half a package ------------------------


def test_seal_refuses_what_is_not_evidence_and_bad_recipients(
        tmp_path: Path, evidence: tuple[Path, bytes], ours: str) -> None:
    src, _ = evidence
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="FIFO"):
        seal(fifo, tmp_path / "p.age", [recipient_of(ours)])
    with pytest.raises(InvalidInput, match="directory"):
        seal(tmp_path, tmp_path / "p.age", [recipient_of(ours)])
    with pytest.raises(InvalidInput, match="character device"):
        seal(Path("/dev/zero"), tmp_path / "p.age", [recipient_of(ours)])
    with pytest.raises(NotFound):
        seal(tmp_path / "missing", tmp_path / "p.age", [recipient_of(ours)])
    with pytest.raises(InvalidInput, match="recipient"):
        seal(src, tmp_path / "p.age", ["age1notarecipient"])
    with pytest.raises(InvalidInput, match="at least one recipient"):
        seal(src, tmp_path / "p.age", [])
    (tmp_path / "exists.age").write_bytes(b"keep me")
    with pytest.raises(InvalidInput, match="refusing to overwrite"):
        seal(src, tmp_path / "exists.age", [recipient_of(ours)])
    assert (tmp_path / "exists.age").read_bytes() == b"keep me"
    with pytest.raises(InvalidInput, match="not a directory"):
        seal(src, tmp_path / "nowhere" / "p.age", [recipient_of(ours)])
    assert not (tmp_path / "p.age").exists()
    assert leftovers(tmp_path) == []


def test_a_failing_read_leaves_no_package(tmp_path: Path, evidence: tuple[Path, bytes],
                                          ours: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = evidence
    real = seal_mod._Reader.read
    calls = {"n": 0}

    def failing(self: seal_mod._Reader, n: int = -1) -> bytes:
        calls["n"] += 1
        if calls["n"] == 200:  # well into the file: part of the package is written
            self.error = f"cannot read {self.what}: Input/output error"
            raise OSError(5, "Input/output error")
        return real(self, n)

    monkeypatch.setattr(seal_mod._Reader, "read", failing)
    with pytest.raises(InvalidInput, match="Input/output error"):
        seal(src, tmp_path / "p.age", [recipient_of(ours)])
    assert not (tmp_path / "p.age").exists()
    assert leftovers(tmp_path) == []


def test_an_interrupted_seal_leaves_no_package(tmp_path: Path, evidence: tuple[Path, bytes],
                                               ours: str) -> None:
    src, _ = evidence

    def interrupt(done: int) -> None:
        if done >= 2 << 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # still an interrupt, not an error message
        seal(src, tmp_path / "p.age", [recipient_of(ours)], progress=interrupt)
    assert not (tmp_path / "p.age").exists()
    assert leftovers(tmp_path) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("seal-hash-")]


# ---- every mutation of a package: refused, with its reason, and nothing left -----------


def header_end(blob: bytes) -> int:
    """Offset of the first payload byte (after the '--- MAC' line)."""
    mac = blob.index(b"\n---")
    return blob.index(b"\n", mac + 1) + 1


def stanza(blob: bytes) -> tuple[int, int]:
    """Start and end of the X25519 recipient stanza (its '->' line and its body line)."""
    start = blob.index(b"-> X25519 ")
    arg_end = blob.index(b"\n", start)
    return start, blob.index(b"\n", arg_end + 1) + 1


def flip(blob: bytes, at: int) -> bytes:
    out = bytearray(blob)
    out[at] ^= 0x01
    return bytes(out)


def swap_b64_char(blob: bytes, at: int) -> bytes:
    """Change one base64 character into another valid one (the stanza still parses)."""
    out = bytearray(blob)
    out[at] = ord("A") if out[at] != ord("A") else ord("B")
    return bytes(out)


Mutation = Callable[[bytes, dict[str, bytes]], bytes]


def _swap_stanza(blob: bytes, other: bytes) -> bytes:
    a, b = stanza(blob)
    c, d = stanza(other)
    return blob[:a] + other[c:d] + blob[b:]


#: name -> (mutation, the reason when the dispatched package digest is NOT given).
#: With the dispatched digest every one of them is "package-digest" first.
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "header-version-byte": (lambda b, o: flip(b, 3), "corrupt"),
    "header-mac-byte": (lambda b, o: flip(b, b.index(b"\n---") + 8), "corrupt"),
    # age cannot tell a damaged stanza from a stanza for another key: both open nothing.
    "stanza-share-byte": (lambda b, o: swap_b64_char(b, stanza(b)[0] + 12), "wrong-recipient"),
    "stanza-body-byte": (lambda b, o: swap_b64_char(
        b, b.index(b"\n", stanza(b)[0]) + 6), "wrong-recipient"),
    "payload-nonce-byte": (lambda b, o: flip(b, header_end(b) + 3), "corrupt"),
    "payload-byte": (lambda b, o: flip(b, header_end(b) + 70_000), "corrupt"),
    "payload-last-byte": (lambda b, o: flip(b, len(b) - 1), "corrupt"),
    "truncated-one-byte": (lambda b, o: b[:-1], "corrupt"),
    "truncated-at-chunk": (lambda b, o: b[:header_end(b) + 16 + 65_552], "corrupt"),
    "truncated-in-header": (lambda b, o: b[:header_end(b) - 10], "corrupt"),
    "header-only": (lambda b, o: b[:header_end(b)], "corrupt"),
    "empty": (lambda b, o: b"", "corrupt"),
    "appended-byte": (lambda b, o: b + b"\x00", "corrupt"),
    "appended-chunk": (lambda b, o: b + b[header_end(b) + 16:header_end(b) + 16 + 65_552],
                       "corrupt"),
    "stanza-for-another-key": (lambda b, o: _swap_stanza(b, o["other_key"]),
                               "wrong-recipient"),
    "stanza-of-another-package": (lambda b, o: _swap_stanza(b, o["another_package"]),
                                  "corrupt"),  # our key opens it, but the header MAC fails
    "re-encrypted-to-another-key": (lambda b, o: o["other_key"], "wrong-recipient"),
    "package-of-another-transfer": (lambda b, o: o["another_package"], "plaintext-digest"),
    "not-an-age-file": (lambda b, o: b"PK\x03\x04 a zip, not a package" * 100, "corrupt"),
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One package and the material the mutations need, sealed once for the module."""
    root = tmp_path_factory.mktemp("packages")
    ours, theirs = new_identity(), new_identity()
    data = random.Random(5).randbytes(3 * 65_536 + 999)
    src = root / "evidence.bin"
    src.write_bytes(data)
    other_src = root / "other-evidence.bin"
    other_src.write_bytes(random.Random(6).randbytes(50_000))
    made = {}
    for name, path, to in (("good", src, ours), ("other_key", src, theirs),
                           ("another_package", other_src, ours)):
        out = root / f"{name}.age"
        seal(path, out, [recipient_of(to)])
        made[name] = out.read_bytes()
    return {"ours": ours, "data": data, **made}


def test_the_mutations_differ_from_the_package(packages: dict[str, object]) -> None:
    good = packages["good"]
    assert isinstance(good, bytes)
    others = {k: v for k, v in packages.items() if isinstance(v, bytes)}
    for name, (mutate, _) in MUTATIONS.items():
        assert mutate(good, others) != good, name


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("dispatched", [True, False], ids=["dispatched-digest", "raw"])
def test_every_mutation_is_refused_with_its_reason_and_leaves_nothing(
        tmp_path: Path, packages: dict[str, object], name: str, dispatched: bool) -> None:
    good, data, ours = packages["good"], packages["data"], packages["ours"]
    assert isinstance(good, bytes)
    assert isinstance(data, bytes)
    assert isinstance(ours, str)
    others = {k: v for k, v in packages.items() if isinstance(v, bytes)}
    mutate, raw_reason = MUTATIONS[name]
    mutated = mutate(good, others)
    pkg = tmp_path / "incoming.age"
    pkg.write_bytes(mutated)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "evidence.bin"
    expected_sha = hashlib.sha256(good if dispatched else mutated).hexdigest()
    with pytest.raises(PackageRejected) as info:
        open_package(pkg, [ours], dest, expected_package_sha256=expected_sha,
                     expected=digests_of(data))
    want = "package-digest" if dispatched else raw_reason
    assert info.value.reason == want, str(info.value)
    assert str(info.value).startswith(want + ": ")
    assert isinstance(info.value, VerificationError)
    # What a rejection records: the package that arrived, and what it yielded.
    assert info.value.package_sha256 == hashlib.sha256(mutated).hexdigest()
    assert info.value.plaintext is not None
    assert list(out_dir.iterdir()) == [], "plaintext left behind"
    assert pkg.read_bytes() == mutated  # the package itself is evidence: kept as it came


def test_the_package_digest_is_checked_even_when_the_package_opens(
        tmp_path: Path, packages: dict[str, object]) -> None:
    """A package re-sealed to our key with the true plaintext is still not the package
    that was dispatched: refused, although every plaintext digest matches."""
    data, ours = packages["data"], packages["ours"]
    assert isinstance(data, bytes)
    assert isinstance(ours, str)
    src = tmp_path / "same.bin"
    src.write_bytes(data)
    out, _resealed = sealed_to(tmp_path, src, [recipient_of(ours)])
    good = packages["good"]
    assert isinstance(good, bytes)
    with pytest.raises(PackageRejected) as info:
        open_package(out, [ours], tmp_path / "x", expected=digests_of(data),
                     expected_package_sha256=hashlib.sha256(good).hexdigest())
    assert info.value.reason == "package-digest"
    assert info.value.plaintext == digests_of(data)  # it did decrypt, and was still refused
    assert not (tmp_path / "x").exists()
    assert leftovers(tmp_path) == []


def test_reasons_are_the_documented_codes() -> None:
    assert REASONS == ("package-digest", "wrong-recipient", "corrupt", "plaintext-digest")
    assert {r for _, r in MUTATIONS.values()} | {"package-digest"} == set(REASONS)


def test_open_refuses_bad_inputs_without_a_verdict(tmp_path: Path, ours: str) -> None:
    pkg = tmp_path / "p.age"
    pkg.write_bytes(b"whatever")
    d = digests_of(b"")
    with pytest.raises(InvalidInput, match="no identity"):
        open_package(pkg, [], tmp_path / "o", expected_package_sha256=None, expected=d)
    with pytest.raises(InvalidInput, match="not an age X25519 identity") as info:
        open_package(pkg, ["AGE-SECRET-KEY-1BROKEN"], tmp_path / "o",
                     expected_package_sha256=None, expected=d)
    assert "BROKEN" not in str(info.value)  # never echoes a secret key
    with pytest.raises(NotFound):
        open_package(tmp_path / "missing.age", [ours], tmp_path / "o",
                     expected_package_sha256=None, expected=d)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="not a regular file"):
        open_package(fifo, [ours], tmp_path / "o", expected_package_sha256=None, expected=d)
    (tmp_path / "o").write_bytes(b"already here")
    with pytest.raises(InvalidInput, match="refusing to overwrite"):
        open_package(pkg, [ours], tmp_path / "o", expected_package_sha256=None, expected=d)
    assert (tmp_path / "o").read_bytes() == b"already here"


def test_an_interrupted_open_leaves_nothing_and_is_no_verdict(
        tmp_path: Path, evidence: tuple[Path, bytes], ours: str) -> None:
    src, data = evidence
    out, sealed = sealed_to(tmp_path, src, [recipient_of(ours)])

    def interrupt(done: int) -> None:
        if done >= 2 << 20:
            raise KeyboardInterrupt

    dest = tmp_path / "out" / "disk.img"
    dest.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        open_package(out, [ours], dest, expected_package_sha256=sealed.package_sha256,
                     expected=digests_of(data), progress=interrupt)
    assert list(dest.parent.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("seal-hash-")]


def test_a_failing_write_is_not_a_verdict_on_the_package(
        tmp_path: Path, evidence: tuple[Path, bytes], ours: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Our disk filling up is our failure, not the sender's: InvalidInput, never a
    PackageRejected (which would be signed as a rejection)."""
    src, data = evidence
    out, sealed = sealed_to(tmp_path, src, [recipient_of(ours)])
    real = seal_mod._Writer.write
    calls = {"n": 0}

    def full(self: seal_mod._Writer, chunk: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 100:
            self.error = f"cannot write {self.what}: No space left on device"
            raise OSError(28, "No space left on device")
        return real(self, chunk)

    monkeypatch.setattr(seal_mod._Writer, "write", full)
    dest = tmp_path / "out" / "disk.img"
    dest.parent.mkdir()
    with pytest.raises(InvalidInput, match="No space left") as info:
        open_package(out, [ours], dest, expected_package_sha256=sealed.package_sha256,
                     expected=digests_of(data))
    assert not isinstance(info.value, PackageRejected)
    assert list(dest.parent.iterdir()) == []


# ---- interoperability with the stock age tool ------------------------------------------


@pytest.fixture
def age_cli() -> str:
    """The ``age`` binary. Skipped only when it is missing AND this is not CI: in CI
    (CI=true) a missing ``age`` fails loudly, so interop can never be silently skipped."""
    path = shutil.which("age")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the 'age' tool is not installed, and CI=true: interoperability "
                        "with stock age must be tested (apt-get install -y age)")
        pytest.skip("the 'age' tool is not installed (apt-get install -y age)")
    return path


def test_a_sealed_package_opens_with_age_d(tmp_path: Path, evidence: tuple[Path, bytes],
                                           ours: str, age_cli: str) -> None:
    src, data = evidence
    out, _ = sealed_to(tmp_path, src, [recipient_of(ours)])
    keyfile = tmp_path / "org.key.txt"
    keyfile.write_text(f"# public key: {recipient_of(ours)}\n{ours}\n")
    keyfile.chmod(0o600)
    plain = tmp_path / "opened-by-age.bin"
    subprocess.run([age_cli, "-d", "-i", str(keyfile), "-o", str(plain), str(out)],
                   check=True, capture_output=True)
    assert plain.read_bytes() == data


def test_a_file_encrypted_by_age_r_opens_with_open_package(
        tmp_path: Path, evidence: tuple[Path, bytes], ours: str, age_cli: str) -> None:
    src, data = evidence
    pkg = tmp_path / "by-age.age"
    subprocess.run([age_cli, "-r", recipient_of(ours), "-o", str(pkg), str(src)],
                   check=True, capture_output=True)
    opened = open_package(pkg, [ours], tmp_path / "opened.bin",
                          expected_package_sha256=sha256_file(pkg), expected=digests_of(data))
    assert opened.path.read_bytes() == data
    # ... and age's own armour (-a): newer pyrage releases read it, older ones refuse it
    # as corrupt; either way the plaintext is exactly the evidence or nothing is left.
    armoured = tmp_path / "armoured.age"
    subprocess.run([age_cli, "-a", "-r", recipient_of(ours), "-o", str(armoured), str(src)],
                   check=True, capture_output=True)
    outcome: object
    try:
        outcome = open_package(armoured, [ours], tmp_path / "x.bin",
                               expected_package_sha256=None, expected=digests_of(data))
    except PackageRejected as exc:
        outcome = exc
    if isinstance(outcome, PackageRejected):
        assert outcome.reason == "corrupt"
        assert not (tmp_path / "x.bin").exists()
    else:
        assert (tmp_path / "x.bin").read_bytes() == data


def test_age_refuses_what_open_package_refuses(tmp_path: Path, packages: dict[str, object],
                                               age_cli: str) -> None:
    """The reference implementation agrees: a flipped payload byte and a truncation."""
    good, ours = packages["good"], packages["ours"]
    assert isinstance(good, bytes)
    assert isinstance(ours, str)
    keyfile = tmp_path / "k.txt"
    keyfile.write_text(ours + "\n")
    for name in ("payload-byte", "truncated-one-byte", "appended-byte"):
        pkg = tmp_path / f"{name}.age"
        pkg.write_bytes(MUTATIONS[name][0](good, {}))
        done = subprocess.run([age_cli, "-d", "-i", str(keyfile), str(pkg)],
                              capture_output=True, check=False)
        assert done.returncode != 0, name


# ---- memory stays flat -----------------------------------------------------------------


def test_python_allocations_stay_flat(tmp_path: Path, ours: str) -> None:
    """tracemalloc: the Python heap used by a seal and an open of 48 MiB is the small
    fixed set of buffers (hashing ring, file buffers), not the file."""
    size = 48 << 20
    src = tmp_path / "big.bin"
    block = random.Random(1).randbytes(1 << 20)
    with src.open("wb") as fh:
        for _ in range(size >> 20):
            fh.write(block)
    tracemalloc.start()
    try:
        sealed = seal(src, tmp_path / "big.age", [recipient_of(ours)])
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        open_package(tmp_path / "big.age", [ours], tmp_path / "big.out",
                     expected_package_sha256=sealed.package_sha256, expected=sealed.plaintext)
        _, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seal_peak < 16 << 20, seal_peak
    assert open_peak < 16 << 20, open_peak


_RSS_SCRIPT = r"""
import json, os, random, resource, sys, time
from pathlib import Path
from pyrage import x25519
from ledger.seal import open_package, recipient_of, seal

folder, size = Path(sys.argv[1]), int(sys.argv[2])
ours = str(x25519.Identity.generate())
src = folder / "big.bin"
block = random.Random(1).randbytes(4 << 20)
with src.open("wb") as fh:
    for _ in range(size // len(block)):
        fh.write(block)
def rss():
    # VmHWM: this process's peak resident set. (ru_maxrss is no use here: Linux carries
    # the parent's peak over fork and exec, so a child starts at pytest's own peak.)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
t = time.perf_counter()
sealed = seal(src, folder / "big.age", [recipient_of(ours)])
t_seal = time.perf_counter() - t
after_seal = rss()
src.unlink()
t = time.perf_counter()
opened = open_package(folder / "big.age", [ours], folder / "big.out",
                      expected_package_sha256=sealed.package_sha256,
                      expected=sealed.plaintext)
t_open = time.perf_counter() - t
print(json.dumps({"base": base, "after_seal": after_seal, "after_open": rss(),
                  "seal_s": t_seal, "open_s": t_open, "size": opened.digests.size}))
"""


def test_a_1_gib_seal_and_open_grow_peak_rss_by_less_than_64_mib(tmp_path: Path) -> None:
    """In a fresh interpreter (the peak resident set is a lifetime figure): 1 GiB sealed,
    then opened; the peak grows by less than 64 MiB over the process's baseline."""
    size = 1 << 30
    done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path), str(size)],
                          capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print("1 GiB:", figures)
    assert figures["size"] == size
    assert figures["after_seal"] - figures["base"] < 64 << 20, figures
    assert figures["after_open"] - figures["base"] < 64 << 20, figures


def test_a_swapped_stanza_really_is_for_another_key(packages: dict[str, object]) -> None:
    """The 'stanza-for-another-key' mutation keeps a well-formed header: the swapped-in
    stanza's share is a valid 32-byte X25519 point encoding."""
    other = packages["other_key"]
    assert isinstance(other, bytes)
    a, _ = stanza(other)
    share = other[a:other.index(b"\n", a)].split(b" ")[2]
    assert len(base64.b64decode(share + b"=")) == 32


def test_the_seal_benchmark_reports_its_references() -> None:
    """bench/seal.py runs (tiny file) and reports each figure beside its references."""
    from bench import seal as bench_seal

    out = bench_seal.measure(size_mib=4, runs=3)
    for key in ("seal", "open", "pyrage_encrypt_raw", "pyrage_decrypt_raw", "evidence_hash"):
        assert out[key] > 0, key
    if shutil.which("age"):
        assert out["seal_vs_age_encrypt"] > 0
        assert out["open_vs_age_decrypt"] > 0
    assert out["peak_memory"]["seal_growth_mib"] < 64
