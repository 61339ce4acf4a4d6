"""The Fabric client and block parser without a Fabric network (ledger/fabric/client.py,
ledger/fabric/blocks.py).

Pure parts: low-S signatures, the proposal and transaction bytes (parsed back with the
official bindings), block parsing and Fabric's header hash (vectors from Go's
``encoding/asn1``), the error-mapping table. Then the whole flow against an in-process
fake of the Fabric services over TLS (Endorser, Deliver, AtomicBroadcast): endorsement,
orderer fail-over, commit waiting with reconnection, duplicate suppression.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.orderer import ab_pb2, ab_pb2_grpc
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    events_pb2,
    events_pb2_grpc,
    peer_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from hypothesis import given
from hypothesis import strategies as st

from ledger.core import errors as er
from ledger.fabric import blocks, wire
from ledger.fabric.client import (
    P256_N,
    Committed,
    Endpoint,
    FabricClient,
    Identity,
    build_proposal,
    build_seek,
    build_transaction,
    compute_tx_id,
    endorsement_error,
    is_low_s,
    low_s,
    rpc_error,
    validation_error,
)
from tests.conftest import seed_of

CHANNEL = "custody"
T_MS = 1_790_000_000_123


# ---------------------------------------------------------------------------- keys

def ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(seed_of("fabric:" + label), "big") % (P256_N - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def cert_for(key: ec.EllipticCurvePrivateKey, cn: str, *, issuer_key: Any = None,
             issuer_cn: str | None = None, ca: bool = False,
             sans: list[x509.GeneralName] | None = None) -> bytes:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                          issuer_cn or cn)]))
               .public_key(key.public_key()).serial_number(int.from_bytes(
                   hashlib.sha256(cn.encode()).digest()[:8], "big"))
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def identity(msp: str = "DEMSP") -> Identity:
    key = ec_key("client:" + msp)
    return Identity(msp, cert_for(key, f"client.{msp}"), key)


def verify_with_cert(cert_pem: bytes, signature: bytes, data: bytes) -> None:
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, data, ec.ECDSA(hashes.SHA256()))   # raises when wrong


def parse(cls: Any, data: bytes) -> Any:
    msg = cls()
    msg.ParseFromString(data)
    return msg


# ---------------------------------------------------------------------------- low S

ME = identity()


def test_signatures_are_always_low_s_and_verify() -> None:
    raw_high = 0
    for i in range(400):
        data = f"message {i}".encode()
        raw = ME.key.sign(data, ec.ECDSA(hashes.SHA256()))
        raw_high += not is_low_s(raw)
        sig = ME.sign(data)
        _r, s = decode_dss_signature(sig)
        assert s <= P256_N // 2
        verify_with_cert(ME.cert_pem, sig, data)
    assert raw_high > 100, "the raw signer should produce high S about half the time"


@given(st.binary(max_size=512))
def test_low_s_property(data: bytes) -> None:
    sig = ME.sign(data)
    assert is_low_s(sig)
    verify_with_cert(ME.cert_pem, sig, data)
    r, s = decode_dss_signature(sig)
    high = encode_dss_signature(r, P256_N - s)       # the malleated twin also verifies
    verify_with_cert(ME.cert_pem, high, data)
    assert not is_low_s(high)
    assert low_s(high) == sig


def test_identity_from_files(tmp_path: Path) -> None:
    key = ec_key("files")
    cert = cert_for(key, "files")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ident = Identity.from_files("NLMSP", tmp_path / "cert.pem", tmp_path / "key.pem")
    sid = parse(identities_pb2.SerializedIdentity, ident.serialized())
    assert (sid.mspid, sid.id_bytes) == ("NLMSP", cert)
    verify_with_cert(cert, ident.sign(b"x"), b"x")

    (tmp_path / "other.pem").write_bytes(ec_key("other").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    with pytest.raises(er.InvalidInput, match="does not belong"):
        Identity.from_files("NLMSP", tmp_path / "cert.pem", tmp_path / "other.pem")
    with pytest.raises(er.InvalidInput, match="cannot read"):
        Identity.from_files("NLMSP", tmp_path / "missing.pem", tmp_path / "key.pem")
    (tmp_path / "junk.pem").write_bytes(b"not pem")
    with pytest.raises(er.InvalidInput, match="not a PEM"):
        Identity.from_files("NLMSP", tmp_path / "cert.pem", tmp_path / "junk.pem")


def test_identity_refuses_other_curves() -> None:
    key = ec.derive_private_key(12345, ec.SECP384R1())
    with pytest.raises(er.InvalidInput, match="P-256"):
        Identity("XMSP", b"", key)   # type: ignore[arg-type]


# ---------------------------------------------------------------------------- proposals

NONCE = bytes(range(24))


def test_proposal_round_trip() -> None:
    prop = build_proposal(ME, CHANNEL, "custody", "submit", [b"\x00arg", b"two"],
                          timestamp_ms=T_MS, nonce=NONCE)
    signed = prop.signed()
    verify_with_cert(ME.cert_pem, signed.signature, signed.proposal_bytes)
    assert is_low_s(signed.signature)
    p = parse(proposal_pb2.Proposal, signed.proposal_bytes)
    hdr = parse(common_pb2.Header, p.header)
    chdr = parse(common_pb2.ChannelHeader, hdr.channel_header)
    shdr = parse(common_pb2.SignatureHeader, hdr.signature_header)
    assert shdr.creator == ME.serialized()
    assert shdr.nonce == NONCE
    assert chdr.tx_id == hashlib.sha256(NONCE + ME.serialized()).hexdigest() == prop.tx_id
    assert chdr.tx_id == compute_tx_id(NONCE, ME.serialized())
    assert chdr.type == common_pb2.ENDORSER_TRANSACTION
    assert chdr.channel_id == CHANNEL
    assert blocks.timestamp_ms(chdr.timestamp) == T_MS
    assert parse(proposal_pb2.ChaincodeHeaderExtension,
                 chdr.extension).chaincode_id.name == "custody"
    ccpp = parse(proposal_pb2.ChaincodeProposalPayload, p.payload)
    assert not ccpp.TransientMap
    cis = parse(chaincode_pb2.ChaincodeInvocationSpec, ccpp.input)
    assert cis.chaincode_spec.chaincode_id.name == "custody"
    assert list(cis.chaincode_spec.input.args) == [b"submit", b"\x00arg", b"two"]
    # the parts the envelope reuses are the proposal's own bytes
    assert (prop.channel_header, prop.signature_header, prop.payload) == (
        hdr.channel_header, hdr.signature_header, p.payload)


def test_fresh_nonces_give_fresh_tx_ids() -> None:
    a = build_proposal(ME, CHANNEL, "cc", "ping", [], timestamp_ms=T_MS, nonce=b"\x01" * 24)
    b = build_proposal(ME, CHANNEL, "cc", "ping", [], timestamp_ms=T_MS, nonce=b"\x02" * 24)
    assert a.tx_id != b.tx_id
    with pytest.raises(ValueError, match="24"):
        build_proposal(ME, CHANNEL, "cc", "ping", [], timestamp_ms=T_MS, nonce=b"short")


def test_seek_envelope() -> None:
    env = build_seek(ME, CHANNEL, 3, None, timestamp_ms=T_MS, nonce=NONCE, wait=False)
    verify_with_cert(ME.cert_pem, env.signature, env.payload)
    payload = parse(common_pb2.Payload, env.payload)
    chdr = parse(common_pb2.ChannelHeader, payload.header.channel_header)
    assert chdr.type == common_pb2.DELIVER_SEEK_INFO
    assert chdr.channel_id == CHANNEL
    seek = parse(ab_pb2.SeekInfo, payload.data)
    assert seek.start.specified.number == 3
    assert seek.stop.HasField("newest")
    assert seek.behavior == ab_pb2.SeekInfo.FAIL_IF_NOT_READY


# ---------------------------------------------------------------------------- endorsements

@functools.cache
def endorser_identity(msp: str) -> bytes:
    return identities_pb2.SerializedIdentity(
        mspid=msp, id_bytes=cert_for(ec_key("peer:" + msp), f"peer.{msp}")).SerializeToString()


def endorse(prop_bytes: bytes, msp: str, *, status: int = 200, payload: bytes = b"result",
            message: str = "", event: tuple[str, bytes] | None = None,
            results: bytes = b"rwset") -> Any:
    """What a peer answers (core/endorser/endorser.go), without checking anything."""
    p = parse(proposal_pb2.Proposal, prop_bytes)
    hdr = parse(common_pb2.Header, p.header)
    if status != 200:
        return proposal_response_pb2.ProposalResponse(
            response=proposal_response_pb2.Response(status=status, message=message))
    cc = parse(proposal_pb2.ChaincodeHeaderExtension,
               parse(common_pb2.ChannelHeader, hdr.channel_header).extension).chaincode_id
    events = b""
    if event is not None:
        events = chaincode_event_pb2.ChaincodeEvent(
            chaincode_id=cc.name, tx_id="", event_name=event[0],
            payload=event[1]).SerializeToString()
    action = proposal_pb2.ChaincodeAction(
        results=results, events=events,
        response=proposal_response_pb2.Response(status=200, payload=payload),
        chaincode_id=chaincode_pb2.ChaincodeID(name=cc.name, version="1.0"))
    prp = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=hashlib.sha256(hdr.channel_header + hdr.signature_header
                                     + p.payload).digest(),
        extension=action.SerializeToString()).SerializeToString()
    ident = endorser_identity(msp)
    return proposal_response_pb2.ProposalResponse(
        version=1, response=proposal_response_pb2.Response(status=200, payload=payload),
        payload=prp, endorsement=proposal_response_pb2.Endorsement(
            endorser=ident, signature=b"sig-" + msp.encode()))


def make_block(number: int, previous_hash: bytes, envelopes: list[bytes],
               codes: list[int]) -> Any:
    block = common_pb2.Block()
    block.header.number = number
    block.header.previous_hash = previous_hash
    block.header.data_hash = blocks.block_data_hash(envelopes)
    block.data.data.extend(envelopes)
    block.metadata.metadata.extend([b"", b"", bytes(codes), b""])
    return block


def config_envelope(ts_ms: int) -> bytes:
    chdr = common_pb2.ChannelHeader(type=common_pb2.CONFIG, channel_id=CHANNEL)
    chdr.timestamp.FromMilliseconds(ts_ms)
    payload = common_pb2.Payload(
        header=common_pb2.Header(channel_header=chdr.SerializeToString(),
                                 signature_header=common_pb2.SignatureHeader(
                                     nonce=b"n").SerializeToString()),
        data=b"")
    return common_pb2.Envelope(payload=payload.SerializeToString()).SerializeToString()


def test_transaction_envelope_and_block_parse() -> None:
    prop = build_proposal(ME, CHANNEL, "custody", "submit", [b"event-json"],
                          timestamp_ms=T_MS, nonce=NONCE)
    responses = [endorse(prop.proposal_bytes, m, event=("custody", b"ev"))
                 for m in ("DEMSP", "FRMSP")]
    envelope = build_transaction(ME, prop, responses)

    env = parse(common_pb2.Envelope, envelope)
    verify_with_cert(ME.cert_pem, env.signature, env.payload)
    assert is_low_s(env.signature)
    payload = parse(common_pb2.Payload, env.payload)
    assert payload.header.channel_header == prop.channel_header
    assert payload.header.signature_header == prop.signature_header
    tx = parse(transaction_pb2.Transaction, payload.data)
    (action,) = tx.actions
    assert action.header == prop.signature_header
    cap = parse(transaction_pb2.ChaincodeActionPayload, action.payload)
    assert cap.chaincode_proposal_payload == prop.payload
    assert cap.action.proposal_response_payload == responses[0].payload
    assert [e.signature for e in cap.action.endorsements] == [b"sig-DEMSP", b"sig-FRMSP"]

    genesis = make_block(0, b"", [config_envelope(T_MS - 5000)], [0])
    g = blocks.parse_block(genesis)
    assert g.number == 0
    assert g.data_hash_ok
    assert g.previous_hash == b""
    (cfg,) = g.txs
    assert (cfg.type, cfg.chaincode, cfg.fn, cfg.args, cfg.code) == (
        "CONFIG", None, None, [], "VALID")
    assert cfg.timestamp_ms == T_MS - 5000
    assert cfg.creator_msp == ""

    block = make_block(1, g.header_hash, [envelope, b"\xff\x00garbage", envelope],
                       [0, transaction_pb2.BAD_PAYLOAD, transaction_pb2.DUPLICATE_TXID])
    parsed = blocks.parse_block_bytes(block.SerializeToString())
    assert parsed.number == 1
    assert parsed.previous_hash == g.header_hash
    assert parsed.data_hash_ok
    assert parsed.header_hash == blocks.block_header_hash(1, g.header_hash,
                                                          block.header.data_hash)
    first, junk, dup = parsed.txs
    assert first.index_in_block == 0
    assert first.tx_id == prop.tx_id
    assert first.type == "ENDORSER_TRANSACTION"
    assert first.code == "VALID"
    assert first.valid
    assert first.timestamp_ms == T_MS
    assert first.creator_msp == "DEMSP"
    assert (first.chaincode, first.fn, first.args) == ("custody", "submit", [b"event-json"])
    assert first.events == [("custody", b"ev")]
    assert first.endorsers == ["DEMSP", "FRMSP"]
    assert (first.response_status, first.response_payload) == (200, b"result")
    assert (junk.type, junk.code, junk.index_in_block) == ("MALFORMED", "BAD_PAYLOAD", 1)
    assert dup.code == "DUPLICATE_TXID"
    assert dup.tx_id == first.tx_id
    assert not dup.valid

    block.header.data_hash = b"\x00" * 32
    assert not blocks.parse_block(block).data_hash_ok
    del block.metadata.metadata[:]       # an orderer-side block: nothing validated yet
    assert {t.code for t in blocks.parse_block(block).txs} == {"NOT_VALIDATED"}


# Vectors printed by Go's encoding/asn1 with the asn1Header struct of Fabric's protoutil
# (number, len(prev) x byte, len(data) x byte, sha256 hex).
HEADER_VECTORS = [
    (0, 0, 0x00, 0, 0x00, "1d1c288c6851505be0b47a0f8e7dfb91ab2abe6ad71cef63a3791d14588d1d0e"),
    (0, 0, 0x00, 32, 0xab, "ccf29ccd7b79eabf632695ab73a911dd0e86758806f36fcc4dc690225ab2a5a2"),
    (1, 32, 0x01, 32, 0x02, "8958d309221dff9175606e70d8b0f60d44326787f5375730953d3e4c7277894b"),
    (127, 32, 0x03, 32, 0x04,
     "d70aba54978a793cd1e7d469fd18e22b5ec78d4f189f1e6cf29d2b86af145ceb"),
    (128, 32, 0x05, 32, 0x06,
     "0a6047bd369a6af1ec9bc0e27a5c3257437b1e35c45c914c6d1dc415de7df56f"),
    (255, 32, 0x07, 32, 0x08,
     "8a7f11400807ef42dc18af11ca216689e3adf297667226492b53a47403648cc6"),
    (65536, 32, 0x09, 32, 0x0a,
     "664f217578f104898490ce1fe3588af9640cb824f4e93bb9f7be6647156acea9"),
    (2**64 - 1, 200, 0x0b, 32, 0x0c,
     "6e25d9e3fff28eee823bf8f7bcd38cb9d64d2ae0c975cd670469df23297fd687"),
]


@pytest.mark.parametrize(("number", "lp", "p", "ld", "d", "expected"), HEADER_VECTORS)
def test_header_hash_matches_fabric(number: int, lp: int, p: int, ld: int, d: int,
                                    expected: str) -> None:
    got = blocks.block_header_hash(number, bytes([p]) * lp, bytes([d]) * ld)
    assert got.hex() == expected


def test_validation_code_names() -> None:
    assert blocks.validation_code_name(0) == "VALID"
    assert blocks.validation_code_name(11) == "MVCC_READ_CONFLICT"
    assert blocks.validation_code_name(200) == "INVALID_OTHER_REASON"


# ---------------------------------------------------------------------------- error table

def one_sentence(exc: er.LedgerError) -> None:
    assert "\n" not in exc.message, exc.message
    assert ". " not in exc.message, exc.message


@pytest.mark.parametrize(("code", "cls", "rule"), [
    ("ENDORSEMENT_POLICY_FAILURE", er.RuleViolation, "endorsement-policy"),
    ("MVCC_READ_CONFLICT", er.Conflict, "mvcc-conflict"),
    ("PHANTOM_READ_CONFLICT", er.Conflict, "mvcc-conflict"),
    ("DUPLICATE_TXID", er.UpstreamError, None),
    ("BAD_PAYLOAD", er.UpstreamError, None),
    ("INVALID_OTHER_REASON", er.UpstreamError, None),
])
def test_validation_error_table(code: str, cls: type[er.LedgerError], rule: str | None) -> None:
    exc = validation_error("tx1", code, 7, ["DE"], ["DE", "FR"])
    assert type(exc) is cls
    assert exc is not None
    assert getattr(exc, "rule", None) == rule
    assert "tx1" in exc.message
    assert "7" in exc.message
    one_sentence(exc)
    if rule == "endorsement-policy":
        assert "DE, FR" in exc.message
        assert "endorsed by DE only" in exc.message


def test_policy_failure_with_every_organisation_endorsing_is_a_lost_race() -> None:
    """Fabric refuses a transaction whose record had its endorsement policy changed by an
    earlier transaction of the same block with ENDORSEMENT_POLICY_FAILURE, even when every
    organisation endorsed it: that is a concurrent custody move, not a missing endorsement."""
    exc = validation_error("tx1", "ENDORSEMENT_POLICY_FAILURE", 7, ["DE", "FR"], ["DE", "FR"])
    assert type(exc) is er.Conflict
    assert exc.rule == "mvcc-conflict"
    assert "same block" in exc.message
    one_sentence(exc)


def test_valid_is_no_error() -> None:
    assert validation_error("tx1", "VALID", 7, ["DE"], ["DE"]) is None


CHAINCODE_ERRORS: list[er.LedgerError] = [
    er.Conflict("replay", "nonce n1 was already used on this ledger"),
    er.RuleViolation("custody-gap", "artefact a1 is not held by DE"),
    er.InvalidInput("event JSON is malformed"),
    er.Forbidden("actor x may not do that"),
    er.IntegrityFault("state is broken", kind="divergence"),
]


@pytest.mark.parametrize("original", CHAINCODE_ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("wrap", [
    "{}",
    "error in simulation: transaction returned with failure: {}",
    "chaincode response 500, {} (trailing words)",
])
def test_chaincode_refusal_is_reraised_as_itself(original: er.LedgerError, wrap: str) -> None:
    message = wrap.format(wire.encode_error(original))
    for exc in (endorsement_error("DE", "127.0.0.1:1", 500, message),
                rpc_error("endorsement by DE", "127.0.0.1:1", "UNKNOWN", message)):
        assert type(exc) is type(original)
        assert exc.message == original.message
        assert getattr(exc, "rule", None) == getattr(original, "rule", None)
        assert getattr(exc, "kind", None) == getattr(original, "kind", None)


def test_other_failures_are_upstream() -> None:
    exc = endorsement_error("FR", "127.0.0.1:9", 500, "make sure the chaincode custody has "
                            "been successfully defined on channel custody and try again.\n")
    assert isinstance(exc, er.UpstreamError)
    assert exc.message.startswith("endorsement failed at FR (127.0.0.1:9): status 500")
    one_sentence(exc)
    t = rpc_error("endorsement by FR", "127.0.0.1:9", "DEADLINE_EXCEEDED", "Deadline", 3.0)
    assert isinstance(t, er.UpstreamError)
    assert t.message == (
        "endorsement by FR at 127.0.0.1:9 timed out after 3 s")
    u = rpc_error("block delivery from DE", "127.0.0.1:9", "UNAVAILABLE", "connection refused")
    assert isinstance(u, er.UpstreamError)
    assert "127.0.0.1:9 is unreachable" in u.message


# ---------------------------------------------------------------------------- fake Fabric

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TLS:
    """A CA and one server certificate for the TLS name ``fabric.test`` (not 127.0.0.1:
    the client must use ``ssl_target_name_override``)."""

    def __init__(self) -> None:
        self.ca_key = ec_key("tls-ca")
        self.ca_pem = cert_for(self.ca_key, "test TLS CA", ca=True)
        self.key = ec_key("tls-server")
        self.cert_pem = cert_for(self.key, "fabric.test", issuer_key=self.ca_key,
                                 issuer_cn="test TLS CA",
                                 sans=[x509.DNSName("fabric.test")])
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    def server(self, port: int) -> Any:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)]))
        return server

    def endpoint(self, port: int) -> Endpoint:
        return Endpoint(f"127.0.0.1:{port}", self.ca_pem, "fabric.test")


def checked_envelope(env: Any) -> tuple[Any, Any, Any]:
    """A peer's / orderer's checks of a client envelope: low-S signature by the creator."""
    payload = parse(common_pb2.Payload, env.payload)
    shdr = parse(common_pb2.SignatureHeader, payload.header.signature_header)
    creator = parse(identities_pb2.SerializedIdentity, shdr.creator)
    assert is_low_s(env.signature)
    verify_with_cert(creator.id_bytes, env.signature, env.payload)
    return payload, parse(common_pb2.ChannelHeader, payload.header.channel_header), shdr


class FakeLedger:
    """The channel's blocks, shared by the fake peers and orderers."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.blocks = [make_block(0, b"", [config_envelope(T_MS)], [0])]

    def append(self, envelopes: list[bytes], codes: list[int]) -> None:
        with self.cond:
            prev = self.blocks[-1].header
            prev_hash = blocks.block_header_hash(prev.number, prev.previous_hash,
                                                 prev.data_hash)
            self.blocks.append(make_block(len(self.blocks), prev_hash, envelopes, codes))
            self.cond.notify_all()

    def stream(self, env: Any, context: Any) -> Iterator[Any]:
        """The blocks a Deliver seek asks for (BLOCK_UNTIL_READY)."""
        payload, chdr, _ = checked_envelope(env)
        assert chdr.type == common_pb2.DELIVER_SEEK_INFO
        assert chdr.channel_id == CHANNEL
        seek = parse(ab_pb2.SeekInfo, payload.data)
        with self.cond:
            n = (len(self.blocks) - 1 if seek.start.HasField("newest")
                 else seek.start.specified.number)
        stop = seek.stop.specified.number if seek.stop.HasField("specified") else n
        while context.is_active():
            with self.cond:
                if n >= len(self.blocks):
                    self.cond.wait(0.05)
                    continue
                block = self.blocks[n]
            yield block
            if n == stop:
                return
            n += 1


def filtered(block: Any) -> Any:
    fb = events_pb2.FilteredBlock(channel_id=CHANNEL, number=block.header.number)
    codes = block.metadata.metadata[2]
    for i, raw in enumerate(block.data.data):
        payload = parse(common_pb2.Payload, parse(common_pb2.Envelope, raw).payload)
        chdr = parse(common_pb2.ChannelHeader, payload.header.channel_header)
        fb.filtered_transactions.add(txid=chdr.tx_id, type=chdr.type,
                                     tx_validation_code=codes[i])
    return fb


Behaviour = Callable[[Any], Any]


class FakePeer(peer_pb2_grpc.EndorserServicer, events_pb2_grpc.DeliverServicer):
    def __init__(self, msp: str, ledger: FakeLedger, tls: TLS) -> None:
        self.msp, self.ledger = msp, ledger
        self.behaviour: Behaviour | None = None
        self.proposals: list[str] = []
        self.port = free_port()
        self.server = tls.server(self.port)
        peer_pb2_grpc.add_EndorserServicer_to_server(self, self.server)
        events_pb2_grpc.add_DeliverServicer_to_server(self, self.server)
        self.server.start()

    def ProcessProposal(self, request: Any, context: Any) -> Any:
        prop = parse(proposal_pb2.Proposal, request.proposal_bytes)
        hdr = parse(common_pb2.Header, prop.header)
        chdr = parse(common_pb2.ChannelHeader, hdr.channel_header)
        shdr = parse(common_pb2.SignatureHeader, hdr.signature_header)
        creator = parse(identities_pb2.SerializedIdentity, shdr.creator)
        assert is_low_s(request.signature)
        verify_with_cert(creator.id_bytes, request.signature, request.proposal_bytes)
        assert chdr.tx_id == compute_tx_id(shdr.nonce, shdr.creator)
        cis = parse(chaincode_pb2.ChaincodeInvocationSpec,
                    parse(proposal_pb2.ChaincodeProposalPayload, prop.payload).input)
        args = list(cis.chaincode_spec.input.args)
        self.proposals.append(chdr.tx_id)
        if cis.chaincode_spec.chaincode_id.name == "qscc":
            assert args == [b"GetChainInfo", CHANNEL.encode()]
            with self.ledger.cond:
                height = len(self.ledger.blocks)
            info = ledger_pb2.BlockchainInfo(height=height).SerializeToString()
            return proposal_response_pb2.ProposalResponse(
                response=proposal_response_pb2.Response(status=200, payload=info))
        if self.behaviour is not None:
            return self.behaviour(request.proposal_bytes)
        return endorse(request.proposal_bytes, self.msp, payload=b"ok:" + args[0])

    def Deliver(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for block in self.ledger.stream(next(request_iterator), context):
            yield events_pb2.DeliverResponse(block=block)
        yield events_pb2.DeliverResponse(status=common_pb2.SUCCESS)

    def DeliverFiltered(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for block in self.ledger.stream(next(request_iterator), context):
            yield events_pb2.DeliverResponse(filtered_block=filtered(block))
        yield events_pb2.DeliverResponse(status=common_pb2.SUCCESS)


class FakeOrderer(ab_pb2_grpc.AtomicBroadcastServicer):
    def __init__(self, ledger: FakeLedger, tls: TLS) -> None:
        self.ledger = ledger
        self.script: list[int] = []          # statuses to answer first (then SUCCESS)
        self.codes: list[int] = []           # validation codes of the next commits
        self.duplicate = False               # order every accepted tx twice
        self.commit = True                   # False: accept, never cut a block
        self.received: list[str] = []
        self.port = free_port()
        self.server = tls.server(self.port)
        ab_pb2_grpc.add_AtomicBroadcastServicer_to_server(self, self.server)
        self.server.start()

    def Broadcast(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for env in request_iterator:
            _, chdr, _ = checked_envelope(env)
            self.received.append(chdr.tx_id)
            status = self.script.pop(0) if self.script else common_pb2.SUCCESS
            if status == common_pb2.SUCCESS and self.commit:
                raw = env.SerializeToString()
                code = self.codes.pop(0) if self.codes else transaction_pb2.VALID
                self.ledger.append([raw], [code])
                if self.duplicate:
                    self.ledger.append([raw], [transaction_pb2.DUPLICATE_TXID])
            yield ab_pb2.BroadcastResponse(status=status, info="" if status == 200 else "busy")


class FakeNetwork:
    def __init__(self) -> None:
        self.tls = TLS()
        self.ledger = FakeLedger()
        self.peers = {org: FakePeer(org + "MSP", self.ledger, self.tls) for org in ("DE", "FR")}
        self.orderers = [FakeOrderer(self.ledger, self.tls) for _ in range(2)]
        self.dead_port = free_port()      # nothing listens there

    def client(self, *, orderers: list[Endpoint] | None = None,
               timeout: float = 5.0) -> FabricClient:
        return FabricClient(
            identity(), CHANNEL,
            {org: self.tls.endpoint(p.port) for org, p in self.peers.items()},
            orderers if orderers is not None
            else [self.tls.endpoint(o.port) for o in self.orderers],
            timeout=timeout)

    def stop(self) -> None:
        for server in [*(p.server for p in self.peers.values()),
                       *(o.server for o in self.orderers)]:
            server.stop(0)


@pytest.fixture
def fake() -> Iterator[FakeNetwork]:
    net = FakeNetwork()
    yield net
    net.stop()


@pytest.fixture
def client(fake: FakeNetwork) -> Iterator[FabricClient]:
    with fake.client() as c:
        yield c


def test_submit_through_all_orgs(fake: FakeNetwork, client: FabricClient) -> None:
    done = client.submit("custody", "ping", [b"a"], timestamp_ms=T_MS)
    assert isinstance(done, Committed)
    assert (done.block, done.code, done.payload) == (1, "VALID", b"ok:ping")
    assert done.tx_id in fake.peers["DE"].proposals
    assert done.tx_id in fake.peers["FR"].proposals
    assert fake.orderers[0].received == [done.tx_id]
    (tx,) = next(client.blocks(1, 1)).txs
    assert (tx.tx_id, tx.timestamp_ms, tx.args, tx.endorsers) == (
        done.tx_id, T_MS, [b"a"], ["DEMSP", "FRMSP"])
    second = client.submit("custody", "ping", [], endorsers=["FR"])
    assert second.block == 2
    assert second.tx_id not in fake.peers["DE"].proposals


def test_evaluate_height_and_blocks(fake: FakeNetwork, client: FabricClient) -> None:
    assert client.evaluate("custody", "get", [b"k"]) == b"ok:get"
    assert client.evaluate("custody", "get", [b"k"], org="FR") == b"ok:get"
    assert client.height() == 1
    client.submit("custody", "ping", [])
    client.submit("custody", "ping", [])
    assert client.height("FR") == 3
    got = list(client.blocks(0))
    assert [b.number for b in got] == [0, 1, 2]
    assert got[0].txs[0].type == "CONFIG"
    assert all(b.previous_hash == a.header_hash for a, b in itertools.pairwise(got))
    assert [b.number for b in client.blocks(1, 1)] == [1]
    assert list(client.blocks(3)) == []
    with pytest.raises(er.InvalidInput, match="XX"):
        client.evaluate("custody", "get", [], org="XX")
    # a stop beyond the height waits for the block (here: until the time-out)
    with pytest.raises(er.UpstreamError, match="timed out"):
        list(client.blocks(2, 5, timeout=0.5))


def test_chaincode_refusal_is_the_ledger_exception(fake: FakeNetwork,
                                                   client: FabricClient) -> None:
    refusal = er.Conflict("replay", "nonce n1 was already used on this ledger")
    fake.peers["FR"].behaviour = lambda prop: endorse(
        prop, "FRMSP", status=500,
        message="transaction returned with failure: " + wire.encode_error(refusal))
    with pytest.raises(er.Conflict) as info:
        client.submit("custody", "submit", [b"{}"])
    assert info.value.rule == "replay"
    assert info.value.message == refusal.message
    assert fake.orderers[0].received == []
    with pytest.raises(er.Conflict, match="already used"):
        client.evaluate("custody", "submit", [b"{}"], org="FR")


def test_plain_endorsement_failure_is_upstream(fake: FakeNetwork,
                                               client: FabricClient) -> None:
    fake.peers["FR"].behaviour = lambda prop: endorse(
        prop, "FRMSP", status=500, message="chaincode custody not found")
    with pytest.raises(er.UpstreamError, match=r"endorsement failed at FR .*not found"):
        client.submit("custody", "ping", [])


def test_disagreeing_endorsements(fake: FakeNetwork, client: FabricClient) -> None:
    fake.peers["FR"].behaviour = lambda prop: endorse(prop, "FRMSP", payload=b"other")
    with pytest.raises(er.UpstreamError, match="disagree: FR returned a different result "
                                               "from DE"):
        client.submit("custody", "ping", [])
    assert fake.orderers[0].received == []


def test_a_transient_disagreement_is_endorsed_again(fake: FakeNetwork,
                                                    client: FabricClient) -> None:
    """A peer one block behind answers differently once; the next round agrees."""
    rounds: list[int] = []

    def lagging(prop: Any) -> Any:
        rounds.append(1)
        return endorse(prop, "FRMSP", payload=b"stale" if len(rounds) == 1 else b"ok:ping")

    fake.peers["FR"].behaviour = lagging
    done = client.submit("custody", "ping", [])
    assert done.code == "VALID"
    assert len(rounds) == 2
    assert len(fake.orderers[0].received) == 1


@pytest.mark.parametrize(("code", "cls", "rule"), [
    (transaction_pb2.MVCC_READ_CONFLICT, er.Conflict, "mvcc-conflict"),
    (transaction_pb2.ENDORSEMENT_POLICY_FAILURE, er.RuleViolation, "endorsement-policy"),
    (transaction_pb2.BAD_RWSET, er.UpstreamError, None),
])
def test_invalid_commit_raises(fake: FakeNetwork, client: FabricClient, code: int,
                               cls: type[er.LedgerError], rule: str | None) -> None:
    fake.orderers[0].codes = [code]
    with pytest.raises(cls) as info:
        client.submit("custody", "submit", [b"{}"], endorsers=["DE"])
    assert getattr(info.value, "rule", None) == rule


def test_first_occurrence_decides(fake: FakeNetwork, client: FabricClient) -> None:
    fake.orderers[0].duplicate = True
    done = client.submit("custody", "ping", [])
    assert (done.block, done.code) == (1, "VALID")
    later = client.submit("custody", "ping", [])      # the listener saw block 2 and moved on
    assert later.block == 3
    codes = [t.code for b in client.blocks(1) for t in b.txs]
    assert codes == ["VALID", "DUPLICATE_TXID", "VALID", "DUPLICATE_TXID"]


def test_orderer_failover(fake: FakeNetwork) -> None:
    dead = fake.tls.endpoint(fake.dead_port)
    busy = fake.orderers[0]
    busy.script = [common_pb2.SERVICE_UNAVAILABLE, common_pb2.SERVICE_UNAVAILABLE]
    with fake.client(orderers=[dead, fake.tls.endpoint(busy.port)]) as c:
        t0 = time.monotonic()
        done = c.submit("custody", "ping", [])
        assert done.code == "VALID"
        assert busy.received == [done.tx_id] * 3
        assert time.monotonic() - t0 < 4
        # the orderer that worked is tried first next time
        again = c.submit("custody", "ping", [])
        assert busy.received[-1] == again.tx_id
        assert len(busy.received) == 4


def test_orderers_unavailable_until_the_deadline(fake: FakeNetwork) -> None:
    busy = fake.orderers[0]
    busy.script = [common_pb2.SERVICE_UNAVAILABLE] * 1000
    with fake.client(orderers=[fake.tls.endpoint(busy.port)], timeout=1.0) as c:
        with pytest.raises(er.Backpressure, match="ordering service is unavailable") as info:
            c.submit("custody", "ping", [])
        assert info.value.retry_after > 0
    with fake.client(orderers=[fake.tls.endpoint(fake.dead_port)], timeout=1.0) as c, \
            pytest.raises(er.UpstreamError, match=r"no orderer accepted .* is unreachable"):
        c.submit("custody", "ping", [])


def test_orderer_refusal(fake: FakeNetwork, client: FabricClient) -> None:
    fake.orderers[0].script = [common_pb2.BAD_REQUEST]
    with pytest.raises(er.UpstreamError, match=r"refused transaction .* BAD_REQUEST"):
        client.submit("custody", "ping", [])
    fake.orderers[0].script = [common_pb2.REQUEST_ENTITY_TOO_LARGE]
    with pytest.raises(er.PayloadTooLarge):
        client.submit("custody", "ping", [])


def test_lost_commit_times_out(fake: FakeNetwork, client: FabricClient) -> None:
    fake.orderers[0].commit = False
    with pytest.raises(er.UpstreamError, match=r"no commit was seen within 0.5 s"):
        client.submit("custody", "ping", [], commit_timeout=0.5)
    fake.orderers[0].commit = True
    assert client.submit("custody", "ping", []).block == 1


def test_no_wait(fake: FakeNetwork, client: FabricClient) -> None:
    done = client.submit("custody", "ping", [], wait=False)
    assert (done.block, done.code, done.payload) == (-1, "PENDING", b"ok:ping")
    assert fake.orderers[0].received == [done.tx_id]


def test_commit_stream_survives_the_home_peer(fake: FakeNetwork,
                                              client: FabricClient) -> None:
    assert client.submit("custody", "ping", []).block == 1
    fake.peers["DE"].server.stop(0)
    done = client.submit("custody", "ping", [], endorsers=["FR"])
    assert (done.block, done.code) == (2, "VALID")
    with pytest.raises(er.UpstreamError, match=r"endorsement by DE failed: .* is unreachable"):
        client.submit("custody", "ping", [])


def test_concurrent_submits(fake: FakeNetwork, client: FabricClient) -> None:
    with futures.ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda _: client.submit("custody", "ping", []), range(24)))
    assert sorted(d.block for d in done) == list(range(1, 25))
    assert len({d.tx_id for d in done}) == 24


def test_from_profile(fake: FakeNetwork, tmp_path: Path) -> None:
    key = ec_key("client:DEMSP")
    (tmp_path / "cert.pem").write_bytes(cert_for(key, "client.DEMSP"))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "ca.pem").write_bytes(fake.tls.ca_pem)
    orgs = {org: {"msp_id": org + "MSP",
                  "peer": {"address": f"127.0.0.1:{p.port}", "tls_ca": str(tmp_path / "ca.pem"),
                           "server_name": "fabric.test"},
                  "client": {"cert": str(tmp_path / "cert.pem"),
                             "key": str(tmp_path / "key.pem")}}
            for org, p in fake.peers.items()}
    profile = {"version": 1, "channel": CHANNEL, "orgs": orgs,
               "orderers": [{"address": f"127.0.0.1:{o.port}",
                             "tls_ca": str(tmp_path / "ca.pem"), "server_name": "fabric.test"}
                            for o in fake.orderers]}
    with FabricClient.from_profile(profile, "FR") as c:
        assert c.home_org == "FR"
        assert c.identity.msp_id == "FRMSP"
        assert c.submit("custody", "ping", []).code == "VALID"
    with pytest.raises(er.InvalidInput, match="no organisation 'NL'"):
        FabricClient.from_profile(profile, "NL")
    with pytest.raises(er.InvalidInput, match="lacks 'admin'"):
        FabricClient.from_profile(profile, "DE", identity="admin")


def test_closed_client(fake: FakeNetwork) -> None:
    c = fake.client()
    c.submit("custody", "ping", [])
    c.close()
    c.close()
    with pytest.raises(er.UpstreamError, match="closed"):
        c.evaluate("custody", "get", [])


def test_a_response_without_endorsement_is_refused(fake: FakeNetwork,
                                                   client: FabricClient) -> None:
    def unsigned(prop: bytes) -> Any:
        resp = endorse(prop, "FRMSP")
        resp.ClearField("endorsement")
        return resp

    fake.peers["FR"].behaviour = unsigned
    with pytest.raises(er.UpstreamError, match=r"FR answered .* without an endorsement"):
        client.submit("custody", "ping", [])
    assert fake.orderers[0].received == []
