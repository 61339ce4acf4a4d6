"""Custody events: the signed envelope, its canonical bytes, and the log entry (leaf).

Wire format (all JSON is RFC 8785 canonical when hashed or signed)::

    Event      {"v", "kind", "origin", "nonce", "claimed_time", "signer", "key_id",
                "prev", "payload"}
    signature  Ed25519( "custody-ledger/v1/event\\n" || JCS(Event) )      (RFC 8032)
    Signed     {"event": Event, "sig": base64(signature)}
    event_id   hex( SHA-256( JCS(Signed) ) )
    Leaf L     JCS({"index", "ledger_time", "event": Signed})
    leaf_hash  SHA-256( 0x00 || L )                                        (RFC 6962 §2.1)

``origin`` binds an event to one ledger (no cross-ledger replay); ``nonce`` is unique
per ledger (no replay within it); ``prev`` is the id of the artefact's latest custody
event for events that move custody (compare-and-swap on the artefact head).
Times are integer milliseconds since the Unix epoch, UTC.

``key_id`` is the C2SP signed-note key hash of the signer's key, with the actor id as
the key name: hex(SHA-256(actor_id || "\\n" || 0x01 || public_key)[:4]).

An organisation's encryption key (``org.key``) is named by :func:`org_key_id`:
hex(SHA-256(ASCII age recipient))[:16].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from ledger.core import _sodium
from ledger.core.canonical import canonical, parse
from ledger.core.errors import InvalidInput, InvalidSignature
from ledger.core.note import key_hash

SCHEMA_VERSION: Final = 1
EVENT_DOMAIN: Final = b"custody-ledger/v1/event\n"

#: Event kinds. Payload schemas live in :mod:`ledger.core.payloads`.
GENESIS: Final = "ledger.genesis"
ORG_REGISTER: Final = "org.register"
ACTOR_ENROL: Final = "actor.enrol"
ACTOR_REVOKE: Final = "actor.revoke"
CASE_OPEN: Final = "case.open"
CASE_ADD_MEMBER: Final = "case.add-member"
LEGAL_BASIS: Final = "legal-basis.record"
ARTEFACT_REGISTER: Final = "artefact.register"
DISPATCH: Final = "custody.dispatch"
RECEIPT: Final = "custody.receipt"
ACCESS: Final = "access.record"
VERIFICATION: Final = "verification.record"
#: Enrol (or rotate) an organisation's age X25519 encryption key: packages of evidence
#: sent to the organisation are sealed to its current key (the key itself is public).
ORG_KEY: Final = "org.key"
ORG_KEY_REVOKE: Final = "org.key.revoke"
#: A login the server refused although the actor's signature was valid (mutual TLS: the
#: client certificate belongs to another organisation). Signed by the server's own
#: security actor, so a denied attempt is on the log like a denied access.
AUTH_DENIED: Final = "auth.denied"
KINDS: Final = (
    GENESIS, ORG_REGISTER, ACTOR_ENROL, ACTOR_REVOKE, CASE_OPEN, CASE_ADD_MEMBER,
    LEGAL_BASIS, ARTEFACT_REGISTER, DISPATCH, RECEIPT, ACCESS, VERIFICATION,
    ORG_KEY, ORG_KEY_REVOKE, AUTH_DENIED,
)

ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
NONCE_RE: Final = re.compile(r"^[0-9a-f]{32}$")
HEX64_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_EVENT_KEYS: Final = frozenset(
    {"v", "kind", "origin", "nonce", "claimed_time", "signer", "key_id", "prev", "payload"}
)
#: Largest claimed/ledger time accepted (year 9999) — keeps integers exact in JSON.
MAX_TIME_MS: Final = 253402300799999


def actor_key_id(actor_id: str, public_key: bytes) -> str:
    """The C2SP signed-note key hash (Ed25519, alg 0x01) of an actor's key, as hex."""
    return key_hash(actor_id, 0x01, public_key).hex()


def org_key_id(recipient: str) -> str:
    """The id of an organisation's encryption key: the first 16 hex characters (64 bits)
    of SHA-256 over its age recipient string (``age1…``, ASCII)."""
    try:
        raw = recipient.encode("ascii")
    except UnicodeEncodeError as exc:
        raise InvalidInput("an age recipient is ASCII text (age1...)") from exc
    return hashlib.sha256(raw).hexdigest()[:16]


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInput(
            f"{what} must be 1-64 characters of letters, digits, '.', '_', ':' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


def _check_time(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME_MS:
        raise InvalidInput(f"{what} must be an integer number of milliseconds since 1970")
    return value


@dataclass(frozen=True)
class Event:
    """An unsigned event body. ``payload`` is kept as the exact JSON dict that is signed."""

    kind: str
    origin: str
    nonce: str
    claimed_time: int
    signer: str
    key_id: str
    payload: dict[str, Any]
    prev: str | None = None
    v: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v, "kind": self.kind, "origin": self.origin, "nonce": self.nonce,
            "claimed_time": self.claimed_time, "signer": self.signer, "key_id": self.key_id,
            "prev": self.prev, "payload": self.payload,
        }

    def signing_bytes(self) -> bytes:
        return self._signing_bytes

    @cached_property
    def _signing_bytes(self) -> bytes:
        # Frozen: the encoding never changes, so compute it once (audit hot path).
        return EVENT_DOMAIN + canonical(self.to_json())

    @classmethod
    def from_json(cls, obj: object) -> Event:
        """Parse strictly: exact key set, types, formats. Payload content is checked later."""
        if not isinstance(obj, dict) or set(obj) != _EVENT_KEYS:
            raise InvalidInput("an event must be an object with exactly the keys "
                               + ", ".join(sorted(_EVENT_KEYS)))
        if obj["v"] != SCHEMA_VERSION or isinstance(obj["v"], bool):
            raise InvalidInput(f"unsupported event schema version {obj['v']!r}")
        if obj["kind"] not in KINDS:
            raise InvalidInput(f"unknown event kind {obj['kind']!r}")
        origin = obj["origin"]
        if not isinstance(origin, str) or not 0 < len(origin) <= 256 or any(
            c.isspace() or c == "+" for c in origin
        ):
            raise InvalidInput("origin must be 1-256 characters without spaces or '+'")
        if not isinstance(obj["nonce"], str) or not NONCE_RE.match(obj["nonce"]):
            raise InvalidInput("nonce must be 32 lowercase hex characters (16 random bytes)")
        if not isinstance(obj["key_id"], str) or not re.fullmatch(r"[0-9a-f]{8}", obj["key_id"]):
            raise InvalidInput("key_id must be 8 lowercase hex characters")
        prev = obj["prev"]
        if prev is not None and (not isinstance(prev, str) or not HEX64_RE.match(prev)):
            raise InvalidInput("prev must be null or a 64-character hex event id")
        if not isinstance(obj["payload"], dict):
            raise InvalidInput("payload must be a JSON object")
        return cls(
            kind=obj["kind"], origin=origin, nonce=obj["nonce"],
            claimed_time=_check_time(obj["claimed_time"], "claimed_time"),
            signer=check_id(obj["signer"], "signer"), key_id=obj["key_id"],
            payload=obj["payload"], prev=prev,
        )


@dataclass(frozen=True)
class SignedEvent:
    event: Event
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event.to_json(),
                "sig": base64.b64encode(self.signature).decode("ascii")}

    def canonical_bytes(self) -> bytes:
        return self._canonical

    @cached_property
    def _canonical(self) -> bytes:
        return canonical(self.to_json())

    @cached_property
    def event_id(self) -> str:
        return hashlib.sha256(self._canonical).hexdigest()

    @classmethod
    def from_json(cls, obj: object) -> SignedEvent:
        if not isinstance(obj, dict) or set(obj) != {"event", "sig"}:
            raise InvalidInput("a signed event must be an object with keys 'event' and 'sig'")
        sig = obj["sig"]
        if not isinstance(sig, str):
            raise InvalidInput("sig must be a base64 string")
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("sig is not valid base64") from exc
        if len(raw) != _sodium.SIGNATURE_SIZE or base64.b64encode(raw).decode() != sig:
            raise InvalidInput("sig must be the canonical base64 of a 64-byte signature")
        signed = cls(Event.from_json(obj["event"]), raw)
        # An event with no RFC 8785 form (a lone surrogate, an integer beyond 2**53, a
        # number that overflowed to infinity) has no event id: refuse it HERE, not later
        # wherever its id is first needed (InvalidInput; the encoding is cached).
        signed.canonical_bytes()
        return signed

    @classmethod
    def from_bytes(cls, data: bytes | str) -> SignedEvent:
        return cls.from_json(parse(data))


def sign_event(event: Event, signer: _sodium.Signer) -> SignedEvent:
    """Sign an event (domain tag + RFC 8785 bytes) with the actor's key."""
    if actor_key_id(event.signer, signer.public_key) != event.key_id:
        raise InvalidInput("the event's key_id does not belong to the signing key")
    return SignedEvent(event, signer.sign(event.signing_bytes()))


def verify_event(signed: SignedEvent, public_key: bytes) -> None:
    """Verify the event's signature and key id; raise :class:`InvalidSignature`."""
    if actor_key_id(signed.event.signer, public_key) != signed.event.key_id:
        raise InvalidSignature(
            f"event key id {signed.event.key_id} is not the key of actor {signed.event.signer}"
        )
    _sodium.verify(public_key, signed.event.signing_bytes(), signed.signature)


@dataclass(frozen=True, slots=True)
class Entry:
    """A log entry: a signed event plus what the ledger assigned when appending it."""

    index: int
    ledger_time: int
    signed: SignedEvent

    def leaf_bytes(self) -> bytes:
        return canonical({"index": self.index, "ledger_time": self.ledger_time,
                          "event": self.signed.to_json()})

    @classmethod
    def from_leaf(cls, leaf: bytes, *, check_canonical: bool = True) -> Entry:
        """Parse a leaf strictly. ``check_canonical=False`` skips only the re-encoding
        check, for leaves read back for display; audit and verification keep it (and
        verification recomputes the leaf hash from the bytes in any case)."""
        obj = parse(leaf)
        if not isinstance(obj, dict) or set(obj) != {"index", "ledger_time", "event"}:
            raise InvalidInput("a leaf must have exactly the keys index, ledger_time, event")
        index = obj["index"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidInput("leaf index must be a non-negative integer")
        entry = cls(index, _check_time(obj["ledger_time"], "ledger_time"),
                    SignedEvent.from_json(obj["event"]))
        if check_canonical and entry.leaf_bytes() != leaf:
            raise InvalidInput("leaf bytes are not in RFC 8785 canonical form")
        return entry
