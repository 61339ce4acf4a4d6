"""C2SP signed notes: wire compatibility with golang.org/x/mod/sumdb/note, and rejections.

The PeterNeumann / EnochRoot keys and signatures are the published test vectors of
golang.org/x/mod/sumdb/note (note_test.go), used as data.
"""

from __future__ import annotations

import base64

import pytest

from ledger.core.errors import InvalidInput, InvalidSignature, VerificationError
from ledger.core.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    MAX_SIGNATURES,
    NoteSigner,
    NoteVerifier,
    add_signature,
    key_hash,
    open_note,
    parse_verifier_key,
    split_note,
    verifier_key,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = TEXT + "\n" + PETER_SIG
PETER = NoteVerifier.from_key(PETER_VKEY)
ENOCH = NoteVerifier.from_key(ENOCH_VKEY)
SEED = bytes(range(32))


def peter_seed() -> bytes:
    return base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]  # material may hold "+"


def test_go_reference_note_verifies() -> None:
    assert open_note(PETER_NOTE, [PETER]) == (TEXT, ["PeterNeumann"])


def test_go_reference_key_id_and_key_encoding() -> None:
    name, keyid, public_key = parse_verifier_key(PETER_VKEY)
    assert name == "PeterNeumann"
    assert keyid.hex() == "c74f20a3"
    assert key_hash(name, ALG_ED25519, public_key) == keyid
    assert verifier_key(name, public_key) == PETER_VKEY


def test_signing_reproduces_the_go_reference_note_byte_for_byte() -> None:
    signer = NoteSigner("PeterNeumann", peter_seed())
    assert signer.verifier_key == PETER_VKEY
    assert signer.sign_note(TEXT) == PETER_NOTE


def test_two_signatures_one_known_key() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [PETER]) == (TEXT, ["PeterNeumann"])
    assert open_note(note, [ENOCH]) == (TEXT, ["EnochRoot"])
    assert open_note(note, [ENOCH, PETER])[1] == ["PeterNeumann", "EnochRoot"]


def test_duplicate_signatures_are_reported_once() -> None:
    note = TEXT + "\n" + PETER_SIG + PETER_SIG
    assert open_note(note, [PETER])[1] == ["PeterNeumann"]


def test_round_trip_and_add_signature() -> None:
    a = NoteSigner("log.example/a", SEED)
    b = NoteSigner("witness.example/b", bytes(32))
    text = "hello\n\nworld\n"  # the text may contain blank lines
    note = a.sign_note(text)
    assert open_note(note, [a.verifier]) == (text, ["log.example/a"])
    both = add_signature(note, b)
    assert open_note(both, [a.verifier, b.verifier]) == (
        text,
        ["log.example/a", "witness.example/b"],
    )
    assert add_signature(both, b) == both  # re-signing replaces, never duplicates
    assert split_note(both)[0] == text


def test_wrong_key_is_rejected() -> None:
    with pytest.raises(InvalidSignature, match="no signature from a trusted key"):
        open_note(PETER_NOTE, [ENOCH])


def test_unknown_key_only_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        open_note(TEXT + "\n" + ENOCH_SIG, [PETER])


def test_same_name_other_key_is_ignored_not_trusted() -> None:
    impostor = NoteSigner("PeterNeumann", SEED)
    forged = impostor.sign_note(TEXT)
    with pytest.raises(InvalidSignature, match="no signature"):
        open_note(forged, [PETER])
    # ... but it does not spoil a genuine signature next to it.
    both = TEXT + "\n" + forged.split("\n\n")[1] + PETER_SIG
    assert open_note(both, [PETER])[1] == ["PeterNeumann"]


def test_flipped_bit_in_body_is_rejected() -> None:
    tampered = PETER_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(InvalidSignature, match="invalid signature for key PeterNeumann"):
        open_note(tampered, [PETER])


@pytest.mark.parametrize("position", [0, 10, 40, 70, 75])
def test_flipped_bit_in_signature_is_rejected(position: int) -> None:
    raw = bytearray(base64.b64decode(PETER_SIG.split(" ")[2]))
    raw[4 + position % 64] ^= 0x01
    line = "— PeterNeumann " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(InvalidSignature):
        open_note(TEXT + "\n" + line, [PETER])


def test_flipped_bit_in_key_id_makes_the_signature_unknown() -> None:
    raw = bytearray(base64.b64decode(PETER_SIG.split(" ")[2]))
    raw[0] ^= 0x01
    line = "— PeterNeumann " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(InvalidSignature, match="no signature"):
        open_note(TEXT + "\n" + line, [PETER])


def test_truncated_and_extended_signatures_are_rejected() -> None:
    raw = base64.b64decode(PETER_SIG.split(" ")[2])
    for blob in (raw[:-1], raw[:36], raw + b"\x00"):
        line = "— PeterNeumann " + base64.b64encode(blob).decode() + "\n"
        with pytest.raises(InvalidSignature):
            open_note(TEXT + "\n" + line, [PETER])
    # The Go suite's "ABCD inserted into the base64" case.
    with pytest.raises(InvalidSignature, match="invalid signature"):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [PETER])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,  # no signatures
        TEXT + "\n",  # blank line but no signatures
        TEXT + "\n" + PETER_SIG[:-1],  # missing final newline
        TEXT + PETER_SIG,  # missing blank line
        "\x01" + PETER_NOTE,  # control character
        "\ud800" + PETER_NOTE,  # not UTF-8 encodable
        TEXT + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
        "qdngotpRZb6KE6RyyBwJnAM=\n",
        PETER_NOTE + "Unexpected line.\n",
        TEXT + "\n- PeterNeumann " + PETER_SIG.split(" ")[2],  # hyphen instead of em dash
        TEXT + "\n— PeterNeumann !!!!\n",  # not base64
        TEXT + "\n— PeterNeumann AAAA\n",  # shorter than key ID + data
        TEXT + "\n— a+b " + PETER_SIG.split(" ")[2],  # '+' in the name
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # unpadded base64
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(VerificationError, match="malformed note"):
        open_note(note, [PETER])


def test_signature_count_and_size_caps() -> None:
    open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [PETER])
    with pytest.raises(VerificationError, match="more than 100"):
        open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [PETER])
    with pytest.raises(VerificationError, match="larger than"):
        open_note("a" * (1 << 20) + "\n\n" + PETER_SIG, [PETER])


def test_ambiguous_verifiers_are_refused() -> None:
    other = NoteVerifier(PETER.name, PETER.key_hash, bytes(32))
    with pytest.raises(InvalidInput, match="ambiguous"):
        open_note(PETER_NOTE, [PETER, other])
    assert open_note(PETER_NOTE, [PETER, PETER])[1] == ["PeterNeumann"]


@pytest.mark.parametrize(
    "vkey",
    [
        PETER_VKEY[:-1],
        PETER_VKEY + "=",
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),
        PETER_VKEY.replace("c74f20a3", "C74F20A3"),
        PETER_VKEY.replace("PeterNeumann", "PeterNeuman"),
        "PeterNeumann+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        # Go suite: wrong key length / unknown algorithm, each with an adjusted key hash.
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(InvalidInput):
        parse_verifier_key(vkey)


def test_every_single_character_change_of_a_vkey_is_rejected() -> None:
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(InvalidInput):
            parse_verifier_key(mangled)


def test_ed25519_key_is_not_a_cosignature_key() -> None:
    with pytest.raises(InvalidInput):
        parse_verifier_key(PETER_VKEY, ALG_COSIGNATURE_V1)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u2003b", "a\nb"])
def test_bad_key_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInput):
        NoteSigner(name, SEED)


@pytest.mark.parametrize("text", ["", "no newline", "bell\x07\n", "\ud800\n"])
def test_bad_texts_cannot_be_signed(text: str) -> None:
    with pytest.raises(InvalidInput):
        NoteSigner("log.example", SEED).sign_note(text)


def test_signer_repr_shows_no_key_material() -> None:
    signer = NoteSigner("log.example", SEED)
    assert SEED.hex() not in repr(signer)
    assert signer.key_hash.hex() in repr(signer)
