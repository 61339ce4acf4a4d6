"""Issue #8 item 4: partner agencies witness the log, end to end through the CLI.

A real server (``custody serve``, uvicorn) runs a ledger; two agencies (NFI, PJ) each
create a witness key (``custody witness init``) and witness it (``custody witness run``)
holding only the log key and their own key. A court demanding a quorum of both
(``custody log checkpoint --witnessed --witness A --witness B --quorum 2``) is refused
until both cosigned. Then the operator turns hostile: it replaces its database with an
earlier copy (dropping the last entries, their checkpoints and everything derived from
them) and appends different events, re-signed with the same log key. Each witness's
next round exits 1 naming a split view, keeps its state, and posts nothing; the court
still gets only the last checkpoint both witnesses cosigned.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from ledger import keys
from ledger.core.checkpoint import Checkpoint, verify_checkpoint
from ledger.core.note import split_note
from ledger.core.witness import verify_witnessed
from tests.integration.test_server_story import Res, custody, join, ok, serving

ORIGIN = "hub.example/custody"


def size_of(note: str) -> int:
    return Checkpoint.parse(split_note(note)[0]).size


def root_of(note: str) -> str:
    return Checkpoint.parse(split_note(note)[0]).root.hex()


def backup(db: Path, to: Path) -> None:
    """A consistent online copy of a SQLite database (the operator's 'earlier copy')."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def restore(copy: Path, db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(copy.read_bytes())


def test_two_agencies_witness_and_a_split_view_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODY_SERVER", raising=False)
    monkeypatch.setenv("CUSTODY_PASSPHRASE", "witness passphrase of the NFI")
    op, nfi, court = tmp_path / "operator", tmp_path / "nfi", tmp_path / "court"
    pj_dir = tmp_path / "pj-witness"
    ok(custody(op, "init", "--origin", ORIGIN, "--org-name", "Hub", "--org-id", "hub",
               "--jurisdiction", "NL", "--no-passphrase", "--json"))
    log_key = ok(custody(op, "log", "verifier-key")).out.strip()

    # Each agency creates its witness key on its own machine (NFI: encrypted, default
    # directory HOME/witness; PJ: its own --dir) and publishes the verifier key.
    nfi_key = ok(custody(nfi, "witness", "init", "--name", "witness.nfi.example",
                         "--json")).json["witness_key"]
    assert keys.is_encrypted(nfi / "witness" / "witness.key")
    pj_key = ok(custody(tmp_path / "pj-home", "witness", "init", "--name",
                        "witness.pj.example", "--dir", str(pj_dir), "--no-passphrase",
                        "--json")).json["witness_key"]
    assert nfi_key.startswith("witness.nfi.example+")
    assert pj_key.startswith("witness.pj.")
    again = custody(nfi, "witness", "init", "--name", "witness.nfi.example")
    assert again.code == 2
    assert "already exists" in again.err

    def witness_nfi(url: str) -> Res:
        return custody(nfi, "witness", "run", "--server", url, "--log-key", log_key, "--json")

    def witness_pj(url: str) -> Res:
        return custody(tmp_path / "pj-home", "witness", "run", "--server", url, "--log-key",
                       log_key, "--dir", str(pj_dir), "--json")

    def court_checks(url: str, quorum: int, *witness_keys: str) -> Res:
        args = [a for k in witness_keys for a in ("--witness", k)]
        return custody(court, "log", "checkpoint", "--witnessed", *args,
                       "--quorum", str(quorum), server=url)

    with serving(op) as url:
        for name, cc in (("BKA", "DE"), ("NFI", "NL")):
            ok(custody(op, "org", "add", "--name", name, "--jurisdiction", cc, server=url))
        join(court, url, "court-reader")  # pins the log key; public reads need no enrolment

        refused = court_checks(url, 2, nfi_key, pj_key)
        assert refused.code == 1
        assert "0 valid of 2 required" in refused.err

        first = ok(witness_nfi(url)).json
        assert (first["size"], first["previous_size"]) == (6, None)
        assert first["stored"] == first["cosignature"]

        one = court_checks(url, 2, nfi_key, pj_key)
        assert one.code == 1, one.out
        assert "1 valid of 2 required" in one.err
        assert len(one.err.strip().splitlines()) == 1
        assert ok(court_checks(url, 1, nfi_key)).out.startswith(ORIGIN + "\n6\n")

        assert ok(witness_pj(url)).json["size"] == 6
        both = ok(court_checks(url, 2, nfi_key, pj_key)).out
        assert verify_witnessed(both, log_key, [nfi_key, pj_key], 2).checkpoint.size == 6

        # The operator's earlier copy of its database, at size 6.
        backup(op / "ledger.db", tmp_path / "earlier.db")

        # The log grows; both witnesses follow it with consistency proofs.
        for name, cc in (("OFAC", "FR"), ("FBI", "US")):
            ok(custody(op, "org", "add", "--name", name, "--jurisdiction", cc, server=url))
        second = ok(witness_nfi(url)).json
        assert (second["size"], second["previous_size"]) == (10, 6)
        assert ok(witness_pj(url)).json["previous_size"] == 6
        # Idempotent: a round with nothing new cosigns the same checkpoint again.
        assert ok(witness_nfi(url)).json["previous_size"] == 10
        looped = ok(custody(nfi, "witness", "run", "--server", url, "--log-key", log_key,
                            "--rounds", "2", "--interval", "0", "--json"))
        assert [json.loads(line)["size"] for line in looped.out.splitlines()] == [10, 10]
        assert custody(nfi, "witness", "run", "--server", url, "--log-key", log_key,
                       "--once", "--rounds", "2").code == 2
        witnessed = ok(court_checks(url, 2, nfi_key, pj_key)).out
        assert size_of(witnessed) == 10
        honest_root = root_of(witnessed)

    nfi_state = (nfi / "witness" / "state.json").read_bytes()
    pj_state = (pj_dir / "state.json").read_bytes()
    assert size_of(json.loads(nfi_state)["logs"][ORIGIN]) == 10

    # The hostile operator: back to the copy at size 6, then two DIFFERENT events,
    # re-signed with the same log key (its own client checkpoint is thrown away too).
    restore(tmp_path / "earlier.db", op / "ledger.db")
    (op / "checkpoints" / "latest").unlink(missing_ok=True)
    for name, cc in (("Mallory", "GB"), ("Trudy", "IT")):
        ok(custody(op, "org", "add", "--name", name, "--jurisdiction", cc))

    with serving(op) as url:
        served = httpx.get(url + "/v1/log").json()["checkpoint"]
        verify_checkpoint(served, log_key)  # correctly signed by the log key
        assert size_of(served) == 10
        assert root_of(served) != honest_root

        # Same size, another root: a split view, named with both sizes and roots.
        split = witness_nfi(url)
        assert split.code == 1, split.out
        assert split.out == ""
        assert split.err.startswith("custody: split view")
        assert len(split.err.strip().splitlines()) == 1
        assert "size 10" in split.err
        assert root_of(served) in split.err
        assert honest_root in split.err
        assert list((nfi / "witness" / "evidence").glob("fork-10-*.note"))

        # The forked log grows: no consistency proof can connect it to what PJ cosigned.
        ok(custody(op, "org", "add", "--name", "Eve", "--jurisdiction", "ES", server=url))
        forked = witness_pj(url)
        assert forked.code == 1, forked.out
        assert forked.err.startswith("custody: split view")
        assert "size 12" in forked.err
        assert "size 10" in forked.err

        # Nothing was posted for the forked checkpoints; the states did not move.
        for size in (10, 12):
            data = httpx.get(f"{url}/v1/log/checkpoints/{size}/cosigned").json()
            assert data["cosignatures"] == [], data
        assert (nfi / "witness" / "state.json").read_bytes() == nfi_state
        assert (pj_dir / "state.json").read_bytes() == pj_state

        # Rerunning changes nothing: the witness keeps refusing.
        assert witness_nfi(url).code == 1
        # The court still gets only what both witnesses cosigned: size 6 of the copy.
        court_view = ok(court_checks(url, 2, nfi_key, pj_key)).out
        assert size_of(court_view) == 6
