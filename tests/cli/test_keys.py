"""Private keys at rest: Argon2id-encrypted key files, passphrases, permissions, and no key
material anywhere in the ledger (threats T5, T20)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from ledger import keys
from tests.cli.conftest import CASE, Cli, World, assert_error

PASS = "correct horse battery staple"


def enrol_encrypted(world: World, monkeypatch: pytest.MonkeyPatch,
                    actor: str = "de-sealed") -> Path:
    monkeypatch.setenv("CUSTODY_PASSPHRASE", PASS)
    res = world.cli("actor", "enrol", "--org", "bka", "--name", "Sealed Examiner", "--role",
                    "examiner", "--id", actor, "--as", "bka-admin", "--json", expect=0)
    return Path(res.json["key_file"])


def test_enrol_with_passphrase_encrypts_the_key(world: World,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = enrol_encrypted(world, monkeypatch)
    doc = json.loads(path.read_text())
    assert doc["kdf"] == "argon2id"
    assert "seed" not in doc
    assert keys.key_info(path)["encrypted"] is True
    seed = keys.load_seed(path, PASS.encode())
    raw = path.read_bytes()
    assert seed not in raw
    assert base64.b64encode(seed) not in raw
    assert seed.hex().encode() not in raw
    # the passphrase from the environment unlocks it: the actor can act
    res = world.cli("register", world.evidence_copy("a.bin", b"sealed"), "--case", CASE,
                    "--as", "de-sealed", "--json", expect=0)
    assert res.json["artefact_id"].startswith("art-")


def test_wrong_passphrase(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    enrol_encrypted(world, monkeypatch)
    monkeypatch.setenv("CUSTODY_PASSPHRASE", "wrong")
    before = world.size()
    res = world.cli("register", world.evidence, "--case", CASE, "--as", "de-sealed")
    assert_error(res, 3, "wrong passphrase for key de-sealed.key")
    assert world.size() == before


def test_no_passphrase_and_no_terminal(world: World, monkeypatch: pytest.MonkeyPatch,
                                       no_tty: None) -> None:
    enrol_encrypted(world, monkeypatch)
    monkeypatch.delenv("CUSTODY_PASSPHRASE")
    before = world.size()
    res = world.cli("register", world.evidence, "--case", CASE, "--as", "de-sealed")
    assert_error(res, 3, "is encrypted: set CUSTODY_PASSPHRASE")
    # a new key without --no-passphrase and without a passphrase cannot be created silently
    res = world.cli("actor", "enrol", "--org", "bka", "--name", "N", "--role", "examiner",
                    "--id", "de-new", "--as", "bka-admin")
    assert_error(res, 2, "set CUSTODY_PASSPHRASE, or pass --no-passphrase")
    assert not (world.home / "keys" / "actors" / "de-new.key").exists()
    assert world.size() == before


def test_empty_passphrase_is_refused_before_anything_is_written(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTODY_PASSPHRASE", "")
    before = world.size()
    res = world.cli("actor", "enrol", "--org", "bka", "--name", "E", "--role", "examiner",
                    "--id", "de-empty", "--as", "bka-admin")
    assert_error(res, 2, "empty passphrase")
    assert world.size() == before


def test_group_readable_key_file_is_refused(world: World) -> None:
    path = world.home / "keys" / "actors" / "de-examiner.key"
    path.chmod(0o644)
    before = world.size()
    res = world.cli("register", world.evidence, "--case", CASE, "--as", "de-examiner")
    assert_error(res, 2, f"run: chmod 600 {path}")
    assert "mode 644" in res.err
    assert world.size() == before
    path.chmod(0o600)
    world.cli("access", world.art, "--action", "view", "--purpose", "x", "--as", "de-examiner",
              expect=0)


def test_encrypted_init_and_no_key_material_in_the_database(
        cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUSTODY_PASSPHRASE", PASS)
    res = cli("init", "--origin", "sealed.example/log", "--org-name", "BKA", "--jurisdiction",
              "DE", "--json", expect=0)
    assert res.json["encrypted_keys"] is True
    assert json.loads((cli.home / "keys" / "log.key").read_text())["kdf"] == "argon2id"
    cli("actor", "enrol", "--org", "bka", "--name", "Eva", "--role", "examiner",
        "--id", "eva", "--json", expect=0)
    cli("case", "open", "C-1", "--as", "bka-admin", expect=0)
    evidence = tmp_path / "e.bin"
    evidence.write_bytes(b"x" * 1000)
    cli("register", evidence, "--case", "C-1", "--as", "eva", expect=0)
    assert cli("audit", "--json", expect=0).json["ok"] is True
    # a writer needs the log key too: a wrong passphrase writes nothing
    monkeypatch.setenv("CUSTODY_PASSPHRASE", "nope")
    before = cli.size()
    assert_error(cli("case", "open", "C-2", "--as", "bka-admin"), 3, "wrong passphrase")
    assert cli.size() == before

    secrets = []
    for path in (cli.home / "keys").rglob("*.key"):
        if path.parent.name == "orgs":  # an organisation's encryption key (age identity)
            identity = keys.load_identity(path, PASS.encode()).encode()
            secrets += [identity, identity[16:], identity.lower()]
            continue
        seed = keys.load_seed(path, PASS.encode())
        secrets += [seed, base64.b64encode(seed), seed.hex().encode(),
                    base64.b64encode(seed)[:40]]
    assert len(secrets) == 4 * 3 + 3  # log key, admin, eva; bka's encryption key
    db_files = [p for p in cli.home.iterdir() if p.name.startswith("ledger.db")]
    assert db_files
    for db in db_files:
        blob = db.read_bytes()
        for secret in secrets:
            assert secret not in blob, f"key material in {db.name}"
    assert PASS.encode() not in b"".join(p.read_bytes() for p in cli.home.rglob("*")
                                         if p.is_file())


def test_unencrypted_seeds_are_not_in_the_database(world: World) -> None:
    blobs = b"".join(p.read_bytes() for p in world.home.iterdir()
                     if p.name.startswith("ledger.db"))
    for path in (world.home / "keys").rglob("*.key"):
        assert os.stat(path).st_mode & 0o077 == 0
        if path.parent.name == "orgs":  # an organisation's encryption key (age identity)
            identity = keys.load_identity(path, None).encode()
            for secret in (identity, identity[16:], identity.lower()):
                assert secret not in blobs
            continue
        seed = keys.load_seed(path, None)
        for secret in (seed, base64.b64encode(seed), seed.hex().encode()):
            assert secret not in blobs
