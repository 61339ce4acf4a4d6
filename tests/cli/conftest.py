"""Fixtures for the ``custody`` CLI tests.

Every command runs IN-PROCESS through :func:`cli.main.run` (the entry point that maps
errors to exit codes), with ``sys.stdout``/``sys.stderr`` redirected: the Rich consoles
resolve the streams at write time, so their output is captured too.

``cli`` is a helper bound to a fresh, empty home under ``tmp_path``. ``world`` is the
standard two-country world built through the CLI (see :func:`_build_world`): it is built
once per session and copied for each test, so tests stay fast and independent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cli.main import run as cli_run

CASE = "CASE-2026-0042"
ORIGIN = "test.custody.example/ledger"


@dataclass
class Result:
    """One command's outcome: exit code, stdout, stderr, and stdout parsed as JSON."""

    code: int
    out: str
    err: str
    json: Any = None
    lines: list[Any] = field(default_factory=list)

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def _parse(out: str) -> tuple[Any, list[Any]]:
    lines = []
    for line in out.splitlines():
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except ValueError:
            return None, []
    return (lines[-1] if lines else None), lines


def invoke(argv: list[str]) -> Result:
    """Run ``custody ARGV`` in-process and capture what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_run(argv)
    parsed, lines = _parse(out.getvalue())
    return Result(code, out.getvalue(), err.getvalue(), parsed, lines)


class Cli:
    """``cli("register", path, "--case", ...)`` runs ``custody --home HOME register ...``."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, *args: Any, expect: int | None = None) -> Result:
        res = invoke(["--home", str(self.home), *(str(a) for a in args)])
        if expect is not None:
            assert res.code == expect, (
                f"custody {' '.join(map(str, args))} exited {res.code}, expected {expect}\n"
                f"stdout: {res.out}\nstderr: {res.err}")
        return res

    run = __call__

    def size(self) -> int:
        return log_size(self.home)


def log_size(home: Path) -> int:
    """The ledger size, via ``custody status --json``."""
    res = invoke(["--home", str(home), "status", "--json"])
    assert res.code == 0, res.err
    return int(res.json["size"])


def assert_error(res: Result, code: int, phrase: str) -> None:
    """A failed command: this exit code and ONE line on stderr containing ``phrase``."""
    assert res.code == code, f"exit {res.code}, expected {code}\nstdout: {res.out}\n" \
        f"stderr: {res.err}"
    assert len(res.err_lines) == 1, f"expected one line on stderr, got: {res.err!r}"
    assert res.err_lines[0].startswith("custody: "), res.err
    assert phrase.lower() in res.err.lower(), f"{phrase!r} not in {res.err!r}"


@pytest.fixture(scope="session", autouse=True)
def _build_the_click_command_once() -> Iterator[None]:
    """Typer rebuilds the click command from the signatures on EVERY call of ``app()``
    (~50 ms); build it once per session. The command runs exactly as before."""
    import typer.main

    from cli.main import app

    original = typer.main.get_command
    built = original(app)

    def get_command(typer_instance: Any) -> Any:
        return built if typer_instance is app else original(typer_instance)

    typer.main.get_command = get_command  # type: ignore[assignment]
    yield
    typer.main.get_command = original


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No passphrase, no server, and a default home that is NOT the user's real one."""
    for name in ("CUSTODY_PASSPHRASE", "CUSTODY_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUSTODY_HOME", str(tmp_path / "default-home-unused"))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI bound to a fresh, not yet initialised home."""
    return Cli(tmp_path / "home")


# ---- the standard world ---------------------------------------------------------------


@dataclass
class World:
    """BKA (DE): bka-admin, de-examiner, de-custodian, de-prosecutor; NFI (NL):
    nl-custodian; OFAC (FR): fr-analyst (examiner). Case CASE with NFI as member; one small
    registered file ``evidence`` (artefact ``art``)."""

    root: Path
    cli: Cli
    art: str
    evidence: Path
    data: bytes

    @property
    def home(self) -> Path:
        return self.cli.home

    def size(self) -> int:
        return log_size(self.home)

    def evidence_copy(self, name: str, data: bytes) -> Path:
        path = self.root / "evidence" / name
        path.write_bytes(data)
        return path

    def tampered(self) -> Path:
        data = bytearray(self.data)
        data[len(data) // 2] ^= 0x01
        return self.evidence_copy("tampered.bin", bytes(data))

    def legal_basis(self, *extra: str, issuing: str = "NL", executing: str = "DE",
                    until: str = "2999-12-31", instrument: str = "mlat",
                    as_: str = "de-prosecutor") -> str:
        res = self.cli("legal-basis", "add", "--instrument", instrument, "--reference",
                       "MLA-2026-0042", "--issuing-state", issuing, "--executing-state",
                       executing, "--valid-until", until, "--case", CASE, *extra,
                       "--as", as_, "--json", expect=0)
        return str(res.json["legal_basis"])

    def dispatch(self, lb: str | None = None, to: str = "nfi",
                 as_: str = "de-custodian") -> str:
        args = ["transfer", self.art, "--to", to, "--purpose", "analysis", "--as", as_,
                "--json"]
        if lb:
            args += ["--legal-basis", lb]
        return str(self.cli(*args, expect=0).json["transfer"])


ACTORS = [
    ("bka", "Eva Examiner", "examiner", "de-examiner"),
    ("bka", "Carl Custodian", "custodian", "de-custodian"),
    ("bka", "Petra Prosecutor", "prosecutor", "de-prosecutor"),
    ("nfi", "Nina Custodian", "custodian,examiner", "nl-custodian"),
    ("ofac", "Felix Analyst", "examiner", "fr-analyst"),
]


def _build_world(root: Path) -> tuple[str, Path, bytes]:
    """The sequence of ``custody demo``, through the real commands."""
    c = Cli(root / "home")
    c("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "DE",
      "--admin-name", "Admin", "--no-passphrase", expect=0)
    c("org", "add", "--name", "NFI", "--jurisdiction", "NL", "--as", "bka-admin", expect=0)
    c("org", "add", "--name", "OFAC", "--jurisdiction", "FR", "--as", "bka-admin", expect=0)
    for org, name, role, aid in ACTORS:
        c("actor", "enrol", "--org", org, "--name", name, "--role", role, "--id", aid,
          "--no-passphrase", "--as", "bka-admin", expect=0)
    c("case", "open", CASE, "--title", "Ransomware", "--as", "de-prosecutor", expect=0)
    c("case", "add-member", CASE, "--org", "nfi", "--as", "de-prosecutor", expect=0)
    (root / "evidence").mkdir()
    data = hashlib.sha512(b"evidence").digest() * 300 + b"end of image"
    evidence = root / "evidence" / "disk.img"
    evidence.write_bytes(data)
    res = c("register", evidence, "--case", CASE, "--type", "disk-image", "--exhibit", "DE-01",
            "--as", "de-examiner", "--json", expect=0)
    return res.json["artefact_id"], evidence, data


@pytest.fixture(scope="session")
def _world_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    root = tmp_path_factory.mktemp("world-template")
    saved = {k: os.environ.pop(k, None) for k in ("CUSTODY_PASSPHRASE", "CUSTODY_SERVER")}
    try:
        art, _evidence, data = _build_world(root)
    finally:
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v
    return root, art, data


@pytest.fixture
def world(_world_template: tuple[Path, str, bytes], tmp_path: Path) -> World:
    template, art, data = _world_template
    root = tmp_path / "world"
    shutil.copytree(template, root)
    return World(root, Cli(root / "home"), art, root / "evidence" / "disk.img", data)


@pytest.fixture
def no_tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make sure nothing can prompt: stdin is not a terminal."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    real = os.isatty
    monkeypatch.setattr(os, "isatty", lambda fd: False if fd == 0 else real(fd))
    return
