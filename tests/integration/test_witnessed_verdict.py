"""A court demands a quorum of named witnesses for its VERDICT (issue #8, "Done when"):
``custody verify --witness A --witness B --quorum 2`` through a real server is refused
while only one agency has cosigned, gives ``authentic`` once both have, keeps working
after the log grows past the witnessed checkpoint (the verdict rests on the newest
checkpoint both cosigned, proven a prefix of the one the client kept), and the offline
bundle carries the cosignatures for ``custody bundle verify`` to check the same quorum."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_server_story import custody, ok, serving

ORIGIN = "hub.example/custody"


def test_a_verdict_needs_the_quorum_of_witnesses_it_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTODY_SERVER", raising=False)
    op = tmp_path / "operator"
    evidence = tmp_path / "disk.E01"
    evidence.write_bytes(os.urandom(100_000))
    ok(custody(op, "init", "--origin", ORIGIN, "--org-name", "Hub", "--org-id", "hub",
               "--jurisdiction", "NL", "--no-passphrase", "--json"))
    log_key = ok(custody(op, "log", "verifier-key")).out.strip()
    keys = {}
    for agency in ("nfi", "pj", "bka"):
        keys[agency] = ok(custody(tmp_path / agency, "witness", "init", "--name",
                                  f"witness.{agency}.example", "--no-passphrase",
                                  "--json")).json["witness_key"]

    def witness(agency: str, url: str) -> None:
        ok(custody(tmp_path / agency, "witness", "run", "--server", url, "--log-key", log_key))

    quorum = ["--witness", keys["nfi"], "--witness", keys["pj"], "--quorum", "2"]
    with serving(op) as url:
        ok(custody(op, "case", "open", "CASE-1", server=url))
        art = ok(custody(op, "register", str(evidence), "--case", "CASE-1", "--json",
                         server=url)).json["artefact_id"]
        witness("nfi", url)
        one = custody(op, "verify", str(evidence), *quorum, server=url)
        assert one.code == 1
        assert "cosigned by 2 witness" in one.err
        witness("pj", url)
        both = custody(op, "verify", str(evidence), *quorum, "--json", server=url)
        assert both.code == 0, both.err
        verdict = both.json
        assert verdict["verdict"] == "authentic"
        assert sorted(verdict["witnesses"]) == ["witness.nfi.example", "witness.pj.example"]
        witnessed_size = verdict["checkpoint"]["size"]

        # The log grows past what the witnesses cosigned; the client's kept checkpoint
        # follows it (the access receipt), the verdict still rests on the witnessed one.
        ok(custody(op, "access", art, "--action", "view", "--purpose", "court", server=url))
        later = custody(op, "verify", str(evidence), *quorum, "--json", server=url)
        assert later.code == 0, later.err
        assert later.json["checkpoint"]["size"] == witnessed_size
        assert later.json["complete"] is True
        unwitnessed = custody(op, "verify", str(evidence), "--json", server=url).json
        assert unwitnessed["checkpoint"]["size"] == witnessed_size + 1
        assert len(unwitnessed["custody"]) == len(later.json["custody"]) + 1

        bundle = tmp_path / "court.bundle.json"
        ok(custody(op, "bundle", "export", art, "--out", str(bundle), *quorum, server=url))

    # Offline, at the court: the same quorum from the bundle alone; a witness that did not
    # cosign cannot make up the quorum.
    court = tmp_path / "court"
    offline = custody(court, "bundle", "verify", str(bundle), "--log-key", log_key,
                      "--evidence", str(evidence), *quorum, "--json")
    assert offline.code == 0, offline.err
    assert offline.json["verdict"] == "authentic"
    short = custody(court, "bundle", "verify", str(bundle), "--log-key", log_key,
                    "--witness", keys["nfi"], "--witness", keys["bka"], "--quorum", "2",
                    "--json")
    assert short.code == 1
    assert short.json["verdict"] == "fault"
    assert [f["kind"] for f in short.json["faults"]] == ["witness"]
    assert "1 valid of 2 required" in short.json["faults"][0]["detail"]
