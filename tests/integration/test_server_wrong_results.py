"""Issue 9, "Wrong results", through a real server (SQLite, and PostgreSQL when set):
an outsider's denied access is on the log without revealing that the artefact exists, and a
court outside the case verifies the file it holds and sees its custody chain."""

from __future__ import annotations

import os
from pathlib import Path

from tests.integration.test_server_story import custody, database, join, ok, serving

__all__ = ["database"]  # the fixture, re-used


def test_outsider_access_is_recorded_and_court_verifies_by_bytes(
        tmp_path: Path, database: str | None) -> None:
    op, de, fr, court = (tmp_path / n for n in ("operator", "de", "fr", "court"))
    evidence = tmp_path / "disk.img"
    evidence.write_bytes(os.urandom(70_000))
    init = ["init", "--origin", "hub.example/custody", "--org-name", "Hub", "--org-id", "hub",
            "--jurisdiction", "NL", "--no-passphrase", "--json"]
    ok(custody(op, *init, *(["--database", database] if database else [])))
    with serving(op) as url:
        for name, cc in (("BKA", "de"), ("OFAC", "FR"), ("Court", "NL")):
            ok(custody(op, "org", "add", "--name", name, "--jurisdiction", cc, server=url))
        for home, org, actor, role in ((de, "bka", "de-examiner", "examiner"),
                                       (de, "bka", "de-prosecutor", "prosecutor"),
                                       (fr, "ofac", "fr-examiner", "examiner"),
                                       (court, "court", "judge", "court")):
            key = join(home, url, actor)
            ok(custody(op, "actor", "enrol", "--org", org, "--name", actor, "--role", role,
                       "--id", actor, "--public-key", key, server=url))
        ok(custody(de, "case", "open", "CASE-9", "--as", "de-prosecutor"))
        art = ok(custody(de, "register", str(evidence), "--case", "CASE-9", "--as",
                         "de-examiner", "--json")).json["artefact_id"]
        refused = custody(de, "legal-basis", "add", "--instrument", "mlat", "--reference",
                          "M", "--issuing-state", "de", "--executing-state", "DE",
                          "--valid-until", "2099-12-31", "--case", "CASE-9", "--as",
                          "de-prosecutor")
        assert refused.code == 3, refused.err
        assert "both DE" in refused.err

        def size() -> int:
            return int(ok(custody(op, "status", "--json")).json["size"])

        # The outsider: the same answer for the artefact it may not see and an unknown id,
        # but the attempt on the real one is on the log.
        before = size()
        denied = custody(fr, "access", art, "--action", "view", "--purpose", "curious",
                         "--as", "fr-examiner")
        unknown = custody(fr, "access", "art-nope", "--action", "view", "--purpose",
                          "curious", "--as", "fr-examiner")
        assert denied.code == unknown.code == 4, (denied.err, unknown.err)
        assert denied.err.replace(art, "ID") == unknown.err.replace("art-nope", "ID")
        assert size() == before + 1
        history = ok(custody(de, "history", art, "--json", "--as", "de-examiner")).json
        last = history["custody"][-1]
        assert (last["kind"], last["signer"]) == ("access.record", "fr-examiner")
        assert last["outcome"] == "denied"

        # The court outside the case holds the file: authentic, with the custody chain,
        # and its verification is on the log, signed by the judge.
        logged_before = size()
        verdict = custody(court, "verify", str(evidence), "--json", "--as", "judge")
        assert verdict.code == 0, verdict.err
        assert "verification is recorded at log index" in verdict.err
        assert size() == logged_before + 1
        after = ok(custody(de, "history", art, "--json", "--as", "de-examiner")).json
        recorded = after["custody"][-1]
        assert (recorded["kind"], recorded["signer"], recorded["verdict"]) == (
            "verification.record", "judge", "authentic")
        assert verdict.json["verdict"] == "authentic"
        assert verdict.json["artefact_id"] == art
        assert any(step["kind"] == "artefact.register" for step in verdict.json["custody"])
        # Naming the artefact works the same: the bytes are the capability.
        named = custody(court, "verify", str(evidence), "--artefact", art, "--json",
                        "--as", "judge")
        assert named.code == 0, named.err
        assert named.json["verdict"] == "authentic"
        assert named.json["artefact_id"] == art
        # Without the bytes, the court sees nothing it is not a party to.
        hidden = custody(court, "history", art, "--as", "judge")
        assert hidden.code == 4, hidden.err
    assert ok(custody(op, "audit", "--json")).json["ok"] is True
