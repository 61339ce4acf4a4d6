"""C2SP tlog-checkpoint and tlog-cosignature: formats, round trips and rejections (T4, T16)."""

from __future__ import annotations

import base64

import pytest

from ledger.core import _sodium
from ledger.core.checkpoint import (
    Checkpoint,
    add_cosignature,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    cosignature_verifier_key,
    sign_checkpoint,
    verify_checkpoint,
    verify_cosignatures,
)
from ledger.core.errors import InvalidInput, InvalidSignature, VerificationError
from ledger.core.merkle import leaf_hash
from ledger.core.note import ALG_COSIGNATURE_V1, NoteSigner, parse_verifier_key, split_note

ORIGIN = "custody.example/ledger"
LOG = NoteSigner(ORIGIN, b"\x01" * 32)
ROOT = leaf_hash(b"root")
CP = Checkpoint(ORIGIN, 20852163, ROOT)
WITNESS_SEEDS = {f"witness.example/w{i}": bytes([0x40 + i]) * 32 for i in range(3)}
WITNESS_KEYS = [
    cosignature_verifier_key(name, _sodium.public_key_from_seed(seed))
    for name, seed in WITNESS_SEEDS.items()
]
T = 1679315147

# The example checkpoint of c2sp.org/tlog-checkpoint and its cosignature line from
# c2sp.org/tlog-cosignature (data only; the witness key is not published).
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIG = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
# A native type-0x04 witness vkey published in transparency-dev/formats' tests.
REAL_COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


def signed() -> str:
    return sign_checkpoint(CP, LOG)


def cosigned(names: list[str], timestamp: int = T) -> str:
    note = signed()
    for name in names:
        note = add_cosignature(note, cosign(note, name, WITNESS_SEEDS[name], timestamp))
    return note


def test_body_format_and_parse_round_trip() -> None:
    body = CP.body()
    assert body == f"{ORIGIN}\n20852163\n{base64.b64encode(ROOT).decode()}\n"
    assert Checkpoint.parse(body) == CP
    with_ext = Checkpoint(ORIGIN, 0, ROOT, ("ext one", "ext-two"))
    assert Checkpoint.parse(with_ext.body()) == with_ext


def test_spec_example_body_parses() -> None:
    cp = Checkpoint.parse(SPEC_BODY)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.body() == SPEC_BODY


def test_sign_and_verify_round_trip() -> None:
    assert verify_checkpoint(signed(), LOG.verifier_key) == CP
    assert verify_checkpoint(signed(), LOG.verifier_key, expected_origin=ORIGIN) == CP


def test_foreign_origin_is_rejected() -> None:
    other = sign_checkpoint(Checkpoint("other.example/log", 5, ROOT), LOG)
    with pytest.raises(VerificationError, match="foreign checkpoint"):
        verify_checkpoint(other, LOG.verifier_key)
    with pytest.raises(VerificationError, match="foreign checkpoint"):
        verify_checkpoint(signed(), LOG.verifier_key, expected_origin="other.example/log")


def test_wrong_log_key_is_rejected() -> None:
    impostor = NoteSigner(ORIGIN, b"\x02" * 32)
    with pytest.raises(InvalidSignature):
        verify_checkpoint(sign_checkpoint(CP, impostor), LOG.verifier_key)


def test_tampered_size_or_root_is_rejected() -> None:
    note = signed()
    with pytest.raises(InvalidSignature):
        verify_checkpoint(note.replace("20852163", "20852164"), LOG.verifier_key)
    text, _ = split_note(note)
    root_line = text.split("\n")[2]
    flipped = base64.b64encode(bytes([ROOT[0] ^ 1]) + ROOT[1:]).decode()
    with pytest.raises(InvalidSignature):
        verify_checkpoint(note.replace(root_line, flipped), LOG.verifier_key)


@pytest.mark.parametrize(
    "size_line", ["01", "-1", "", "+1", " 1", "1.0", "0x10", "١٢", "18446744073709551616"]
)
def test_malformed_size_lines_are_rejected(size_line: str) -> None:
    root = base64.b64encode(ROOT).decode()
    body = f"{ORIGIN}\n{size_line}\n{root}\n"
    with pytest.raises(VerificationError, match="malformed checkpoint"):
        Checkpoint.parse(body)
    with pytest.raises(VerificationError, match="malformed checkpoint"):
        verify_checkpoint(LOG.sign_note(body), LOG.verifier_key)


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31-byte root
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT + b'x').decode()}\n",  # 33-byte root
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode().rstrip('=')}\n",  # unpadded
        f"{ORIGIN}\n1\n",  # no root line
        f"\n1\n{base64.b64encode(ROOT).decode()}\n",  # empty origin
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}",  # no final newline
    ],
)
def test_malformed_bodies_are_rejected(body: str) -> None:
    with pytest.raises(VerificationError, match="malformed checkpoint"):
        Checkpoint.parse(body)


def test_missing_blank_line_is_rejected() -> None:
    note = signed().replace("\n\n", "\n")
    with pytest.raises(VerificationError, match="malformed note"):
        verify_checkpoint(note, LOG.verifier_key)


def test_extension_lines_are_signed() -> None:
    cp = Checkpoint(ORIGIN, 3, ROOT, ("extension",))
    note = sign_checkpoint(cp, LOG)
    assert verify_checkpoint(note, LOG.verifier_key) == cp
    with pytest.raises(InvalidSignature):
        verify_checkpoint(note.replace("extension", "extensioN"), LOG.verifier_key)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": ""},
        {"origin": "a\nb"},
        {"size": -1},
        {"size": 1 << 64},
        {"size": True},
        {"root": ROOT[:31]},
        {"extensions": ("",)},
        {"extensions": ("a\nb",)},
    ],
)
def test_invalid_checkpoints_cannot_be_built(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"origin": ORIGIN, "size": 1, "root": ROOT, **kwargs}
    with pytest.raises(InvalidInput):
        Checkpoint(**fields)  # type: ignore[arg-type]


def test_cosignature_wire_format() -> None:
    name = "witness.example/w0"
    line = cosign(CP, name, WITNESS_SEEDS[name], T)
    assert line.startswith(f"— {name} ")
    assert line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    public_key = _sodium.public_key_from_seed(WITNESS_SEEDS[name])
    _, keyid, _ = parse_verifier_key(WITNESS_KEYS[0], ALG_COSIGNATURE_V1)
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == keyid
    assert int.from_bytes(raw[4:12], "big") == T
    message = f"cosignature/v1\ntime {T}\n{CP.body()}".encode()
    assert cosignature_message(CP.body(), T) == message
    _sodium.verify(public_key, message, raw[12:])
    assert cosignature_timestamp(line) == T


def test_published_cosignature_layouts_decode() -> None:
    # c2sp.org/tlog-cosignature example: its signed message shows "time 1679315147".
    assert cosignature_timestamp(SPEC_COSIG) == 1679315147
    # transparency-dev/formats CoSigV1Timestamp vector.
    tdev = (
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOwor"
        "DcFiEBYJXORmnFBOBA=="
    )
    assert cosignature_timestamp(f"— w {tdev}\n") == 1727964367
    # A real type-0x04 vkey: its key ID must match our 0x04 key-ID computation.
    name, keyid, _ = parse_verifier_key(REAL_COSIG_VKEY, ALG_COSIGNATURE_V1)
    assert (name, keyid.hex()) == ("remora.n621.de", "da77ade7")


def test_cosignature_quorum_met() -> None:
    note = cosigned(["witness.example/w0", "witness.example/w2"])
    assert verify_checkpoint(note, LOG.verifier_key) == CP  # log signature still fine
    assert verify_cosignatures(note, WITNESS_KEYS, 2) == [
        "witness.example/w0",
        "witness.example/w2",
    ]


def test_cosignature_quorum_not_met() -> None:
    note = cosigned(["witness.example/w1"])
    with pytest.raises(VerificationError, match="1 valid of 2 required"):
        verify_cosignatures(note, WITNESS_KEYS, 2)
    with pytest.raises(VerificationError, match="0 valid of 1 required"):
        verify_cosignatures(signed(), WITNESS_KEYS, 1)


def test_repeated_cosignature_counts_once() -> None:
    note = cosigned(["witness.example/w1"])
    line = cosign(note, "witness.example/w1", WITNESS_SEEDS["witness.example/w1"], T + 5)
    note = add_cosignature(note, line)  # replaces the older line of the same key
    assert note.count("witness.example/w1") == 1
    with pytest.raises(VerificationError, match="1 valid of 2"):
        verify_cosignatures(note, WITNESS_KEYS, 2)


def test_cosignature_over_another_checkpoint_is_rejected() -> None:
    other = Checkpoint(ORIGIN, CP.size + 1, leaf_hash(b"fork"))
    name = "witness.example/w0"
    line = cosign(other, name, WITNESS_SEEDS[name], T)
    with pytest.raises(InvalidSignature, match="invalid cosignature from witness"):
        verify_cosignatures(add_cosignature(signed(), line), WITNESS_KEYS, 1)


def test_cosignature_with_altered_timestamp_is_rejected() -> None:
    note = cosigned(["witness.example/w0"])
    _, sigs = split_note(note)
    raw = sigs[-1].key_hash + (T + 1).to_bytes(8, "big") + sigs[-1].signature[8:]
    line = "— witness.example/w0 " + base64.b64encode(raw).decode() + "\n"
    with pytest.raises(InvalidSignature):
        verify_cosignatures(add_cosignature(note, line), WITNESS_KEYS, 1)


def test_log_signature_is_not_a_cosignature() -> None:
    # Same name and key as a witness, but type 0x01: a different key ID, so ignored.
    name = "witness.example/w0"
    as_log = NoteSigner(name, WITNESS_SEEDS[name])
    note = add_cosignature(signed(), as_log.signature_line(CP.body()))
    with pytest.raises(VerificationError, match="0 valid of 1"):
        verify_cosignatures(note, WITNESS_KEYS, 1)


def test_cosignature_is_not_a_log_signature() -> None:
    witness_as_log = NoteSigner("witness.example/w0", WITNESS_SEEDS["witness.example/w0"])
    note = cosigned(["witness.example/w0"]).replace(split_note(signed())[1][0].render(), "")
    with pytest.raises(InvalidSignature):
        verify_checkpoint(note, witness_as_log.verifier_key, expected_origin=ORIGIN)


def test_quorum_and_witness_configuration_is_validated() -> None:
    note = cosigned(["witness.example/w0"])
    for quorum in (0, 4, -1):
        with pytest.raises(InvalidInput):
            verify_cosignatures(note, WITNESS_KEYS, quorum)
    with pytest.raises(InvalidInput, match="configured twice"):
        verify_cosignatures(note, [WITNESS_KEYS[0], WITNESS_KEYS[0]], 1)
    same_key_other_name = cosignature_verifier_key(
        "witness.example/alias", _sodium.public_key_from_seed(WITNESS_SEEDS["witness.example/w0"])
    )
    with pytest.raises(InvalidInput, match="configured twice"):
        verify_cosignatures(note, [WITNESS_KEYS[0], same_key_other_name], 2)


def test_cosign_validates_inputs() -> None:
    with pytest.raises(InvalidInput):
        cosign(CP, "witness.example/w0", WITNESS_SEEDS["witness.example/w0"], -1)
    with pytest.raises(InvalidInput):
        cosign(CP, "witness.example/w0", WITNESS_SEEDS["witness.example/w0"], 1 << 63)
    with pytest.raises(InvalidInput):
        cosign(CP, "bad name", WITNESS_SEEDS["witness.example/w0"], T)
    with pytest.raises(InvalidInput):
        add_cosignature(signed(), "not a signature line")
    with pytest.raises(VerificationError):
        cosign("not a note", "witness.example/w0", WITNESS_SEEDS["witness.example/w0"], T)


def test_cosigning_a_note_equals_cosigning_its_checkpoint() -> None:
    name = "witness.example/w0"
    assert cosign(signed(), name, WITNESS_SEEDS[name], T) == cosign(
        CP, name, WITNESS_SEEDS[name], T
    )
