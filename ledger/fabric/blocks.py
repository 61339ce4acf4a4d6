"""Fabric blocks as plain Python values: pure functions from ``common.Block`` (no I/O).

A peer's block carries, for every transaction, the envelope the client signed and the
validation code the committing peer gave it (block metadata ``TRANSACTIONS_FILTER``).
:func:`parse_block` turns one into a :class:`ParsedBlock` whose :class:`ParsedTx` name the
chaincode call (function, arguments), its chaincode events, its creator and endorsers, and
its validation code; config transactions come out with type ``CONFIG`` and no chaincode.

The header hash is Fabric's (``protoutil.BlockHeaderHash``): SHA-256 of the ASN.1 DER
``SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }``; block
``n + 1``'s ``previous_hash`` equals block ``n``'s header hash. The data hash is SHA-256 of
the concatenated transaction envelopes (``protoutil.BlockDataHash``).

A transaction whose bytes do not parse (Fabric stores those too, marked invalid) comes out
with type ``MALFORMED`` and its validation code, never as an exception: the chain of blocks
must stay readable whatever a client sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

# The generated protobuf modules are ``Any`` (the typed boundary is ledger.fabric.protos);
# only plain Python values leave this module.
from ledger.fabric.protos import (
    chaincode_event_pb2,
    chaincode_pb2,
    common_pb2,
    identities_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)

#: Validation code Fabric writes into the filter before validation (orderer blocks).
NOT_VALIDATED = "NOT_VALIDATED"
MALFORMED = "MALFORMED"
_ENDORSER_TRANSACTION = 3
_CONFIG = 1
_TRANSACTIONS_FILTER = 2


@dataclass(frozen=True)
class ParsedTx:
    """One transaction of a block."""

    index_in_block: int
    tx_id: str
    type: str                      # HeaderType name: ENDORSER_TRANSACTION, CONFIG, ...
    timestamp_ms: int              # the client's channel-header timestamp
    creator_msp: str
    code: str                      # TxValidationCode name: VALID, MVCC_READ_CONFLICT, ...
    chaincode: str | None
    fn: str | None
    args: list[bytes]
    events: list[tuple[str, bytes]]
    endorsers: list[str]           # MSP ids, in the order of the endorsements
    #: The chaincode's response (status, payload) as endorsed; 0 / b"" when none.
    response_status: int = 0
    response_payload: bytes = b""

    @property
    def valid(self) -> bool:
        return self.code == "VALID"


@dataclass(frozen=True)
class ParsedBlock:
    number: int
    header_hash: bytes
    previous_hash: bytes
    data_hash: bytes
    txs: list[ParsedTx] = field(default_factory=list)
    #: Whether ``data_hash`` is the SHA-256 of the block's transaction envelopes.
    data_hash_ok: bool = True


# ---------------------------------------------------------------------------- hashes

def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def _der_unsigned(n: int) -> bytes:
    """DER INTEGER of a non-negative number (minimal two's complement, as Go's big.Int)."""
    # bit_length // 8 + 1 bytes: the fewest that leave the sign bit clear
    return _der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def block_header_bytes(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    """Fabric's ``protoutil.BlockHeaderBytes``: ASN.1 DER of the header's three fields."""
    if number < 0:
        raise ValueError("a block number is never negative")
    return _der(0x30, _der_unsigned(number) + _der(0x04, previous_hash) + _der(0x04, data_hash))


def block_header_hash(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    """Fabric's ``protoutil.BlockHeaderHash``."""
    return hashlib.sha256(block_header_bytes(number, previous_hash, data_hash)).digest()


def block_data_hash(data: Sequence[bytes]) -> bytes:
    """Fabric's ``protoutil.BlockDataHash``: SHA-256 of the concatenated envelopes."""
    return hashlib.sha256(b"".join(data)).digest()


# ---------------------------------------------------------------------------- names

def validation_code_name(code: int) -> str:
    """The ``TxValidationCode`` name of a numeric code (``INVALID_OTHER_REASON`` if unknown)."""
    try:
        return str(transaction_pb2.TxValidationCode.Name(code))
    except ValueError:
        return "INVALID_OTHER_REASON"


def header_type_name(code: int) -> str:
    try:
        return str(common_pb2.HeaderType.Name(code))
    except ValueError:
        return f"TYPE_{code}"


def timestamp_ms(ts: Any) -> int:
    """Milliseconds since the epoch of a ``google.protobuf.Timestamp``."""
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def msp_of(serialized_identity: bytes) -> str:
    """The MSP id inside ``msp.SerializedIdentity`` bytes ("" when there is none)."""
    if not serialized_identity:
        return ""
    ident = identities_pb2.SerializedIdentity()
    ident.ParseFromString(serialized_identity)
    return str(ident.mspid)


# ---------------------------------------------------------------------------- parsing

def _parse(cls: Any, data: bytes) -> Any:
    msg = cls()
    msg.ParseFromString(data)
    return msg


def parse_transaction(envelope_bytes: bytes, index: int, code: str) -> ParsedTx:
    """One transaction envelope of a block; never raises on bad bytes (type MALFORMED)."""
    try:
        return _parse_transaction(envelope_bytes, index, code)
    except (DecodeError, ValueError, IndexError):
        return ParsedTx(index, "", MALFORMED, 0, "", code, None, None, [], [], [])


def _parse_transaction(envelope_bytes: bytes, index: int, code: str) -> ParsedTx:
    env = _parse(common_pb2.Envelope, envelope_bytes)
    payload = _parse(common_pb2.Payload, env.payload)
    chdr = _parse(common_pb2.ChannelHeader, payload.header.channel_header)
    shdr = _parse(common_pb2.SignatureHeader, payload.header.signature_header)
    base: dict[str, Any] = {
        "index_in_block": index, "tx_id": str(chdr.tx_id), "type": header_type_name(chdr.type),
        "timestamp_ms": timestamp_ms(chdr.timestamp), "creator_msp": msp_of(shdr.creator),
        "code": code}
    if chdr.type != _ENDORSER_TRANSACTION:
        return ParsedTx(**base, chaincode=None, fn=None, args=[], events=[], endorsers=[])

    tx = _parse(transaction_pb2.Transaction, payload.data)
    chaincode: str | None = None
    fn: str | None = None
    args: list[bytes] = []
    events: list[tuple[str, bytes]] = []
    endorsers: list[str] = []
    status, result = 0, b""
    for n, action in enumerate(tx.actions):
        cap = _parse(transaction_pb2.ChaincodeActionPayload, action.payload)
        ccpp = _parse(proposal_pb2.ChaincodeProposalPayload, cap.chaincode_proposal_payload)
        cis = _parse(chaincode_pb2.ChaincodeInvocationSpec, ccpp.input)
        prp = _parse(proposal_response_pb2.ProposalResponsePayload,
                     cap.action.proposal_response_payload)
        cca = _parse(proposal_pb2.ChaincodeAction, prp.extension)
        if cca.events:
            ev = _parse(chaincode_event_pb2.ChaincodeEvent, cca.events)
            events.append((str(ev.event_name), bytes(ev.payload)))
        if n == 0:
            chaincode = str(cis.chaincode_spec.chaincode_id.name) or str(cca.chaincode_id.name)
            raw = [bytes(a) for a in cis.chaincode_spec.input.args]
            if raw:
                fn = raw[0].decode("utf-8", errors="replace")
                args = raw[1:]
            endorsers = [msp_of(e.endorser) for e in cap.action.endorsements]
            status, result = int(cca.response.status), bytes(cca.response.payload)
    return ParsedTx(**base, chaincode=chaincode, fn=fn, args=args, events=events,
                    endorsers=endorsers, response_status=status, response_payload=result)


def parse_block(block: Any) -> ParsedBlock:
    """A ``common_pb2.Block`` as a :class:`ParsedBlock`."""
    header = block.header
    number = int(header.number)
    previous_hash, data_hash = bytes(header.previous_hash), bytes(header.data_hash)
    data = [bytes(d) for d in block.data.data]
    metadata = list(block.metadata.metadata)
    flags = bytes(metadata[_TRANSACTIONS_FILTER]) if len(metadata) > _TRANSACTIONS_FILTER else b""
    txs = [parse_transaction(env, i, validation_code_name(flags[i]) if i < len(flags)
                             else NOT_VALIDATED)
           for i, env in enumerate(data)]
    return ParsedBlock(number, block_header_hash(number, previous_hash, data_hash),
                       previous_hash, data_hash, txs,
                       data_hash_ok=block_data_hash(data) == data_hash)


def parse_block_bytes(raw: bytes) -> ParsedBlock:
    """A serialized ``common.Block`` as a :class:`ParsedBlock`."""
    return parse_block(_parse(common_pb2.Block, raw))
