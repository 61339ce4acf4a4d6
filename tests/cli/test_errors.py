"""Every error path: the exit code, ONE sentence on stderr, and nothing written.

Exit codes (cli/errors.py): 1 verification failed, 2 invalid input, 3 refused by custody
rules or permissions, 4 not found.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ledger.core import events as ev
from ledger.core.errors import Conflict
from ledger.home import Home, custody, open_store
from tests.cli.conftest import CASE, Cli, World, assert_error

# ---- helper: run a command that must be refused and must write nothing -------------------


def refused(world: World, code: int, phrase: str, *args: object) -> None:
    before = world.size()
    res = world.cli(*args)
    assert_error(res, code, phrase)
    assert res.out == ""
    assert world.size() == before, "a refused command wrote to the ledger"


# ---- files ------------------------------------------------------------------------------


def test_register_missing_file(world: World) -> None:
    refused(world, 4, "no such file", "register", world.root / "nope.img", "--case", CASE,
            "--as", "de-examiner")


def test_register_directory(world: World) -> None:
    refused(world, 2, "is a directory", "register", world.root, "--case", CASE,
            "--as", "de-examiner")


def test_receive_missing_file(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    refused(world, 4, "no such file", "receive", tr, "--file", world.root / "nope.img",
            "--as", "nl-custodian")


def test_verify_missing_file(world: World) -> None:
    refused(world, 4, "no such file", "verify", world.root / "nope.img")


def test_legal_basis_missing_document(world: World) -> None:
    refused(world, 4, "no such file", "legal-basis", "add", "--instrument", "mlat",
            "--reference", "R", "--issuing-state", "NL", "--executing-state", "DE",
            "--valid-until", "2999-01-01", "--case", CASE, "--document",
            world.root / "nope.pdf", "--as", "de-prosecutor")


# ---- unknown ids ------------------------------------------------------------------------


def test_unknown_artefact(world: World) -> None:
    refused(world, 4, "unknown artefact 'art-nope'", "transfer", "art-nope", "--to", "nfi",
            "--purpose", "x", "--as", "de-custodian")
    refused(world, 4, "unknown artefact 'art-nope'", "access", "art-nope", "--action", "view",
            "--purpose", "x", "--as", "nl-custodian")
    refused(world, 4, "unknown artefact 'art-nope'", "history", "art-nope")
    refused(world, 4, "unknown artefact 'art-nope'", "verify", world.evidence,
            "--artefact", "art-nope")


def test_unknown_transfer(world: World) -> None:
    refused(world, 4, "unknown transfer 'tr-nope'", "receive", "tr-nope", "--file",
            world.evidence, "--as", "nl-custodian")


@pytest.mark.parametrize(("phrase", "args"), [
    pytest.param("unknown case 'NOPE'", ["register", "{evidence}", "--case", "NOPE",
                                         "--as", "de-examiner"],
                 id="register-case"),
    pytest.param("unknown case 'NOPE'", ["case", "add-member", "NOPE", "--org", "nfi",
                                         "--as", "de-prosecutor"],
                 id="add-member-case"),
    pytest.param("unknown case 'NOPE'", ["legal-basis", "add", "--instrument", "mlat",
                                         "--reference", "R", "--issuing-state", "NL",
                                         "--executing-state", "DE", "--valid-until",
                                         "2999-01-01", "--case", "NOPE",
                                         "--as", "de-prosecutor"],
                 id="legal-basis-case"),
    pytest.param("unknown organisation 'nope'", ["case", "add-member", CASE, "--org", "nope",
                                                 "--as", "de-prosecutor"],
                 id="add-member-org"),
    pytest.param("unknown organisation 'nope'", ["actor", "enrol", "--org", "nope", "--name",
                                                 "X", "--role", "examiner", "--no-passphrase",
                                                 "--as", "bka-admin"],
                 id="enrol-org"),
    pytest.param("unknown organisation 'nope'", ["transfer", "{art}", "--to", "nope",
                                                 "--purpose", "x", "--as", "de-custodian"],
                 id="transfer-org"),
])
def test_unknown_case_or_org_is_not_found(world: World, phrase: str, args: list[str]) -> None:
    args = [a.format(evidence=world.evidence, art=world.art) for a in args]
    refused(world, 4, phrase, *args)


@pytest.mark.parametrize("args", [
    ["register", "{evidence}", "--case", "NOPE", "--as", "de-examiner"],
    ["case", "add-member", CASE, "--org", "nope", "--as", "de-prosecutor"],
    ["actor", "enrol", "--org", "nope", "--name", "X", "--role", "examiner",
     "--no-passphrase", "--as", "bka-admin"],
    ["transfer", "{art}", "--to", "nope", "--purpose", "x", "--as", "de-custodian"],
], ids=["register-case", "add-member-org", "enrol-org", "transfer-org"])
def test_unknown_case_or_org_is_refused_and_writes_nothing(world: World,
                                                           args: list[str]) -> None:
    """Whatever the exit code, one sentence naming the unknown id, and nothing written."""
    args = [a.format(evidence=world.evidence, art=world.art) for a in args]
    before = world.size()
    res = world.cli(*args)
    assert res.code in (3, 4)
    assert len(res.err_lines) == 1
    assert "unknown" in res.err
    assert world.size() == before
    assert not (world.home / "keys" / "actors" / "x.key").exists()


def test_unknown_local_actor(world: World) -> None:
    refused(world, 4, "no local key for actor 'ghost'", "case", "open", "C-9", "--as", "ghost")


# ---- invalid input ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["EL", "xx", "DEU"])  # "de" is normalised (issue 9)
def test_invalid_country(world: World, code: str) -> None:
    refused(world, 2, "is not an ISO 3166-1 alpha-2 country code", "org", "add", "--name",
            "Agency", "--jurisdiction", code, "--as", "bka-admin")


def test_invalid_country_in_legal_basis(world: World) -> None:
    refused(world, 2, "'XX' is not an ISO 3166-1", "legal-basis", "add", "--instrument",
            "mlat", "--reference", "R", "--issuing-state", "XX", "--executing-state", "DE",
            "--valid-until", "2999-01-01", "--case", CASE, "--as", "de-prosecutor")


def test_unknown_role(world: World) -> None:
    refused(world, 2, "unknown role(s) judge", "actor", "enrol", "--org", "bka", "--name",
            "J", "--role", "examiner,judge", "--no-passphrase", "--as", "bka-admin")
    assert not (world.home / "keys" / "actors" / "j.key").exists()


def test_unknown_instrument(world: World) -> None:
    refused(world, 2, "unknown instrument 'letter'", "legal-basis", "add", "--instrument",
            "letter", "--reference", "R", "--issuing-state", "NL", "--executing-state", "DE",
            "--valid-until", "2999-01-01", "--case", CASE, "--as", "de-prosecutor")


@pytest.mark.parametrize(("option", "value"), [("--valid-until", "31/12/2026"),
                                               ("--valid-from", "2026-13-01")])
def test_bad_date(world: World, option: str, value: str) -> None:
    args = {"--valid-until": "2999-01-01", option: value}
    refused(world, 2, "must be a date like 2026-12-31", "legal-basis", "add", "--instrument",
            "mlat", "--reference", "R", "--issuing-state", "NL", "--executing-state", "DE",
            *[x for kv in args.items() for x in kv], "--case", CASE, "--as", "de-prosecutor")


def test_unknown_access_action(world: World) -> None:
    refused(world, 2, "unknown action 'steal'", "access", world.art, "--action", "steal",
            "--purpose", "x", "--as", "nl-custodian")


# ---- custody rules ----------------------------------------------------------------------


def test_expired_legal_basis(world: World) -> None:
    lb = world.legal_basis("--valid-from", "2020-01-01", until="2020-12-31")
    refused(world, 3, f"legal basis {lb} is valid from 2020-01-01 until 2020-12-31, not on",
            "transfer", world.art, "--to", "nfi", "--purpose", "x", "--legal-basis", lb,
            "--as", "de-custodian")


def test_legal_basis_window_backwards(world: World) -> None:
    refused(world, 2, "is before --valid-from", "legal-basis", "add",
            "--instrument", "mlat", "--reference", "R", "--issuing-state", "NL",
            "--executing-state", "DE", "--valid-until", "2020-12-31", "--case", CASE,
            "--as", "de-prosecutor")


def test_legal_basis_for_other_states(world: World) -> None:
    # BKA (DE) cannot record an instrument between two other states ...
    refused(world, 3, "is neither the issuing nor the executing state", "legal-basis", "add",
            "--instrument", "mlat", "--reference", "R", "--issuing-state", "NL",
            "--executing-state", "FR", "--valid-until", "2999-01-01", "--case", CASE,
            "--as", "de-prosecutor")
    # ... and a DE<->FR instrument does not cover a DE->NL transfer.
    lb = world.legal_basis(issuing="FR", executing="DE")
    refused(world, 3, f"legal basis {lb} is between", "transfer", world.art, "--to", "nfi",
            "--purpose", "x", "--legal-basis", lb, "--as", "de-custodian")


def test_domestic_warrant_does_not_cross_a_border(world: World) -> None:
    lb = world.legal_basis(instrument="warrant", issuing="DE", executing="NL")
    refused(world, 3, "does not authorise a transfer across a border", "transfer", world.art,
            "--to", "nfi", "--purpose", "x", "--legal-basis", lb, "--as", "de-custodian")


def test_transfer_without_legal_basis_across_borders(world: World) -> None:
    refused(world, 3, "crosses a border and needs a legal basis", "transfer", world.art,
            "--to", "nfi", "--purpose", "x", "--as", "de-custodian")


@pytest.mark.parametrize("role", ["court", "auditor", "prosecutor"])
def test_wrong_role_cannot_transfer(world: World, role: str) -> None:
    lb = world.legal_basis()
    actor = "de-prosecutor"
    if role != "prosecutor":
        actor = f"de-{role}"
        world.cli("actor", "enrol", "--org", "bka", "--name", role, "--role", role, "--id",
                  actor, "--no-passphrase", "--as", "bka-admin", expect=0)
    refused(world, 3, f"may not perform {ev.DISPATCH}", "transfer", world.art, "--to", "nfi",
            "--purpose", "x", "--legal-basis", lb, "--as", actor)


def test_examiner_of_another_org_cannot_register_outside_its_case(world: World) -> None:
    refused(world, 3, "ofac is not a member of case", "register", world.evidence, "--case",
            CASE, "--as", "fr-analyst")


def test_revoked_actor(world: World) -> None:
    lb = world.legal_basis()
    world.cli("actor", "revoke", "de-custodian", "--reason", "key lost", "--as", "bka-admin",
              expect=0)
    refused(world, 3, "de-custodian was revoked at log index", "transfer", world.art, "--to",
            "nfi", "--purpose", "x", "--legal-basis", lb, "--as", "de-custodian")


def test_not_custodian_cannot_transfer(world: World) -> None:
    lb = world.legal_basis()
    refused(world, 3, "nfi is not the custodian", "transfer", world.art, "--to", "bka",
            "--purpose", "x", "--legal-basis", lb, "--as", "nl-custodian")


@pytest.mark.parametrize("actor", ["fr-analyst", "de-custodian"])
def test_receive_by_the_wrong_organisation(world: World, actor: str) -> None:
    tr = world.dispatch(world.legal_basis())
    refused(world, 3, "is not the recipient of transfer", "receive", tr, "--file",
            world.evidence, "--as", actor)


def test_tampered_file_at_receive_writes_a_rejection(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    before = world.size()
    res = world.cli("receive", tr, "--file", world.tampered(), "--as", "nl-custodian")
    assert res.code == 1
    assert "Rejected" in res.out
    assert "integrity incident recorded" in res.out
    assert world.size() == before + 1  # the signed rejection IS written
    assert world.cli("status", "--json", expect=0).json["integrity_incidents"] == 1
    # the transfer is closed: receiving the true copy now is refused and writes nothing
    refused(world, 3, f"transfer {tr} is not the open dispatch", "receive", tr, "--file",
            world.evidence, "--as", "nl-custodian")


def test_truncated_file_at_receive_is_rejected(world: World) -> None:
    tr = world.dispatch(world.legal_basis())
    short = world.evidence_copy("short.img", world.data[:-1])
    res = world.cli("receive", tr, "--file", short, "--as", "nl-custodian", "--json")
    assert res.code == 1
    assert res.json["outcome"] == "rejected"


def test_second_transfer_of_the_same_artefact(world: World) -> None:
    lb = world.legal_basis()
    tr = world.dispatch(lb)
    refused(world, 3, f"already has an open dispatch ({tr})", "transfer", world.art, "--to",
            "nfi", "--purpose", "again", "--legal-basis", lb, "--as", "de-custodian")


def test_replay(world: World) -> None:
    """The same signed event twice is one entry (idempotent); the same nonce with other
    content is a replay and refused."""
    home = Home(world.home).load()
    store = open_store(home)
    try:
        service = custody(home, store)
        admin = home.actor("bka-admin")
        signed = service.event(ev.ORG_REGISTER, admin,
                               {"id": "politie", "name": "Politie", "jurisdiction": "BE"})
        before = store.size()
        first = store.append(signed)
        second = store.append(signed)
        assert first.duplicate is False
        assert second.duplicate is True
        assert (second.index, second.event_id) == (first.index, first.event_id)
        assert store.size() == before + 1
        other = ev.sign_event(dataclasses.replace(
            signed.event, payload={"id": "zoll", "name": "Zoll", "jurisdiction": "AT"}),
            admin.signer)
        with pytest.raises(Conflict) as caught:
            store.append(other)
        assert caught.value.rule == "replay"
        assert store.size() == before + 1
    finally:
        store.close()
    assert world.size() == before + 1
    orgs = {o["id"] for o in world.cli("org", "list", "--json", expect=0).lines}
    assert "politie" in orgs
    assert "zoll" not in orgs
    assert world.cli("audit", "--json", expect=0).json["ok"] is True


# ---- choosing the actor, finding the home ------------------------------------------------


def test_several_local_actors_without_as(world: World) -> None:
    config = world.home / "config.json"
    doc = json.loads(config.read_text())
    del doc["default_actor"]
    config.write_text(json.dumps(doc))
    refused(world, 2, "several local actors exist; choose one with --as", "case", "open",
            "CASE-9")


def test_no_home(cli: Cli) -> None:
    for args in (["status"], ["case", "open", "C-1"], ["log", "checkpoint"], ["audit"]):
        res = cli(*args)
        assert_error(res, 4, "no custody home at")
    assert not cli.home.exists()


def test_home_without_database(world: World) -> None:
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (world.home / name).unlink(missing_ok=True)
    res = world.cli("status")
    assert_error(res, 4, "no ledger database")


@pytest.mark.parametrize("where", ["global", "local"])
def test_json_errors_go_to_stderr(world: World, where: str) -> None:
    before = world.size()
    args = ["transfer", world.art, "--to", "nfi", "--purpose", "x", "--as", "de-custodian"]
    res = world.cli("--json", *args) if where == "global" else world.cli(*args, "--json")
    assert_error(res, 3, "needs a legal basis")
    assert res.out == ""
    assert world.size() == before
    res = world.cli("--json", "history", "art-nope")
    assert_error(res, 4, "unknown artefact")
    assert res.out == ""


# ---- usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["transfer", "art-x", "--to", "nfi"],          # missing --purpose
    ["no-such-command"],
    ["log", "proof", "inclusion", "--index", "-1"],
    ["audit", "--checkpoint", "/nonexistent/checkpoint"],
], ids=["missing-option", "unknown-command", "out-of-range", "missing-path-option"])
def test_usage_errors_exit_2(world: World, args: list[str]) -> None:
    before = world.size()
    res = world.cli(*args)
    assert res.code == 2
    assert res.err.strip()
    assert world.size() == before


def test_expect_helper_rejects_unexpected_codes(tmp_path: Path) -> None:
    """The ``expect=`` check of the helper itself works (guards the other tests)."""
    with pytest.raises(AssertionError, match="exited 4, expected 0"):
        Cli(tmp_path / "nothing")("status", expect=0)
