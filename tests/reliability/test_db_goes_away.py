"""The database goes away (issue #14, part 3): PostgreSQL stopped, killed and restarted
while the ledger is in use — through the API under write load, embedded, and from the CLI.

Expected:

* the API answers ``503`` ``application/problem+json`` with ``Retry-After`` (code
  ``store-unavailable``) at once — never a 500, never a hang;
* it reconnects by itself once PostgreSQL is back (the same server process, the group
  committer alive);
* no acknowledged (200/201) write is lost, and a client that sends the SAME signed event
  again after a 503 never makes a duplicate: it gets ``201`` if the first attempt was not
  committed, or ``200`` with the original receipt if it was — including the ambiguous
  case where the COMMIT reached PostgreSQL but the connection broke before the answer
  (made deterministic here by a proxy that cuts the connection exactly there);
* the CLI (embedded on a PostgreSQL URL, or ``--server``) says so in one sentence, exit 5.

Every PostgreSQL here is a private cluster (:mod:`.pgcluster`), never the shared test
server: these tests stop and SIGKILL it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api import problems
from cli.errors import exit_code
from ledger.core import errors as e
from ledger.core import events as ev
from ledger.service import Custody
from ledger.store.remote import to_exception
from ledger.store.sql import SqlStore
from tests.reliability import apiserver, outage, pgcluster, pgproxy
from tests.reliability import world as W

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

#: The one sentence of a database server that is down, as the CLI prints it.
DOWN = re.compile(r"^custody: the ledger database server \(PostgreSQL at 127\.0\.0\.1:\d+\) "
                  r"is unavailable \([^)]+\)(, so nothing was appended)?; retry in a few "
                  r"seconds$")
#: Fail fast: no call may wait longer than this for a server that is gone.
FAST_S = 3.5


def _need_postgres() -> None:
    if not pgcluster.available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing but CI=true: the "
                        "database-goes-away tests must run in CI")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[pgcluster.Cluster]:
    _need_postgres()
    with pgcluster.Cluster() as pg:
        yield pg


@pytest.fixture
def pg(cluster: pgcluster.Cluster) -> Iterator[pgcluster.Cluster]:
    """The module's cluster, running again after the test whatever it did to it."""
    yield cluster
    if not cluster.running():
        cluster.start()


def _database(cluster: pgcluster.Cluster, name: str) -> str:
    cluster.drop_database(name)
    url = cluster.create_database(name)
    W.build(url)
    return url


def _event(n: int) -> ev.SignedEvent:
    svc = Custody(None, origin=W.ORIGIN, clock=W.now_ms, random=os.urandom)  # type: ignore
    return svc.event(ev.ACCESS, W.key("admin"), {
        "artefact": W.BASE_ARTEFACT, "action": "view", "purpose": f"db goes away {n}",
        "outcome": "success", "authorisation": f"t{n}"})


def _timed(fn: Any) -> tuple[BaseException | None, float]:
    t0 = time.monotonic()
    try:
        fn()
    except BaseException as exc:  # returned for the asserts
        return exc, time.monotonic() - t0
    return None, time.monotonic() - t0


# ---- the mapping ---------------------------------------------------------------------------

def test_store_unavailable_is_503_with_retry_after_and_exit_5() -> None:
    exc = e.StoreUnavailable("the ledger database server is unavailable", 2.0)
    assert isinstance(exc, e.Backpressure)
    status, body, headers = problems.problem_body(exc)
    assert (status, body["code"]) == (503, "store-unavailable")
    assert headers["Retry-After"] == "2"
    assert body["retry_after"] == 2.0
    back = to_exception(status, json.loads(json.dumps(body)))
    assert type(back) is e.StoreUnavailable  # RemoteStore raises the same class again
    assert back.message == exc.message
    assert exit_code(exc) == exit_code(back) == 5


# ---- embedded: the store itself --------------------------------------------------------------

@pytest.mark.parametrize("how", ["fast", "kill"])
def test_the_store_fails_fast_while_down_and_reconnects(pg: pgcluster.Cluster,
                                                        how: str) -> None:
    url = _database(pg, f"embedded_{how}")
    store = SqlStore.open(url, signer=W.signer(), clock=W.now_ms)
    try:
        before = store.append(_event(0)).index
        pg.crash() if how == "kill" else pg.shutdown("fast")
        calls = {
            "state": lambda: store.state("art/" + W.BASE_ARTEFACT),
            "size": store.size,
            "refs": lambda: store.refs(W.BASE_ARTEFACT),
            "entries_at": lambda: store.entries_at([0]),
            "inclusion_proof": lambda: store.inclusion_proof(0, before + 1),
            "cached_state": lambda: store.cached_state("art/" + W.BASE_ARTEFACT),
            "latest_checkpoint": store.latest_checkpoint,
            "append": lambda: store.append(_event(1)),
            "append_many": lambda: store.append_many([_event(2), _event(3)]),
            "open": lambda: SqlStore.open(url, signer=None, clock=W.now_ms),
        }
        for name, call in calls.items():
            exc, took = _timed(call)
            assert isinstance(exc, e.StoreUnavailable), (name, repr(exc))
            assert took < FAST_S, (name, took)
            assert exc.retry_after >= 1
            assert f"PostgreSQL at 127.0.0.1:{pg.port}" in exc.message, exc.message
            assert "\n" not in exc.message
        assert "nothing was appended" in str(_timed(calls["append"])[0])
        pg.start()
        # The same store object, no reopening: the pool replaces its dead connections.
        receipt = store.append(_event(4))
        assert receipt.index == before + 1  # nothing of the refused appends got in
        assert store.state("art/" + W.BASE_ARTEFACT) is not None
    finally:
        store.close()


def test_other_database_failures_are_not_called_unavailable(pg: pgcluster.Cluster) -> None:
    """Only a server that cannot be reached is StoreUnavailable: a database that does not
    exist is a configuration error, not something to retry."""
    exc, _ = _timed(lambda: SqlStore.open(pg.url("no_such_database"), signer=None,
                                          clock=W.now_ms))
    assert isinstance(exc, e.UpstreamError), repr(exc)
    assert not isinstance(exc, e.Backpressure)


# ---- the API under write load ----------------------------------------------------------------

def test_api_under_write_load_while_postgres_stops_and_is_killed(tmp_path: Path) -> None:
    _need_postgres()
    summary = outage.run(outage.Config(cycles=2, writers=4, up_s=1.0, down_s=(1.5, 2.0),
                                       modes=("fast", "kill"), seed=1405, audit_every=0,
                                       workdir=tmp_path))
    context = json.dumps(summary, indent=1)
    assert summary["cycles"] == 2, context
    assert summary["faults"] == {"pg_ctl stop -m fast": 1,
                                 "SIGKILL postmaster and backends": 1}, context
    # Requests kept coming while PostgreSQL was down, and were answered 503 at once.
    assert summary["status_503"] >= 10, context
    assert summary["status_503_codes"] == {"store-unavailable": summary["status_503"]}
    assert summary["missing_retry_after"] == 0, context
    assert summary["not_problem_json"] == 0, context
    assert summary["other_5xx"] == 0, context
    assert summary["other_statuses"] == {}, context
    assert summary["transport_errors"] == 0, context
    assert summary["latency_max_s"] < outage.MAX_LATENCY_S, context
    # The API reconnected by itself: every writer got writes through after each restart,
    # the server is the same process, and a new write after everything is a 201.
    assert summary["cycles_not_recovered"] == 0, context
    assert summary["api_server_restarts"] == 0, context
    assert summary["next_write_after_all_ok"], context
    assert summary["status_201"] > summary["cycles"] * summary["writers"], context
    # Nothing acknowledged is lost, nothing is there twice, nothing unacknowledged.
    assert summary["acknowledged"] == summary["status_201"] + \
        summary["status_200_retry_found_committed"], context
    assert summary["lost"] == 0, context
    assert summary["duplicates"] == 0, context
    assert summary["committed_unacknowledged"] == 0, context
    assert summary["unresolved_at_end"] == 0, context
    assert summary["receipt_conflicts"] == 0, context
    assert summary["unexpected_200"] == 0, context
    assert summary["audit_failures"] == 0, context
    assert summary["server_unexpected_errors_logged"] == 0, context
    assert summary["ok"], context


# ---- the ambiguous commit, made deterministic --------------------------------------------------

@dataclass
class _Api:
    url: str
    headers: dict[str, str]
    client: httpx.Client

    def post(self, signed: ev.SignedEvent) -> httpx.Response:
        return self.client.post(self.url + "/v1/events", content=signed.canonical_bytes(),
                                headers=self.headers)


def test_a_commit_whose_answer_was_lost_is_not_appended_twice(pg: pgcluster.Cluster,
                                                               tmp_path: Path) -> None:
    url = _database(pg, "ambiguous")
    check = SqlStore.open(url, signer=None, clock=W.now_ms, verify_key=W.log_key())
    with pgproxy.PgProxy(pg.port) as proxy:
        server = apiserver.start(proxy.url("ambiguous"), tmp_path)
        try:
            with httpx.Client(timeout=30) as client:
                token = apiserver.login(client, server.url, W.key("admin"))
                api = _Api(server.url, {"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"}, client)
                size0 = check.size()

                # 1. COMMIT applied, its answer lost: 503, the event IS on the log, and the
                #    same event again is answered 200 with the original receipt.
                first = _event(100)
                proxy.arm("answer-lost")
                r = api.post(first)
                assert proxy.cuts == ["answer-lost"]
                _assert_unavailable(r, ambiguous=True)
                logged = check.receipt(first.event_id)
                assert logged is not None, "the COMMIT reached PostgreSQL: it must be logged"
                assert logged.index == size0
                again = api.post(first)
                assert again.status_code == 200, again.text
                body = again.json()
                assert body["duplicate"] is True
                assert (body["event_id"], body["index"], body["leaf_hash"]) == \
                    (first.event_id, logged.index, logged.leaf_hash.hex())
                assert check.size() == size0 + 1

                # 2. COMMIT never reached PostgreSQL: 503, NOT on the log, and the same
                #    event again is appended now (201).
                second = _event(101)
                proxy.arm("commit-lost")
                r = api.post(second)
                assert proxy.cuts == ["answer-lost", "commit-lost"]
                _assert_unavailable(r, ambiguous=True)
                assert check.receipt(second.event_id) is None
                assert check.size() == size0 + 1
                again = api.post(second)
                assert again.status_code == 201, again.text
                assert again.json()["index"] == size0 + 1

                # 3. The group committer lives on: a new event is a 201 at the next index.
                third = api.post(_event(102))
                assert third.status_code == 201, third.text
                assert third.json()["index"] == size0 + 2
            assert server.alive()
            assert "unexpected error" not in server.log_text()
        finally:
            server.stop()
    try:
        from ledger.store.audit_sql import audit_store

        report = audit_store(check, log_verifier_key=W.log_key(), workers=1)
        assert report.ok, report
        assert report.tree_size == size0 + 3, report
        assert [check.find_event(s.event_id) for s in (first, second)] == \
            [size0, size0 + 1]
    finally:
        check.close()


def _assert_unavailable(r: httpx.Response, *, ambiguous: bool) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers.get("retry-after", "").isdigit(), r.headers
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["code"] == "store-unavailable", body
    assert ("may or may not be on the log" in body["detail"]) is ambiguous, body
    assert "send the same signed event again" in body["detail"] or not ambiguous


# ---- the CLI -------------------------------------------------------------------------------------

@dataclass
class _Result:
    code: int
    out: str
    err: str


def _cli(home: Path, *args: object) -> _Result:
    """``custody --home HOME ARGS`` in-process (the real entry point and error mapping)."""
    from cli.main import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(["--home", str(home), *(str(a) for a in args)])
        except BaseException as exc:  # a traceback: reported
            import traceback

            traceback.print_exc(file=err)
            code = -1 if not isinstance(exc, SystemExit) else int(exc.code or 0)
    return _Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CUSTODY_PASSPHRASE", "CUSTODY_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUSTODY_HOME", str(tmp_path / "default-home-unused"))


@pytest.mark.usefixtures("_clean_env")
def test_the_cli_says_one_sentence_and_exit_5(pg: pgcluster.Cluster, tmp_path: Path) -> None:
    """Embedded on a PostgreSQL URL and through a server (``--server``): a database that
    is down is one sentence and exit 5, reads and writes alike; both work again once it
    is back, without restarting the API server."""
    pg.drop_database("cli")
    url = pg.create_database("cli")
    home = tmp_path / "home"
    origin = "db-goes-away.test.example/custody"
    res = _cli(home, "init", "--origin", origin, "--org-name", "BKA", "--jurisdiction", "DE",
               "--database", url, "--no-passphrase")
    assert res.code == 0, res.err
    assert _cli(home, "case", "open", "CASE-DB-1", "--title", "t", "--as", "bka-admin").code == 0
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(b"evidence of the database going away " * 64)
    res = _cli(home, "register", evidence, "--case", "CASE-DB-1", "--id", "ART-DB-1",
               "--as", "bka-admin")
    assert res.code == 0, res.err
    server = apiserver.start(url, tmp_path / "api", origin=origin,
                             log_key=home / "keys" / "log.key")
    access = ("access", "ART-DB-1", "--action", "view", "--purpose", "check", "--as",
              "bka-admin")
    commands = {"embedded status": ("status",), "embedded access": access,
                "server status": ("--server", server.url, "status"),
                "server access": ("--server", server.url, *access)}
    try:
        for name, args in commands.items():  # all fine while PostgreSQL runs
            res = _cli(home, *args)
            assert res.code == 0, (name, res.err)
        for how in ("fast", "kill"):
            pg.crash() if how == "kill" else pg.shutdown("fast")
            for name, args in commands.items():
                t0 = time.monotonic()
                res = _cli(home, *args)
                took = time.monotonic() - t0
                lines = [line for line in res.err.splitlines() if line.strip()]
                assert res.code == 5, (how, name, res.code, res.err)
                assert len(lines) == 1, (how, name, res.err)
                assert DOWN.match(lines[0]), (how, name, res.err)
                assert f":{pg.port})" in lines[0]
                assert took < 2 * FAST_S, (how, name, took)
            pg.start()
            for name, args in commands.items():
                res = _cli(home, *args)
                assert res.code == 0, (how, name, res.err)
        assert server.alive()
        res = _cli(home, "audit")
        assert res.code == 0, res.out + res.err
    finally:
        server.stop()
