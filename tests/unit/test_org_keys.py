"""An organisation's encryption key (an age X25519 identity) at rest: ``ledger.keys``
identity files and where a home keeps them (``Home.org_key_path`` / ``org_identity``)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyrage
import pytest

from ledger import keys
from ledger.core import events as ev
from ledger.core.errors import InvalidInput, NotFound, Unauthenticated
from ledger.home import Home

PASS = b"correct horse battery staple"


def new_identity() -> tuple[str, str]:
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


@pytest.mark.parametrize("passphrase", [PASS, None], ids=["encrypted", "plain"])
def test_identity_round_trip(tmp_path: Path, passphrase: bytes | None) -> None:
    identity, recipient = new_identity()
    path = tmp_path / "keys" / "orgs" / "nfi.key"
    keys.write_identity(path, "nfi", identity, passphrase)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.load_identity(path, passphrase) == identity
    assert keys.identity_info(path) == {"name": "nfi", "recipient": recipient,
                                        "encrypted": passphrase is not None}
    assert keys.is_encrypted(path) is (passphrase is not None)
    doc = json.loads(path.read_text())
    assert doc["type"] == "custody-age-identity"
    # The identity decrypts what was sealed to its recipient.
    sealed = pyrage.encrypt(b"evidence", [pyrage.x25519.Recipient.from_str(recipient)])
    loaded = pyrage.x25519.Identity.from_str(keys.load_identity(path, passphrase))
    assert pyrage.decrypt(sealed, [loaded]) == b"evidence"


def test_an_encrypted_identity_is_not_in_the_file(tmp_path: Path) -> None:
    identity, _ = new_identity()
    path = tmp_path / "nfi.key"
    keys.write_identity(path, "nfi", identity, PASS)
    raw = path.read_bytes()
    assert identity.encode() not in raw
    assert identity[16:].encode() not in raw
    assert identity.lower().encode() not in raw
    assert PASS not in raw
    assert json.loads(raw)["kdf"] == "argon2id"


def test_wrong_or_missing_passphrase_is_refused(tmp_path: Path) -> None:
    identity, _ = new_identity()
    path = tmp_path / "nfi.key"
    keys.write_identity(path, "nfi", identity, PASS)
    with pytest.raises(Unauthenticated, match="wrong passphrase"):
        keys.load_identity(path, b"nope")
    with pytest.raises(Unauthenticated, match="is encrypted"):
        keys.load_identity(path, None)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_readable_identity_file_is_refused(tmp_path: Path, mode: int) -> None:
    identity, _ = new_identity()
    path = tmp_path / "nfi.key"
    keys.write_identity(path, "nfi", identity, None)
    os.chmod(path, mode)
    with pytest.raises(InvalidInput, match="chmod 600"):
        keys.load_identity(path, None)


def test_never_overwrites(tmp_path: Path) -> None:
    identity, _ = new_identity()
    path = tmp_path / "nfi.key"
    keys.write_identity(path, "nfi", identity, None)
    before = path.read_bytes()
    with pytest.raises(InvalidInput, match="refusing to overwrite"):
        keys.write_identity(path, "nfi", new_identity()[0], None)
    with pytest.raises(InvalidInput, match="refusing to overwrite"):
        keys.write_key(path, "nfi", os.urandom(32), None)
    assert path.read_bytes() == before


def test_the_two_kinds_of_key_file_are_never_confused(tmp_path: Path) -> None:
    identity, _ = new_identity()
    org, actor = tmp_path / "org.key", tmp_path / "actor.key"
    keys.write_identity(org, "nfi", identity, None)
    keys.write_key(actor, "nl-cust", os.urandom(32), None)
    with pytest.raises(InvalidInput, match="encryption key, not a signing key"):
        keys.load_seed(org, None)
    with pytest.raises(InvalidInput, match="encryption key, not a signing key"):
        keys.key_info(org)
    with pytest.raises(InvalidInput, match="signing key, not an organisation's encryption"):
        keys.load_identity(actor, None)
    with pytest.raises(InvalidInput, match="signing key"):
        keys.identity_info(actor)


@pytest.mark.parametrize("bad", [
    "AGE-SECRET-KEY-1", "age1qqqq", "AGE-SECRET-KEY-1" + "B" * 58,
    "AGE-SECRET-KEY-1" + "Q" * 58,  # the right form, but not a valid Bech32 checksum
])
def test_a_malformed_identity_is_not_written(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "nfi.key"
    with pytest.raises(InvalidInput):
        keys.write_identity(path, "nfi", bad, None)
    assert not path.exists()


def test_a_damaged_identity_file_is_refused(tmp_path: Path) -> None:
    identity, _ = new_identity()
    other, _ = new_identity()
    path = tmp_path / "nfi.key"
    keys.write_identity(path, "nfi", identity, None)
    doc = json.loads(path.read_text())
    doc["identity"] = other  # a valid identity, but not the recipient's
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="identity and recipient disagree"):
        keys.load_identity(path, None)
    doc["identity"] = "garbage"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="damaged"):
        keys.load_identity(path, None)
    with pytest.raises(NotFound):
        keys.load_identity(tmp_path / "missing.key", None)


def test_the_key_id_is_the_recipient_digest_prefix() -> None:
    _, recipient = new_identity()
    kid = ev.org_key_id(recipient)
    assert len(kid) == 16
    assert int(kid, 16) >= 0
    assert kid == ev.org_key_id(recipient)
    with pytest.raises(InvalidInput):
        ev.org_key_id("age1ünïcode")


# ---- the home ----------------------------------------------------------------------------


def test_home_org_key_paths_and_loading(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    home = Home(tmp_path / "home")
    assert home.org_key_path("nfi") == tmp_path / "home" / "keys" / "orgs" / "nfi.key"
    with pytest.raises(NotFound, match="holds no encryption key"):
        home.org_identity("nfi")
    old, old_recipient = new_identity()
    new, new_recipient = new_identity()
    old_id, new_id = ev.org_key_id(old_recipient), ev.org_key_id(new_recipient)
    keys.write_identity(home.retired_org_key_path("nfi", old_id), "nfi", old, PASS)
    keys.write_identity(home.org_key_path("nfi"), "nfi", new, PASS)
    # Another organisation whose id starts like this one's is not mixed in.
    keys.write_identity(home.org_key_path("nfi.x"), "nfi.x", new_identity()[0], None)
    monkeypatch.setenv("CUSTODY_PASSPHRASE", PASS.decode())
    assert home.org_identity("nfi") == new
    assert home.org_identity("nfi", new_id) == new
    assert home.org_identity("nfi", old_id) == old
    with pytest.raises(NotFound, match="no encryption key 0000000000000000"):
        home.org_identity("nfi", "00" * 8)
    assert home.local_org_keys("nfi") == {old_id: home.retired_org_key_path("nfi", old_id),
                                          new_id: home.org_key_path("nfi")}
    assert home.local_org_keys("nobody") == {}
    monkeypatch.setenv("CUSTODY_PASSPHRASE", "wrong")
    with pytest.raises(Unauthenticated):
        home.org_identity("nfi")
