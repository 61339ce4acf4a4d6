"""Private key files: Ed25519 seeds at rest, mode 0600, encrypted with a passphrase.

Format (JSON)::

    {"v": 1, "type": "custody-ed25519-key", "name": NAME, "public_key": b64,
     "kdf": "argon2id", "opslimit": N, "memlimit": N, "salt": b64, "box": b64}
    {"v": 1, ..., "kdf": "none", "seed": b64}            # only with --no-passphrase

The box is XSalsa20-Poly1305 (``nacl.secret.SecretBox``) under a key derived with
Argon2id (``nacl.pwhash.argon2id``). Loading refuses a file readable by group or others
(threat T20), a wrong passphrase, and a seed that does not match the stated public key.
Key material never appears in reprs, logs or error messages.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger import _sodium
from ledger.errors import InvalidInput, NotFound, Unauthenticated

KEY_TYPE = "custody-ed25519-key"
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_key(path: Path, name: str, seed: bytes, passphrase: bytes | None) -> None:
    """Create ``path`` (mode 0600, never overwriting) holding ``seed``."""
    public_key = _sodium.public_key_from_seed(seed)
    doc: dict[str, object] = {"v": 1, "type": KEY_TYPE, "name": name,
                              "public_key": _b64(public_key)}
    if passphrase is None:
        doc |= {"kdf": "none", "seed": _b64(seed)}
    else:
        if not passphrase:
            raise InvalidInput("an empty passphrase is not allowed; use --no-passphrase")
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                       opslimit=OPSLIMIT, memlimit=MEMLIMIT)
        box = nacl.secret.SecretBox(key).encrypt(seed)
        doc |= {"kdf": "argon2id", "opslimit": OPSLIMIT, "memlimit": MEMLIMIT,
                "salt": _b64(salt), "box": _b64(bytes(box))}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InvalidInput(f"refusing to overwrite the existing key file {path}") from exc
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def key_info(path: Path) -> dict[str, object]:
    """The public part of a key file (name, public key, whether it is encrypted)."""
    doc = _read(path)
    return {"name": doc["name"], "public_key": doc["public_key"],
            "encrypted": doc["kdf"] != "none"}


def is_encrypted(path: Path) -> bool:
    return bool(_read(path)["kdf"] != "none")


def load_key(path: Path, passphrase: bytes | None) -> _sodium.Signer:
    """Load and decrypt a key file into a signer."""
    return _sodium.Signer(load_seed(path, passphrase))


def load_seed(path: Path, passphrase: bytes | None) -> bytes:
    """Load and decrypt a key file; refuse unsafe permissions and wrong passphrases."""
    doc = _read(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"key file {path} is accessible by group or others "
                           f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")
    try:
        if doc["kdf"] == "none":
            seed = base64.b64decode(doc["seed"], validate=True)
        elif doc["kdf"] == "argon2id":
            if passphrase is None:
                raise Unauthenticated(f"the key {path.name} is encrypted: set "
                                      "CUSTODY_PASSPHRASE or run in a terminal to be asked")
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE, passphrase,
                base64.b64decode(doc["salt"], validate=True),
                opslimit=int(doc["opslimit"]), memlimit=int(doc["memlimit"]))
            seed = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["box"]))
        else:
            raise InvalidInput(f"key file {path} uses unknown kdf {doc['kdf']!r}")
    except nacl.exceptions.CryptoError as exc:
        raise Unauthenticated(f"wrong passphrase for key {path.name}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"key file {path} is damaged") from exc
    if len(seed) != _sodium.SEED_SIZE or _b64(
            _sodium.public_key_from_seed(seed)) != doc["public_key"]:
        raise InvalidInput(f"key file {path} is damaged: seed and public key disagree")
    return seed


def _read(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"no key file at {path}") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"key file {path} is not valid JSON") from exc
    if not isinstance(doc, dict) or doc.get("type") != KEY_TYPE or doc.get("v") != 1:
        raise InvalidInput(f"{path} is not a custody key file")
    return doc
