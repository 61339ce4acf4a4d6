"""C2SP signed notes with Ed25519 (https://c2sp.org/signed-note).

A signed note is a text ending in a newline, a blank line, then one or more lines
``— <key name> base64(key ID || signature)``. Parsing is strict and fail-closed:
any syntax error, a failed signature from a known key, or no verified signature
from a known key raises :class:`~ledger.core.errors.VerificationError` (or its subclass
:class:`~ledger.core.errors.InvalidSignature`). Ed25519 itself is done by
:mod:`ledger.core._sodium`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.core import _sodium
from ledger.core.errors import InvalidInput, InvalidSignature, LedgerError, VerificationError

ALG_ED25519 = 0x01
"""Signature type of plain Ed25519 note signatures — signed-note §Signature types."""
ALG_COSIGNATURE_V1 = 0x04
"""Signature type of timestamped Ed25519 witness cosignatures — c2sp.org/tlog-cosignature."""

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100  # the spec requires accepting at least 16
_DASH = "— "  # U+2014 EM DASH, U+0020 SPACE
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-f]{8}")


def check_name(name: str) -> None:
    """Key names are non-empty and contain no Unicode space and no ``+`` — signed-note §Format."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("a key name must be a non-empty string")
    if "+" in name or any(ch.isspace() for ch in name) or _CONTROL.search(name):
        raise InvalidInput(f"key name {name!r} contains a space, '+' or a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"key name {name!r} is not valid Unicode text") from None


def key_hash(name: str, alg: int, public_key: bytes) -> bytes:
    """Key ID = SHA-256(name || 0x0A || type || public key)[:4] — signed-note §Signatures."""
    check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), canonical form only; raises InvalidInput."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInput(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise InvalidInput(f"{what} is not canonical base64")
    return raw


def encode_verifier_key(name: str, alg: int, public_key: bytes) -> str:
    """``<name>+<hex key ID>+<base64(type || public key)>``, the vkey encoding."""
    if len(public_key) != _sodium.PUBLIC_KEY_SIZE:
        raise InvalidInput("an Ed25519 public key must be 32 bytes")
    keyid = key_hash(name, alg, public_key).hex()
    return f"{name}+{keyid}+{base64.b64encode(bytes([alg]) + public_key).decode()}"


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key string of an Ed25519 note signer (golang.org/x/mod/sumdb/note form)."""
    return encode_verifier_key(name, ALG_ED25519, public_key)


def parse_verifier_key(vkey: str, alg: int = ALG_ED25519) -> tuple[str, bytes, bytes]:
    """Parse ``name+keyid+base64`` strictly; return ``(name, key_hash, public_key)``.

    The type byte must be ``alg`` and the key ID must match the recomputed one.
    """
    if not isinstance(vkey, str):
        raise InvalidInput("a verifier key must be a string")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise InvalidInput("a verifier key has the form name+keyid+base64key")
    name, keyid_hex, material = parts
    check_name(name)
    if not _HEX8.fullmatch(keyid_hex):
        raise InvalidInput("a verifier key ID must be 8 lowercase hex digits")
    raw = b64decode_strict(material, "the verifier key material")
    if len(raw) != 1 + _sodium.PUBLIC_KEY_SIZE or raw[0] != alg:
        raise InvalidInput(f"the verifier key is not a type 0x{alg:02x} Ed25519 key")
    public_key = raw[1:]
    expected = key_hash(name, alg, public_key)
    if expected.hex() != keyid_hex:
        raise InvalidInput("the verifier key ID does not match its name and key")
    return name, expected, public_key


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 note key (type 0x01)."""

    name: str
    key_hash: bytes
    public_key: bytes

    @classmethod
    def from_key(cls, vkey: str) -> NoteVerifier:
        return cls(*parse_verifier_key(vkey))

    def verify(self, text: bytes, signature: bytes) -> None:
        """Ed25519 over the note text — signed-note §Ed25519 signatures."""
        _sodium.verify(self.public_key, text, signature)


@dataclass(frozen=True)
class SignatureLine:
    """One parsed ``— name base64`` line; ``signature`` excludes the 4-byte key ID."""

    name: str
    key_hash: bytes
    signature: bytes

    def render(self) -> str:
        blob = base64.b64encode(self.key_hash + self.signature).decode()
        return f"{_DASH}{self.name} {blob}\n"


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise InvalidInput("a note text must be a non-empty string ending in a newline")
    if _CONTROL.search(text):
        raise InvalidInput("a note text must not contain control characters other than newline")
    _check_encoded(text, InvalidInput, "a note text must be valid UTF-8",
                   f"a note text is limited to {MAX_NOTE_BYTES} bytes")


def _check_encoded(note: str, error: type[LedgerError], not_utf8: str, too_large: str) -> None:
    """``note`` encodes to UTF-8 in at most :data:`MAX_NOTE_BYTES` bytes (signed-note
    §Format), else ``error`` with the message ``not_utf8`` or ``too_large``."""
    try:
        size = len(note.encode("utf-8"))
    except UnicodeEncodeError:
        raise error(not_utf8) from None
    if size > MAX_NOTE_BYTES:
        raise error(too_large)


def parse_signature_line(line: str) -> SignatureLine:
    """Parse one signature line (without its newline) — signed-note §Signatures."""
    if not line.startswith(_DASH):
        raise InvalidInput("a signature line must start with an em dash and a space")
    fields = line[len(_DASH) :].split(" ")
    if len(fields) != 2:
        raise InvalidInput("a signature line has exactly a key name and a signature")
    name, blob = fields
    check_name(name)
    raw = b64decode_strict(blob, "a note signature")
    if len(raw) < 5:
        raise InvalidInput("a note signature is shorter than its 4-byte key ID plus data")
    return SignatureLine(name, raw[:4], raw[4:])


def split_note(note: str) -> tuple[str, list[SignatureLine]]:
    """Split a signed note into its text and signature lines WITHOUT verifying.

    The text is everything up to and including the newline before the LAST blank line
    — signed-note §Format. Raises :class:`VerificationError` for any malformation.
    """
    if not isinstance(note, str):
        raise VerificationError("malformed note: not a string")
    _check_encoded(note, VerificationError, "malformed note: not valid UTF-8",
                   f"malformed note: larger than {MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(note):
        raise VerificationError("malformed note: contains a control character")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise VerificationError("malformed note: no blank line before the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block.endswith("\n"):
        raise VerificationError("malformed note: the signature block must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    try:
        sigs = [parse_signature_line(line) for line in lines]
    except InvalidInput as exc:
        raise VerificationError(f"malformed note: {exc.message}") from None
    return text, sigs


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> tuple[str, list[str]]:
    """Verify a signed note; return ``(text, names of the known keys that signed it)``.

    Per signed-note §Signatures: lines whose (name, key ID) match no verifier are
    ignored; a known key's line that fails raises :class:`InvalidSignature`; if no
    known key signed, :class:`InvalidSignature` is raised too.
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        previous = known.setdefault((v.name, v.key_hash), v)
        if previous.public_key != v.public_key:
            raise InvalidInput(f"ambiguous verifier keys for {v.name}+{v.key_hash.hex()}")
    text, sigs = split_note(note)
    message = text.encode("utf-8")
    verified: list[str] = []
    for sig in sigs:
        verifier = known.get((sig.name, sig.key_hash))
        if verifier is None:
            continue
        try:
            verifier.verify(message, sig.signature)
        except InvalidSignature:
            raise InvalidSignature(
                f"invalid signature for key {sig.name}+{sig.key_hash.hex()}"
            ) from None
        if sig.name not in verified:
            verified.append(sig.name)
    if not verified:
        raise InvalidSignature("the note has no signature from a trusted key")
    return text, verified


class NoteSigner:
    """An Ed25519 note key (type 0x01) that signs note texts."""

    __slots__ = ("_signer", "key_hash", "name", "public_key")

    def __init__(self, name: str, seed: bytes) -> None:
        check_name(name)
        self._signer = _sodium.Signer(seed)
        self.name = name
        self.public_key = self._signer.public_key
        self.key_hash = key_hash(name, ALG_ED25519, self.public_key)

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.name, self.public_key)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_hash, self.public_key)

    def signature_line(self, text: str) -> str:
        """The ``— name base64(keyid || sig)`` line over ``text`` (newline included)."""
        _check_text(text)
        signature = self._signer.sign(text.encode("utf-8"))
        return SignatureLine(self.name, self.key_hash, signature).render()

    def sign_note(self, text: str) -> str:
        """Return ``text + "\\n" + signature line`` — signed-note §Format."""
        return text + "\n" + self.signature_line(text)

    def __repr__(self) -> str:
        return f"NoteSigner({self.name!r}, key_hash={self.key_hash.hex()})"


def add_signature_line(note: str, line: str) -> str:
    """Append a signature line to a signed note, replacing any line with the same
    (name, key ID). The note is re-parsed, not verified."""
    text, sigs = split_note(note)
    try:
        new = parse_signature_line(line.removesuffix("\n"))
    except InvalidInput as exc:
        raise InvalidInput(f"bad signature line: {exc.message}") from None
    kept = [s for s in sigs if (s.name, s.key_hash) != (new.name, new.key_hash)]
    if len(kept) + 1 > MAX_SIGNATURES:
        raise InvalidInput(f"a note carries at most {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(s.render() for s in [*kept, new])


def add_signature(note: str, signer: NoteSigner) -> str:
    """Add ``signer``'s signature over the text of an existing signed note."""
    text, _ = split_note(note)
    return add_signature_line(note, signer.signature_line(text))
