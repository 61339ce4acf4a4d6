"""Hostile and careless input (issue #9, "Crashes and hangs"): every case ends at once
with its exit code and ONE line on stderr (never a traceback), and the ledger is left as
it was.

Cases: closed stdin for each command that needs an encrypted key; a read-only home for
each command; a home that is a file; a damaged ``ledger.db`` (garbage, truncated, an
entries page and the ``alembic_version`` page overwritten) × status/audit/register/verify;
a FIFO, character device, socket and directory × register/verify/receive; missing
``api`` extra for serve/join; bad ``--checkpoint`` files.

A read-only home is made with ``chmod -w`` as a normal user; root ignores modes, so as
root it is a read-only bind mount (skipped where mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import evidence, keys
from tests.cli.conftest import CASE, Result, World

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def one_line(res: Result, code: int, phrase: str = "") -> None:
    """Exit ``code``, exactly one line on stderr, no traceback, ``phrase`` in it."""
    assert res.code == code, f"exit {res.code}, expected {code}\nstdout: {res.out}\n" \
        f"stderr: {res.err}"
    assert "Traceback" not in res.err, res.err
    assert len(res.err_lines) == 1, f"expected one line on stderr, got: {res.err!r}"
    assert phrase.lower() in res.err.lower(), f"{phrase!r} not in {res.err!r}"


def db_digest(home: Path) -> str:
    """The ledger file's bytes (a damaged store cannot report its own size)."""
    return hashlib.sha256((home / "ledger.db").read_bytes()).hexdigest()


# ---- closed stdin, no CUSTODY_PASSPHRASE: an encrypted key cannot be unlocked -----------

PASS = b"hostile input passphrase"


def _encrypt_keys(home: Path) -> None:
    for path in [home / "keys" / "log.key", *(home / "keys" / "actors").glob("*.key")]:
        owner = "log" if path.name == "log.key" else path.stem
        seed = keys.load_seed(path, None)
        path.unlink()
        keys.write_key(path, owner, seed, PASS)


@pytest.fixture
def closed_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``<&-`` gives Python: ``sys.stdin`` is None and fd 0 is no terminal."""
    monkeypatch.setattr(sys, "stdin", None)
    real = os.isatty
    monkeypatch.setattr(os, "isatty", lambda fd: False if fd == 0 else real(fd))


KEYED = {
    "register": ["register", "{evidence}", "--case", CASE, "--as", "de-examiner"],
    "transfer": ["transfer", "{art}", "--to", "nfi", "--purpose", "x", "--as",
                 "de-custodian"],
    "access": ["access", "{art}", "--action", "view", "--purpose", "x", "--as",
               "de-custodian"],
    "case-open": ["case", "open", "CASE-X", "--title", "t", "--as", "de-prosecutor"],
    "org-add": ["org", "add", "--name", "Europol", "--jurisdiction", "NL", "--as",
                "bka-admin"],
    "actor-enrol": ["actor", "enrol", "--org", "bka", "--name", "N", "--role", "examiner",
                    "--id", "de-new", "--no-passphrase", "--as", "bka-admin"],
    "legal-basis": ["legal-basis", "add", "--instrument", "mlat", "--reference", "R",
                    "--issuing-state", "NL", "--executing-state", "DE", "--valid-until",
                    "2999-01-01", "--case", CASE, "--as", "de-prosecutor"],
}


def _fill(args: list[str], world: World) -> list[str]:
    return [a.format(evidence=world.evidence, art=world.art) for a in args]


@pytest.mark.parametrize("command", list(KEYED))
def test_closed_stdin_without_passphrase(world: World, closed_stdin: None,
                                         command: str) -> None:
    _encrypt_keys(world.home)
    before = db_digest(world.home)
    res = world.cli(*_fill(KEYED[command], world))
    one_line(res, 3, "is encrypted: set CUSTODY_PASSPHRASE")
    assert db_digest(world.home) == before


def test_closed_stdin_real_process(world: World) -> None:
    """The reproduction itself: ``env -u CUSTODY_PASSPHRASE custody transfer … <&-``."""
    _encrypt_keys(world.home)
    before = world.size()
    env = {k: v for k, v in os.environ.items() if k != "CUSTODY_PASSPHRASE"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(world.home), "transfer", world.art,
         "--to", "nfi", "--purpose", "x", "--as", "de-custodian"],
        env=env, capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.close(0), check=False)
    res = Result(proc.returncode, proc.stdout, proc.stderr)
    one_line(res, 3, "set CUSTODY_PASSPHRASE")
    assert world.size() == before


# ---- a read-only home -------------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only: chmod for a normal user, a read-only bind mount for
    root (which ignores modes). Yields the path to use."""
    if not ROOT:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(stat.S_IMODE(modes[p]) & ~0o222)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(stat.S_IMODE(mode))
        return
    target = folder.with_name(folder.name + "-ro")
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(folder), str(target)],
                             capture_output=True, check=False).returncode == 0 and \
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)],
                       capture_output=True, check=False).returncode == 0
    if not mounted:
        subprocess.run(["umount", str(target)], capture_output=True, check=False)
        pytest.skip("running as root, and a read-only bind mount is not permitted here")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, check=True)


READ_ONLY = {
    # status needs no write: it gives its answer
    "status": (["status", "--json"], 0, ""),
    "history": (["history", "{art}"], 2, "read-only"),
    "verify": (["verify", "{evidence}"], 2, "read-only"),
    "audit": (["audit"], 2, "read-only"),
    "register": (["register", "{evidence}", "--case", CASE, "--id", "NEW", "--as",
                  "de-examiner"], 2, "read-only"),
}


@pytest.mark.parametrize("command", list(READ_ONLY))
def test_read_only_home(world: World, command: str) -> None:
    args, code, phrase = READ_ONLY[command]
    before = world.size()
    digest = db_digest(world.home)
    with read_only(world.home) as home:
        res = world.cli("--home", home, *_fill(args, world))
    if code == 0:
        assert res.code == 0, res.err
        assert res.json["size"] == before
    else:
        one_line(res, code, phrase)
    assert db_digest(world.home) == digest
    assert world.size() == before


def test_init_into_read_only_directory(tmp_path: Path) -> None:
    from tests.cli.conftest import invoke

    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder) as ro:
        res = invoke(["--home", str(ro / "home"), "init", "--origin", "x.example/l",
                      "--org-name", "BKA", "--jurisdiction", "DE", "--no-passphrase"])
    one_line(res, 2, "read-only")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", [["status"], ["audit"], ["history", "art-x"]],
                         ids=["status", "audit", "history"])
def test_home_is_a_file(tmp_path: Path, command: list[str]) -> None:
    from tests.cli.conftest import invoke

    file = tmp_path / "passwd"
    file.write_text("root:x:0:0::/root:/bin/sh\n")
    res = invoke(["--home", str(file), *command])
    one_line(res, 2, "is not a directory")
    assert file.read_text() == "root:x:0:0::/root:/bin/sh\n"


def test_home_is_etc_passwd() -> None:
    from tests.cli.conftest import invoke

    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd here")
    one_line(invoke(["--home", "/etc/passwd", "status"]), 2, "is not a directory")


# ---- a damaged ledger.db ----------------------------------------------------------------


def _overwrite_page(db: Path, table: str) -> None:
    conn = sqlite3.connect(db)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                            (table,)).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with db.open("r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write(b"\xde\xad\xbe\xef" * (size // 4))


def damage(home: Path, kind: str) -> None:
    db = home / "ledger.db"
    if kind == "garbage":
        db.write_bytes(hashlib.sha512(b"garbage").digest() * 800)
    elif kind == "truncated":
        with db.open("r+b") as fh:
            fh.truncate(db.stat().st_size // 3)
    elif kind == "entries-page":
        _overwrite_page(db, "entries")
    elif kind == "alembic-page":
        _overwrite_page(db, "alembic_version")


#: (kind, command) -> exit code. A damaged page the command never reads gives the right
#: answer (status, verify); audit and every write run SQLite's own check and refuse.
DAMAGE = {
    **{(k, c): 1 for k in ("garbage", "truncated")
       for c in ("status", "audit", "register", "verify")},
    ("entries-page", "status"): 0, ("entries-page", "audit"): 1,
    ("entries-page", "register"): 1, ("entries-page", "verify"): 1,
    ("alembic-page", "status"): 0, ("alembic-page", "audit"): 1,
    ("alembic-page", "register"): 1, ("alembic-page", "verify"): 0,
}
DAMAGE_ARGS = {
    "status": ["status"], "audit": ["audit"], "verify": ["verify", "{evidence}"],
    "register": ["register", "{evidence}", "--case", CASE, "--id", "NEW", "--as",
                 "de-examiner"],
}


@pytest.mark.parametrize(("kind", "command"), list(DAMAGE), ids=[f"{k}-{c}" for k, c in DAMAGE])
def test_damaged_database(world: World, kind: str, command: str) -> None:
    damage(world.home, kind)
    before = db_digest(world.home)
    res = world.cli(*_fill(DAMAGE_ARGS[command], world))
    if DAMAGE[kind, command] == 0:
        assert res.code == 0, res.err
        assert "Traceback" not in res.err
    else:
        one_line(res, 1, "is damaged")
    assert db_digest(world.home) == before, "a damaged store was written to"


def test_audit_names_the_integrity_check(world: World) -> None:
    damage(world.home, "alembic-page")
    res = world.cli("audit", "--json")
    assert res.code == 1
    assert res.json["kind"] == "database"
    assert "integrity check" in res.json["detail"]


# ---- FIFOs, character devices, sockets, directories: refused at once -------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path (a UNIX socket path is limited to ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="cust-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def special(kind: str, folder: Path) -> tuple[Path, str, socket.socket | None]:
    if kind == "fifo":
        path = folder / "fifo"
        os.mkfifo(path)
        return path, "fifo", None
    if kind == "char-device":
        return Path(os.devnull if os.path.exists("/dev/zero") is False else "/dev/zero"), \
            "character device", None
    if kind == "socket":
        path = folder / "sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        return path, "socket", sock
    path = folder / "dir"
    path.mkdir()
    return path, "directory", None


SPECIAL_ARGS = {
    "register": ["register", "{file}", "--case", CASE, "--as", "de-examiner"],
    "verify": ["verify", "{file}"],
    "receive": ["receive", "{transfer}", "--file", "{file}", "--as", "nl-custodian"],
}


@pytest.mark.parametrize("command", list(SPECIAL_ARGS))
@pytest.mark.parametrize("kind", ["fifo", "char-device", "socket", "directory"])
def test_special_files_refused(world: World, short_dir: Path, kind: str,
                               command: str) -> None:
    if kind == "socket" and not hasattr(socket, "AF_UNIX"):
        pytest.skip("no UNIX sockets")
    transfer = world.dispatch(world.legal_basis()) if command == "receive" else ""
    path, phrase, sock = special(kind, short_dir)
    try:
        before = world.size()
        args = [a.format(file=path, transfer=transfer) for a in SPECIAL_ARGS[command]]
        res = world.cli(*args)  # a FIFO or /dev/zero would block here forever before
        one_line(res, 2, phrase)
        assert world.size() == before
    finally:
        if sock is not None:
            sock.close()


def test_block_device_accepted_with_its_size(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """A block device is hashed like a file (size from the device, not ``st_size``)."""
    disk = tmp_path / "sdx"
    disk.write_bytes(b"\x00" * 4096 + b"disk")
    real = os.stat

    def fake_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        st = real(path, *args, **kwargs)  # type: ignore[arg-type]
        if os.fspath(path) == os.fspath(disk):  # type: ignore[arg-type]
            fields = list(st)
            fields[0] = stat.S_IFBLK | 0o600
            fields[6] = 0  # a device node's st_size
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(evidence.os, "stat", fake_stat)
    assert evidence.evidence_size(disk) == 4100
    assert evidence.hash_file(disk).size == 4100


# ---- missing extras ---------------------------------------------------------------------


def test_serve_without_api_extra(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    monkeypatch.delitem(sys.modules, "api.server", raising=False)
    one_line(world.cli("serve", "--port", "1"), 2, "pip install 'custody-ledger[api]'")


def test_join_without_api_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli.conftest import invoke

    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.delitem(sys.modules, "ledger.store.remote", raising=False)
    res = invoke(["--home", str(tmp_path / "client"), "join", "--server",
                  "http://127.0.0.1:9", "--id", "nl-custodian", "--no-passphrase"])
    one_line(res, 2, "pip install 'custody-ledger[api]'")
    assert not (tmp_path / "client").exists()


# ---- bad --checkpoint and unreadable files: one sentence, not click's usage block -------


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_bad_checkpoint_file(world: World, kind: str) -> None:
    path = world.root / "nope.checkpoint"
    if kind == "directory":
        path.mkdir()
    before = world.size()
    res = world.cli("audit", "--checkpoint", path)
    one_line(res, 2, "--checkpoint")
    assert "Usage:" not in res.err
    assert world.size() == before


def test_unreadable_evidence(world: World) -> None:
    if ROOT:
        pytest.skip("root can read anything")
    path = world.evidence_copy("secret.img", b"x" * 100)
    path.chmod(0)
    before = world.size()
    one_line(world.cli("register", path, "--case", CASE, "--as", "de-examiner"), 2,
             "permission denied")
    assert world.size() == before
