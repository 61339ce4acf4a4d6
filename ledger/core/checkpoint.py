"""Signed tree heads: C2SP tlog-checkpoint and tlog-cosignature (Ed25519, cosignature/v1).

A checkpoint is a signed note (:mod:`ledger.core.note`) whose text is::

    <origin>\\n<tree size in decimal>\\n<base64 root hash>\\n[extension lines\\n...]

(https://c2sp.org/tlog-checkpoint §Note text). Witnesses add cosignature lines
(https://c2sp.org/tlog-cosignature): key type 0x04, the signature field is
``timestamp (uint64 big-endian) || Ed25519 signature`` and the signed message is
``"cosignature/v1\\ntime <t>\\n" + checkpoint text``. Time is always an argument.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.core import _sodium
from ledger.core.errors import InvalidInput, InvalidSignature, VerificationError
from ledger.core.note import (
    ALG_COSIGNATURE_V1,
    NoteSigner,
    NoteVerifier,
    SignatureLine,
    add_signature_line,
    b64decode_strict,
    check_name,
    encode_verifier_key,
    key_hash,
    open_note,
    parse_signature_line,
    parse_verifier_key,
    split_note,
)

HASH_SIZE = 32
MAX_TREE_SIZE = (1 << 64) - 1
MAX_TIMESTAMP = (1 << 63) - 1  # tlog-cosignature §Format
_SIZE_LINE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin, size and RFC 6962 root — tlog-checkpoint §Note text."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or _CONTROL.search(self.origin):
            raise InvalidInput("a checkpoint origin must be a non-empty single line")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise InvalidInput("a checkpoint size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise InvalidInput("a checkpoint size must fit in an unsigned 64-bit integer")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise InvalidInput(f"a checkpoint root must be {HASH_SIZE} bytes")
        for line in self.extensions:
            if not isinstance(line, str) or not line or _CONTROL.search(line):
                raise InvalidInput("checkpoint extension lines must be non-empty single lines")

    def body(self) -> str:
        """The note text, ending in a newline."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Strictly parse a checkpoint note text; raise :class:`VerificationError`."""
        if not isinstance(body, str) or not body.endswith("\n"):
            raise VerificationError("malformed checkpoint: the text must end in a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError("malformed checkpoint: fewer than three lines")
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise VerificationError("malformed checkpoint: empty origin line")
        if not _SIZE_LINE.fullmatch(size_line):
            raise VerificationError(f"malformed checkpoint: bad tree size {size_line!r}")
        try:
            root = b64decode_strict(root_line, "the root hash")
        except InvalidInput as exc:
            raise VerificationError(f"malformed checkpoint: {exc.message}") from None
        if len(root) != HASH_SIZE:
            raise VerificationError(f"malformed checkpoint: root hash is {len(root)} bytes, not 32")
        try:
            return cls(origin, int(size_line), root, tuple(extensions))
        except InvalidInput as exc:
            raise VerificationError(f"malformed checkpoint: {exc.message}") from None


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """The log's signed note over ``cp`` (tlog-checkpoint §Signatures)."""
    return signer.sign_note(cp.body())


def verify_checkpoint(
    note: str, log_verifier_key: str, expected_origin: str | None = None
) -> Checkpoint:
    """Verify a checkpoint signed by the log key and return it.

    Steps: (1) parse the trusted key; (2) open the note with it (signed-note
    §Signatures); (3) parse the text (tlog-checkpoint §Note text); (4) the origin
    must equal ``expected_origin`` or, when that is None, the log key's name (the
    tlog-checkpoint §Signatures convention this ledger always follows).
    """
    verifier = NoteVerifier.from_key(log_verifier_key)
    text, _ = open_note(note, [verifier])
    cp = Checkpoint.parse(text)
    want = verifier.name if expected_origin is None else expected_origin
    if cp.origin != want:
        raise VerificationError(f"foreign checkpoint: origin {cp.origin!r}, expected {want!r}")
    return cp


def cosignature_verifier_key(name: str, public_key: bytes) -> str:
    """A witness vkey with signature type 0x04 (tlog-cosignature §Format)."""
    return encode_verifier_key(name, ALG_COSIGNATURE_V1, public_key)


def cosignature_message(body: str, timestamp: int) -> bytes:
    """``cosignature/v1\\ntime <t>\\n`` + checkpoint text.

    tlog-cosignature §Ed25519 signed message.
    """
    _check_timestamp(timestamp)
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise InvalidInput("a cosignature timestamp must be an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInput("a cosignature timestamp must be within 0 .. 2^63-1")


def _body_of(note_or_cp: str | Checkpoint) -> str:
    if isinstance(note_or_cp, Checkpoint):
        return note_or_cp.body()
    text, _ = split_note(note_or_cp)
    return Checkpoint.parse(text).body()


def cosign(
    note_or_cp: str | Checkpoint, witness_name: str, witness_seed: bytes, timestamp: int
) -> str:
    """A witness's cosignature line over a checkpoint at POSIX time ``timestamp``.

    Pure primitive: the caller (a witness) must have checked consistency first.
    """
    check_name(witness_name)
    body = _body_of(note_or_cp)
    signer = _sodium.Signer(witness_seed)
    signature = signer.sign(cosignature_message(body, timestamp))
    keyid = key_hash(witness_name, ALG_COSIGNATURE_V1, signer.public_key)
    return SignatureLine(witness_name, keyid, struct.pack(">Q", timestamp) + signature).render()


def cosignature_timestamp(line: str) -> int:
    """The POSIX timestamp carried by a cosignature line (not verified)."""
    try:
        sig = parse_signature_line(line.removesuffix("\n"))
    except InvalidInput as exc:
        raise VerificationError(f"malformed cosignature: {exc.message}") from None
    if len(sig.signature) != 8 + _sodium.SIGNATURE_SIZE:
        raise VerificationError("malformed cosignature: not timestamp(8) || Ed25519(64)")
    return int(struct.unpack(">Q", sig.signature[:8])[0])


def add_cosignature(note: str, line: str) -> str:
    """Append a cosignature line to a signed checkpoint (not verified here)."""
    return add_signature_line(note, line)


@dataclass(frozen=True)
class _Witness:
    name: str
    key_hash: bytes
    public_key: bytes


def _witnesses(witness_keys: Sequence[str]) -> dict[tuple[str, bytes], _Witness]:
    table: dict[tuple[str, bytes], _Witness] = {}
    public_keys: set[bytes] = set()
    for vkey in witness_keys:
        name, keyid, public_key = parse_verifier_key(vkey, ALG_COSIGNATURE_V1)
        # v1 does not commit to the name, so one key under two names would count twice.
        if (name, keyid) in table or public_key in public_keys:
            raise InvalidInput(f"witness key {name}+{keyid.hex()} is configured twice")
        table[(name, keyid)] = _Witness(name, keyid, public_key)
        public_keys.add(public_key)
    return table


def verify_cosignatures(note: str, witness_keys: Sequence[str], quorum: int) -> list[str]:
    """Verify witness cosignatures on a checkpoint note; return the witnesses that signed.

    Lines of unknown keys are ignored; a known witness's line that fails raises
    :class:`InvalidSignature`; fewer than ``quorum`` distinct valid witnesses raises
    :class:`VerificationError`. This does NOT check the log's own signature: call
    :func:`verify_checkpoint` too.
    """
    table = _witnesses(witness_keys)
    if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= len(table):
        raise InvalidInput(f"quorum {quorum} is not between 1 and {len(table)} witnesses")
    text, sigs = split_note(note)
    body = Checkpoint.parse(text).body()
    valid: list[str] = []
    for sig in sigs:
        witness = table.get((sig.name, sig.key_hash))
        if witness is None:
            continue
        label = f"{sig.name}+{sig.key_hash.hex()}"
        if len(sig.signature) != 8 + _sodium.SIGNATURE_SIZE:
            raise InvalidSignature(f"cosignature from {label} has the wrong length")
        (timestamp,) = struct.unpack(">Q", sig.signature[:8])
        if timestamp > MAX_TIMESTAMP:
            raise InvalidSignature(f"cosignature from {label} has an out-of-range timestamp")
        try:
            _sodium.verify(
                witness.public_key, cosignature_message(body, timestamp), sig.signature[8:]
            )
        except InvalidSignature:
            raise InvalidSignature(f"invalid cosignature from witness {label}") from None
        if witness.name not in valid:
            valid.append(witness.name)
    if len(valid) < quorum:
        raise VerificationError(
            f"cosignature quorum not met: {len(valid)} valid of {quorum} required "
            f"({len(table)} witnesses known)"
        )
    return valid
