"""T2: event signatures and encodings are unambiguous and unforgeable.

Known-answer vector (pinned bytes, checked a second time with ``nacl.signing.VerifyKey``
directly and with the signing bytes rebuilt by hand); wrong key, every single-bit flip,
truncation, non-canonical S, all-zero and small-order public keys are refused;
non-canonical leaves, duplicate keys and deep JSON are refused by the parsers.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

import nacl.exceptions
import nacl.signing
import pytest
import rfc8785

from ledger.core import _sodium
from ledger.core import events as ev
from ledger.core.canonical import MAX_DEPTH, canonical, parse
from ledger.core.errors import InvalidInput, InvalidSignature

KAT_SEED = bytes(range(32))
KAT_PUBLIC = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
KAT_KEY_ID = "bc99bd8c"
KAT_SIGNATURE = (
    "8dde4e5a7e723c4ba8c7ad04a234e7720e9b15d6e1923a590f139ea28a5d3ae4"
    "387d1be43a3e1a1b4102ba1648bc4c11eb6ce5ac86215a6a327f8891f1086c01"
)
KAT_EVENT_ID = "39ce7ac2d22250d78290a7d0259d14b18aa8577b71daecdc90d78842f21abad7"
KAT_SIGNING_BYTES = (
    b'custody-ledger/v1/event\n{"claimed_time":1790000000000,"key_id":"bc99bd8c",'
    b'"kind":"access.record","nonce":"00112233445566778899aabbccddeeff",'
    b'"origin":"kat.example/custody","payload":{"action":"view","artefact":"art-1",'
    b'"outcome":"success","purpose":"known answer"},"prev":null,"signer":"kat-actor","v":1}'
)
#: Ed25519 group order L (RFC 8032 §5.1).
L = 2**252 + 27742317777372353535851937790883648493
#: Encodings of small-order points (order 1, 2, 4, 8) and of a non-canonical identity.
SMALL_ORDER_KEYS = {
    "identity": "01" + "00" * 31,
    "order-2": "ec" + "ff" * 30 + "7f",
    "order-4 (y=0)": "00" * 32,
    "order-4 (y=0, sign)": "00" * 31 + "80",
    "order-8 a": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order-8 b": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "non-canonical identity": "ee" + "ff" * 30 + "7f",
}


def kat_event() -> ev.Event:
    return ev.Event(kind=ev.ACCESS, origin="kat.example/custody",
                    nonce="00112233445566778899aabbccddeeff", claimed_time=1_790_000_000_000,
                    signer="kat-actor", key_id=KAT_KEY_ID,
                    payload={"artefact": "art-1", "action": "view", "purpose": "known answer",
                             "outcome": "success"})


@pytest.fixture
def kat() -> ev.SignedEvent:
    return ev.sign_event(kat_event(), _sodium.Signer(KAT_SEED))


def test_known_answer_vector(kat: ev.SignedEvent) -> None:
    signer = _sodium.Signer(KAT_SEED)
    assert signer.public_key.hex() == KAT_PUBLIC
    assert ev.actor_key_id("kat-actor", signer.public_key) == KAT_KEY_ID
    assert kat.event.signing_bytes() == KAT_SIGNING_BYTES
    assert kat.signature.hex() == KAT_SIGNATURE  # Ed25519 is deterministic (RFC 8032)
    assert kat.event_id == KAT_EVENT_ID
    ev.verify_event(kat, bytes.fromhex(KAT_PUBLIC))


def test_known_answer_verifies_independently() -> None:
    """Rebuild the signed bytes from the wire-format description and verify with
    PyNaCl directly, bypassing ledger.core._sodium and ledger.core.events."""
    body = {"v": 1, "kind": "access.record", "origin": "kat.example/custody",
            "nonce": "00112233445566778899aabbccddeeff", "claimed_time": 1_790_000_000_000,
            "signer": "kat-actor", "key_id": KAT_KEY_ID, "prev": None,
            "payload": {"purpose": "known answer", "outcome": "success", "action": "view",
                        "artefact": "art-1"}}
    message = b"custody-ledger/v1/event\n" + rfc8785.dumps(body)
    assert message == KAT_SIGNING_BYTES
    vk = nacl.signing.VerifyKey(bytes.fromhex(KAT_PUBLIC))
    assert vk.verify(message, bytes.fromhex(KAT_SIGNATURE)) == message
    assert bytes(nacl.signing.SigningKey(KAT_SEED).verify_key).hex() == KAT_PUBLIC
    key_hash = hashlib.sha256(b"kat-actor\n\x01" + bytes.fromhex(KAT_PUBLIC)).digest()[:4]
    assert key_hash.hex() == KAT_KEY_ID
    signed = {"event": body, "sig": base64.b64encode(bytes.fromhex(KAT_SIGNATURE)).decode()}
    assert hashlib.sha256(rfc8785.dumps(signed)).hexdigest() == KAT_EVENT_ID
    with pytest.raises(nacl.exceptions.BadSignatureError):
        vk.verify(message.replace(b"known answer", b"known answes"),
                  bytes.fromhex(KAT_SIGNATURE))


def test_wire_round_trip_is_exact(kat: ev.SignedEvent) -> None:
    again = ev.SignedEvent.from_bytes(kat.canonical_bytes())
    assert again == kat
    assert again.canonical_bytes() == kat.canonical_bytes()


def test_wrong_key_is_rejected(kat: ev.SignedEvent) -> None:
    other = _sodium.Signer(hashlib.sha256(b"other").digest()).public_key
    with pytest.raises(InvalidSignature):
        ev.verify_event(kat, other)  # key id does not match
    with pytest.raises(InvalidSignature):
        _sodium.verify(other, kat.event.signing_bytes(), kat.signature)
    with pytest.raises(InvalidInput):  # signing with a key that is not the event's
        ev.sign_event(kat_event(), _sodium.Signer(hashlib.sha256(b"other").digest()))


def test_every_single_bit_flip_in_the_signature_is_rejected(kat: ev.SignedEvent) -> None:
    pub = bytes.fromhex(KAT_PUBLIC)
    for bit in range(len(kat.signature) * 8):
        sig = bytearray(kat.signature)
        sig[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidSignature):
            ev.verify_event(ev.SignedEvent(kat.event, bytes(sig)), pub)


def test_every_field_change_breaks_the_signature(kat: ev.SignedEvent) -> None:
    pub = bytes.fromhex(KAT_PUBLIC)
    changes = {"origin": "kat.example/other", "nonce": "ff" * 16, "claimed_time": 1,
               "kind": ev.VERIFICATION, "prev": "00" * 32,
               "payload": {**kat.event.payload, "outcome": "denied"}}
    for name, value in changes.items():
        forged = ev.SignedEvent(dataclasses.replace(kat.event, **{name: value}), kat.signature)
        with pytest.raises(InvalidSignature):
            ev.verify_event(forged, pub)


def test_truncated_or_extended_signature_is_rejected(kat: ev.SignedEvent) -> None:
    pub = bytes.fromhex(KAT_PUBLIC)
    for sig in (kat.signature[:63], kat.signature[:32], b"", kat.signature + b"\x00"):
        with pytest.raises(InvalidSignature):
            ev.verify_event(ev.SignedEvent(kat.event, sig), pub)
        wire = {"event": kat.event.to_json(), "sig": base64.b64encode(sig).decode()}
        with pytest.raises(InvalidInput):
            ev.SignedEvent.from_json(wire)


def test_non_canonical_s_is_rejected(kat: ev.SignedEvent) -> None:
    """S + L is the same scalar mod L: accepting it would make signatures malleable."""
    r, s = kat.signature[:32], int.from_bytes(kat.signature[32:], "little")
    malleated = r + (s + L).to_bytes(32, "little")
    with pytest.raises(InvalidSignature):
        _sodium.verify(bytes.fromhex(KAT_PUBLIC), kat.event.signing_bytes(), malleated)


def test_non_canonical_base64_signature_is_rejected(kat: ev.SignedEvent) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    text = base64.b64encode(kat.signature).decode()
    assert text.endswith("==")  # 64 bytes: the last symbol carries 4 unused zero bits
    last = alphabet.index(text[-3])
    assert last & 0x0F == 0
    variants = {
        "unused bits set": text[:-3] + alphabet[last | 1] + "==",
        "no padding": text.rstrip("="),
        "newline": text + "\n",
        "inner space": text[:10] + " " + text[10:],
        "urlsafe": base64.urlsafe_b64encode(b"\xfb\xff" + kat.signature[2:]).decode(),
    }
    for name, bad in variants.items():
        with pytest.raises(InvalidInput):
            ev.SignedEvent.from_json({"event": kat.event.to_json(), "sig": bad})
        assert name


def test_all_zero_public_key_is_rejected(kat: ev.SignedEvent) -> None:
    with pytest.raises(InvalidSignature):
        _sodium.verify(bytes(32), kat.event.signing_bytes(), kat.signature)
    with pytest.raises(InvalidSignature):
        _sodium.verify(bytes(32), b"", bytes(64))


@pytest.mark.parametrize("name", sorted(SMALL_ORDER_KEYS))
def test_small_order_public_keys_are_rejected(name: str) -> None:
    """The classic forgery: with A of small order, R = identity and S = 0 satisfy the
    verification equation for ANY message unless small-order keys/R are refused."""
    pub = bytes.fromhex(SMALL_ORDER_KEYS[name])
    identity = bytes.fromhex(SMALL_ORDER_KEYS["identity"])
    for sig in (identity + bytes(32), pub + bytes(32), bytes(64)):
        for message in (b"", KAT_SIGNING_BYTES):
            with pytest.raises(InvalidSignature):
                _sodium.verify(pub, message, sig)


def test_wrong_length_keys_are_rejected(kat: ev.SignedEvent) -> None:
    for pub in (b"", bytes.fromhex(KAT_PUBLIC)[:31], bytes.fromhex(KAT_PUBLIC) + b"\x00"):
        with pytest.raises(InvalidSignature):
            _sodium.verify(pub, kat.event.signing_bytes(), kat.signature)


# ---- encodings -----------------------------------------------------------------------------


def _leaf(kat: ev.SignedEvent) -> bytes:
    return ev.Entry(7, 1_790_000_000_123, kat).leaf_bytes()


def test_canonical_leaf_round_trips(kat: ev.SignedEvent) -> None:
    leaf = _leaf(kat)
    entry = ev.Entry.from_leaf(leaf)
    assert (entry.index, entry.ledger_time, entry.signed) == (7, 1_790_000_000_123, kat)
    assert entry.leaf_bytes() == leaf


def test_non_canonical_leaf_bytes_are_rejected(kat: ev.SignedEvent) -> None:
    leaf = _leaf(kat)
    obj = json.loads(leaf)
    variants = {
        "spaces": json.dumps(obj).encode(),
        "reordered keys": json.dumps(obj, sort_keys=False, separators=(",", ":")).encode()
        if list(obj) != sorted(obj) else json.dumps(
            dict(reversed(list(obj.items()))), separators=(",", ":")).encode(),
        "trailing newline": leaf + b"\n",
        "escaped unicode": leaf.replace(b'"art-1"', b'"\\u0061rt-1"'),
        "float index": leaf.replace(b'"index":7', b'"index":7.0'),
        "BOM": b"\xef\xbb\xbf" + leaf,
    }
    for name, data in variants.items():
        assert data != leaf, name
        with pytest.raises(InvalidInput):
            ev.Entry.from_leaf(data)


def test_leaf_with_extra_or_missing_keys_is_rejected(kat: ev.SignedEvent) -> None:
    obj = json.loads(_leaf(kat))
    for bad in ({**obj, "extra": 1}, {k: v for k, v in obj.items() if k != "ledger_time"},
                {**obj, "index": -1}, {**obj, "index": True}):
        with pytest.raises(InvalidInput):
            ev.Entry.from_leaf(canonical(bad))


def test_duplicate_json_keys_are_refused() -> None:
    with pytest.raises(InvalidInput, match="duplicate"):
        parse(b'{"a": 1, "a": 2}')
    with pytest.raises(InvalidInput, match="duplicate"):
        parse(b'{"x": {"sig": "a", "sig": "b"}}')


def test_duplicate_key_in_a_signed_event_is_refused(kat: ev.SignedEvent) -> None:
    data = kat.canonical_bytes().replace(b'"sig":', b'"sig":"AAAA","sig":', 1)
    with pytest.raises(InvalidInput, match="duplicate"):
        ev.SignedEvent.from_bytes(data)


def test_deep_json_is_refused() -> None:
    parse("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    for depth in (MAX_DEPTH + 2, 1000, 100_000):
        with pytest.raises(InvalidInput):
            parse("[" * depth + "]" * depth)
    with pytest.raises(InvalidInput):
        parse('{"a":' * 40 + "1" + "}" * 40)


def test_depth_limit_is_exactly_max_depth() -> None:
    with pytest.raises(InvalidInput):
        parse("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_nan_and_infinity_are_refused() -> None:
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}'):
        with pytest.raises(InvalidInput):
            parse(text)
