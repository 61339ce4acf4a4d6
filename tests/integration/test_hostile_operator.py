"""Issue #8 "Done when": a hostile operator with direct database access, one named
mutation at a time, on SQLite, on PostgreSQL and through a real server.

The story is built once per backend through the real ``custody`` commands and copied for
every case: BKA (DE) registers the disk image ``DE-01-disk`` of case CASE-2026-0815,
dispatches it to NFI (NL) under an MLAT legal basis, NFI accepts the receipt (digests
re-checked) and views the artefact, and BKA revokes a former custodian. Two partner
agencies cosign the latest checkpoint. The verifying client (the court) runs
``custody verify`` once, so it keeps ``HOME/checkpoints/latest``, and exports the court
bundle.

* ``sqlite`` / ``postgres``: an embedded ledger. ``op`` is the ledger's home (log key,
  every actor key); ``court`` is a second home that reads the same database with the
  log key pinned and nothing else.
* ``server-sqlite`` / ``server-postgres``: the operator runs ``custody serve`` (uvicorn,
  a separate process) over its database; the agencies ``custody join`` it, and every
  client command runs with ``--server``. ``de`` holds the BKA actors' keys, ``court``
  is NFI's home (``nl-custodian``, ``nl-auditor``). The server is (re)started on the
  mutated database, as an operator would.

Then the operator turns hostile: SQL on the SQLite file or the PostgreSQL database
(dropping the append-only triggers where needed), re-signing with the log key from the
ledger's home where the mutation needs it, editing the exported bundle, or serving one
client a forked copy of the log. Each case runs the client commands — ``verify`` with
the genuine and with a forged file, with and without ``--artefact``; ``history``;
``audit``; a write — and checks:

1. no command answers ``authentic`` for the forged file, and the genuine file is never
   silently ``authentic`` on tampered data: the verdict carries the fault, or the
   command exits non-zero naming it;
2. the fault is NAMED (its kind and/or key, e.g. ``cache`` + ``art/DE-01-disk``,
   ``fork``, ``incomplete`` + ``hist/art/DE-01-disk``);
3. every client's kept checkpoint is byte-identical before and after;

and that no command crashes, and a refused write appends nothing. A mutation that is
off a command's path (e.g. a fake actor for the artefact's verdict) must leave that
command's correct answer standing. All problems of a case are collected and reported
together. docs/verification.md ("Hostile operator") lists each mutation and what
catches it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cli.main import run as cli_run
from ledger import keys
from ledger.core import _sodium, merkle, vmap
from ledger.core import events as ev
from ledger.core.canonical import canonical
from ledger.core.checkpoint import Checkpoint, cosign, sign_checkpoint
from ledger.core.events import Entry
from ledger.core.note import NoteSigner, SignatureLine, parse_signature_line, split_note
from ledger.core.rules import advance_history, subjects
from ledger.core.witness import witness_verifier_key
from ledger.home import Home, now_ms
from ledger.service import Custody
from ledger.store.sql import SqlStore
from tests.conftest import CountingRandom, PgDatabases, seed_of

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "bka.example/custody"
ADMIN = "bka-admin"
CASE = "CASE-2026-0815"
ART = "DE-01-disk"
LB = "lb-mla-nl-de"
TR = "tr-de-nl-1"
ART_KEY = "art/" + ART
HIST_KEY = "hist/art/" + ART
#: (actor, organisation, role); BKA is DE, NFI is NL.
ACTORS = (("de-examiner", "bka", "examiner"), ("de-custodian", "bka", "custodian"),
          ("de-prosecutor", "bka", "prosecutor"), ("de-former", "bka", "custodian"),
          ("nl-custodian", "nfi", "custodian"), ("nl-auditor", "nfi", "auditor"))
WITNESSES = ("witness.nfi.example", "witness.pj.example")
WITNESS_KEYS = tuple(witness_verifier_key(n, seed_of("witness:" + n)) for n in WITNESSES)
WITNESS_ARGS = (*(a for k in WITNESS_KEYS for a in ("--witness", k)), "--quorum", "2")
GENUINE = hashlib.sha512(b"DE-01 disk image").digest() * 64 + b"end of image"
FORGED = GENUINE[:1000] + bytes([GENUINE[1000] ^ 0xFF]) + GENUINE[1001:]
REAL_SHA = hashlib.sha256(GENUINE).hexdigest()
FORGED_SHA = hashlib.sha256(FORGED).hexdigest()
ATTACKER_SEED = seed_of("hostile operator's own key")
BACKENDS = ("sqlite", "postgres", "server-sqlite", "server-postgres")
#: Tables protected by append-only triggers (ledger/store/schema.py APPEND_ONLY).
APPEND_ONLY = ("entries", "merkle_nodes", "checkpoints", "refs", "state_log", "map_nodes_v",
               "cosignatures")
#: Every ledger table, in an order that can be emptied.
ALL_TABLES = ("cosignatures", "checkpoints", "map_nodes_v", "state_log", "state", "refs",
              "merkle_nodes", "entries")


# ---- running ``custody`` in-process ----------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return (self.out + "\n" + self.err).lower()

    @property
    def json(self) -> Any:
        lines = [line for line in self.out.splitlines() if line.strip()]
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError:
            return None

    @property
    def verdict(self) -> str | None:
        data = self.json
        return data.get("verdict") if isinstance(data, dict) else None

    @property
    def faults(self) -> str:
        """What the command says went wrong: the faults of a verdict (kind, key, detail),
        an audit's failure kind and detail, stderr, and any non-JSON output (never the
        fields every answer has, such as ``map_root`` or ``inclusion_proof``)."""
        data = self.json
        parts = [self.err]
        if isinstance(data, dict):
            for fault in data.get("faults") or ():
                parts += [str(fault.get(k)) for k in ("kind", "key", "detail")]
            if data.get("ok") is False:
                parts += [str(data.get("kind")), str(data.get("detail"))]
        else:
            parts.append(self.out)
        return "\n".join(parts).lower()

    @property
    def crashed(self) -> bool:
        return self.code < 0 or "traceback (most recent call last)" in self.text


def invoke(argv: list[str]) -> Result:
    """``custody ARGV`` in-process; an exception that escapes the CLI is a crash (-1)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_run(argv)
        except Exception:  # reported as a crash (exit -1), never swallowed
            return Result(-1, out.getvalue(), err.getvalue() + traceback.format_exc())
    return Result(code, out.getvalue(), err.getvalue())


def must(res: Result, what: str) -> Result:
    assert res.code == 0, f"{what}: exit {res.code}\n{res.out}\n{res.err}"
    return res


@pytest.fixture(scope="module", autouse=True)
def _click_command_built_once() -> Iterator[None]:
    """Typer rebuilds the click command on every call (~50 ms); build it once here."""
    import typer.main

    from cli.main import app

    original = typer.main.get_command
    built = original(app)
    typer.main.get_command = (  # type: ignore[assignment]
        lambda instance: built if instance is app else original(instance))
    yield
    typer.main.get_command = original


@contextlib.contextmanager
def clean_environment() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("CUSTODY_")
             and k != "CUSTODY_TEST_PG_URL"}
    try:
        yield
    finally:
        os.environ.update(saved)


# ---- a server process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: A server process waits here, its imports done, for the ``custody`` argv (one JSON line
#: on stdin: ``{"argv": [...], "log": PATH}``), then runs ``custody serve`` as is.
_WARM_SERVER = """
import json, os, sys
from cli.main import run
import api.app, api.server, ledger.store.sql, uvicorn  # what 'custody serve' imports,
import sqlalchemy.dialects.postgresql, sqlalchemy.dialects.sqlite  # done before use
job = json.loads(sys.stdin.readline() or "null")
if job is None:
    sys.exit(0)
fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.dup2(fd, 1)
os.dup2(fd, 2)
sys.exit(run(job["argv"]))
"""


class ServerPool:
    """Server processes started one case ahead, so a case does not wait for imports."""

    def __init__(self) -> None:
        self.spare: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
        return subprocess.Popen([sys.executable, "-c", _WARM_SERVER], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def take(self) -> subprocess.Popen[bytes]:
        proc = self.spare or self._spawn()
        self.spare = self._spawn()
        return proc

    def close(self) -> None:
        if self.spare is not None:
            assert self.spare.stdin is not None
            self.spare.stdin.close()
            self.spare.wait(10)
            self.spare = None


POOL = ServerPool()


class Server:
    """``custody --home OP serve`` in its own process (uvicorn), on a free port."""

    def __init__(self, op_home: Path, database: str | None, log: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = ["--home", str(op_home), "serve", "--port", str(port),
                *(["--database", database] if database else [])]
        self.proc = POOL.take()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}).encode() + b"\n")
        self.proc.stdin.close()
        #: The server's output when it refused to start (it exited), else None.
        self.refused: str | None = None
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            if self.proc.poll() is not None:
                self.refused = log.read_text()
                return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module", autouse=True)
def _server_pool() -> Iterator[None]:
    yield
    POOL.close()


# ---- the operator's direct database access ----------------------------------------------


def sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url[len("postgresql://"):] \
        if url.startswith("postgresql://") else url


class Db:
    """Raw SQL on the ledger's database, as the operator's SQL shell would give it."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(sa_url(url), poolclass=sa.pool.NullPool)

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()

    def run(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def one(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def drop_triggers(self) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                for table in APPEND_ONLY:
                    conn.exec_driver_sql(
                        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            else:
                names = conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars().all()
                for name in names:
                    conn.exec_driver_sql(f'DROP TRIGGER "{name}"')

    def entries(self) -> list[Entry]:
        rows = self.rows("SELECT leaf FROM entries ORDER BY idx")
        return [Entry.from_leaf(bytes(leaf)) for (leaf,) in rows]

    def size(self) -> int:
        return int(self.one("SELECT count(*) FROM entries"))

    def state(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self.one("SELECT value FROM state WHERE key = :k", k=key)))

    def put_state(self, key: str, record: dict[str, Any]) -> None:
        self.run("UPDATE state SET value = :v WHERE key = :k", k=key,
                 v=canonical(record).decode())


def index_of(entries: list[Entry], kind: str, **payload: str) -> int:
    return next(e.index for e in entries if e.signed.event.kind == kind and all(
        e.signed.event.payload.get(k) == v for k, v in payload.items()))


class SetClock:
    """A clock the operator sets by hand while re-appending (ms)."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


# ---- building the story once per backend --------------------------------------------------


@dataclass
class Template:
    backend: str
    root: Path
    #: The PostgreSQL database the story was built in (copied per case), else None.
    database: str | None
    log_key: str
    size: int


def _story(run_as: Callable[..., Result], evidence: Path) -> None:
    run_as("de-prosecutor", "case", "open", CASE, "--title", "Ransomware")
    run_as("de-prosecutor", "case", "add-member", CASE, "--org", "nfi")
    run_as("de-examiner", "register", evidence, "--case", CASE, "--type", "disk-image",
           "--exhibit", "DE-01", "--id", ART)
    run_as("de-prosecutor", "legal-basis", "add", "--instrument", "mlat", "--reference",
           "MLA-2026-0815", "--issuing-state", "NL", "--executing-state", "DE",
           "--valid-until", "2099-12-31", "--case", CASE, "--id", LB)
    run_as("de-custodian", "transfer", ART, "--to", "nfi", "--purpose", "analysis",
           "--legal-basis", LB, "--id", TR)
    run_as("nl-custodian", "receive", TR, "--file", evidence)
    run_as("nl-custodian", "access", ART, "--action", "view", "--purpose", "triage")


def _cosign_latest(store: Any) -> None:
    """Both partner agencies cosign the latest checkpoint (C2SP tlog-cosignature)."""
    note = store.latest_checkpoint()
    size = Checkpoint.parse(split_note(note)[0]).size
    for name, vkey in zip(WITNESSES, WITNESS_KEYS, strict=True):
        line = cosign(note, name, seed_of("witness:" + name), 1_790_000_000)
        store.add_cosignature(size, vkey, line)


def _write_config(home: Path, config: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _config(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / "config.json").read_text()))


def build_template(backend: str, root: Path, database: str | None) -> Template:
    server = backend.startswith("server")
    (root / "evidence").mkdir(parents=True)
    genuine = root / "evidence" / "disk.img"
    genuine.write_bytes(GENUINE)
    (root / "evidence" / "forged.img").write_bytes(FORGED)
    homes = {name: root / name for name in ("op", "de", "court")}

    def cli(home: str, *args: Any, url: str | None = None) -> Result:
        argv = ["--home", str(homes[home]), *(["--server", url] if url else []),
                *(str(a) for a in args)]
        return must(invoke(argv), f"custody {' '.join(argv)}")

    must(invoke(["--home", str(homes["op"]), "init", "--origin", ORIGIN, "--org-name", "BKA",
                 "--org-id", "bka", "--jurisdiction", "DE", "--admin-name", "Anna Admin",
                 "--no-passphrase", *(["--database", database] if database else [])]),
         "custody init")
    log_key = str(_config(homes["op"])["log_key"])
    bundle_args = ("bundle", "export", ART, "--out", root / "bundle.json", *WITNESS_ARGS)
    if not server:
        cli("op", "org", "add", "--name", "NFI", "--jurisdiction", "NL", "--id", "nfi",
            "--as", ADMIN)
        for actor, org, role in ACTORS:
            cli("op", "actor", "enrol", "--org", org, "--name", actor, "--role", role,
                "--id", actor, "--no-passphrase", "--as", ADMIN)
        _story(lambda actor, *args: cli("op", *args, "--as", actor), genuine)
        cli("op", "actor", "revoke", "de-former", "--reason", "left the unit", "--as", ADMIN)
        url = Home(homes["op"]).load().database_url
        _write_config(homes["court"], {"v": 1, "origin": ORIGIN, "database": url,
                                       "log_key": log_key})
        store = SqlStore.open(url, signer=None, clock=now_ms)
        try:
            _cosign_latest(store)
        finally:
            store.close()
        cli("court", "verify", genuine, "--artefact", ART)
        cli("court", *bundle_args)
    else:
        from ledger.store.remote import RemoteStore

        srv = Server(homes["op"], None, root / "template-server.log")
        try:
            assert srv.refused is None, srv.refused
            u = srv.url
            cli("op", "org", "add", "--name", "NFI", "--jurisdiction", "NL", "--id", "nfi",
                "--as", ADMIN, url=u)
            for actor, org, role in ACTORS:
                home = "de" if org == "bka" else "court"
                pub = cli(home, "join", "--server", u, "--id", actor, "--no-passphrase",
                          "--json").json["public_key"]
                cli("op", "actor", "enrol", "--org", org, "--name", actor, "--role", role,
                    "--id", actor, "--public-key", pub, "--as", ADMIN, url=u)
            _story(lambda actor, *args: cli("de" if actor.startswith("de-") else "court",
                                            *args, "--as", actor, url=u), genuine)
            cli("op", "actor", "revoke", "de-former", "--reason", "left the unit",
                "--as", ADMIN, url=u)
            remote = RemoteStore(u)
            try:
                _cosign_latest(remote)
            finally:
                remote.close()
            cli("court", "verify", genuine, "--artefact", ART, url=u)
            cli("de", "verify", genuine, "--artefact", ART, "--as", "de-custodian", url=u)
            cli("court", *bundle_args, url=u)
        finally:
            srv.stop()
    with Db(Home(homes["op"]).load().database_url) as db:
        size = db.size()
    for name in ("op", "court", *(("de",) if server else ())):
        assert (homes[name] / "checkpoints" / "latest").is_file(), name
    return Template(backend, root, database, log_key, size)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[Callable[[str], Template]]:
    built: dict[str, Template] = {}
    pg: list[PgDatabases] = []

    def get(backend: str) -> Template:
        if backend not in built:
            database = None
            if backend.endswith("postgres"):
                dbs: PgDatabases = request.getfixturevalue("pg_databases")
                pg.append(dbs)
                database = dbs.create()
            with clean_environment():
                built[backend] = build_template(
                    backend, tmp_path_factory.mktemp("hostile-" + backend), database)
        return built[backend]

    yield get
    for tpl in built.values():
        if tpl.database is not None and pg:
            pg[0].drop(tpl.database)


# ---- one case: a copy of the story, the hostile edit, the client commands -----------------


class Case:
    """A copy of the backend's story: its homes, its database, its server(s)."""

    def __init__(self, tpl: Template, root: Path, pg: PgDatabases | None) -> None:
        self.tpl = tpl
        self.backend = tpl.backend
        self.server = tpl.backend.startswith("server")
        self.root = root
        self.pg = pg
        self.databases: list[str] = []
        self.servers: list[Server] = []
        #: Per home: the server URL it talks to (server mode).
        self.urls: dict[str, str] = {}
        #: Server mode: the database each server serves (None: the operator's own).
        self.serve: list[tuple[str | None, tuple[str, ...]]] = [(None, ("op", "de", "court"))]
        shutil.copytree(tpl.root, root)
        self.homes = {name: root / name for name in ("op", "de", "court", "mallory")}
        if tpl.database is not None:
            assert pg is not None
            self.db_url = self.copy_database(tpl.database)
            self.set_database("op", self.db_url)
        else:
            self.db_url = f"sqlite:///{self.homes['op'] / 'ledger.db'}"
        if not self.server:
            self.set_database("court", self.db_url)
        with Db(self.db_url) as db:
            entries = db.entries()
        self.size = len(entries)
        self.register_idx = index_of(entries, ev.ARTEFACT_REGISTER, id=ART)
        self.receipt_idx = index_of(entries, ev.RECEIPT, artefact=ART)
        self.access_idx = index_of(entries, ev.ACCESS, artefact=ART)
        self.bundle = root / "bundle.json"
        self.genuine = root / "evidence" / "disk.img"
        self.forged = root / "evidence" / "forged.img"

    # -- plumbing

    def copy_database(self, source: str) -> str:
        """A new database with ``source``'s content (sqlite: a file copy)."""
        if source.startswith("sqlite"):
            src = Path(sa.make_url(source).database or "")
            dst = self.root / f"copy-{len(list(self.root.glob('copy-*')))}" / "ledger.db"
            dst.parent.mkdir()
            for suffix in ("", "-wal"):
                if Path(f"{src}{suffix}").exists():
                    shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
            url = f"sqlite:///{dst}"
        else:
            assert self.pg is not None
            url = self.pg.create(template=source)
            self.databases.append(url)
        return url

    def set_database(self, home: str, url: str) -> None:
        config = _config(self.homes[home])
        config["database"] = url
        _write_config(self.homes[home], config)

    def start(self) -> list[str]:
        """Server mode: start the operator's server(s) on the (mutated) database(s).
        Returns the output of each server that refused to start (clients pointed at it
        then find nothing listening)."""
        refused = []
        for n, (database, homes) in enumerate(self.serve if self.server else ()):
            srv = Server(self.homes["op"], database, self.root / f"server-{n}.log")
            self.servers.append(srv)
            for home in homes:
                self.urls[home] = srv.url
            if srv.refused is not None:
                refused.append(srv.refused)
        return refused

    def close(self) -> None:
        for srv in self.servers:
            srv.stop()
        if self.pg is not None:
            for url in self.databases:
                self.pg.drop(url)

    def cli(self, home: str, *args: Any) -> Result:
        url = self.urls.get(home) if self.server else None
        return invoke(["--home", str(self.homes[home]), *(["--server", url] if url else []),
                       *(str(a) for a in args)])

    def op_home(self) -> Home:
        return Home(self.homes["op"]).load()

    def db(self, url: str | None = None) -> Db:
        return Db(url or self.db_url)

    def kept(self) -> dict[str, bytes]:
        return {name: path.read_bytes() for name in ("op", "de", "court")
                if (path := self.homes[name] / "checkpoints" / "latest").is_file()}

    def log_size(self) -> int:
        with self.db() as db:
            return db.size()

    def home_of(self, actor: str) -> str:
        if not self.server:
            return "op"
        return "op" if actor == ADMIN else "de" if actor.startswith("de-") else "court"

    def audit_args(self) -> tuple[str, ...]:
        """Server mode: the whole log is read with the auditor role."""
        return ("--as", "nl-auditor") if self.server else ()

    def attacker_home(self, actor: str, seed: bytes) -> str:
        """A home of the operator's that signs as ``actor`` with the operator's own key."""
        home = self.homes["mallory"]
        if self.server:
            _write_config(home, {"v": 1, "origin": ORIGIN, "server": self.urls["op"],
                                 "log_key": self.tpl.log_key, "default_actor": actor})
            self.urls["mallory"] = self.urls["op"]
        else:  # embedded: the operator writes with its own log key, to its own database
            config = {**_config(self.homes["op"]), "database": self.db_url,
                      "default_actor": actor}
            _write_config(home, config)
            (home / "keys").mkdir(exist_ok=True)
            shutil.copyfile(self.homes["op"] / "keys" / "log.key", home / "keys" / "log.key")
            os.chmod(home / "keys" / "log.key", 0o600)
        keys.write_key(home / "keys" / "actors" / f"{actor}.key", actor, seed, None)
        return "mallory"


@pytest.fixture(params=BACKENDS)
def case(request: pytest.FixtureRequest, templates: Callable[[str], Template],
         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Case]:
    backend: str = request.param
    pg = None
    if backend.endswith("postgres"):
        request.applymarker(pytest.mark.postgres)
        pg = request.getfixturevalue("pg_databases")
    tpl = templates(backend)
    for name in [k for k in os.environ if k.startswith("CUSTODY_")]:
        if name != "CUSTODY_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("CUSTODY_HOME", str(tmp_path / "no-default-home"))
    c = Case(tpl, tmp_path / "case", pg)
    try:
        yield c
    finally:
        c.close()


# ---- the hostile operator's tools ----------------------------------------------------------


def truncate(case: Case, drop: int) -> None:
    """Delete the last ``drop`` entries with their Merkle nodes, checkpoints, refs and
    versioned state, and rebuild the ``state`` cache as of the shorter log: the remaining
    log is self-consistent and every remaining checkpoint is the genuine signed one."""
    m = case.size - drop
    with case.db() as db:
        db.drop_triggers()
        db.run("DELETE FROM entries WHERE idx >= :m", m=m)
        db.run("DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > :m", m=m)
        for sql in ("DELETE FROM checkpoints WHERE size > :m",
                    "DELETE FROM cosignatures WHERE size > :m",
                    "DELETE FROM state_log WHERE size > :m",
                    "DELETE FROM map_nodes_v WHERE size > :m"):
            db.run(sql, m=m)
        db.run("DELETE FROM refs WHERE idx >= :m", m=m)
        db.run("DELETE FROM state WHERE key LIKE 'nonce/%' AND idx >= :m", m=m)
        db.run("DELETE FROM state WHERE key NOT LIKE 'nonce/%'")
        db.run("INSERT INTO state (key, value, idx, bucket) SELECT s.key, s.value, s.size - 1, "
               "s.bucket FROM state_log AS s WHERE s.size = (SELECT max(x.size) FROM "
               "state_log AS x WHERE x.key = s.key)")
        db.run("UPDATE head SET size = :m, last_time = (SELECT ledger_time FROM entries "
               "WHERE idx = :last)", m=m, last=m - 1)


def resign(case: Case, keep: Callable[[list[Entry]], list[Entry]], new_events: int = 0,
           url: str | None = None) -> None:
    """Rebuild the log with the same log key: wipe every table, re-append the ``keep``
    entries (their genuine signed events, at their original ledger times, so an
    unchanged prefix is byte-identical) and then ``new_events`` events the operator signs
    with its own admin key. Every checkpoint, Merkle node, map root and cache is
    recomputed: the new log is self-consistent and correctly signed."""
    url = url or case.db_url
    with case.db(url) as db:
        entries = db.entries()
        db.drop_triggers()
        for table in ALL_TABLES:
            db.run(f"DELETE FROM {table}")  # noqa: S608 - constant table names
        db.run("UPDATE head SET size = 0, last_time = 0")
    home = case.op_home()
    clock = SetClock()
    store = SqlStore.open(url, signer=home.log_signer(), clock=clock)
    try:
        for entry in keep(entries):
            clock.now = entry.ledger_time
            store.append(entry.signed)
        svc = Custody(store, origin=ORIGIN, clock=clock, random=CountingRandom("hostile"))
        admin = home.actor(ADMIN)
        for n in range(new_events):
            clock.now += 1000
            svc.add_org(admin, f"mallory-{n}", f"Mallory Ltd {n}", "GB")
    finally:
        store.close()


def latest_checkpoint(db: Db) -> tuple[int, str]:
    size, note = db.rows("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")[0]
    return int(size), str(note)


def replace_latest_checkpoint(case: Case, make: Callable[[str], str]) -> None:
    with case.db() as db:
        db.drop_triggers()
        size, note = latest_checkpoint(db)
        db.run("UPDATE checkpoints SET note = :n WHERE size = :s", n=make(note), s=size)


def swap_signatures(a: str, b: str) -> tuple[str, str]:
    """Two witness cosignature lines with their signature bytes swapped (each keeps its
    witness name and key id)."""
    sa_, sb = parse_signature_line(a.rstrip("\n")), parse_signature_line(b.rstrip("\n"))
    return (SignatureLine(sa_.name, sa_.key_hash, sb.signature).render(),
            SignatureLine(sb.name, sb.key_hash, sa_.signature).render())


def swap_cosignatures(note: str) -> str:
    """The note with the signature bytes of its two witness lines swapped."""
    text, _sigs = split_note(note)
    lines = [line + "\n" for line in note[len(text) + 1:].splitlines()]
    at = [i for i, line in enumerate(lines)
          if parse_signature_line(line.rstrip("\n")).name in WITNESSES]
    assert len(at) == 2, note
    lines[at[0]], lines[at[1]] = swap_signatures(lines[at[0]], lines[at[1]])
    return text + "\n" + "".join(lines)


def actor_record_with_key(record: dict[str, Any], actor: str, seed: bytes) -> dict[str, Any]:
    public = _sodium.public_key_from_seed(seed)
    return {**record, "id": actor, "public_key": base64.b64encode(public).decode(),
            "key_id": ev.actor_key_id(actor, public)}


# ---- the mutations ---------------------------------------------------------------------


def m_state_digest(case: Case) -> None:
    """The issue's exact edit: one UPDATE, no trigger touched."""
    with case.db() as db:
        db.run("UPDATE state SET value = replace(value, :real, :forged) WHERE key = :k",
               real=REAL_SHA, forged=FORGED_SHA, k=ART_KEY)


def m_refs_forged(case: Case) -> None:
    with case.db() as db:
        db.run("INSERT INTO refs (ref, idx) VALUES (:r, :i)", r="sha256:" + FORGED_SHA,
               i=case.register_idx)


def m_state_digest_and_refs(case: Case) -> None:
    m_state_digest(case)
    m_refs_forged(case)


def m_refs_delete(case: Case) -> None:
    with case.db() as db:
        db.drop_triggers()
        db.run("DELETE FROM refs WHERE ref = :r AND idx = :i", r=ART, i=case.receipt_idx)


def m_hide_access(case: Case) -> None:
    """Hide NFI's access: its refs row goes, and the artefact's history accumulator in
    the state cache is recomputed without it (so the cache agrees with the index)."""
    with case.db() as db:
        entries = db.entries()
        db.drop_triggers()
        db.run("DELETE FROM refs WHERE ref = :r AND idx = :i", r=ART, i=case.access_idx)
        hist = None
        for e in entries:
            if "art/" + ART in subjects(e.signed.event) and e.index != case.access_idx:
                hist = advance_history(hist, e.index, merkle.leaf_hash(e.leaf_bytes()))
        assert hist is not None
        db.put_state(HIST_KEY, hist)


def m_state_custodian(case: Case) -> None:
    with case.db() as db:
        db.run("UPDATE state SET value = replace(value, :a, :b) WHERE key = :k",
               a='"custodian":"nfi"', b='"custodian":"bka"', k=ART_KEY)
        assert db.state(ART_KEY)["custodian"] == "bka"


def m_state_delete(case: Case) -> None:
    with case.db() as db:
        db.run("DELETE FROM state WHERE key = :k", k=ART_KEY)


def m_fake_actor(case: Case) -> None:
    with case.db() as db:
        record = actor_record_with_key(db.state("actor/de-custodian"), "mallory", ATTACKER_SEED)
        record["name"] = "Mallory"
        db.run("INSERT INTO state (key, value, idx, bucket) VALUES (:k, :v, :i, :b)",
               k="actor/mallory", v=canonical(record).decode(), i=case.size - 1,
               b=vmap.bucket_of("actor/mallory"))


def m_state_log(case: Case) -> None:
    with case.db() as db:
        db.drop_triggers()
        db.run("UPDATE state_log SET value = replace(value, :real, :forged) WHERE key = :k",
               real=REAL_SHA, forged=FORGED_SHA, k=ART_KEY)


def m_map_node(case: Case) -> None:
    """Overwrite the newest version of the level-15 state-map node on the artefact's
    proof path (the other half of the map)."""
    idx = (vmap.bucket_of(ART_KEY) >> 15) ^ 1
    with case.db() as db:
        db.drop_triggers()
        size = db.one("SELECT max(size) FROM map_nodes_v WHERE level = 15 AND idx = :i", i=idx)
        db.run("UPDATE map_nodes_v SET hash = :h WHERE level = 15 AND idx = :i AND size = :s",
               h=b"\x5a" * 32, i=idx, s=size)


def m_truncate(case: Case) -> None:
    """The issue's 35 -> 30 case (here 16 -> 13): the last entries, their nodes and
    checkpoints deleted; the remaining checkpoints are the genuine signed ones."""
    truncate(case, 3)


def m_truncate_resign(case: Case) -> None:
    """Drop NFI's access from the middle and re-sign the shorter log with the same key."""
    resign(case, lambda es: [e for e in es if e.index != case.access_idx])


def m_fork_same_size(case: Case) -> None:
    """Rewrite the last entry (the revocation becomes another event) and re-sign."""
    resign(case, lambda es: es[:-1], new_events=1)


def m_fork_larger(case: Case) -> None:
    """Truncate the last two entries and append a different, longer history, re-signed."""
    resign(case, lambda es: es[:-2], new_events=4)


def m_checkpoint_delete(case: Case) -> None:
    with case.db() as db:
        db.drop_triggers()
        size, _note = latest_checkpoint(db)
        db.run("DELETE FROM checkpoints WHERE size = :s", s=size)


def m_checkpoint_unsigned(case: Case) -> None:
    replace_latest_checkpoint(case, lambda note: split_note(note)[0] + "\n")


def m_checkpoint_foreign(case: Case) -> None:
    stranger = NoteSigner(ORIGIN, seed_of("a stranger's log key"))
    replace_latest_checkpoint(
        case, lambda note: sign_checkpoint(Checkpoint.parse(split_note(note)[0]), stranger))


def m_leaf_edit(case: Case) -> None:
    """The registration entry's leaf now carries the forged digest; its stored leaf hash
    and the Merkle nodes are left as they were (stale)."""
    with case.db() as db:
        db.drop_triggers()
        leaf = bytes(db.one("SELECT leaf FROM entries WHERE idx = :i", i=case.register_idx))
        assert REAL_SHA.encode() in leaf
        db.run("UPDATE entries SET leaf = :l WHERE idx = :i", i=case.register_idx,
               l=leaf.replace(REAL_SHA.encode(), FORGED_SHA.encode()))


def m_actor_key(case: Case) -> None:
    """The dispatching custodian's public key in the state becomes the operator's."""
    with case.db() as db:
        db.put_state("actor/de-custodian", actor_record_with_key(
            db.state("actor/de-custodian"), "de-custodian", ATTACKER_SEED))


def m_revoked_active(case: Case) -> None:
    with case.db() as db:
        record = db.state("actor/de-former")
        assert record["status"] == "revoked"
        record = {**record, "status": "active", "revoked_at": None}
        record.pop("revoke_reason", None)
        db.put_state("actor/de-former", record)


def m_hist_edit(case: Case) -> None:
    with case.db() as db:
        hist = db.state(HIST_KEY)
        db.put_state(HIST_KEY, {**hist, "n": hist["n"] - 1})


def m_cosignature_swap(case: Case) -> None:
    with case.db() as db:
        db.drop_triggers()
        size, _note = latest_checkpoint(db)
        (wa, la), (wb, lb) = db.rows(
            "SELECT witness, line FROM cosignatures WHERE size = :s ORDER BY witness", s=size)
        new_a, new_b = swap_signatures(str(la), str(lb))
        for witness, line in ((wa, new_a), (wb, new_b)):
            db.run("UPDATE cosignatures SET line = :l WHERE size = :s AND witness = :w",
                   l=line, s=size, w=witness)


def m_split_view(case: Case) -> None:
    """The court is served a forked copy of the log (truncated and extended with other
    events, re-signed with the same key); every other client sees the honest log."""
    forked = case.copy_database(case.db_url)
    resign(case, lambda es: es[:-2], new_events=4, url=forked)
    if case.server:
        case.serve = [(None, ("op", "de")), (forked, ("court",))]
    else:
        case.set_database("court", forked)


def _edit_bundle(case: Case, edit: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(case.bundle.read_text())
    edit(doc)
    case.bundle.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def m_bundle_drop_event(case: Case) -> None:
    def edit(doc: dict[str, Any]) -> None:
        before = len(doc["entries"])
        doc["entries"] = [e for e in doc["entries"] if e["index"] != case.receipt_idx]
        assert len(doc["entries"]) == before - 1

    _edit_bundle(case, edit)


def m_bundle_swap_cosignature(case: Case) -> None:
    _edit_bundle(case, lambda doc: doc.update(checkpoint=swap_cosignatures(doc["checkpoint"])))


def m_bundle_forged_digest(case: Case) -> None:
    def edit(doc: dict[str, Any]) -> None:
        (entry,) = [e for e in doc["entries"] if e["index"] == case.register_idx]
        leaf = base64.b64decode(entry["leaf"])
        assert REAL_SHA.encode() in leaf
        entry["leaf"] = base64.b64encode(
            leaf.replace(REAL_SHA.encode(), FORGED_SHA.encode())).decode()

    _edit_bundle(case, edit)


# ---- what each mutation must produce -------------------------------------------------------


#: The command must still give its correct answer (the mutation is off its path).
OK = "ok"
#: No claim (e.g. an audit that, by its documented scope, does not read that table).
ANY = "any"
Expect = tuple[str, ...] | str


@dataclass(frozen=True)
class Write:
    actor: str
    args: tuple[str, ...]
    named: tuple[str, ...]
    #: The append itself may happen (the receipt is what the client refuses). Writes are
    #: checked against the kept checkpoint BEFORE appending, so no mutation uses this.
    appends: bool = False
    #: Sign as ``actor`` with the operator's own key, from the operator's home.
    attacker: bool = False


def access_by(actor: str, *named: str, appends: bool = False, attacker: bool = False) -> Write:
    return Write(actor, ("access", ART, "--action", "view", "--purpose", "after the edit"),
                 named, appends, attacker)


@dataclass(frozen=True)
class Mutation:
    id: str
    apply: Callable[[Case], None]
    #: The genuine file's verify (with and without --artefact): tokens it must name, OK.
    verify: Expect = OK
    #: history: defaults to what verify names.
    history: Expect | None = None
    audit: Expect = OK
    #: Tokens the forged file's verify without --artefact must name (it is never authentic).
    forged: tuple[str, ...] = ()
    write: Write | None = None
    #: verify/history demand the quorum of both witnesses.
    witnessed: bool = False
    #: Only the exported bundle file is edited: run ``custody bundle verify``.
    bundle: bool = False
    #: Server mode, if the server refuses to start on the mutated database: what its
    #: output must name (default: what the write must name, else what verify names).
    refusal: tuple[str, ...] = ()

    def refusal_named(self) -> tuple[str, ...]:
        if self.refusal:
            return self.refusal
        if self.write is not None:
            return self.write.named
        return self.verify if isinstance(self.verify, tuple) else ("outside the log",)

    def __str__(self) -> str:
        return self.id


REFUSED_ART = ("state record", ART_KEY)


def state_fault(key: str) -> tuple[str, ...]:
    """A state cache that disagrees with the signed map: a ``cache`` fault in the verdict,
    or (a store that verifies its reads) an integrity fault "... outside the log"."""
    return ("cache|outside the log", key)


ROLLBACK = ("older than the one this client kept",)
#: A write on a truncated log: its receipt is older than the kept checkpoint (rollback),
#: or, once the append brings the log back to the kept size, a different tree (fork).
WRITE_ON_TRUNCATED = ("older than the one this client kept|fork",)
UNSIGNED_LATEST = "does not verify with the pinned log key|does not verify with the log key"

MUTATIONS = (
    Mutation("control-no-mutation", lambda case: None),
    Mutation("state-digest", m_state_digest, verify=state_fault(ART_KEY),
             audit=("state", ART_KEY), write=access_by("nl-custodian", *REFUSED_ART)),
    Mutation("state-digest-and-refs", m_state_digest_and_refs, verify=state_fault(ART_KEY),
             audit=("state", ART_KEY), forged=("refs|outside the log",),
             write=access_by("nl-custodian", *REFUSED_ART)),
    Mutation("refs-insert-forged-digest", m_refs_forged, audit=ANY, forged=("refs",)),
    Mutation("refs-delete-receipt", m_refs_delete, verify=("incomplete", HIST_KEY),
             audit=ANY),
    Mutation("hide-access-refs-and-hist", m_hide_access,
             verify=("incomplete|outside the log", HIST_KEY), audit=("state", HIST_KEY),
             write=access_by("nl-custodian", "state record", HIST_KEY)),
    Mutation("state-custodian", m_state_custodian, verify=state_fault(ART_KEY),
             audit=("state", ART_KEY), write=access_by("nl-custodian", *REFUSED_ART)),
    Mutation("state-delete-artefact", m_state_delete, verify=state_fault(ART_KEY),
             audit=("state", ART_KEY), write=access_by("nl-custodian", *REFUSED_ART)),
    Mutation("state-insert-fake-actor", m_fake_actor, audit=("state", "actor/mallory"),
             write=access_by("mallory", "state record", "actor/mallory", attacker=True)),
    Mutation("state-log-edit", m_state_log, verify=("map", ART_KEY), audit=ANY),
    Mutation("map-node-edit", m_map_node, verify=("map",), audit=ANY,
             write=access_by("nl-custodian", "state map")),
    Mutation("truncate", m_truncate, verify=ROLLBACK, audit=("missing",),
             write=access_by("nl-custodian", *WRITE_ON_TRUNCATED)),
    Mutation("truncate-and-resign", m_truncate_resign, verify=ROLLBACK, audit=("missing",),
             write=access_by("nl-custodian", *WRITE_ON_TRUNCATED)),
    Mutation("fork-same-size", m_fork_same_size, verify=("fork",), audit=("consistency",),
             write=access_by("nl-custodian", "fork")),
    Mutation("fork-larger", m_fork_larger, verify=("fork",), audit=("consistency",),
             write=access_by("nl-custodian", "fork")),
    Mutation("checkpoint-delete-latest", m_checkpoint_delete, verify=ROLLBACK,
             audit=("consistency", "older than the one this client kept"),
             write=access_by("nl-custodian", "older than the one this client kept|no checkpoint "
                             "of that size|does not match the root signed in the latest "
                             "checkpoint")),
    Mutation("checkpoint-unsigned", m_checkpoint_unsigned,
             verify=("does not verify with the pinned log key",), audit=("checkpoint",),
             write=access_by("nl-custodian", UNSIGNED_LATEST)),
    Mutation("checkpoint-foreign-key", m_checkpoint_foreign,
             verify=("does not verify with the pinned log key",), audit=("checkpoint",),
             write=access_by("nl-custodian", UNSIGNED_LATEST)),
    Mutation("leaf-edit-stale-hash", m_leaf_edit, verify=("inclusion|incomplete",),
             audit=("leaf",)),
    Mutation("actor-key-edit", m_actor_key, verify=state_fault("actor/de-custodian"),
             audit=("state", "actor/de-custodian"),
             write=access_by("de-custodian", "state record", "actor/de-custodian",
                             attacker=True)),
    Mutation("revoked-actor-made-active", m_revoked_active, audit=("state", "actor/de-former"),
             write=access_by("de-former", "state record", "actor/de-former")),
    Mutation("non-custodian-transfer", m_state_custodian, verify=state_fault(ART_KEY),
             audit=("state", ART_KEY),
             write=Write("de-custodian", ("transfer", ART, "--to", "nfi", "--purpose",
                                          "take it back", "--legal-basis", LB),
                         REFUSED_ART)),
    Mutation("hist-accumulator-edit", m_hist_edit, verify=state_fault(HIST_KEY),
             audit=("state", HIST_KEY),
             write=access_by("nl-custodian", "state record", HIST_KEY)),
    Mutation("cosignature-swap", m_cosignature_swap, verify=("witness",), audit=ANY,
             witnessed=True),
    Mutation("split-view-forked-checkpoint", m_split_view, verify=("fork",),
             audit=("consistency",)),
    Mutation("bundle-drop-event", m_bundle_drop_event, verify=("incomplete", HIST_KEY),
             bundle=True),
    Mutation("bundle-swap-cosignature", m_bundle_swap_cosignature, verify=("witness",),
             witnessed=True, bundle=True),
    Mutation("bundle-forged-digest", m_bundle_forged_digest, verify=("inclusion",),
             bundle=True),
)


# ---- the check ---------------------------------------------------------------------------


class Findings:
    """Every problem of one case, with the command and its output."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.problems: list[str] = []
        self.kept = case.kept()
        assert self.kept, "no client kept a checkpoint"

    def add(self, label: str, res: Result | None, why: str) -> None:
        shown = "" if res is None else (f"\n    exit {res.code}\n    stdout: {res.out[:1500]}"
                                       f"\n    stderr: {res.err[:3000]}")
        self.problems.append(f"[{label}] {why}{shown}")

    def ran(self, label: str, res: Result) -> Result:
        if res.crashed:
            self.add(label, res, "crashed (traceback)")
        now = self.case.kept()
        if now != self.kept:
            changed = sorted(k for k in now.keys() | self.kept.keys()
                             if now.get(k) != self.kept.get(k))
            self.add(label, res, f"the kept checkpoint of {changed} changed")
            self.kept = now
        return res

    def named(self, label: str, res: Result, tokens: tuple[str, ...]) -> None:
        """Every token must be in the output; ``a|b`` is either of two phrasings."""
        missing = [t for t in tokens if not any(alt.lower() in res.faults
                                                for alt in t.split("|"))]
        if missing:
            self.add(label, res, f"the fault is not named: {missing} not in the output")

    def expect_failure(self, label: str, res: Result, tokens: tuple[str, ...]) -> None:
        if res.code == 0 or res.verdict == "authentic":
            self.add(label, res, "succeeded on tampered data (expected a named fault)")
        self.named(label, res, tokens)

    def expect_verdict(self, label: str, res: Result, expect: Expect,
                       ok_verdict: str = "authentic") -> None:
        if expect == ANY:
            return
        if expect == OK:
            if res.code != 0 or res.verdict not in (ok_verdict, None):
                self.add(label, res, f"expected the correct answer ({ok_verdict}, exit 0)")
            return
        assert isinstance(expect, tuple)
        self.expect_failure(label, res, expect)

    def never_authentic(self, label: str, res: Result, tokens: tuple[str, ...]) -> None:
        if res.code == 0 or res.verdict == "authentic":
            self.add(label, res, "a FORGED file was not refused")
        self.named(label, res, tokens)


def run_bundle_probes(case: Case, m: Mutation, f: Findings) -> None:
    witness = WITNESS_ARGS if m.witnessed else ()
    base = ("bundle", "verify", case.bundle, "--log-key", case.tpl.log_key, *witness, "--json")
    res = f.ran("bundle verify --evidence genuine",
                case.cli("court", *base, "--evidence", case.genuine))
    f.expect_verdict("bundle verify --evidence genuine", res, m.verify)
    res = f.ran("bundle verify --evidence forged",
                case.cli("court", *base, "--evidence", case.forged))
    f.never_authentic("bundle verify --evidence forged", res, ())


def run_ledger_probes(case: Case, m: Mutation, f: Findings) -> None:
    witness = WITNESS_ARGS if m.witnessed else ()
    for name, path in (("genuine", case.genuine), ("forged", case.forged)):
        for art in ((), ("--artefact", ART)):
            label = f"verify {name} {' '.join(art) or '(no --artefact)'}"
            res = f.ran(label, case.cli("court", "verify", path, *art, *witness, "--json"))
            if name == "genuine":
                f.expect_verdict(label, res, m.verify)
            else:
                f.never_authentic(label, res, m.forged if not art else ())
    res = f.ran("history", case.cli("court", "history", ART, *witness, "--json"))
    f.expect_verdict("history", res, m.history if m.history is not None else m.verify,
                     ok_verdict="")
    res = f.ran("audit", case.cli("court", "audit", *case.audit_args(), "--json"))
    f.expect_verdict("audit", res, m.audit, ok_verdict="")
    if m.write is not None:
        w = m.write
        home = case.attacker_home(w.actor, ATTACKER_SEED) if w.attacker \
            else case.home_of(w.actor)
        before = case.log_size()
        label = f"write: {w.args[0]} as {w.actor}" + (" (operator's key)" if w.attacker else "")
        res = f.ran(label, case.cli(home, *w.args, "--as", w.actor, "--json"))
        f.expect_failure(label, res, w.named)
        if not w.appends and case.log_size() != before:
            f.add(label, res, "a refused write was appended to the log")


def run_unserved_probes(case: Case, f: Findings) -> None:
    """The server refused to serve the mutated database: no client may get a verdict."""
    for name, path in (("genuine", case.genuine), ("forged", case.forged)):
        for art in ((), ("--artefact", ART)):
            label = f"verify {name} {' '.join(art) or '(no --artefact)'} (server refused)"
            res = f.ran(label, case.cli("court", "verify", path, *art, "--json"))
            f.never_authentic(label, res, ())
    res = f.ran("history (server refused)", case.cli("court", "history", ART, "--json"))
    if res.code == 0:
        f.add("history (server refused)", res, "a history was shown")


@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_hostile_operator(case: Case, mutation: Mutation) -> None:
    findings = Findings(case)
    mutation.apply(case)
    refused = [] if mutation.bundle else case.start()
    for output in refused:  # the server itself refused the tampered database: named?
        findings.named("server start", Result(1, output, ""), mutation.refusal_named())
    if refused and not mutation.bundle:
        run_unserved_probes(case, findings)
    elif mutation.bundle:
        run_bundle_probes(case, mutation, findings)
    else:
        run_ledger_probes(case, mutation, findings)
        if mutation.id == "split-view-forked-checkpoint":
            honest = "de" if case.server else "op"
            res = findings.ran("honest client verify", case.cli(
                honest, "verify", case.genuine, "--artefact", ART, "--json",
                *(("--as", "de-custodian") if case.server else ())))
            findings.expect_verdict("honest client verify", res, OK)
    assert not findings.problems, (
        f"{mutation.id} on {case.backend}: {len(findings.problems)} problem(s)\n"
        + "\n".join(findings.problems))
