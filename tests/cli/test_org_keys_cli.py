"""``custody init`` and ``custody org add`` create each organisation's encryption key;
``custody org key rotate | revoke | show`` manage them (embedded home)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ledger import keys
from ledger.core import events as ev
from tests.cli.conftest import ORIGIN, Cli, World, assert_error

PASS = "correct horse battery staple"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def org_files(home: Path) -> list[str]:
    folder = home / "keys" / "orgs"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def show(cli: Cli, org: str) -> dict[str, object]:
    res = cli("org", "key", "show", org, "--json", expect=0)
    assert isinstance(res.json, dict)
    return res.json


def test_init_creates_and_enrols_the_first_organisations_key(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_PASSPHRASE", PASS)
    res = cli("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "DE",
              "--json", expect=0)
    out = res.json
    path = cli.home / "keys" / "orgs" / "bka.key"
    assert out["org_key_file"] == str(path)
    assert (out["log_index"], out["org_key_log_index"]) == (0, 1)
    assert mode(path) == 0o600
    assert keys.is_encrypted(path)  # the same passphrase handling as the other keys
    recipient = keys.identity_info(path)["recipient"]
    assert out["org_key_id"] == ev.org_key_id(str(recipient))
    shown = show(cli, "bka")
    assert shown["current"] == out["org_key_id"]
    assert shown["recipient"] == recipient
    assert shown["keys"] == [{"key_id": out["org_key_id"], "recipient": recipient,
                              "status": "current", "enrolled_at": 1, "revoked_at": None,
                              "reason": "", "local": True}]
    assert cli.size() == 2
    # The text form names the key id.
    text = Cli(cli.home.parent / "other")("init", "--origin", ORIGIN, "--org-name", "BKA",
                                          "--jurisdiction", "DE", "--no-passphrase",
                                          expect=0).out
    assert "encryption key of bka: " in text
    assert not keys.is_encrypted(cli.home.parent / "other" / "keys" / "orgs" / "bka.key")


def test_org_add_creates_and_enrols_the_new_organisations_key(world: World) -> None:
    before = world.size()
    res = world.cli("org", "add", "--name", "Federal Police", "--id", "fp", "--jurisdiction",
                    "BE", "--as", "bka-admin", "--json", expect=0)
    path = world.home / "keys" / "orgs" / "fp.key"
    assert res.json["org_key_file"] == str(path)
    assert (res.json["log_index"], res.json["org_key_log_index"]) == (before, before + 1)
    assert world.size() == before + 2
    assert mode(path) == 0o600
    # The world was made with --no-passphrase: the new key follows the home.
    assert not keys.is_encrypted(path)
    assert show(world.cli, "fp")["current"] == res.json["org_key_id"]
    text = world.cli("org", "add", "--name", "Guardia", "--id", "gdf", "--jurisdiction", "IT",
                     "--as", "bka-admin", expect=0).out
    assert "Registered organisation gdf (IT)" in text
    assert "Enrolled encryption key " in text
    assert "gdf.key" in text
    # Every organisation of the standard world has its key in the home.
    for org in ("bka", "nfi", "ofac", "fp", "gdf"):
        assert show(world.cli, org)["current"] is not None
    assert world.cli("audit", "--json", expect=0).json["ok"] is True


def test_org_add_encrypts_the_key_with_the_passphrase_when_one_is_set(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_PASSPHRASE", PASS)
    world.cli("org", "add", "--name", "PJ", "--jurisdiction", "FR", "--as", "bka-admin",
              expect=0)
    assert keys.is_encrypted(world.home / "keys" / "orgs" / "pj.key")
    world.cli("org", "add", "--name", "GN", "--jurisdiction", "FR", "--no-passphrase",
              "--as", "bka-admin", expect=0)
    assert not keys.is_encrypted(world.home / "keys" / "orgs" / "gn.key")


def test_org_add_refuses_to_replace_an_existing_key_file(world: World) -> None:
    (world.home / "keys" / "orgs" / "fp.key").write_text("{}")
    before = world.size()
    res = world.cli("org", "add", "--name", "FP", "--id", "fp", "--jurisdiction", "BE",
                    "--as", "bka-admin")
    assert_error(res, 2, "already exists")
    assert world.size() == before


def test_rotate_retires_the_previous_key_and_keeps_its_file(world: World) -> None:
    first = show(world.cli, "nfi")["current"]
    before = world.size()
    res = world.cli("org", "key", "rotate", "nfi", "--as", "bka-admin", "--json", expect=0)
    new = res.json["key_id"]
    assert res.json["retired"] == first
    assert res.json["log_index"] == before
    assert res.json["recipient"].startswith("age1")
    assert ev.org_key_id(res.json["recipient"]) == new
    assert org_files(world.home) == sorted(["bka.key", "nfi.key", f"nfi.{first}.key",
                                            "ofac.key"])
    shown = show(world.cli, "nfi")
    assert shown["current"] == new
    assert [(k["key_id"], k["status"], k["local"]) for k in shown["keys"]] == [  # type: ignore[union-attr]
        (first, "retired", True), (new, "current", True)]
    text = world.cli("org", "key", "rotate", "nfi", "--as", "bka-admin", expect=0).out
    assert f"{new} retired" in text
    table = world.cli("org", "key", "show", "nfi", expect=0).out
    assert "current encryption key" in table
    assert "retired" in table
    assert world.cli("audit", "--json", expect=0).json["ok"] is True


def test_revoke_and_show(world: World) -> None:
    current = show(world.cli, "nfi")["current"]
    assert isinstance(current, str)
    res = world.cli("org", "key", "revoke", "nfi", current, "--reason", "laptop stolen",
                    "--as", "bka-admin", "--json", expect=0)
    assert res.json["current"] is None
    shown = show(world.cli, "nfi")
    assert shown["current"] is None
    assert shown["recipient"] is None
    key = shown["keys"][0]  # type: ignore[index]
    assert (key["status"], key["reason"], key["revoked_at"]) == (
        "revoked", "laptop stolen", res.json["log_index"])
    text = world.cli("org", "key", "show", "nfi", expect=0).out
    assert "nfi has no current encryption key" in text
    assert "laptop stolen" in text
    # The key file stays: packages sealed to it earlier can still be opened.
    assert (world.home / "keys" / "orgs" / "nfi.key").exists()
    before = world.size()
    assert_error(world.cli("org", "key", "revoke", "nfi", current, "--reason", "again",
                           "--as", "bka-admin"), 3, "already revoked")
    assert_error(world.cli("org", "key", "revoke", "nfi", "00" * 8, "--reason", "x",
                           "--as", "bka-admin"), 4, "has no encryption key 0000000000000000")
    assert_error(world.cli("org", "key", "revoke", "nfi", "zz", "--reason", "x",
                           "--as", "bka-admin"), 2, "not a key id")
    assert_error(world.cli("org", "key", "revoke", "nowhere", "00" * 8, "--reason", "x",
                           "--as", "bka-admin"), 4, "unknown organisation")
    assert world.cli("org", "key", "revoke", "nfi", current, "--as", "bka-admin").code == 2
    assert world.size() == before
    # A rotation gives it a current key again.
    world.cli("org", "key", "rotate", "nfi", "--as", "bka-admin", expect=0)
    assert show(world.cli, "nfi")["current"] is not None


def test_refused_rotations_write_nothing_and_leave_no_key_file(world: World) -> None:
    before, files = world.size(), org_files(world.home)
    # Not an admin.
    assert_error(world.cli("org", "key", "rotate", "nfi", "--as", "nl-custodian"), 3,
                 "may not perform org.key")
    # Unknown organisation.
    assert_error(world.cli("org", "key", "rotate", "nowhere", "--as", "bka-admin"), 4,
                 "unknown organisation")
    # Once nfi has an admin of its own, bka's admin may no longer rotate its key.
    world.cli("actor", "enrol", "--org", "nfi", "--name", "NL Admin", "--role", "admin",
              "--id", "nl-admin", "--no-passphrase", "--as", "bka-admin", expect=0)
    before += 1
    assert_error(world.cli("org", "key", "rotate", "nfi", "--as", "bka-admin"), 3,
                 "only an admin of nfi")
    assert world.size() == before
    assert org_files(world.home) == files
    # nfi's own admin may.
    world.cli("org", "key", "rotate", "nfi", "--as", "nl-admin", expect=0)


def test_show_unknown_and_keyless_organisations(world: World) -> None:
    assert_error(world.cli("org", "key", "show", "nowhere"), 4, "unknown organisation")
    nfi = show(world.cli, "nfi")
    (world.home / "keys" / "orgs" / "nfi.key").unlink()  # the key held elsewhere
    shown = show(world.cli, "nfi")
    assert shown["current"] == nfi["current"]
    assert shown["keys"][0]["local"] is False  # type: ignore[index]


def test_org_key_files_are_never_loaded_as_signing_keys(world: World) -> None:
    """A key file of the other kind in the actors' folder is refused in one sentence."""
    org_key = world.home / "keys" / "orgs" / "nfi.key"
    fake_actor = world.home / "keys" / "actors" / "mallory.key"
    fake_actor.write_bytes(org_key.read_bytes())
    fake_actor.chmod(0o600)
    res = world.cli("case", "open", "C-9", "--as", "mallory")
    assert_error(res, 2, "encryption key, not a signing key")
    assert json.loads(org_key.read_text())["type"] == "custody-age-identity"
