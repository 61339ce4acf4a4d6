"""The Fabric binaries (peer, orderer, configtxgen, osnadmin), built once from source.

The Go module proxy serves exactly one usable Fabric version here (see
``/work/shared/design/fabric.md``); its binaries are built with the local Go toolchain
and cached, keyed by that version::

    CACHE/bin/{peer,orderer,configtxgen,osnadmin}
    CACHE/sampleconfig/{core.yaml,orderer.yaml,...}    copied from the module
    CACHE/VERSION                                      the module version, written last

``CACHE`` is ``$CUSTODY_FABRIC_CACHE`` or ``~/.cache/custody-ledger/fabric/<version>``.
A build happens in a temporary directory beside it and is renamed into place only when
complete, so a cache is never half-built; a cache without ``VERSION`` (or with another
version in it) is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ledger.core.errors import InvalidInput, UpstreamError

MODULE = "github.com/hyperledger/fabric"
#: Fabric's main branch of July 2021, just after v2.3.2: the only version the proxy serves
#: that has the v2 lifecycle, channel participation and external builders.
VERSION = "v1.4.0-rc1.0.20210722174351-9815a7a8f0f7"
PROGRAMS = ("peer", "orderer", "configtxgen", "osnadmin")
CACHE_ENV = "CUSTODY_FABRIC_CACHE"
#: Seconds between "still building" progress lines.
PROGRESS_EVERY = 20.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Binaries:
    """A complete cache: where the programs and Fabric's sample configuration are."""

    root: Path
    version: str = VERSION

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def sampleconfig(self) -> Path:
        return self.root / "sampleconfig"

    def program(self, name: str) -> str:
        return str(self.bin / name)


def cache_dir() -> Path:
    """Where the binaries of :data:`VERSION` are (or will be) cached."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "custody-ledger" / "fabric" / VERSION


def cached(root: Path | None = None) -> Binaries | None:
    """The cache at ``root`` if it is complete and of :data:`VERSION`, else None."""
    root = root or cache_dir()
    try:
        version = (root / "VERSION").read_text().strip()
    except OSError:
        return None
    if version != VERSION:
        return None
    complete = all(os.access(root / "bin" / p, os.X_OK) for p in PROGRAMS) and all(
        (root / "sampleconfig" / f).is_file() for f in ("core.yaml", "orderer.yaml"))
    return Binaries(root) if complete else None


def ensure(progress: Progress | None = None) -> Binaries:
    """The cached binaries, building them first when the cache is missing or incomplete.

    Raises InvalidInput (one sentence: what to install) when ``go`` is missing, and
    UpstreamError (naming the build log) when the download or the build fails."""
    root = cache_dir()
    found = cached(root)
    if found:
        return found
    _check_replaceable(root)
    go = shutil.which("go")
    if go is None:
        raise InvalidInput(
            "building the Hyperledger Fabric binaries needs the Go toolchain (go 1.20 or "
            "newer, from https://go.dev/dl/ or your distribution's golang package), and "
            f"'go' is not on PATH; install it, or put prebuilt binaries in {root}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root.parent / f".{root.name}.lock"):
        found = cached(root)  # another process may have built it meanwhile
        return found or _build(go, root, progress or (lambda _m: None))


#: What a cache directory holds; a directory holding anything else is never replaced.
_CACHE_ENTRIES = {"bin", "sampleconfig", "VERSION"}


def _check_replaceable(root: Path) -> None:
    """Refuse to build over a directory that is not (an incomplete) cache of ours."""
    if root.exists() and not (root.is_dir() and {p.name for p in root.iterdir()}
                              <= _CACHE_ENTRIES):
        raise InvalidInput(f"{root} is not a cache of Fabric binaries (it holds other "
                           f"files); empty it or set {CACHE_ENV} to another directory")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(go: str, root: Path, progress: Progress) -> Binaries:
    log = root.parent / f"build-{root.name}.log"
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
    try:
        with log.open("w") as out:
            progress(f"Building the Fabric binaries ({', '.join(PROGRAMS)}) from "
                     f"{MODULE}@{VERSION}: about 70-140 s on 2 cores; log in {log}")
            module = _download(go, work, out, log)
            src = work / "src"
            _copy_module(module, src)
            result = work / "result"
            _go_build(go, src, result / "bin", out, log, progress)
            shutil.copytree(module / "sampleconfig", result / "sampleconfig")
            _make_writable(result)
            for folder in (result, result / "bin", result / "sampleconfig"):
                folder.chmod(0o755)  # public binaries, readable by all
            (result / "VERSION").write_text(VERSION + "\n")
        if root.exists():  # an incomplete or outdated cache: replace it as a whole
            shutil.rmtree(root)
        result.rename(root)
    finally:
        _make_writable(work)
        shutil.rmtree(work, ignore_errors=True)
    found = cached(root)
    if found is None:  # pragma: no cover - the build wrote every file checked above
        raise UpstreamError(f"the Fabric build finished but {root} is incomplete; see {log}")
    progress(f"Fabric binaries cached in {root}")
    return found


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"}


def _download(go: str, work: Path, out: IO[str], log: Path) -> Path:
    """``go mod download -json`` the module; returns its (read-only) directory."""
    proc = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
                          cwd=work, capture_output=True, text=True, check=False,
                          env={**os.environ, "GOFLAGS": "-mod=mod"})
    print(proc.stdout, proc.stderr, sep="\n", file=out, flush=True)
    try:
        info = json.loads(proc.stdout or "{}")
    except ValueError:
        info = {}
    if proc.returncode != 0 or not info.get("Dir"):
        reason = info.get("Error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UpstreamError(f"could not download {MODULE}@{VERSION} through the Go module "
                            f"proxy ({reason}); see {log}")
    return Path(info["Dir"])


def _copy_module(module: Path, dest: Path) -> None:
    """Copy the module without its ``vendor/`` directory, and make the copy writable."""
    def skip_vendor(folder: str, names: list[str]) -> list[str]:
        return ["vendor"] if Path(folder) == module and "vendor" in names else []

    shutil.copytree(module, dest, ignore=skip_vendor)
    _make_writable(dest)


def _make_writable(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o200)


def _go_build(go: str, src: Path, bin_dir: Path, out: IO[str], log: Path,
              progress: Progress) -> None:
    bin_dir.mkdir(parents=True)
    argv = [go, "build", "-o", str(bin_dir) + os.sep, *(f"./cmd/{p}" for p in PROGRAMS)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=src, env=_go_env(), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while True:
            try:
                code = proc.wait(timeout=PROGRESS_EVERY)
                break
            except subprocess.TimeoutExpired:
                progress(f"  still building the Fabric binaries: "
                         f"{time.monotonic() - started:.0f} s")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise UpstreamError(f"building the Fabric binaries failed (go build exited {code}); "
                            f"see {log}")
    progress(f"  built in {time.monotonic() - started:.0f} s")
