"""Backup and restore (issue #14 item 4): ``custody backup`` / ``custody restore``.

Real SQLite files and a real PostgreSQL server (``CUSTODY_TEST_PG_URL``; every test gets
fresh databases on it). The commands run in-process through :func:`cli.main.run` (the
entry point that maps errors to exit codes), except where a process must be killed.

* A backup taken while ANOTHER process appends continuously restores to a ledger that
  passes the audit and holds exactly the entries up to the checkpoint it records, and
  every entry acknowledged before the backup started.
* A damaged archive (one byte flipped, truncated), a hand-edited copy (a state row or a
  leaf changed, SHA-256 recomputed as a forger would), another ledger's backup: refused
  (exit 1), the ledger in place byte-identical.
* An older backup than the checkpoint this home kept: refused (exit 3) naming both sizes
  and the acknowledged entries lost; with --accept-older it is restored and the client's
  next command is refused by its checkpoint trust (exit 1, rollback).
* A ledger in place that the backup does not extend (newer, or damaged): refused without
  --force (exit 3); with it, replaced and kept aside.
* A ledger open in another process (a running server): refused (exit 5), untouched.
* A restore killed at random moments leaves a ledger that passes its audit: the old one
  or the restored one, never a mix (SQLite).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.main import run as cli_run
from ledger.backup import MANIFEST, _digest
from ledger.home import Home, now_ms
from ledger.store.sql import SqlStore

ORIGIN = "backup.example/custody"
OTHER = "other.example/custody"
CASE = "CASE-1"
ART = "ART-1"
#: The size of the ledger :func:`make_home` makes.
BASE = 5

pytestmark = pytest.mark.timeout(300)


# ---- running the CLI ------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out.strip().splitlines()[-1])

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def invoke(home: Path, *args: Any, expect: int | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_run(["--home", str(home), *(str(a) for a in args)])
    res = Result(code, out.getvalue(), err.getvalue())
    if expect is not None:
        assert code == expect, f"custody {' '.join(map(str, args))} exited {code}, " \
            f"expected {expect}\nstdout: {res.out}\nstderr: {res.err}"
    return res


def refused(res: Result, code: int, *phrases: str) -> None:
    """Exit ``code`` and ONE sentence on stderr that names every phrase; no traceback."""
    assert res.code == code, f"exit {res.code}, expected {code}\n{res.out}\n{res.err}"
    assert len(res.err_lines) == 1, res.err
    assert res.err_lines[0].startswith("custody: "), res.err
    for phrase in phrases:
        assert phrase.lower() in res.err.lower(), f"{phrase!r} not in {res.err!r}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CUSTODY_PASSPHRASE", "CUSTODY_SERVER", "CUSTODY_NETWORK", "CUSTODY_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUSTODY_HOME", str(tmp_path / "default-home-unused"))


# ---- ledgers ----------------------------------------------------------------------------


def make_home(home: Path, origin: str = ORIGIN, database: str | None = None) -> Path:
    """A ledger with an organisation, a case and one registered artefact (size 5)."""
    extra = ["--database", database] if database else []
    invoke(home, "init", "--origin", origin, "--org-name", "BKA", "--jurisdiction", "DE",
           "--no-passphrase", "--admin-roles", "admin,examiner,prosecutor,custodian",
           *extra, expect=0)
    invoke(home, "case", "open", CASE, "--title", "Backup test", expect=0)
    evidence = home.parent / f"{home.name}-evidence.bin"
    evidence.write_bytes(hashlib.sha512(origin.encode()).digest() * 64)
    invoke(home, "register", evidence, "--case", CASE, "--type", "disk-image",
           "--exhibit", "E-1", "--id", ART, expect=0)
    grow(home, 1)
    assert len(leaf_hashes(home)) == BASE
    return home


def grow(home: Path, n: int) -> None:
    """``n`` more entries through the CLI (so the home keeps each new checkpoint)."""
    for _ in range(n):
        invoke(home, "access", ART, "--action", "view", "--purpose", "review", expect=0)


def bulk(home: Path, n: int, batch: int = 500) -> None:
    """``n`` more entries by group commits through the library (fast; the home's kept
    checkpoint does not move)."""
    from ledger.core import events as ev
    from ledger.home import custody, open_store

    h = Home(home).load()
    store = open_store(h)
    try:
        svc = custody(h, store)
        actor = h.actor("bka-admin")
        payload = {"artefact": ART, "action": "view", "purpose": "bulk", "outcome": "success"}
        done = 0
        while done < n:
            k = min(batch, n - done)
            for r in store.append_many([svc.event(ev.ACCESS, actor, payload)
                                        for _ in range(k)]):
                assert not isinstance(r, Exception), r
            done += k
    finally:
        store.close()


def url_of(home: Path) -> str:
    return Home(home).load().database_url


def open_reader(home_or_url: Path | str) -> SqlStore:
    url = home_or_url if isinstance(home_or_url, str) else url_of(home_or_url)
    return SqlStore.open(url, signer=None, clock=now_ms)


def leaf_hashes(home_or_url: Path | str) -> list[bytes]:
    store = open_reader(home_or_url)
    try:
        return [e.leaf_hash for e in store.entries()]
    finally:
        store.close()


def fingerprint(home: Path) -> str:
    """What the ledger in place IS: its file's bytes (SQLite), or its rows (PostgreSQL)."""
    url = url_of(home)
    if url.startswith("sqlite"):
        digest = hashlib.sha256()
        for suffix in ("", "-wal"):
            path = home / f"ledger.db{suffix}"
            digest.update(path.read_bytes() if path.exists() else b"-")
        return digest.hexdigest()
    store = open_reader(url)
    try:
        rows = [e.leaf_hash.hex() for e in store.entries()]
        rows += [note for _s, note in store.checkpoints()]
        rows += [f"{k}={v}" for k, v in store.state_items("")]
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()
    finally:
        store.close()


def kept(home: Path) -> bytes:
    return (home / "checkpoints" / "latest").read_bytes()


def copy_home(src: Path, dst: Path, database: str | None = None) -> Path:
    """Another home of the same ledger (config, keys, kept checkpoint) with NO ledger:
    the machine that lost its database, or a new PostgreSQL database."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("ledger.db*", ".custody-*"))
    if database is not None:
        config = json.loads((dst / "config.json").read_text())
        config["database"] = database
        (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture
def ledger(backend: str, tmp_path: Path, new_db_url: Any) -> Path:
    """A home with a small ledger on ``backend``."""
    return make_home(tmp_path / "home", database=None if backend == "sqlite" else new_db_url())


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Path:
    """A home with a small SQLite ledger (for what only SQLite has: its file)."""
    return make_home(tmp_path / "home")


@pytest.fixture
def spare_db(backend: str, new_db_url: Any) -> Any:
    """``spare_db()``: a database URL for a second home (None on SQLite: in the home)."""
    return (lambda: None) if backend == "sqlite" else new_db_url


# ---- a writer in another process ------------------------------------------------------

APPENDER = r"""
import sys, time
from ledger.core import events as ev
from ledger.home import Home, custody, open_store
from pathlib import Path

home = Home(Path(sys.argv[1])).load()
store = open_store(home)
svc = custody(home, store)
actor = home.actor("bka-admin")
payload = {"artefact": "ART-1", "action": "view", "purpose": "online", "outcome": "success"}
n = 0
while True:
    n += 1
    batch = [svc.event(ev.ACCESS, actor, payload) for _ in range(1 if n % 3 else 8)]
    results = store.append_many(batch)
    at = time.monotonic()
    for r in results:
        assert not isinstance(r, Exception), r
        sys.stdout.write(f"{r.index} {at!r}\n")
    sys.stdout.flush()
"""


class Appender:
    """A process appending to the home's ledger until stopped; every acknowledged index
    comes with the (system-wide monotonic) time its commit returned."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(home)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buffer = b""
        self.acks: list[tuple[int, float]] = []

    def _take(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            index, at = line.split()
            self.acks.append((int(index), float(at)))

    def wait_for(self, count: int, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while len(self.acks) < count:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            assert time.monotonic() < deadline, "the appender acknowledged too little"
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                self._take(os.read(self.proc.stdout.fileno(), 65536))

    def stop(self) -> list[tuple[int, float]]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        self._take(out)
        assert self.proc.returncode == -signal.SIGTERM, err.decode()
        return self.acks


# ---- tests ------------------------------------------------------------------------------


def test_a_backup_taken_while_another_process_appends_restores_exactly_its_checkpoint(
        backend: str, ledger: Path, spare_db: Any, tmp_path: Path) -> None:
    appender = Appender(ledger)
    taken: list[tuple[float, float, Path, dict[str, Any]]] = []
    try:
        for n in range(3):
            appender.wait_for(15 * (n + 1))
            out = tmp_path / f"online-{n}.tar"
            began = time.monotonic()
            res = invoke(ledger, "backup", "--out", out, "--json", expect=0)
            taken.append((began, time.monotonic(), out, res.json))
    finally:
        acks = appender.stop()
    live = leaf_hashes(ledger)
    assert [i for i, _ in sorted(acks)] == list(range(BASE, BASE + len(acks)))
    assert len(live) >= BASE + len(acks)  # (the last lines may have been cut by the kill)
    # Writes went on while the backups were taken: acknowledgements after the first began.
    assert any(at > taken[0][0] for _i, at in acks)
    for n, (began, ended, out, summary) in enumerate(taken):
        size = summary["tree_size"]
        # Every entry acknowledged before the backup began is in it (its commit
        # returned before); nothing committed after it ended can be.
        before = [i for i, at in acks if at < began]
        assert max(before) < size <= len(live), (size, max(before), len(live))
        assert ended > began
        with tarfile.open(out) as tar:
            manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
        assert manifest["tree_size"] == size
        assert manifest["checkpoint"] == summary["checkpoint"]
        assert manifest["log_key"] == Home(ledger).load().pinned_log_key()
        # Restore into a home of the same ledger that lost its database.
        target = copy_home(ledger, tmp_path / f"restored-{n}", spare_db())
        res = invoke(target, "restore", out, "--json", expect=0)
        assert res.json["restored"]
        assert res.json["tree_size"] == size
        assert res.json["entries_checked"] == size
        assert res.json["previous"] is None
        assert leaf_hashes(target) == live[:size]  # exactly the entries up to the checkpoint
        assert invoke(target, "audit", "--json", expect=0).json["tree_size"] == size
        assert kept(target).decode() == summary["checkpoint"]  # the home now keeps it
        invoke(target, "access", ART, "--action", "view", "--purpose", "after", expect=0)


def test_backup_writes_atomically_and_never_over_a_file_without_force(
        ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar"
    first = invoke(ledger, "backup", "--out", out, "--json", expect=0).json
    assert first["bytes"] == out.stat().st_size
    assert first["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.stat().st_mode & 0o777 == 0o600
    before = out.read_bytes()
    grow(ledger, 1)
    refused(invoke(ledger, "backup", "--out", out), 3, "already exists", "--force")
    assert out.read_bytes() == before
    again = invoke(ledger, "backup", "--out", out, "--force", "--json", expect=0).json
    assert again["tree_size"] == first["tree_size"] + 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    text = invoke(ledger, "backup", "--out", tmp_path / "c.tar", expect=0).out
    assert "tree size 6" in text
    assert "not in it: keys, config.json, evidence" in text


# -- damaged and forged archives ----------------------------------------------------------


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.mark.parametrize("where", ["payload", "manifest", "payload-header", "truncated"])
def test_a_damaged_archive_is_refused_and_the_ledger_untouched(
        ledger: Path, tmp_path: Path, where: str) -> None:
    out = tmp_path / "b.tar"
    invoke(ledger, "backup", "--out", out, expect=0)
    members = _members(out)
    payload = members[next(name for name in members if name != MANIFEST)]
    data = bytearray(out.read_bytes())
    rng = random.Random(where)
    if where == "truncated":
        data = data[:payload.offset_data + payload.size // 2]
    else:
        if where == "payload":
            pos = payload.offset_data + rng.randrange(payload.size)
        elif where == "manifest":
            m = members[MANIFEST]
            pos = m.offset_data + rng.randrange(m.size)
        else:
            pos = payload.offset + rng.randrange(148)  # name, mode, ids, size, mtime
        data[pos] ^= 0x01 << rng.randrange(8)
    out.write_bytes(bytes(data))
    before, kept_before = fingerprint(ledger), kept(ledger)
    res = invoke(ledger, "restore", out)
    refused(res, 1, "damaged")
    assert fingerprint(ledger) == before
    assert kept(ledger) == kept_before
    assert not list(ledger.glob("ledger.db.before-restore-*"))
    assert not list(ledger.glob(".custody-restore-*"))


def test_a_file_that_is_no_backup_is_invalid_input(sqlite_ledger: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-backup.tar"
    bogus.write_bytes(b"hello" * 300)
    refused(invoke(sqlite_ledger, "restore", bogus), 2, "not a custody backup")
    refused(invoke(sqlite_ledger, "restore", tmp_path / "missing.tar"), 4,
            "no such backup file")


def _repack(archive: Path, dest: Path, payload_name: str, payload: bytes,
            **manifest_changes: Any) -> Path:
    """Rebuild ``archive`` with another payload and a manifest whose SHA-256, size and
    own digest match it (what a forger would do)."""
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    manifest["payload"].update(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    manifest.update(manifest_changes)
    manifest.pop("digest")
    manifest["digest"] = _digest(manifest)  # the manifest's own digest, recomputed too
    body = json.dumps(manifest).encode()
    with tarfile.open(dest, "w") as tar:
        for name, data in ((MANIFEST, body), (payload_name, payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def _payload(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read()  # type: ignore[union-attr]


def _edit_sqlite(db: Path, what: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                    ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        _edit(lambda sql, *p: conn.execute(sql, p), what)
    finally:
        conn.close()


def _edit(run: Any, what: str) -> None:
    if what == "state-row":
        run("UPDATE state SET value = replace(value, 'bka', 'nfi') WHERE key = ?",
            "art/" + ART)
    else:  # one byte of a leaf in the middle of the log (the case's title)
        run("UPDATE entries SET leaf = replace(leaf, CAST('Backup test' AS BLOB), "
            "CAST('Backup tesT' AS BLOB)) WHERE idx = 2")


@pytest.mark.parametrize("what", ["state-row", "leaf"])
def test_a_hand_edited_backup_fails_its_audit_and_is_refused(
        sqlite_ledger: Path, tmp_path: Path, what: str) -> None:
    ledger = sqlite_ledger
    out = tmp_path / "b.tar"
    invoke(ledger, "backup", "--out", out, expect=0)
    db = tmp_path / "edited.db"
    db.write_bytes(_payload(out, "ledger.db"))
    _edit_sqlite(db, what)
    forged = _repack(out, tmp_path / "forged.tar", "ledger.db", db.read_bytes())
    before, kept_before = fingerprint(ledger), kept(ledger)
    refused(invoke(ledger, "restore", forged), 1, "fails its audit",
            "state" if what == "state-row" else "index 2")
    refused(invoke(ledger, "restore", forged, "--force", "--accept-older"), 1,
            "fails its audit")
    assert fingerprint(ledger) == before
    assert kept(ledger) == kept_before
    assert not list(ledger.glob("ledger.db.before-restore-*"))


@pytest.mark.postgres
def test_a_hand_edited_postgresql_backup_fails_its_audit(
        pg_databases: Any, tmp_path: Path) -> None:
    from ledger.backup import _engine, _libpq, _pg_tool, _server_major

    made = [pg_databases.create() for _ in range(2)]
    try:
        home = make_home(tmp_path / "home", database=made[0])
        out = tmp_path / "b.tar"
        invoke(home, "backup", "--out", out, expect=0)
        dump = tmp_path / "b.pgdump"
        dump.write_bytes(_payload(out, "ledger.pgdump"))
        uri, env = _libpq(made[1])
        engine = _engine(made[1])
        with engine.connect() as conn:
            major = _server_major(conn)
        subprocess.run([_pg_tool("pg_restore", major), "--no-owner", f"--dbname={uri}",
                        str(dump)], env=env, check=True)
        with engine.connect() as conn:  # (autocommit)
            _edit(lambda sql, *p: conn.exec_driver_sql(sql.replace("?", "%s"), p),
                  "state-row")
        engine.dispose()
        edited = tmp_path / "edited.pgdump"
        subprocess.run([_pg_tool("pg_dump", major), "--format=custom", "--no-owner",
                        f"--file={edited}", f"--dbname={uri}"], env=env, check=True)
        forged = _repack(out, tmp_path / "forged.tar", "ledger.pgdump", edited.read_bytes())
        before, kept_before = fingerprint(home), kept(home)
        refused(invoke(home, "restore", forged, "--force"), 1, "fails its audit", "state")
        assert fingerprint(home) == before
        assert kept(home) == kept_before
    finally:
        for url in made:
            pg_databases.drop(url)


def test_another_ledgers_backup_is_refused(ledger: Path, spare_db: Any,
                                           tmp_path: Path) -> None:
    other = make_home(tmp_path / "other", origin=OTHER, database=spare_db())
    out = tmp_path / "other.tar"
    invoke(other, "backup", "--out", out, expect=0)
    before, kept_before = fingerprint(ledger), kept(ledger)
    refused(invoke(ledger, "restore", out, "--force", "--accept-older"), 1,
            "another ledger's backup")
    # A forged manifest that names this home's key: the copy's checkpoint does not verify.
    name = "ledger.db" if url_of(ledger).startswith("sqlite") else "ledger.pgdump"
    mine = Home(ledger).load()
    forged = _repack(out, tmp_path / "forged.tar", name, _payload(out, name),
                     log_key=mine.pinned_log_key(), origin=ORIGIN)
    refused(invoke(ledger, "restore", forged, "--force", "--accept-older"), 1,
            "does not verify with the log key pinned")
    assert fingerprint(ledger) == before
    assert kept(ledger) == kept_before


# -- older backups, and ledgers in place ------------------------------------------------


def test_an_older_backup_is_refused_and_with_accept_older_the_client_detects_it(
        ledger: Path, spare_db: Any, tmp_path: Path) -> None:
    out = tmp_path / "old.tar"
    invoke(ledger, "backup", "--out", out, expect=0)  # size BASE = 5
    grow(ledger, 3)  # acknowledged, and kept by this home: size 8
    # The machine loses its database; the home (config, keys, kept checkpoint) survives.
    target = copy_home(ledger, tmp_path / "after-loss", spare_db())
    kept_before = kept(target)
    res = invoke(target, "restore", out)
    refused(res, 3, "tree size 5", "size 8", "lose 3 acknowledged entries", "--accept-older")
    assert kept(target) == kept_before
    res = invoke(target, "restore", out, "--accept-older", expect=0)
    assert "OLDER than the checkpoint this home kept (size 8)" in res.err
    assert "3 acknowledged entries are missing" in res.err
    assert "will refuse this ledger as a rollback" in res.err
    assert kept(target) == kept_before  # the newer checkpoint is NOT given up
    assert len(leaf_hashes(target)) == 5
    # The client's next commands are refused by its checkpoint trust (exit 1, rollback).
    size_before = len(leaf_hashes(target))
    refused(invoke(target, "access", ART, "--action", "view", "--purpose", "x"), 1,
            "older than the one this client kept")
    refused(invoke(target, "log", "checkpoint"), 1, "size 5", "size 8")
    assert invoke(target, "audit").code == 1
    assert len(leaf_hashes(target)) == size_before
    assert kept(target) == kept_before
    # JSON says the same.
    again = copy_home(ledger, tmp_path / "after-loss-2", spare_db())
    summary = invoke(again, "restore", out, "--accept-older", "--json", expect=0).json
    assert summary["older"] is True
    assert summary["lost_entries"] == 3
    assert summary["kept_size"] == 8
    assert summary["tree_size"] == 5


def test_a_ledger_in_place_that_the_backup_does_not_extend_needs_force(
        backend: str, ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar"
    invoke(ledger, "backup", "--out", out, expect=0)  # size 5
    bulk(ledger, 4)  # the ledger in place grows to 9; this home's kept checkpoint stays at 5
    before = fingerprint(ledger)
    refused(invoke(ledger, "restore", out), 3, "9 entries", "backup's 5", "--force")
    assert fingerprint(ledger) == before
    # The same size or a prefix is replaced without --force: restoring the same backup
    # after a restore is allowed (the ledger in place equals it).
    res = invoke(ledger, "restore", out, "--force", "--json", expect=0).json
    assert res["restored"]
    assert res["current_size"] == 9
    assert res["lost_entries"] == 4
    assert res["previous"] is not None
    assert any("had 9 entries" in w for w in res["warnings"])
    assert len(leaf_hashes(ledger)) == 5
    invoke(ledger, "restore", out, expect=0)
    invoke(ledger, "audit", expect=0)
    if backend == "sqlite":  # the replaced ledgers are kept beside it, whole
        aside = sorted(ledger.glob("ledger.db.before-restore-*"))
        assert len(aside) == 2
        assert sorted(len(leaf_hashes(f"sqlite:///{p}")) for p in aside) == [5, 9]
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(url_of(ledger).replace("postgresql://",
                                                         "postgresql+psycopg://"),
                                  poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            schema = res["previous"]
            count = f'SELECT count(*) FROM "{schema}".entries'  # noqa: S608 - our own name
            assert conn.exec_driver_sql(count).scalar_one() == 9
        engine.dispose()


def test_a_damaged_ledger_in_place_is_replaced_only_with_force(sqlite_ledger: Path,
                                                               tmp_path: Path) -> None:
    ledger = sqlite_ledger
    out = tmp_path / "b.tar"
    invoke(ledger, "backup", "--out", out, expect=0)
    db = ledger / "ledger.db"
    data = bytearray(db.read_bytes())
    for pos in range(4096, len(data), 997):  # scribble over every page but the header's
        data[pos] ^= 0xFF
    db.write_bytes(bytes(data))
    before = fingerprint(ledger)
    refused(invoke(ledger, "restore", out), 3, "--force")
    assert fingerprint(ledger) == before
    res = invoke(ledger, "restore", out, "--force", "--json", expect=0).json
    assert Path(res["previous"]).read_bytes() == bytes(data)  # kept aside as it was
    invoke(ledger, "audit", expect=0)


def test_a_ledger_open_in_another_process_is_not_replaced(
        backend: str, ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar"
    invoke(ledger, "backup", "--out", out, expect=0)
    grow(ledger, 1)
    invoke(ledger, "backup", "--out", tmp_path / "new.tar", expect=0)
    other = open_reader(ledger)  # a running server holds connections
    try:
        other.size()
        before = fingerprint(ledger)
        refused(invoke(ledger, "restore", tmp_path / "new.tar"), 5, "in use by another process"
                if backend == "sqlite" else "other open session")
        assert fingerprint(ledger) == before
    finally:
        other.close()
    invoke(ledger, "restore", tmp_path / "new.tar", expect=0)


def test_check_verifies_without_replacing(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar"
    invoke(ledger, "backup", "--out", out, expect=0)
    before = fingerprint(ledger)
    res = invoke(ledger, "restore", out, "--check", "--json", expect=0).json
    assert res["restored"] is False
    assert res["entries_checked"] == 5
    assert fingerprint(ledger) == before


@pytest.mark.postgres
def test_postgresql_restore_into_a_database_that_does_not_exist_yet(
        pg_databases: Any, tmp_path: Path) -> None:
    import sqlalchemy as sa

    source = pg_databases.create()
    missing = sa.make_url(source).set(database="custody_t_new_" + os.urandom(6).hex()) \
        .render_as_string(hide_password=False)
    try:
        home = make_home(tmp_path / "home", database=source)
        out = tmp_path / "b.tar"
        invoke(home, "backup", "--out", out, expect=0)
        target = copy_home(home, tmp_path / "new-server", missing)
        invoke(target, "restore", out, expect=0)
        assert leaf_hashes(target) == leaf_hashes(home)
        invoke(target, "audit", expect=0)
    finally:
        pg_databases.drop(source)
        pg_databases.drop(missing)


# -- a restore killed at random moments ----------------------------------------------------


def test_a_restore_killed_at_any_moment_leaves_a_ledger_that_audits(tmp_path: Path) -> None:
    """SIGKILL at spread-out moments of ``custody restore --force`` of a backup (size
    605) over a newer ledger (size 905): afterwards ``ledger.db`` is either the old ledger
    or the restored one, each passing the full audit and taking the next append; never a
    mix, never missing. A later restore cleans up what the killed one left."""
    from ledger.store.audit_sql import audit_store

    template = make_home(tmp_path / "template")
    bulk(template, 600)
    out = tmp_path / "b.tar"
    invoke(template, "backup", "--out", out, expect=0)
    bulk(template, 300)
    old = leaf_hashes(template)
    assert len(old) == BASE + 900
    argv = [sys.executable, "-c", "from cli.main import entry; entry()"]

    def restore_in(home: Path, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*argv, "--home", str(home), "restore", str(out), "--force",
                                 *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    full = tmp_path / "full"
    shutil.copytree(template, full)
    began = time.monotonic()
    assert restore_in(full).wait(timeout=120) == 0
    duration = time.monotonic() - began
    outcomes = []
    rng = random.Random(20_261_130)
    trials = 7
    for n in range(trials):
        home = tmp_path / f"trial-{n}"
        shutil.copytree(template, home)
        proc = restore_in(home)
        # From after the interpreter's start-up to just past the end of a whole run.
        time.sleep(duration * (0.3 + 0.75 * (n + rng.random()) / trials))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        store = open_reader(home)
        try:
            report = audit_store(store, log_verifier_key=Home(home).load().pinned_log_key(),
                                 workers=0)
        finally:
            store.close()
        assert report.ok, (n, report)
        hashes = leaf_hashes(home)
        assert hashes in (old, old[:BASE + 600]), (n, len(hashes))
        outcomes.append(len(hashes))
        invoke(home, "access", ART, "--action", "view", "--purpose", "after", expect=0)
        # A later restore cleans up what the killed one left behind and succeeds (the
        # append above moved the kept checkpoint past the backup: --accept-older).
        assert restore_in(home, "--accept-older").wait(timeout=120) == 0
        assert not list(home.glob(".custody-restore-*"))
        assert len(leaf_hashes(home)) == BASE + 600
    assert len(old) in outcomes, outcomes  # some kills landed before the swap
