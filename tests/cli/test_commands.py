"""Every ``custody`` command works and prints what it promises, as text and as JSON."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import CASE, ORIGIN, Cli, World, invoke


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- init -------------------------------------------------------------------------------


def test_init_json_fields_and_key_files(cli: Cli) -> None:
    res = cli("init", "--origin", ORIGIN, "--org-name", "Bundeskriminalamt", "--jurisdiction",
              "DE", "--no-passphrase", "--json", expect=0)
    out = res.json
    assert out["home"] == str(cli.home)
    assert out["origin"] == ORIGIN
    assert out["org"] == "bundeskriminalamt"
    assert out["jurisdiction"] == "DE"
    assert out["admin"] == "bundeskriminalamt-admin"
    assert out["verifier_key"].startswith(ORIGIN + "+")
    assert out["log_index"] == 0
    assert out["encrypted_keys"] is False
    assert res.err == ""
    assert mode(cli.home / "keys" / "log.key") == 0o600
    assert mode(cli.home / "keys" / "actors" / "bundeskriminalamt-admin.key") == 0o600
    # The organisation's encryption key, enrolled right after the genesis.
    assert out["org_key_log_index"] == 1
    assert out["org_key_file"] == str(cli.home / "keys" / "orgs" / "bundeskriminalamt.key")
    assert mode(cli.home / "keys" / "orgs" / "bundeskriminalamt.key") == 0o600
    assert len(out["org_key_id"]) == 16
    assert cli.size() == 2
    assert cli("log", "verifier-key", expect=0).out.strip() == out["verifier_key"]


def test_init_text(cli: Cli) -> None:
    res = cli("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "DE",
              "--no-passphrase", expect=0)
    assert f"Created ledger {ORIGIN}" in res.out
    assert "bka-admin" in res.out


def test_init_refuses_an_existing_home(world: World) -> None:
    before = world.size()
    res = world.cli("init", "--origin", "other.example/log", "--org-name", "X",
                    "--jurisdiction", "DE", "--no-passphrase")
    assert res.code == 2
    assert "already holds a ledger" in res.err
    assert world.size() == before


def test_init_invalid_country(cli: Cli) -> None:
    res = cli("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "XX",
              "--no-passphrase")
    assert res.code == 2
    assert "ISO 3166-1 alpha-2" in res.err
    assert not cli.home.exists()


@pytest.mark.parametrize("pre_existing", [False, True])
def test_failed_init_leaves_the_home_clean(cli: Cli, pre_existing: bool) -> None:
    """The failure happens after keys and config were written (bad database URL)."""
    if pre_existing:
        cli.home.mkdir()
        (cli.home / "notes.txt").write_text("mine")
    res = cli("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "DE",
              "--database", "mysql://db.example/custody", "--no-passphrase")
    assert res.code == 2
    assert "unsupported database URL" in res.err
    if pre_existing:
        assert sorted(os.listdir(cli.home)) == ["notes.txt"]
    else:
        assert not cli.home.exists()


# ---- organisations and actors -------------------------------------------------------------


def test_org_add_and_list(world: World) -> None:
    before = world.size()
    res = world.cli("org", "add", "--name", "Federal Police", "--jurisdiction", "BE",
                    "--as", "bka-admin", "--json", expect=0)
    assert res.json["org"] == "federal-police"
    assert res.json["jurisdiction"] == "BE"
    assert res.json["log_index"] == before
    assert res.json["duplicate"] is False
    # ... and its encryption key, created in this home and enrolled right after.
    assert res.json["org_key_log_index"] == before + 1
    assert world.size() == before + 2
    text = world.cli("org", "add", "--name", "Guardia", "--id", "gdf", "--jurisdiction", "IT",
                     "--as", "bka-admin", expect=0)
    assert "Registered organisation gdf (IT)" in text.out
    listing = world.cli("org", "list", "--json", expect=0).lines
    assert {o["id"]: o["jurisdiction"] for o in listing} == {
        "bka": "DE", "nfi": "NL", "ofac": "FR", "federal-police": "BE", "gdf": "IT"}
    table = world.cli("org", "list", expect=0).out
    assert "federal-police" in table
    assert "gdf" in table


def test_actor_enrol_list_revoke(world: World) -> None:
    res = world.cli("actor", "enrol", "--org", "bka", "--name", "Jan Examiner", "--role",
                    "examiner,custodian", "--no-passphrase", "--as", "bka-admin", "--json",
                    expect=0)
    assert res.json["actor"] == "jan-examiner"
    assert res.json["org"] == "bka"
    assert res.json["roles"] == ["examiner", "custodian"]
    key_file = Path(res.json["key_file"])
    assert key_file == world.home / "keys" / "actors" / "jan-examiner.key"
    assert mode(key_file) == 0o600
    actors = {a["id"]: a for a in world.cli("--json", "actor", "list", expect=0).lines}
    assert actors["jan-examiner"]["status"] == "active"
    assert actors["jan-examiner"]["roles"] == ["examiner", "custodian"]
    assert len(actors["jan-examiner"]["key_id"]) == 8

    text = world.cli("actor", "revoke", "jan-examiner", "--reason", "left the unit",
                     "--as", "bka-admin", expect=0)
    assert "Revoked jan-examiner" in text.out
    actors = {a["id"]: a for a in world.cli("actor", "list", "--json", expect=0).lines}
    assert actors["jan-examiner"]["status"] == "revoked"
    assert actors["de-examiner"]["status"] == "active"
    assert "jan-examiner" in world.cli("actor", "list", expect=0).out


def test_default_actor_is_the_configured_admin(world: World) -> None:
    res = world.cli("org", "add", "--name", "Politie", "--jurisdiction", "BE", "--json",
                    expect=0)
    assert res.json["org"] == "politie"


def test_home_from_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_HOME", str(world.home))
    res = invoke(["status", "--json"])
    assert res.code == 0
    assert res.json["size"] == world.size()


# ---- cases and legal bases ----------------------------------------------------------------


def test_case_open_add_member_list(world: World) -> None:
    res = world.cli("case", "open", "CASE-2", "--title", "Fraud", "--as", "de-prosecutor",
                    "--json", expect=0)
    assert res.json["case"] == "CASE-2"
    text = world.cli("case", "add-member", "CASE-2", "--org", "ofac", "--as", "de-prosecutor",
                     expect=0)
    assert "Added ofac to case CASE-2" in text.out
    cases = {c["id"]: c for c in world.cli("case", "list", "--json", expect=0).lines}
    assert cases["CASE-2"]["lead_org"] == "bka"
    assert cases["CASE-2"]["members"] == ["ofac"]
    assert cases["CASE-2"]["title"] == "Fraud"
    assert cases[CASE]["members"] == ["nfi"]
    assert "CASE-2" in world.cli("case", "list", expect=0).out


def test_legal_basis_document_digest_not_content(world: World) -> None:
    secret = b"MLAT request text: CONFIDENTIAL-SUSPECT-NAME-Xq7"
    doc = world.evidence_copy("mlat.pdf", secret)
    res = world.cli("legal-basis", "add", "--instrument", "mlat", "--reference", "MLA-1",
                    "--issuing-state", "NL", "--executing-state", "DE", "--valid-until",
                    "2999-12-31", "--case", CASE, "--document", doc, "--id", "lb-mla-1",
                    "--as", "de-prosecutor", "--json", expect=0)
    assert res.json["legal_basis"] == "lb-mla-1"
    assert res.json["document_sha256"] == hashlib.sha256(secret).hexdigest()
    bases = {b["id"]: b for b in world.cli("legal-basis", "list", "--json", expect=0).lines}
    lb = bases["lb-mla-1"]
    assert lb["document_sha256"] == hashlib.sha256(secret).hexdigest()
    assert (lb["instrument"], lb["issuing_state"], lb["executing_state"]) == ("mlat", "NL", "DE")
    assert lb["valid_until"] == "2999-12-31"
    assert lb["case"] == CASE
    for name in os.listdir(world.home):
        if name.startswith("ledger.db"):
            assert b"CONFIDENTIAL-SUSPECT-NAME" not in (world.home / name).read_bytes()
    assert "CONFIDENTIAL" not in world.cli("log", "entries", expect=0).out
    text = world.cli("legal-basis", "add", "--instrument", "eio", "--reference", "EIO-7",
                     "--issuing-state", "DE", "--executing-state", "FR", "--valid-until",
                     "2999-12-31", "--case", CASE, "--as", "de-prosecutor", expect=0)
    assert "Recorded legal basis" in text.out
    assert "EIO-7" in text.out
    assert "instru" in world.cli("legal-basis", "list", expect=0).out  # a (narrow) table


# ---- custody ----------------------------------------------------------------------------


def test_register_json_digests_equal_hashlib(world: World) -> None:
    data = os.urandom(300_000)
    path = world.evidence_copy("phone.bin", data)
    before = world.size()
    res = world.cli("register", path, "--case", CASE, "--type", "mobile-extraction",
                    "--exhibit", "DE-02", "--description", "phone", "--as", "de-examiner",
                    "--json", expect=0)
    out = res.json
    assert out["artefact_id"].startswith("art-")
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert out["sha512"] == hashlib.sha512(data).hexdigest()
    assert out["size"] == len(data)
    assert out["log_index"] == before
    assert world.size() == before + 1


def test_register_text(world: World) -> None:
    path = world.evidence_copy("memory.raw", b"memory dump")
    res = world.cli("register", path, "--case", CASE, "--type", "memory-dump",
                    "--as", "de-examiner", expect=0)
    assert "Registered art-" in res.out
    assert hashlib.sha256(b"memory dump").hexdigest() in res.out
    assert hashlib.sha512(b"memory dump").hexdigest() in res.out


def test_transfer(world: World) -> None:
    lb = world.legal_basis()
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "analysis",
                    "--legal-basis", lb, "--transport", "courier", "--seal", "S-1",
                    "--as", "de-custodian", "--json", expect=0)
    assert res.json["transfer"].startswith("tr-")
    assert res.json["artefact"] == world.art
    assert res.json["to"] == "nfi"
    status = world.cli("status", "--json", expect=0).json
    assert status["transfers"] == 1
    assert status["open_transfers"] == 1


def test_transfer_text_domestic_needs_no_legal_basis(world: World) -> None:
    world.cli("org", "add", "--name", "LKA Berlin", "--id", "lka", "--jurisdiction", "DE",
              "--as", "bka-admin", expect=0)
    res = world.cli("transfer", world.art, "--to", "lka", "--purpose", "storage",
                    "--as", "de-custodian", expect=0)
    assert f"Dispatched {world.art} to lka: transfer tr-" in res.out


def test_receive_match_moves_custody(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    res = world.cli("receive", tr, "--file", world.evidence, "--as", "nl-custodian", "--json")
    assert res.code == 0, res.err
    assert res.json["outcome"] == "accepted"
    assert res.json["custodian"] == "nfi"
    assert res.json["mismatched"] == []
    assert res.json["sha256"] == hashlib.sha256(world.data).hexdigest()
    verdict = world.cli("verify", world.evidence, "--json", expect=0).json
    assert verdict["custodian"] == "nfi"
    status = world.cli("status", "--json", expect=0).json
    assert status["open_transfers"] == 0
    assert status["integrity_incidents"] == 0


def test_receive_text(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    res = world.cli("receive", tr, "--file", world.evidence, "--as", "nl-custodian", expect=0)
    assert "Accepted" in res.out
    assert "nfi is custodian" in res.out


def test_receive_mismatch_is_rejected_and_custody_unchanged(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    before = world.size()
    res = world.cli("receive", tr, "--file", world.tampered(), "--as", "nl-custodian",
                    "--json")
    assert res.code == 1
    assert res.json["outcome"] == "rejected"
    assert res.json["custodian"] == "bka"
    assert sorted(res.json["mismatched"]) == ["sha256", "sha512"]
    assert world.size() == before + 1
    status = world.cli("status", "--json", expect=0).json
    assert status["integrity_incidents"] == 1
    assert status["open_transfers"] == 0
    assert world.cli("verify", world.evidence, "--json", expect=0).json["custodian"] == "bka"
    lb = world.cli("legal-basis", "list", "--json", expect=0).json["id"]
    world.dispatch(lb)  # the rejection closed the dispatch: it can be sent again


def test_access_success_and_denied(world: World) -> None:
    before = world.size()
    res = world.cli("access", world.art, "--action", "view", "--purpose", "triage",
                    "--as", "nl-custodian", "--json", expect=0)
    assert res.json == {**res.json, "artefact": world.art, "action": "view",
                        "outcome": "success", "log_index": before}
    assert world.size() == before + 1
    text = world.cli("access", world.art, "--action", "analysis", "--purpose", "triage",
                     "--as", "de-examiner", expect=0)
    assert f"Recorded analysis of {world.art}" in text.out
    before = world.size()
    denied = world.cli("access", world.art, "--action", "view", "--purpose", "curiosity",
                       "--as", "fr-analyst")
    assert denied.code == 3
    assert "may not access" in denied.err
    assert "recorded at log index" in denied.err
    assert world.size() == before + 1  # the denied attempt IS on the log
    last = world.cli("history", world.art, "--json", expect=0).json["custody"][-1]
    assert (last["kind"], last["outcome"], last["signer"]) == (
        "access.record", "denied", "fr-analyst")


def test_history_timeline(world: World) -> None:
    lb = world.legal_basis()
    tr = world.dispatch(lb)
    world.cli("receive", tr, "--file", world.evidence, "--as", "nl-custodian", expect=0)
    world.cli("access", world.art, "--action", "view", "--purpose", "triage",
              "--as", "nl-custodian", expect=0)
    res = world.cli("history", world.art, "--json", expect=0)
    assert res.json["artefact_id"] == world.art
    items = res.json["custody"]
    assert [i["kind"] for i in items] == ["artefact.register", "custody.dispatch",
                                          "custody.receipt", "access.record"]
    indexes = [i["index"] for i in items]
    assert indexes == sorted(indexes)
    assert len(set(indexes)) == 4
    times = [i["ledger_time"] for i in items]
    assert times == sorted(times)
    assert all(t.endswith("Z") for t in times)
    for item in items:
        for key in ("index", "ledger_time", "kind", "signer", "signer_name", "org",
                    "jurisdiction", "key_id", "event_id", "leaf_hash", "summary"):
            assert key in item, key
    reg, disp, rec, acc = items
    assert (reg["signer"], reg["org"], reg["jurisdiction"]) == ("de-examiner", "bka", "DE")
    assert reg["digests"]["sha256"] == hashlib.sha256(world.data).hexdigest()
    assert reg["size"] == len(world.data)
    assert (disp["signer"], disp["to_org"], disp["legal_basis"], disp["transfer"]) == (
        "de-custodian", "nfi", lb, tr)
    assert (rec["signer"], rec["org"], rec["jurisdiction"], rec["outcome"]) == (
        "nl-custodian", "nfi", "NL", "accepted")
    assert rec["digests_checked"] == ["sha256", "sha512"]
    assert (acc["action"], acc["outcome"]) == ("view", "success")
    table = world.cli("history", world.art, expect=0).out
    for token in ("Eva", "Carl", "Nina", "DE", "NL", *map(str, indexes)):
        assert token in table, token


def test_verify_verdicts(world: World) -> None:
    before = world.size()
    res = world.cli("verify", world.evidence, "--json", expect=0)
    out = res.json
    assert out["verdict"] == "authentic"
    assert out["artefact_id"] == world.art
    assert out["sha256"] == hashlib.sha256(world.data).hexdigest()
    assert [i["kind"] for i in out["custody"]] == ["artefact.register"]
    assert all(i["inclusion_verified"] for i in out["custody"])
    assert out["checkpoint"]["size"] == before
    assert out["checkpoint"]["origin"] == ORIGIN
    assert out["checkpoint"]["note"] == world.cli("log", "checkpoint", expect=0).out
    assert "Verdict: authentic" in world.cli("verify", world.evidence, expect=0).out

    unknown = world.evidence_copy("unknown.bin", b"never registered")
    res = world.cli("verify", unknown, "--json")
    assert res.code == 1
    assert res.json["verdict"] == "not-registered"
    assert res.json["artefact_id"] is None
    assert "Verdict: not-registered" in world.cli("verify", unknown).out

    res = world.cli("verify", world.tampered(), "--artefact", world.art, "--json")
    assert res.code == 1
    assert res.json["verdict"] == "mismatch"
    assert res.json["artefact_id"] == world.art
    assert world.size() == before  # verification reads only


def test_status(world: World) -> None:
    out = world.cli("status", "--json", expect=0).json
    assert out["origin"] == ORIGIN
    assert out["size"] == 14
    assert (out["organisations"], out["actors"], out["cases"], out["artefacts"]) == (3, 6, 1, 1)
    assert (out["legal_bases"], out["transfers"], out["open_transfers"],
            out["integrity_incidents"]) == (0, 0, 0, 0)
    assert out["checkpoint"].startswith(f"{ORIGIN}\n14\n")
    text = world.cli("status", expect=0).out
    assert "size: 14" in text
    assert "artefacts: 1" in text
    assert "checkpoint:" in text


# ---- the log ----------------------------------------------------------------------------


def test_log_checkpoint_and_verifier_key(world: World) -> None:
    note = world.cli("log", "checkpoint", expect=0).out
    lines = note.split("\n")
    assert lines[0] == ORIGIN
    assert lines[1] == "14"
    assert lines[3].startswith("custody-map/v1 ")  # the state-map root (ledger/core/vmap.py)
    assert lines[4] == ""
    assert lines[5].startswith(f"— {ORIGIN} ")
    assert note.endswith("\n")
    vkey = world.cli("log", "verifier-key", expect=0).out.strip()
    name, keyid, _b64 = vkey.split("+", 2)
    assert name == ORIGIN
    assert len(keyid) == 8


def test_log_entries(world: World) -> None:
    lines = world.cli("log", "entries", "--json", expect=0).lines
    assert [line["index"] for line in lines] == list(range(14))
    assert set(lines[0]) == {"index", "leaf_hash", "entry"}
    some = world.cli("log", "entries", "--start", "3", "--end", "5", "--json", expect=0).lines
    assert some == lines[3:5]
    text = world.cli("log", "entries", "--start", "13", expect=0).out
    assert text.startswith("13\t" + lines[13]["leaf_hash"] + "\t{")


def test_log_proofs(world: World) -> None:
    inc = world.cli("log", "proof", "inclusion", "--index", "3", "--json", expect=0).json
    assert set(inc) == {"index", "tree_size", "leaf_hash", "hashes"}
    assert (inc["index"], inc["tree_size"]) == (3, 14)
    assert len(inc["hashes"]) == 4
    inc8 = world.cli("log", "proof", "inclusion", "--index", "3", "--size", "8", "--json",
                     expect=0).json
    assert inc8["tree_size"] == 8
    assert len(inc8["hashes"]) == 3
    text = world.cli("log", "proof", "inclusion", "--index", "3", expect=0).out
    assert text.splitlines()[0] == f"leaf 3 of 14: {inc['leaf_hash']}"
    con = world.cli("log", "proof", "consistency", "--old", "5", "--json", expect=0).json
    assert (con["old_size"], con["new_size"]) == (5, 14)
    assert all(len(h) == 64 for h in con["hashes"])
    assert con["hashes"]
    con2 = world.cli("log", "proof", "consistency", "--old", "5", "--new", "8", "--json",
                     expect=0).json
    assert con2["new_size"] == 8
    assert world.cli("log", "proof", "consistency", "--old", "5", expect=0).out.split() == \
        con["hashes"]
    bad = world.cli("log", "proof", "inclusion", "--index", "14")
    assert bad.code == 2
    assert "not below tree size" in bad.err
    bad = world.cli("log", "proof", "consistency", "--old", "15")
    assert bad.code == 2


def test_audit(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    world.cli("receive", tr, "--file", world.tampered(), "--as", "nl-custodian", expect=1)
    res = world.cli("audit", "--json", expect=0)
    assert res.json["ok"] is True
    assert res.json["entries_checked"] == world.size()
    assert res.json["first_bad_index"] is None
    assert "audit passed" in world.cli("audit", expect=0).out
