"""Private key files: Ed25519 seeds and age identities at rest, mode 0600, encrypted
with a passphrase.

Format (JSON)::

    {"v": 1, "type": "custody-ed25519-key", "name": NAME, "public_key": b64,
     "kdf": "argon2id", "opslimit": N, "memlimit": N, "salt": b64, "box": b64}
    {"v": 1, ..., "kdf": "none", "seed": b64}            # only with --no-passphrase

An organisation's encryption key (an age X25519 identity, ``AGE-SECRET-KEY-1…``) is
kept the same way under its own type, so neither kind is ever loaded as the other::

    {"v": 1, "type": "custody-age-identity", "name": NAME, "recipient": "age1…",
     "kdf": "argon2id", ..., "box": b64}       # or "kdf": "none", "identity": "AGE-…"

The box is XSalsa20-Poly1305 (``nacl.secret.SecretBox``) under a key derived with
Argon2id (``nacl.pwhash.argon2id``). Loading refuses a file readable by group or others
(threat T20), a wrong passphrase, and a seed that does not match the stated public key.
Key material never appears in reprs, logs or error messages.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger.core import _sodium
from ledger.core.errors import InvalidInput, NotFound, Unauthenticated

KEY_TYPE = "custody-ed25519-key"
IDENTITY_TYPE = "custody-age-identity"
#: An age X25519 identity as age prints it (Bech32, upper case).
_IDENTITY_RE = re.compile(r"AGE-SECRET-KEY-1[02-9ACDEFGHJKLMNPQRSTUVWXYZ]{58}")
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
        doc |= _sealed(seed, passphrase)
    _create(path, doc)


def _sealed(secret: bytes, passphrase: bytes) -> dict[str, object]:
    """The encrypted form of ``secret``: Argon2id key derivation, then SecretBox."""
    if not passphrase:
        raise InvalidInput("an empty passphrase is not allowed; use --no-passphrase")
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                   opslimit=OPSLIMIT, memlimit=MEMLIMIT)
    box = nacl.secret.SecretBox(key).encrypt(secret)
    return {"kdf": "argon2id", "opslimit": OPSLIMIT, "memlimit": MEMLIMIT,
            "salt": _b64(salt), "box": _b64(bytes(box))}


def _create(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InvalidInput(f"refusing to overwrite the existing key file {path}") from exc
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def age_recipient(identity: str) -> str:
    """The age recipient (``age1…``, public) of an age X25519 identity."""
    if not _IDENTITY_RE.fullmatch(identity):
        raise InvalidInput("an age identity is AGE-SECRET-KEY-1 followed by 58 Bech32 "
                           "characters")
    pyrage: Any = importlib.import_module("pyrage")  # untyped extension module
    try:
        return str(pyrage.x25519.Identity.from_str(identity).to_public())
    except pyrage.IdentityError as exc:
        raise InvalidInput("the age identity is not valid (its checksum does not verify)") \
            from exc


def write_identity(path: Path, name: str, identity: str, passphrase: bytes | None) -> None:
    """Create ``path`` (mode 0600, never overwriting) holding an age X25519 identity
    (``AGE-SECRET-KEY-1…``), encrypted like :func:`write_key` unless ``passphrase`` is
    None. The file also names the identity's public recipient (``age1…``)."""
    doc: dict[str, object] = {"v": 1, "type": IDENTITY_TYPE, "name": name,
                              "recipient": age_recipient(identity)}
    if passphrase is None:
        doc |= {"kdf": "none", "identity": identity}
    else:
        doc |= _sealed(identity.encode("ascii"), passphrase)
    _create(path, doc)


def identity_info(path: Path) -> dict[str, object]:
    """The public part of an identity file (name, recipient, whether it is encrypted)."""
    doc = _read(path, IDENTITY_TYPE)
    return {"name": doc["name"], "recipient": doc["recipient"],
            "encrypted": doc["kdf"] != "none"}


def load_identity(path: Path, passphrase: bytes | None) -> str:
    """Load and decrypt an age identity file; refuse unsafe permissions, a wrong
    passphrase, and an identity that does not match the stated recipient."""
    doc = _read(path, IDENTITY_TYPE)
    _check_mode(path)
    secret = _open(path, doc, "identity", passphrase)
    try:
        identity = secret.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"key file {path} is damaged") from exc
    try:
        recipient = age_recipient(identity)
    except InvalidInput as exc:
        raise InvalidInput(f"key file {path} is damaged: it holds no valid age identity") \
            from exc
    if recipient != doc["recipient"]:
        raise InvalidInput(f"key file {path} is damaged: identity and recipient disagree")
    return identity


def key_info(path: Path) -> dict[str, object]:
    """The public part of a key file (name, public key, whether it is encrypted)."""
    doc = _read(path)
    return {"name": doc["name"], "public_key": doc["public_key"],
            "encrypted": doc["kdf"] != "none"}


def is_encrypted(path: Path) -> bool:
    """Whether a key file (of either kind) is encrypted with a passphrase."""
    return bool(_read(path, None)["kdf"] != "none")


def load_key(path: Path, passphrase: bytes | None) -> _sodium.Signer:
    """Load and decrypt a key file into a signer."""
    return _sodium.Signer(load_seed(path, passphrase))


def load_seed(path: Path, passphrase: bytes | None) -> bytes:
    """Load and decrypt a key file; refuse unsafe permissions and wrong passphrases."""
    doc = _read(path)
    _check_mode(path)
    seed = _open(path, doc, "seed", passphrase)
    if len(seed) != _sodium.SEED_SIZE or _b64(
            _sodium.public_key_from_seed(seed)) != doc["public_key"]:
        raise InvalidInput(f"key file {path} is damaged: seed and public key disagree")
    return seed


def _check_mode(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"key file {path} is accessible by group or others "
                           f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")


def _open(path: Path, doc: dict[str, str], plain_field: str, passphrase: bytes | None) -> bytes:
    """The secret of a key file: its plain field (``kdf`` none) or its decrypted box."""
    try:
        if doc["kdf"] == "none":
            value = doc[plain_field]
            if plain_field == "identity":
                return value.encode("ascii")
            return base64.b64decode(value, validate=True)
        if doc["kdf"] == "argon2id":
            if passphrase is None:
                raise Unauthenticated(f"the key {path.name} is encrypted: set "
                                      "CUSTODY_PASSPHRASE or run in a terminal to be asked")
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE, passphrase,
                base64.b64decode(doc["salt"], validate=True),
                opslimit=int(doc["opslimit"]), memlimit=int(doc["memlimit"]))
            return bytes(nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["box"])))
        raise InvalidInput(f"key file {path} uses unknown kdf {doc['kdf']!r}")
    except nacl.exceptions.CryptoError as exc:
        raise Unauthenticated(f"wrong passphrase for key {path.name}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"key file {path} is damaged") from exc


def _read(path: Path, kind: str | None = KEY_TYPE) -> dict[str, str]:
    """The JSON of a key file of type ``kind`` (None: either kind)."""
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
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("type") not in (
            KEY_TYPE, IDENTITY_TYPE):
        raise InvalidInput(f"{path} is not a custody key file")
    if kind is not None and doc["type"] != kind:
        raise InvalidInput(f"{path} holds an organisation's encryption key, not a signing "
                           "key" if kind == KEY_TYPE else
                           f"{path} holds a signing key, not an organisation's encryption key")
    return doc
