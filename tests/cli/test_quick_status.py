"""``custody status`` reads an embedded ledger through the sqlite3-only reader
(:mod:`ledger.store.lite`, issue #13: start-up ≤ 8× a bare interpreter) and keeps every
check the full store makes: a state record is verified against the signed state-map
root, an edited row or a forged checkpoint is exit 1, and whatever the quick reader does
not serve goes to the full store, which says what is wrong.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.lazy import _Deferred
from cli.main import app
from ledger.core import state as st
from ledger.core.errors import IntegrityFault
from ledger.home import Home, open_quick_reader, open_store
from ledger.store import lite
from ledger.store.lite import SqliteReader
from ledger.views import status
from tests.cli.conftest import World

ROOT = Path(__file__).resolve().parents[2]


def _home(world: World) -> Home:
    home = Home.resolve(world.home)
    home.load()
    return home


def _sql(world: World, statement: str, *params: Any) -> None:
    conn = sqlite3.connect(world.home / "ledger.db")
    try:
        conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


def test_the_quick_reader_reads_what_the_store_reads(world: World) -> None:
    home = _home(world)
    quick = open_quick_reader(home)
    assert isinstance(quick, SqliteReader)
    store = open_store(home, writable=False)
    try:
        assert status(quick) == status(store)
        keys = [st.LEDGER, *(k for k, _ in store.state_items("")), "art/none", "nonce/none"]
        assert len(keys) > 20
        for key in keys:
            assert quick.state(key) == store.state(key), key
        for prefix in ("", st.ORG, st.ACTOR, st.ARTEFACT, "zzz/"):
            want = list(store.state_items(prefix))
            assert list(quick.state_items(prefix)) == want
            paged = list(quick.state_items(prefix, page=1))  # keyset paging, one by one
            assert paged == want
            if want:
                assert list(quick.state_items(prefix, after=want[0][0])) == want[1:]
        assert quick.size() == store.size() == world.size()
        assert quick.latest_checkpoint() == store.latest_checkpoint()
    finally:
        quick.close()
        store.close()


def test_an_edited_state_row_is_refused_as_by_the_store(world: World) -> None:
    home = _home(world)
    record = open_store(home, writable=False).state(st.LEDGER)
    assert record is not None
    _sql(world, "UPDATE state SET value = ? WHERE key = ?",
         json.dumps({**record, "origin": "forged.example/ledger"}), st.LEDGER)
    quick = open_quick_reader(home)
    assert quick is not None
    with pytest.raises(IntegrityFault) as by_quick:
        quick.state(st.LEDGER)
    quick.close()
    with pytest.raises(IntegrityFault) as by_store:
        open_store(home, writable=False).state(st.LEDGER)
    assert str(by_quick.value) == str(by_store.value)
    assert st.LEDGER in str(by_quick.value)
    res = world.cli("status")
    assert res.code == 1
    assert "forged" not in res.out
    assert len(res.err_lines) == 1


def test_a_forged_checkpoint_is_refused(world: World) -> None:
    conn = sqlite3.connect(world.home / "ledger.db")
    size, note = conn.execute(
        "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    conn.close()
    body, _, sig = note.rpartition("— ")
    forged = body + "— " + sig[:-6] + ("AAAA==" if not sig.endswith("AAAA==\n") else "BBBB==") \
        + "\n"
    # The checkpoints table is append-only (triggers): an operator with the file drops them.
    _sql(world, "DROP TRIGGER checkpoints_no_update")
    _sql(world, "UPDATE checkpoints SET note = ? WHERE size = ?", forged, size)
    res = world.cli("status")
    assert res.code == 1
    assert "does not verify with the log key" in res.err


def test_what_the_quick_reader_does_not_serve_goes_to_the_store(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = world.home / "ledger.db"
    assert SqliteReader.open(tmp_path / "none.db", verify_key=None) is None
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    assert SqliteReader.open(other, verify_key=None) is None
    assert SqliteReader.open(tmp_path, verify_key=None) is None  # a directory
    # A read-only directory (simulated: the tests may run as root): the file is read
    # immutable when no write-ahead log is there, else left to the store.
    monkeypatch.setattr(lite.os, "access", lambda path, mode: False)
    wal = Path(f"{db}-wal")
    wal.unlink(missing_ok=True)
    reader = SqliteReader.open(db, verify_key=None)
    assert reader is not None
    assert reader.size() == world.size()
    reader.close()
    wal.write_bytes(b"")
    assert SqliteReader.open(db, verify_key=None) is None
    monkeypatch.undo()
    wal.unlink()
    # Garbage where the ledger was: the store names it (exit 1), nothing is written.
    db.write_bytes(os.urandom(8192))
    res = world.cli("status")
    assert res.code == 1
    assert "is damaged" in res.err


def test_status_on_a_server_home_is_not_read_locally(world: World) -> None:
    home = _home(world)
    home.config["server"] = "https://127.0.0.1:9"
    assert open_quick_reader(home) is None


def test_status_imports_neither_sqlalchemy_nor_pydantic(world: World) -> None:
    probe = ("import atexit, json, sys\n"
             "atexit.register(lambda: sys.stderr.write(json.dumps(sorted(sys.modules))))\n"
             "sys.argv = ['custody', *sys.argv[1:]]\n"
             "from cli.entry import main\nmain()")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    proc = subprocess.run([sys.executable, "-c", probe, "--home", str(world.home), "status",
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["size"] == world.size()
    modules = set(json.loads(proc.stderr.splitlines()[-1]))
    assert "ledger.store.lite" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in ("sqlalchemy", "pydantic",
                                                               "alembic", "psycopg"))
    assert heavy == []
    assert "nacl.bindings" in modules  # the checkpoint's signature is still checked


# ---- option values taken without pydantic (cli.lazy._Deferred) -------------------------

VALUES = ["", ".", "~", "~/x", "a b", "./ünï/cödé", "-", "--x", "/tmp/../etc", "x" * 300,
          "\t", "C:\\x", "a\\b"]


def _options() -> list[Any]:
    import typer.main

    group = typer.main.get_command(app)
    chosen = [p for p in group.params if p.type_descriptor.annotation in (str, Path)]
    # Some commands' options of those types, constrained ones included ('restore' takes
    # a file that must not be a directory, 'audit --checkpoint' one that must exist):
    # those must still be refused by typer's own checks.
    for name in ("register", "serve", "restore", "audit"):
        command = group.commands[name]  # type: ignore[attr-defined]
        for p in command.params:
            if getattr(p, "type_descriptor", None) is not None \
                    and p.type_descriptor.annotation in (str, Path) and p.nargs == 1:
                chosen.append(p)
    return chosen


def test_plain_option_values_coerce_as_typer_does() -> None:
    import typer.main
    from typer._coercion import build_runtime_param

    group = typer.main.get_command(app)
    ctx = group.make_context("custody", [], resilient_parsing=True)
    options = _options()
    assert {p.type_descriptor.annotation for p in options} == {str, Path}
    constrained = [p for p in options if p.type_descriptor.parameter_info.exists
                   or not p.type_descriptor.parameter_info.dir_okay]
    assert len(constrained) >= 2
    for param in options:
        real = build_runtime_param(param.type_descriptor)
        for value in VALUES:
            try:
                want: Any = real.coerce(value, param=param, ctx=ctx)
            except Exception as exc:
                want = type(exc)
            try:
                got: Any = _Deferred().coerce(value, param, ctx)
            except Exception as exc:
                got = type(exc)
            assert (type(got), got) == (type(want), want), (param.name, value)
