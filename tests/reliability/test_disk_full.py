"""Disk full (issue #14, part 2): appends and registrations when the ledger's file system
fills up.

Expected of every write refused for lack of space:

* the CLI: ONE sentence on stderr (``custody: …``) that says the disk is full, and exit
  code 5 (documented: "ledger backend busy or failed", i.e. retry later) — never a
  traceback, never exit 2 ("invalid input": the user's input was fine);
* the API: ``503`` ``application/problem+json`` with ``Retry-After`` — never 500/502;
* nothing half-written: the entry is either absent, or wholly present AND the message
  says it was appended (with its log index); ``audit`` passes once space is freed;
* writing resumes once space is freed.

Two ways to fill the disk:

* a 4 MiB tmpfs mounted by the test (root / CAP_SYS_ADMIN; skipped where ``mount`` is
  refused), filled with a filler file up to a chosen number of free bytes. A sweep over
  the free space makes the write fail at each place it can: opening SQLite (its ``-shm``
  file), growing the WAL, and writing the client's kept checkpoint AFTER the commit;
* ``RLIMIT_FSIZE`` in a subprocess (runs anywhere): every write that would make a file
  larger than the limit fails with EFBIG (SIGXFSZ ignored). SQLite then reports a
  generic "disk I/O error" (it does not pass the errno on), so that case asserts the
  exit code, the one sentence and the integrity, not the wording.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import run as cli_run

ROOT = Path(__file__).resolve().parents[2]
CASE = "CASE-DF-1"
#: The documented exit code for a backend that is busy or failed (retry later).
EXIT_BACKEND = 5
#: A sentence that says the disk is full, in words a lab technician understands.
FULL = re.compile(r"\b(disk|file ?system|storage|device|volume)\b[^.;]*\bfull\b|no space left",
                  re.IGNORECASE)
FS_SIZE = "4m"

pytestmark = pytest.mark.timeout(900)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    @property
    def json(self) -> object:
        return json.loads(self.out.strip().splitlines()[-1])


def cli(home: Path, *args: object) -> Result:
    """``custody --home HOME ARGS`` in-process (the real entry point and error mapping)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_run(["--home", str(home), *(str(a) for a in args)])
        except BaseException as exc:  # a traceback: reported
            import traceback

            traceback.print_exc(file=err)
            code = -1 if not isinstance(exc, SystemExit) else int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def size_of(home: Path) -> int:
    res = cli(home, "status", "--json")
    assert res.code == 0, res.err
    data = res.json
    assert isinstance(data, dict)
    return int(data["size"])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CUSTODY_PASSPHRASE", "CUSTODY_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUSTODY_HOME", str(tmp_path / "default-home-unused"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A home with a ledger (init, a case, one registered artefact); its artefact id."""
    root = tmp_path_factory.mktemp("disk-full-template")
    home = root / "home"
    saved = {k: os.environ.pop(k, None) for k in ("CUSTODY_PASSPHRASE", "CUSTODY_SERVER")}
    try:
        res = cli(home, "init", "--origin", "disk-full.test.example/custody", "--org-name",
                  "BKA", "--jurisdiction", "DE", "--no-passphrase")
        assert res.code == 0, res.err
        assert cli(home, "case", "open", CASE, "--title", "t", "--as", "bka-admin").code == 0
        evidence = root / "first.bin"
        evidence.write_bytes(b"first evidence " * 100)
        res = cli(home, "register", evidence, "--case", CASE, "--as", "bka-admin", "--json")
        assert res.code == 0, res.err
    finally:
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v
    data = res.json
    assert isinstance(data, dict)
    return home, str(data["artefact_id"])


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test; skipped where mounting is not permitted."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the RLIMIT_FSIZE "
                    "test covers the disk-full path without it")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """Fill ``fs`` with a filler file so that about ``leave`` bytes stay free."""
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    filler = fs / "filler"
    with filler.open("ab") as out:
        todo = max(0, free - leave)
        while todo > 0:
            chunk = min(todo, 1 << 20)
            try:
                out.write(b"\0" * chunk)
                out.flush()
            except OSError:
                break
            todo -= chunk
    return filler


def _free(filler: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        filler.unlink()


def _write_args(command: str, art: str, evidence: Path) -> list[object]:
    if command == "register":
        return ["register", evidence, "--case", CASE, "--as", "bka-admin", "--json"]
    return ["access", art, "--action", "view", "--purpose", "disk full", "--as", "bka-admin",
            "--json"]


def _judge(res: Result, before: int, after: int) -> str | None:
    """What is wrong with a refused (or accepted) write, or None."""
    if res.code == 0:
        return None if after == before + 1 else f"exit 0 but the log went {before} -> {after}"
    problems = []
    if "Traceback" in res.err:
        problems.append("a traceback")
    if len(res.err_lines) != 1 or not res.err_lines[0].startswith("custody: "):
        problems.append(f"not one 'custody: ' line on stderr: {res.err!r}")
    if res.code != EXIT_BACKEND:
        problems.append(f"exit {res.code}, not {EXIT_BACKEND}")
    if not FULL.search(res.err):
        problems.append("the message does not say the disk is full")
    if after == before + 1:
        if "appended" not in res.err or f"log index {before}" not in res.err:
            problems.append(f"the entry WAS appended (index {before}) but the message "
                            "does not say so")
    elif after != before:
        problems.append(f"the log went {before} -> {after}")
    return "; ".join(problems) or None


@pytest.mark.parametrize("command", ["register", "access"])
def test_cli_write_on_a_full_disk(small_fs: Path, template: tuple[Path, str], tmp_path: Path,
                                  command: str) -> None:
    """Sweep the free space from 0 to 140 KiB in 4 KiB steps: each write either succeeds
    or is refused in one clear sentence with exit 5 and nothing half-written; the audit
    passes after space is freed, and the same write then succeeds."""
    home_template, art = template
    home = small_fs / "home"
    report: list[str] = []
    refused = accepted = 0
    for free_kib in range(0, 144, 4):
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(home_template, home)
        evidence = tmp_path / f"evidence-{free_kib}.bin"
        evidence.write_bytes(os.urandom(2048))
        before = size_of(home)
        filler = fill(small_fs, free_kib * 1024)
        try:
            res = cli(home, *_write_args(command, art, evidence))
        finally:
            _free(filler)
        after = size_of(home)
        if res.code == 0:
            accepted += 1
        else:
            refused += 1
        problem = _judge(res, before, after)
        if problem:
            report.append(f"{free_kib:3d} KiB free: exit {res.code}, "
                          f"{' '.join(res.err.split())[:200]!r}: {problem}")
        audit = cli(home, "audit")
        if audit.code != 0:
            report.append(f"{free_kib:3d} KiB free: audit after freeing space failed: "
                          f"{audit.out} {audit.err}")
        evidence.write_bytes(os.urandom(2048))  # new bytes: not a duplicate registration
        again = cli(home, *_write_args(command, art, evidence))
        if again.code != 0 or size_of(home) != after + 1:
            report.append(f"{free_kib:3d} KiB free: writing did not resume after freeing "
                          f"space: exit {again.code} {again.err.strip()}")
    assert refused, "the sweep never filled the disk enough to refuse a write"
    assert accepted, "the sweep never left enough space for a write"
    assert not report, f"{command} on a full disk ({refused} refused, {accepted} " \
        "accepted):\n" + "\n".join(report)


def _limited(limit: int) -> None:  # pragma: no cover - runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _cli_process(home: Path, args: list[object], limit: int | None) -> Result:
    env = {k: v for k, v in os.environ.items() if k not in ("CUSTODY_PASSPHRASE",
                                                            "CUSTODY_SERVER")}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), *(str(a) for a in args)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
        preexec_fn=None if limit is None else (lambda: _limited(limit)))
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("command", ["register", "access"])
def test_cli_write_over_the_file_size_limit(template: tuple[Path, str], tmp_path: Path,
                                            command: str) -> None:
    """RLIMIT_FSIZE (EFBIG): refused in one sentence with exit 5, nothing half-written,
    audit passes, and the write succeeds without the limit."""
    home_template, art = template
    home = tmp_path / "home"
    report: list[str] = []
    refused = 0
    for limit in (0, 4096, 16384, 32768, 40960, 1 << 20):
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(home_template, home)
        evidence = tmp_path / f"evidence-{limit}.bin"
        evidence.write_bytes(os.urandom(2048))
        before = size_of(home)
        res = _cli_process(home, _write_args(command, art, evidence), limit)
        after = size_of(home)
        refused += res.code != 0
        problems = []
        if res.code not in (0, EXIT_BACKEND):
            problems.append(f"exit {res.code}")
        if res.code and ("Traceback" in res.err or len(res.err_lines) != 1
                         or not res.err_lines[0].startswith("custody: ")):
            problems.append(f"not one sentence: {res.err!r}")
        if after not in (before, before + 1) or (res.code == 0 and after != before + 1):
            problems.append(f"the log went {before} -> {after} with exit {res.code}")
        if res.code != 0 and after == before + 1 and "appended" not in res.err:
            problems.append("the entry was appended but the message does not say so")
        if cli(home, "audit").code != 0:
            problems.append("audit failed afterwards")
        evidence.write_bytes(os.urandom(2048))
        if _cli_process(home, _write_args(command, art, evidence), None).code != 0:
            problems.append("writing did not resume without the limit")
        if problems:
            report.append(f"limit {limit}: {res.err.strip()!r}: {'; '.join(problems)}")
    assert refused >= 3, "the file size limits never refused a write"
    assert not report, "\n".join(report)


# ---- the API ----------------------------------------------------------------------------


def _problem_ok(resp: object, what: str) -> str | None:
    import httpx

    assert isinstance(resp, httpx.Response)
    if resp.status_code != 503:
        return f"{what}: HTTP {resp.status_code}, not 503: {resp.text[:200]}"
    problems = []
    if not resp.headers.get("content-type", "").startswith("application/problem+json"):
        problems.append(f"content type {resp.headers.get('content-type')}")
    retry = resp.headers.get("retry-after", "")
    if not retry.isdigit() or int(retry) < 1:
        problems.append(f"Retry-After {retry!r}")
    body = resp.json()
    if not FULL.search(str(body.get("detail", ""))):
        problems.append(f"the detail does not say the disk is full: {body.get('detail')!r}")
    return f"{what}: {'; '.join(problems)}" if problems else None


def test_api_write_on_a_full_disk(small_fs: Path) -> None:
    """A running API server whose ledger and evidence store fill their disk: appends
    (registrations) and evidence uploads are refused with 503 problem+json and
    Retry-After, never 500/502; no refused event is in the log, no partial upload is
    left; the audit passes and writing resumes once space is freed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from api.app import create_app
    from ledger.core import events as ev
    from ledger.store.audit_sql import audit_store
    from ledger.store.sql import SqlStore
    from tests.api import world as w
    from tests.conftest import digests_of

    store = SqlStore.open(f"sqlite:///{small_fs}/ledger.db", signer=w.log_signer(),
                          clock=w.now_ms, create=True)
    evidence_dir = small_fs / "evidence"
    report: list[str] = []
    refused_appends = refused_uploads = 0
    try:
        w.genesis(store)
        app = create_app(store, evidence_dir=evidence_dir)
        with TestClient(app, raise_server_exceptions=False) as client:
            world = w.build(w.World(str(client.base_url), client=client))
            headers = {**world.headers("exam-de"), "Content-Type": "application/json"}
            n = 0
            for free_kib in (0, 8, 16, 32, 64):
                filler = fill(small_fs, free_kib * 1024)
                try:
                    # Appends until the disk refuses one (the WAL may have room left).
                    for _ in range(60):
                        n += 1
                        d = digests_of(f"disk-full artefact {n}".encode())
                        signed = w.sign(ev.ARTEFACT_REGISTER, "exam-de", {
                            "id": f"art-df-{n}", "case": "CASE-1", "size": d.size,
                            "digests": d.as_dict()})
                        resp = client.post("/v1/events", content=signed.canonical_bytes(),
                                           headers=headers)
                        if resp.status_code == 201:
                            continue
                        refused_appends += 1
                        problem = _problem_ok(resp, f"{free_kib} KiB free, POST /v1/events")
                        if problem:
                            report.append(problem)
                        if store.find_event(signed.event_id) is not None:
                            report.append(f"{free_kib} KiB free: a refused event is in the "
                                          "log")
                        break
                    data = os.urandom(256 * 1024)
                    d = digests_of(data)
                    resp = client.put(f"/v1/evidence/{d.sha256}", content=data,
                                      headers=world.headers("exam-de"))
                    if resp.status_code != 201:
                        refused_uploads += 1
                        problem = _problem_ok(resp, f"{free_kib} KiB free, PUT /v1/evidence")
                        if problem:
                            report.append(problem)
                        leftovers = [p.name for p in (evidence_dir / "tmp").iterdir()] \
                            if (evidence_dir / "tmp").is_dir() else []
                        if leftovers:
                            report.append(f"{free_kib} KiB free: partial uploads left: "
                                          f"{leftovers}")
                finally:
                    _free(filler)
            # Space is back: writing resumes.
            d = digests_of(b"after the disk was freed")
            signed = w.sign(ev.ARTEFACT_REGISTER, "exam-de", {
                "id": "art-df-after", "case": "CASE-1", "size": d.size,
                "digests": d.as_dict()})
            resp = client.post("/v1/events", content=signed.canonical_bytes(), headers=headers)
            if resp.status_code != 201:
                report.append(f"after freeing space: HTTP {resp.status_code} {resp.text[:200]}")
        report_audit = audit_store(store, workers=1)
        if not report_audit.ok:
            report.append(f"audit after freeing space: {report_audit.detail}")
    finally:
        store.close()
    assert refused_appends, "the disk never filled enough to refuse an append"
    assert refused_uploads, "the disk never filled enough to refuse an upload"
    assert not report, "\n".join(report)
