"""Checkpoint trust through the CLI (issue #8 item 3, threat T4).

The client's kept checkpoint (``HOME/checkpoints/latest``) only advances through
``ledger.core.trust.update_trusted``: signed by the pinned log key and proven to extend the
kept one. Here an insider edits the SQLite ledger directly (append-only triggers dropped,
checkpoints deleted and re-signed with the log key from the home), and a hostile server
forges append receipts; every time the command exits 1 with one sentence and the kept
file is byte-identical before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import context
from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from ledger.core.errors import CheckpointRefused, VerificationError
from ledger.core.note import NoteSigner
from ledger.home import Home, now_ms
from tests.cli.conftest import ORIGIN, World, assert_error

# ---- insider tools ---------------------------------------------------------------------


def kept_path(world: World) -> Path:
    return world.home / "checkpoints" / "latest"


def kept_bytes(world: World) -> bytes:
    return kept_path(world).read_bytes()


def home_of(world: World) -> Home:
    return Home(world.home).load()


@contextlib.contextmanager
def db(world: World) -> Iterator[sqlite3.Connection]:
    """Raw access to the home's SQLite ledger with the append-only triggers dropped."""
    conn = sqlite3.connect(world.home / "ledger.db", isolation_level=None)
    try:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        for (name,) in triggers.fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        yield conn
    finally:
        conn.close()


def leaf_hashes(conn: sqlite3.Connection, end: int | None = None) -> list[bytes]:
    rows = conn.execute("SELECT leaf_hash FROM entries ORDER BY idx").fetchall()
    return [bytes(h) for (h,) in rows][:end]


def latest_in_db(conn: sqlite3.Connection) -> tuple[int, str]:
    size, note = conn.execute("SELECT size, note FROM checkpoints ORDER BY size DESC "
                              "LIMIT 1").fetchone()
    return int(size), str(note)


def put_checkpoint(conn: sqlite3.Connection, size: int, note: str) -> None:
    conn.execute("DELETE FROM checkpoints WHERE size >= ?", (size,))
    conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))


def signed(world: World, size: int, root: bytes, signer: NoteSigner | None = None) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), signer or home_of(world).log_signer())


def forked_root(hashes: list[bytes]) -> bytes:
    return merkle.root([*hashes[:-1], merkle.leaf_hash(b"a different last entry")])


def refused_with_kept_unchanged(world: World, phrase: str, *args: str) -> None:
    before = kept_bytes(world)
    assert_error(world.cli(*args), 1, phrase)
    assert kept_bytes(world) == before


def audit_fails_with_kept_unchanged(world: World, *args: str) -> dict[str, Any]:
    before = kept_bytes(world)
    res = world.cli("audit", *args)
    assert res.code == 1, res.out + res.err
    assert len(res.err_lines) == 1, res.err
    assert kept_bytes(world) == before
    report = world.cli("audit", "--json", *args)
    assert report.code == 1
    assert kept_bytes(world) == before
    assert report.json["ok"] is False
    return dict(report.json)


# ---- the kept file ------------------------------------------------------------------


def test_the_kept_checkpoint_is_verified_current_and_private(world: World) -> None:
    home = home_of(world)
    note = kept_path(world).read_text()
    cp = verify_checkpoint(note, home.config["log_key"])
    assert cp.size == world.size()
    assert stat.S_IMODE(kept_path(world).stat().st_mode) == 0o600
    assert [p.name for p in kept_path(world).parent.iterdir() if p.name.endswith(".tmp")] == []
    out = world.cli("log", "checkpoint", expect=0).out
    assert out == note  # nothing new: the same note, kept as it was


def test_appends_advance_the_kept_checkpoint(world: World) -> None:
    size = world.size()
    world.cli("case", "open", "CASE-T1", "--as", "de-prosecutor", expect=0)
    world.cli("case", "open", "CASE-T2", "--as", "de-prosecutor", expect=0)
    cp = verify_checkpoint(kept_path(world).read_text(), home_of(world).config["log_key"])
    assert cp.size == size + 2


# ---- an insider edits the database --------------------------------------------------


def test_a_truncated_and_re_signed_log_is_a_rollback(world: World) -> None:
    size = world.size()
    kept = size - 3
    with db(world) as conn:
        conn.execute("DELETE FROM entries WHERE idx >= ?", (kept,))
        conn.execute("DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > ?", (kept,))
        conn.execute("UPDATE head SET size = ?", (kept,))
        put_checkpoint(conn, kept, signed(world, kept, merkle.root(leaf_hashes(conn))))
    refused_with_kept_unchanged(
        world, f"the ledger's checkpoint (size {kept}) is older than the one this client "
        f"kept (size {size}): the log was truncated or you are shown a stale view",
        "log", "checkpoint")
    audit_fails_with_kept_unchanged(world)


def test_a_stale_view_is_a_rollback(world: World) -> None:
    with db(world) as conn:
        size, _note = latest_in_db(conn)
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (size,))
    refused_with_kept_unchanged(world, "is older than the one this client kept",
                                "log", "checkpoint")


def test_a_re_signed_checkpoint_with_another_root_at_the_same_size_is_a_fork(
        world: World) -> None:
    with db(world) as conn:
        size, _note = latest_in_db(conn)
        put_checkpoint(conn, size, signed(world, size, forked_root(leaf_hashes(conn))))
    refused_with_kept_unchanged(world, f"the ledger's checkpoint at size {size} has a "
                                "different root from the one this client kept",
                                "log", "checkpoint")
    audit_fails_with_kept_unchanged(world)


def test_a_larger_checkpoint_that_does_not_extend_the_kept_one_is_a_fork(
        world: World) -> None:
    seen = kept_bytes(world)  # what this client saw before two more appends
    world.cli("case", "open", "CASE-T1", "--as", "de-prosecutor", expect=0)
    world.cli("case", "open", "CASE-T2", "--as", "de-prosecutor", expect=0)
    kept_path(world).write_bytes(seen)
    old = verify_checkpoint(seen.decode(), home_of(world).config["log_key"]).size
    with db(world) as conn:
        size, _note = latest_in_db(conn)
        assert size == old + 2
        put_checkpoint(conn, size, signed(world, size, forked_root(leaf_hashes(conn))))
    refused_with_kept_unchanged(
        world, f"the ledger's checkpoint (size {size}) does not extend the one this client "
        f"kept (size {old}): the consistency proof fails", "log", "checkpoint")
    audit_fails_with_kept_unchanged(world)


def test_a_checkpoint_signed_by_another_key_is_refused(world: World) -> None:
    with db(world) as conn:
        size, _note = latest_in_db(conn)
        stranger = NoteSigner(ORIGIN, b"\x5a" * 32)
        put_checkpoint(conn, size, signed(world, size, merkle.root(leaf_hashes(conn)),
                                          stranger))
    refused_with_kept_unchanged(world, "does not verify with the pinned log key",
                                "log", "checkpoint")


def test_an_edited_kept_file_is_an_error_not_replaced(world: World) -> None:
    note = kept_path(world).read_text()
    size = world.size()
    kept_path(world).write_text(note.replace(f"\n{size}\n", f"\n{size - 1}\n", 1))
    refused_with_kept_unchanged(world, "the checkpoint this client kept does not verify",
                                "log", "checkpoint")
    refused_with_kept_unchanged(world, "the checkpoint this client kept does not verify",
                                "case", "open", "CASE-T3", "--as", "de-prosecutor")


# ---- custody audit -------------------------------------------------------------------


def test_audit_checks_against_the_pinned_key_not_the_genesis_key(world: World) -> None:
    config = world.home / "config.json"
    doc = json.loads(config.read_text())
    doc["log_key"] = NoteSigner(ORIGIN, b"\x77" * 32).verifier_key
    config.write_text(json.dumps(doc))
    report = audit_fails_with_kept_unchanged(world)
    assert report["kind"] == "checkpoint"
    assert report["first_bad_index"] == 0
    refused_with_kept_unchanged(world, "does not verify with the pinned log key",
                                "log", "checkpoint")


def test_a_passing_audit_advances_the_kept_checkpoint(world: World) -> None:
    seen = kept_bytes(world)
    world.cli("case", "open", "CASE-T1", "--as", "de-prosecutor", expect=0)
    latest = kept_bytes(world)
    kept_path(world).write_bytes(seen)
    res = world.cli("audit", "--json", expect=0)
    assert res.json["ok"] is True
    assert kept_bytes(world) == latest


def test_an_audit_whose_trust_update_fails_fails(world: World, tmp_path: Path) -> None:
    """The log audits clean against a genuine checkpoint given with --checkpoint, but the
    client kept a (validly signed) checkpoint of another tree of the same size."""
    genuine = tmp_path / "genuine.txt"
    genuine.write_bytes(kept_bytes(world))
    with db(world) as conn:
        size, _note = latest_in_db(conn)
        kept_path(world).write_text(signed(world, size, forked_root(leaf_hashes(conn))))
    report = audit_fails_with_kept_unchanged(world, "--checkpoint", str(genuine))
    assert report["kind"] == "consistency"
    assert report["first_bad_index"] is None
    assert "different root from the one this client kept" in report["detail"]
    res = world.cli("audit", "--checkpoint", str(genuine))
    assert res.err_lines[0].startswith("audit FAILED (consistency): the ledger's checkpoint")


# ---- a home without a pinned key ------------------------------------------------------


def test_a_home_without_a_pinned_log_key_is_told_to_pin_one(world: World) -> None:
    config = world.home / "config.json"
    doc = json.loads(config.read_text())
    del doc["log_key"]
    config.write_text(json.dumps(doc))
    refused_with_kept_unchanged(world, "has no pinned log key", "log", "checkpoint")
    size = world.size()  # a write is refused before anything is appended
    refused_with_kept_unchanged(world, "has no pinned log key", "case", "open",
                                "CASE-T4", "--as", "de-prosecutor")
    assert world.size() == size
    res = world.cli("log", "checkpoint")
    assert "custody log verifier-key" in res.err
    assert "config.json" in res.err
    audit_fails_with_kept_unchanged(world)


# ---- Home.remember_checkpoint ------------------------------------------------------------


def test_home_writes_atomically_with_mode_0600(world: World,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = home_of(world)
    path = kept_path(world)
    path.chmod(0o644)
    world.cli("case", "open", "CASE-T1", "--as", "de-prosecutor", expect=0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with db(world) as conn:
        size, note = latest_in_db(conn)
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (size,))
        _older, older_note = latest_in_db(conn)
        conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))
    path.write_text(older_note)  # the client saw an older checkpoint
    older = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    from ledger.store.sql import SqlStore

    store = SqlStore.open(home.database_url, signer=None, clock=now_ms)
    try:
        with pytest.raises(OSError, match="disk full"):
            home.remember_checkpoint(note, store.consistency_proof)
        assert path.read_bytes() == older
        assert sorted(p.name for p in path.parent.iterdir()) == [".lock", "latest"]
        monkeypatch.undo()
        decision = home.remember_checkpoint(note, store.consistency_proof)
    finally:
        store.close()
    assert decision.advanced
    assert decision.checkpoint.size == size
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_home_without_a_consistency_source_accepts_only_a_first_checkpoint(
        world: World) -> None:
    home = home_of(world)
    path = kept_path(world)
    with db(world) as conn:
        size, note = latest_in_db(conn)
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (size,))
        _older, older_note = latest_in_db(conn)
    path.write_text(older_note)
    with pytest.raises(VerificationError, match="no consistency proof source"):
        home.remember_checkpoint(note)
    assert path.read_text() == older_note
    path.unlink()
    assert home.remember_checkpoint(note).advanced  # first use
    assert path.read_text() == note
    assert home.remembered_checkpoint() == note


# ---- receipts older than the kept checkpoint ---------------------------------------------


def test_an_older_receipt_is_fine_when_the_kept_checkpoint_extends_it(world: World) -> None:
    """Another process of this home appended meanwhile (or an idempotent retry returned
    the original receipt): the receipt's checkpoint is older than the kept one."""
    from ledger.store.base import AppendResult

    size = world.size()
    world.cli("case", "open", "CASE-T1", "--as", "de-prosecutor", expect=0)
    world.cli("case", "open", "CASE-T2", "--as", "de-prosecutor", expect=0)
    before = kept_bytes(world)
    with db(world) as conn:
        note = conn.execute("SELECT note FROM checkpoints WHERE size = ?",
                            (size + 1,)).fetchone()[0]
        hashes = leaf_hashes(conn)

    def receipt(checkpoint: str, index: int = size) -> AppendResult:
        return AppendResult(index, hashes[index], "e", 0, checkpoint)

    c = context.Ctx(Home(world.home))
    try:
        decision = c.remember_receipt(receipt(note))
        assert decision.advanced is False
        assert decision.received.size == size + 1
        assert kept_bytes(world) == before
        forked = signed(world, size + 1, merkle.root([*hashes[:size], bytes(32)]))
        with pytest.raises(CheckpointRefused, match="is not a prefix of the one this client"):
            c.remember_receipt(receipt(forked))
        with pytest.raises(CheckpointRefused, match="does not cover its own log index"):
            c.remember_receipt(receipt(note, index=size + 1))
    finally:
        c.close()
    assert kept_bytes(world) == before


def test_a_rollback_is_re_checked_once_with_a_fresh_fetch(world: World) -> None:
    """Between fetching the latest checkpoint and checking it, another process of this
    home may have kept a newer one: one fresh fetch settles it; a stale view stays."""
    with db(world) as conn:
        size, current = latest_in_db(conn)
        stale = conn.execute("SELECT note FROM checkpoints WHERE size = ?",
                             (size - 1,)).fetchone()[0]
    before = kept_bytes(world)
    for served, ok in (([stale, current], True), ([stale, stale, current], False)):
        c = context.Ctx(Home(world.home))
        try:
            answers = iter(served)
            store = c.reader()
            object.__setattr__(store, "latest_checkpoint", lambda it=answers: next(it))
            if ok:
                assert c.trusted_checkpoint() == current
            else:
                with pytest.raises(CheckpointRefused, match="is older than the one"):
                    c.trusted_checkpoint()
        finally:
            c.close()
        assert kept_bytes(world) == before


# ---- server mode: a hostile server forges append receipts -----------------------------


@pytest.fixture
def serve(world: World, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Callable[[Callable[[dict[str, Any]], str] | None], None]]:
    """Run the world's ledger behind the real API app (in-process), and point the CLI at
    it through the real RemoteStore. ``serve(forge)`` makes the server replace every
    append receipt's checkpoint by ``forge(receipt)``; ``serve(None)`` is honest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from api.app import create_app
    from ledger.store.remote import RemoteStore, login
    from ledger.store.sql import SqlStore

    home = home_of(world)
    store = SqlStore.open(home.database_url, signer=home.log_signer(), clock=now_ms)
    forger: list[Callable[[dict[str, Any]], str] | None] = [None]

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type")}
        resp = tc.request(request.method, request.url.path, params=request.url.params,
                          content=request.content, headers=headers)
        body = resp.content
        forge = forger[0]
        if forge is not None and request.method == "POST" and \
                request.url.path == "/v1/events" and resp.status_code < 300:
            data = resp.json()
            data["checkpoint"] = forge(data)
            body = json.dumps(data).encode()
        return httpx.Response(resp.status_code, content=body,
                              headers={"content-type": resp.headers["content-type"]})

    url = "http://testserver"
    client = httpx.Client(base_url=url, transport=httpx.MockTransport(handler))
    tokens: dict[str, str] = {}

    def token_of(actor: str | None) -> str:
        key = home.actor(actor)
        if key.actor_id not in tokens:
            tokens[key.actor_id] = login(url, key, client=client)[0]
        return tokens[key.actor_id]

    def remote(_home: Home, *, writable: bool = True, create: bool = False,
               actor_id: str | None = None) -> RemoteStore:
        return RemoteStore(url, token=lambda: token_of(actor_id), signer_tokens=token_of,
                           client=client)

    def set_forger(forge: Callable[[dict[str, Any]], str] | None) -> None:
        forger[0] = forge

    with TestClient(create_app(store, evidence_dir=world.root / "api-evidence")) as tc:
        monkeypatch.setattr(context, "open_store", remote)
        try:
            yield set_forger
        finally:
            client.close()
    store.close()


@pytest.mark.parametrize("forgery", ["fork", "stranger", "rollback"])
def test_a_forged_receipt_checkpoint_exits_1_and_keeps_the_kept_one(
        world: World, serve: Callable[[Callable[[dict[str, Any]], str] | None], None],
        forgery: str) -> None:
    log_signer = home_of(world).log_signer()
    with db(world) as conn:
        older = str(conn.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1 "
                                 "OFFSET 2").fetchone()[0])
        hashes = leaf_hashes(conn)

    def forge(receipt: dict[str, Any]) -> str:
        size = int(receipt["index"]) + 1
        root = merkle.root([*hashes[:size - 1], bytes(32)])
        return {"fork": sign_checkpoint(Checkpoint(ORIGIN, size, root), log_signer),
                "stranger": sign_checkpoint(Checkpoint(ORIGIN, size, root),
                                            NoteSigner(ORIGIN, b"\x66" * 32)),
                "rollback": older}[forgery]

    serve(forge)
    before = kept_bytes(world)
    res = world.cli("case", "open", "CASE-S1", "--as", "de-prosecutor")
    assert_error(res, 1, f"log index {len(hashes)} was appended, but the ")
    assert {"fork": "does not extend the one this client kept",
            "stranger": "does not verify with the pinned log key",
            "rollback": "does not cover its own log index"}[forgery] in res.err
    assert kept_bytes(world) == before

    serve(None)  # the same server, honest again: the next receipt is accepted
    world.cli("case", "open", "CASE-S2", "--as", "de-prosecutor", expect=0)
    cp = verify_checkpoint(kept_path(world).read_text(), home_of(world).config["log_key"])
    assert cp.size == len(hashes) + 2


def test_trusted_checkpoint_fetches_verifies_and_keeps(
        world: World, serve: Callable[[Callable[[dict[str, Any]], str] | None], None]) -> None:
    seen = kept_bytes(world)
    world.cli("case", "open", "CASE-S1", "--as", "de-prosecutor", expect=0)
    latest = kept_bytes(world)
    kept_path(world).write_bytes(seen)
    c = context.Ctx(Home(world.home))
    try:
        assert c.trusted_checkpoint() == latest.decode()
    finally:
        c.close()
    assert kept_bytes(world) == latest
    with db(world) as conn:
        size, _note = latest_in_db(conn)
        put_checkpoint(conn, size, signed(world, size, forked_root(leaf_hashes(conn))))
    c = context.Ctx(Home(world.home))
    try:
        with pytest.raises(CheckpointRefused) as caught:
            c.trusted_checkpoint()
    finally:
        c.close()
    assert caught.value.kind == "fork"
    assert kept_bytes(world) == latest
