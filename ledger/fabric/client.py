"""A thin Hyperledger Fabric client without the Gateway service (Fabric < 2.4).

The classic flow, over the official protobuf bindings and ``grpcio``:

1. **Proposal**: a ``SignedProposal`` whose ``SignatureHeader`` names the client
   (``msp.SerializedIdentity``) and a 24-byte random nonce; ``tx_id`` is
   ``hex(sha256(nonce + creator))``; the ``ChannelHeader`` is an ``ENDORSER_TRANSACTION``
   carrying the chaincode name and the client's timestamp; the input is ``[fn, *args]``.
2. **Endorsement**: ``Endorser.ProcessProposal`` at one peer of each endorsing
   organisation, concurrently. Every response must have status 200 and the same
   ``ProposalResponsePayload`` bytes.
3. **Ordering**: the endorsed transaction envelope goes to ``AtomicBroadcast.Broadcast``;
   an orderer that is unreachable or answers ``SERVICE_UNAVAILABLE`` (a Raft leader
   election) is skipped for the next one, within one bounded deadline.
4. **Commit**: the transaction's validation code comes from the peer's
   ``DeliverFiltered`` stream. One stream per client follows the chain; it is positioned
   (has delivered the newest block) before anything is broadcast, so no commit is missed,
   and it resumes from the next block number after a broken connection. The first
   occurrence of a tx_id decides: a copy ordered twice after an ambiguous broadcast
   (``DUPLICATE_TXID`` in a later block) is never reported again.

Errors map onto :mod:`ledger.core.errors`: a chaincode refusal carrying
:func:`ledger.fabric.wire.encode_error` is re-raised as that very exception; other
failures become :class:`~ledger.core.errors.UpstreamError`,
:class:`~ledger.core.errors.Backpressure`, a :class:`~ledger.core.errors.Conflict`
(``mvcc-conflict``) or a :class:`~ledger.core.errors.RuleViolation`
(``endorsement-policy``) — see :func:`validation_error`.

Every signature (proposals, envelopes, seek requests) is ECDSA P-256 / SHA-256, DER,
low-S: Fabric rejects high-S signatures.

A submit that fails after the broadcast (a lost commit, a time-out) may still commit; a
retry submits a new transaction, and the caller's idempotency comes from the custody
event's nonce (the chaincode refuses a replayed nonce with ``Conflict('replay')``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from fabric_protos.orderer import ab_pb2_grpc as _ab_pb2_grpc
from fabric_protos.peer import events_pb2_grpc as _events_pb2_grpc
from fabric_protos.peer import peer_pb2_grpc as _peer_pb2_grpc

from ledger.core import errors as er
from ledger.fabric import wire
from ledger.fabric.blocks import ParsedBlock, parse_block, validation_code_name
from ledger.fabric.protos import (
    ab_pb2,
    chaincode_pb2,
    common_pb2,
    identities_pb2,
    ledger_pb2,
    proposal_pb2,
    transaction_pb2,
)

# The gRPC service stubs, typed like the messages (see ledger.fabric.protos).
ab_pb2_grpc: Any = _ab_pb2_grpc
events_pb2_grpc: Any = _events_pb2_grpc
peer_pb2_grpc: Any = _peer_pb2_grpc

#: Order of the P-256 group; a signature's S must be at most half of it.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
NONCE_BYTES = 24
MAX_BLOCK = 2**64 - 1
#: Channel options: keep-alive no more often than Fabric servers allow (their
#: ``MinInterval`` / ``ServerMinInterval`` is 60 s; more frequent pings, and HTTP/2 BDP
#: probes, earn a ``GOAWAY too_many_pings``), Fabric's 100 MiB message cap, and a short
#: reconnection back-off (gRPC's default grows to 120 s; a restarted node on this
#: network is back within seconds).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 120_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.max_receive_message_length", 100 * 1024 * 1024),
    ("grpc.max_send_message_length", 100 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)
#: Longest single Broadcast attempt before the next orderer is tried.
BROADCAST_ATTEMPT_S = 10.0
#: ``retry_after`` of the Backpressure raised when the ordering service stays unavailable.
ORDERER_RETRY_AFTER_S = 2.0

_STATUS_SUCCESS = 200
_STATUS_BAD_REQUEST = 400
_STATUS_FORBIDDEN = 403
_STATUS_TOO_LARGE = 413
_STATUS_SERVICE_UNAVAILABLE = 503
_HEADER_ENDORSER_TRANSACTION = 3
_HEADER_DELIVER_SEEK_INFO = 5


# ---------------------------------------------------------------------------- identity

def low_s(signature: bytes) -> bytes:
    """The DER ECDSA P-256 signature with S normalised to ``n - S`` when ``S > n/2``."""
    r, s = decode_dss_signature(signature)
    if s > P256_N // 2:
        s = P256_N - s
    return encode_dss_signature(r, s)


def is_low_s(signature: bytes) -> bool:
    return decode_dss_signature(signature)[1] <= P256_N // 2


@dataclass(frozen=True, eq=False)
class Identity:
    """A Fabric client identity: MSP id, X.509 certificate (PEM), EC P-256 private key."""

    msp_id: str
    cert_pem: bytes
    key: ec.EllipticCurvePrivateKey

    def __post_init__(self) -> None:
        if not isinstance(self.key, ec.EllipticCurvePrivateKey) or not isinstance(
                self.key.curve, ec.SECP256R1):
            raise er.InvalidInput(f"the private key of {self.msp_id} is not an EC P-256 key")

    @classmethod
    def from_files(cls, msp_id: str, cert_path: str | os.PathLike[str],
                   key_path: str | os.PathLike[str]) -> Identity:
        """Load a PEM certificate and its PEM (PKCS#8 or SEC1) unencrypted private key."""
        try:
            cert_pem = Path(cert_path).read_bytes()
            key_pem = Path(key_path).read_bytes()
        except OSError as exc:
            raise er.InvalidInput(f"cannot read the Fabric identity of {msp_id}: "
                                  f"{exc.strerror or exc} ({exc.filename})") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
        except (ValueError, TypeError) as exc:
            raise er.InvalidInput(f"the Fabric identity of {msp_id} in {cert_path} / "
                                  f"{key_path} is not a PEM certificate and key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise er.InvalidInput(f"the private key in {key_path} is not an EC key")
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (cert.public_key().public_bytes(serialization.Encoding.DER, public)
                != key.public_key().public_bytes(serialization.Encoding.DER, public)):
            raise er.InvalidInput(f"the private key in {key_path} does not belong to the "
                                  f"certificate in {cert_path}")
        return cls(msp_id, cert_pem, key)

    @functools.cached_property
    def _serialized(self) -> bytes:
        return bytes(identities_pb2.SerializedIdentity(
            mspid=self.msp_id, id_bytes=self.cert_pem).SerializeToString())

    def serialized(self) -> bytes:
        """``msp.SerializedIdentity`` bytes: the creator of every header this client signs."""
        return self._serialized

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 over SHA-256, DER, always low-S."""
        return low_s(self.key.sign(data, ec.ECDSA(hashes.SHA256())))

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


# ---------------------------------------------------------------------------- messages

def compute_tx_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's ``protoutil.ComputeTxID``."""
    return hashlib.sha256(nonce + creator).hexdigest()


def _channel_header(kind: int, channel: str, tx_id: str, timestamp_ms: int,
                    extension: bytes = b"") -> bytes:
    chdr = common_pb2.ChannelHeader(type=kind, channel_id=channel, tx_id=tx_id, epoch=0,
                                    extension=extension)
    chdr.timestamp.FromMilliseconds(timestamp_ms)
    return _ser(chdr)


def _ser(msg: Any) -> bytes:
    return bytes(msg.SerializeToString(deterministic=True))


@dataclass(frozen=True)
class Proposal:
    """A signed proposal and the parts of it the transaction envelope reuses."""

    tx_id: str
    channel_header: bytes      # common.ChannelHeader
    signature_header: bytes    # common.SignatureHeader
    payload: bytes             # peer.ChaincodeProposalPayload (never a transient map)
    proposal_bytes: bytes      # peer.Proposal
    signature: bytes

    def signed(self) -> Any:
        return proposal_pb2.SignedProposal(proposal_bytes=self.proposal_bytes,
                                           signature=self.signature)


def build_proposal(identity: Identity, channel: str, chaincode: str, fn: str,
                   args: Sequence[bytes], *, timestamp_ms: int, nonce: bytes) -> Proposal:
    """A signed chaincode proposal, as Fabric's
    ``protoutil.CreateChaincodeProposalWithTxIDNonceAndTransient`` builds it."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce has {NONCE_BYTES} bytes")
    creator = identity.serialized()
    tx_id = compute_tx_id(nonce, creator)
    cc_id = chaincode_pb2.ChaincodeID(name=chaincode)
    channel_header = _channel_header(
        _HEADER_ENDORSER_TRANSACTION, channel, tx_id, timestamp_ms,
        _ser(proposal_pb2.ChaincodeHeaderExtension(chaincode_id=cc_id)))
    signature_header = _ser(common_pb2.SignatureHeader(creator=creator, nonce=nonce))
    cis = chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=chaincode_pb2.ChaincodeSpec(
        chaincode_id=cc_id,
        input=chaincode_pb2.ChaincodeInput(args=[fn.encode(), *map(bytes, args)])))
    payload = _ser(proposal_pb2.ChaincodeProposalPayload(input=_ser(cis)))
    header = _ser(common_pb2.Header(channel_header=channel_header,
                                    signature_header=signature_header))
    proposal_bytes = _ser(proposal_pb2.Proposal(header=header, payload=payload))
    return Proposal(tx_id, channel_header, signature_header, payload, proposal_bytes,
                    identity.sign(proposal_bytes))


def build_transaction(identity: Identity, proposal: Proposal,
                      responses: Sequence[Any]) -> bytes:
    """The signed transaction envelope of endorsed responses (``protoutil.CreateSignedTx``);
    the responses must already have been checked to agree."""
    if not responses:
        raise ValueError("a transaction needs at least one endorsement")
    action = transaction_pb2.ChaincodeEndorsedAction(
        proposal_response_payload=responses[0].payload,
        endorsements=[r.endorsement for r in responses])
    cap = _ser(transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=proposal.payload, action=action))
    tx = _ser(transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(
        header=proposal.signature_header, payload=cap)]))
    payload = _ser(common_pb2.Payload(
        header=common_pb2.Header(channel_header=proposal.channel_header,
                                 signature_header=proposal.signature_header),
        data=tx))
    return _ser(common_pb2.Envelope(payload=payload, signature=identity.sign(payload)))


def _seek_position(number: int | None) -> Any:
    if number is None:
        return ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest())
    return ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=number))


def build_seek(identity: Identity, channel: str, start: int | None, stop: int | None, *,
               timestamp_ms: int, nonce: bytes, wait: bool = True) -> Any:
    """A signed Deliver request (``common.Envelope`` of ``orderer.SeekInfo``) for blocks
    ``start``..``stop`` inclusive; None means the newest block. ``wait``:
    ``BLOCK_UNTIL_READY``, else ``FAIL_IF_NOT_READY``."""
    creator = identity.serialized()
    seek = ab_pb2.SeekInfo(start=_seek_position(start), stop=_seek_position(stop),
                           behavior=ab_pb2.SeekInfo.BLOCK_UNTIL_READY if wait
                           else ab_pb2.SeekInfo.FAIL_IF_NOT_READY)
    header = common_pb2.Header(
        channel_header=_channel_header(_HEADER_DELIVER_SEEK_INFO, channel,
                                       compute_tx_id(nonce, creator), timestamp_ms),
        signature_header=_ser(common_pb2.SignatureHeader(creator=creator, nonce=nonce)))
    payload = _ser(common_pb2.Payload(header=header, data=_ser(seek)))
    return common_pb2.Envelope(payload=payload, signature=identity.sign(payload))


# ---------------------------------------------------------------------------- errors

_SPACES = re.compile(r"\s+")


def _clause(text: str, limit: int = 400) -> str:
    """A peer's message as one clause: whitespace collapsed, no final period, bounded."""
    text = _SPACES.sub(" ", text).strip().rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def endorsement_error(org: str, address: str, status: int, message: str,
                      what: str = "endorsement") -> er.LedgerError:
    """A non-200 proposal response: the chaincode's own refusal, or an UpstreamError."""
    decoded = wire.decode_error(message)
    if decoded is not None:
        return decoded
    return er.UpstreamError(f"{what} failed at {org} ({address}): status {status}, "
                            f"{_clause(message) or 'no message'}")


def rpc_error(what: str, address: str, code: str, details: str,
              timeout: float | None = None) -> er.LedgerError:
    """A failed gRPC call (``code`` is the ``grpc.StatusCode`` name)."""
    decoded = wire.decode_error(details)
    if decoded is not None:
        return decoded
    if code == "DEADLINE_EXCEEDED":
        after = f" after {timeout:g} s" if timeout is not None else ""
        return er.UpstreamError(f"{what} at {address} timed out{after}")
    if code == "UNAVAILABLE":
        return er.UpstreamError(f"{what} failed: {address} is unreachable "
                                f"({_clause(details, 200)})")
    return er.UpstreamError(f"{what} failed at {address}: {code.lower()}, "
                            f"{_clause(details) or 'no details'}")


#: Endorsement rounds before responses that still differ are an error (peers a block
#: apart give different read sets for a record written in that block).
ENDORSE_ATTEMPTS = 5


def validation_error(tx_id: str, code: str, block: int, endorsers: Sequence[str],
                     orgs: Sequence[str]) -> er.LedgerError | None:
    """The exception for a committed transaction's validation code; None for VALID."""
    if code == "VALID":
        return None
    if code == "ENDORSEMENT_POLICY_FAILURE" and set(orgs) <= set(endorsers):
        # Every organisation endorsed, so no endorsement was missing: an earlier
        # transaction of the same block changed the endorsement policy of a record this
        # one writes (a custody move), and Fabric refuses the later one. A lost race.
        return er.Conflict("mvcc-conflict",
                           f"transaction {tx_id} was refused in block {block}: an earlier "
                           "transaction in the same block changed the same record (its "
                           "endorsement policy); re-read it and retry")
    if code == "ENDORSEMENT_POLICY_FAILURE":
        return er.RuleViolation(
            "endorsement-policy",
            f"transaction {tx_id} was endorsed by {', '.join(endorsers) or 'no organisation'}"
            f" only, but the custody records it changes need the endorsement of more of the "
            f"channel's organisations ({', '.join(orgs)}; a move across a border needs both "
            f"sides), so every peer refused it in block {block}")
    if code in ("MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"):
        return er.Conflict("mvcc-conflict",
                           f"transaction {tx_id} was refused in block {block} "
                           f"({code}): another transaction changed the same record; retry")
    return er.UpstreamError(f"Fabric marked transaction {tx_id} {code} in block {block}")


# ---------------------------------------------------------------------------- endpoints

@dataclass(frozen=True)
class Endpoint:
    """A peer or orderer: ``host:port``, its TLS CA (PEM) and the TLS name to expect."""

    address: str
    tls_ca_pem: bytes
    server_name: str | None = None


@dataclass(frozen=True)
class Committed:
    """A submitted transaction: its block and validation code (``-1`` / ``PENDING`` when
    not waited for) and the chaincode's response payload."""

    tx_id: str
    block: int
    code: str
    payload: bytes


def _status_name(status: int) -> str:
    try:
        return str(common_pb2.Status.Name(status))
    except ValueError:
        return str(status)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _code_name(exc: Any) -> str:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    return str(getattr(code, "name", code or "UNKNOWN"))


def _details(exc: Any) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return str(details or exc)


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.block = -1
        self.code = ""


class _CommitListener:
    """One ``DeliverFiltered`` stream following the channel; waiters are keyed by tx_id.

    The first connection seeks the newest block; :meth:`register` returns only once that
    block has arrived, so a transaction broadcast afterwards lands in a block the stream
    will deliver. Reconnections (to the home peer, then the others) resume at the next
    block number, so no block is skipped.
    """

    def __init__(self, client: FabricClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._next: int | None = None
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._call: Any = None
        self.last_error = "not connected yet"
        self._thread = threading.Thread(target=self._run, name="fabric-commit-listener",
                                        daemon=True)
        self._thread.start()

    def register(self, tx_id: str, deadline: float) -> _Waiter:
        if not self._ready.wait(max(0.0, deadline - time.monotonic())):
            raise er.UpstreamError(f"no peer delivered blocks of channel "
                                   f"{self._client.channel} in time ({self.last_error})")
        waiter = _Waiter()
        with self._lock:
            self._waiters[tx_id] = waiter
        return waiter

    def unregister(self, tx_id: str) -> None:
        with self._lock:
            self._waiters.pop(tx_id, None)

    def close(self) -> None:
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        orgs = self._client.orgs_by_preference()
        attempt = 0
        while not self._closed.is_set():
            org = orgs[attempt % len(orgs)]
            endpoint = self._client.peers[org]
            try:
                self._follow(endpoint)
                attempt = 0
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return
                self.last_error = (f"{org}'s peer {endpoint.address}: {_code_name(exc)}, "
                                   f"{_clause(_details(exc), 200)}")
                attempt += 1
            except Exception as exc:
                self.last_error = f"{org}'s peer {endpoint.address}: {exc}"
                attempt += 1
            self._closed.wait(min(2.0, 0.1 * 2 ** min(attempt, 5)))

    def _follow(self, endpoint: Endpoint) -> None:
        client = self._client
        seek = build_seek(client.identity, client.channel, self._next, MAX_BLOCK,
                          timestamp_ms=_now_ms(), nonce=os.urandom(NONCE_BYTES))
        stub = events_pb2_grpc.DeliverStub(client.grpc_channel(endpoint))
        call = stub.DeliverFiltered(iter([seek]))
        self._call = call
        if self._closed.is_set():
            call.cancel()
        for resp in call:
            kind = resp.WhichOneof("Type")
            if kind == "filtered_block":
                self._deliver(resp.filtered_block)
            elif kind == "status":
                raise RuntimeError(f"the block stream ended with status "
                                   f"{_status_name(resp.status)}")

    def _deliver(self, block: Any) -> None:
        number = int(block.number)
        with self._lock:
            self._next = number + 1
            for tx in block.filtered_transactions:
                waiter = self._waiters.pop(str(tx.txid), None)
                if waiter is not None:   # the first occurrence decides
                    waiter.block = number
                    waiter.code = validation_code_name(int(tx.tx_validation_code))
                    waiter.done.set()
        self._ready.set()


# ---------------------------------------------------------------------------- client

class FabricClient:
    """Endorse, order and follow transactions on one channel, as one identity.

    ``peers`` maps organisation names (``DE``) to one peer each; the home organisation
    (``home_org``, default the first) serves evaluations, heights, blocks and the commit
    stream unless a call names another. Thread-safe; gRPC channels are reused.
    """

    def __init__(self, identity: Identity, channel: str, peers: Mapping[str, Endpoint],
                 orderers: Sequence[Endpoint], *, timeout: float = 30.0,
                 home_org: str | None = None) -> None:
        if not peers:
            raise er.InvalidInput("a Fabric client needs at least one peer")
        if not orderers:
            raise er.InvalidInput("a Fabric client needs at least one orderer")
        if home_org is not None and home_org not in peers:
            raise er.InvalidInput(f"the home organisation {home_org} has no peer")
        self.identity = identity
        self.channel = channel
        self.peers: dict[str, Endpoint] = dict(peers)
        self.orderers: list[Endpoint] = list(orderers)
        self.timeout = timeout
        self.home_org = home_org or next(iter(self.peers))
        self._lock = threading.Lock()
        self._channels: dict[tuple[str, str | None], Any] = {}
        self._listener: _CommitListener | None = None
        self._orderer_start = 0
        self._closed = False

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], org: str, *, identity: str = "client",
                     timeout: float = 30.0) -> FabricClient:
        """A client of ``org`` from a parsed ``network.json`` (its ``client`` or ``admin``
        identity); every organisation's peer is known, ``org`` is home."""
        try:
            orgs = profile["orgs"]
            if org not in orgs:
                raise er.InvalidInput(f"the network has no organisation {org!r}; it has: "
                                      + ", ".join(sorted(orgs)))
            me = orgs[org]
            ident = Identity.from_files(me["msp_id"], me[identity]["cert"], me[identity]["key"])
            peers = {name: Endpoint(o["peer"]["address"], _read(o["peer"]["tls_ca"]),
                                    o["peer"].get("server_name"))
                     for name, o in orgs.items()}
            orderers = [Endpoint(o["address"], _read(o["tls_ca"]), o.get("server_name"))
                        for o in profile["orderers"]]
            channel = str(profile["channel"])
        except (KeyError, TypeError) as exc:
            raise er.InvalidInput(f"the network profile lacks {exc} for {org}") from None
        return cls(ident, channel, peers, orderers, timeout=timeout, home_org=org)

    # ---- plumbing ------------------------------------------------------------------

    def grpc_channel(self, endpoint: Endpoint) -> Any:
        """The (shared) TLS channel to an endpoint."""
        key = (endpoint.address, endpoint.server_name)
        with self._lock:
            if self._closed:
                raise er.UpstreamError("the Fabric client is closed")
            channel = self._channels.get(key)
            if channel is None:
                options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
                if endpoint.server_name:
                    options.append(("grpc.ssl_target_name_override", endpoint.server_name))
                creds = grpc.ssl_channel_credentials(root_certificates=endpoint.tls_ca_pem)
                channel = grpc.secure_channel(endpoint.address, creds, options=options)
                self._channels[key] = channel
            return channel

    def orgs_by_preference(self) -> list[str]:
        return [self.home_org, *(o for o in self.peers if o != self.home_org)]

    def _peer(self, org: str | None) -> tuple[str, Endpoint]:
        name = org or self.home_org
        if name not in self.peers:
            raise er.InvalidInput(f"no peer of organisation {name!r} is known; known: "
                                  + ", ".join(self.peers))
        return name, self.peers[name]

    def _proposal(self, chaincode: str, fn: str, args: Sequence[bytes],
                  timestamp_ms: int | None = None) -> Proposal:
        return build_proposal(self.identity, self.channel, chaincode, fn, args,
                              timestamp_ms=_now_ms() if timestamp_ms is None else timestamp_ms,
                              nonce=os.urandom(NONCE_BYTES))

    def _endorse(self, orgs: Sequence[str], proposal: Proposal,
                 what: str = "endorsement") -> dict[str, Any]:
        """ProcessProposal at each organisation's peer concurrently; every response 200."""
        signed = proposal.signed()
        futures = {org: peer_pb2_grpc.EndorserStub(self.grpc_channel(self.peers[org]))
                   .ProcessProposal.future(signed, timeout=self.timeout) for org in orgs}
        responses: dict[str, Any] = {}
        failures: list[er.LedgerError] = []
        for org, future in futures.items():
            address = self.peers[org].address
            try:
                resp = future.result()
            except grpc.RpcError as exc:
                failures.append(rpc_error(f"{what} by {org}", address, _code_name(exc),
                                          _details(exc), self.timeout))
                continue
            if resp.response.status != _STATUS_SUCCESS:
                failures.append(endorsement_error(org, address, int(resp.response.status),
                                                  str(resp.response.message), what))
            else:
                responses[org] = resp
        if failures:
            # The chaincode's own refusal is the answer; a peer failing is only upstream.
            raise next((f for f in failures if not isinstance(f, er.UpstreamError)),
                       failures[0])
        return responses

    # ---- queries -------------------------------------------------------------------

    def evaluate(self, chaincode: str, fn: str, args: Sequence[bytes], *,
                 org: str | None = None) -> bytes:
        """Run a chaincode function at one peer (home by default) without ordering it;
        the chaincode's response payload."""
        name, _ = self._peer(org)
        resp = self._endorse([name], self._proposal(chaincode, fn, args), "evaluation")[name]
        return bytes(resp.response.payload)

    def height(self, org: str | None = None) -> int:
        """The peer's block height on the channel (qscc ``GetChainInfo``)."""
        raw = self.evaluate("qscc", "GetChainInfo", [self.channel.encode()], org=org)
        info = ledger_pb2.BlockchainInfo()
        info.ParseFromString(raw)
        return int(info.height)

    def blocks(self, start: int, stop: int | None = None, *, org: str | None = None,
               timeout: float | None = None) -> Iterator[ParsedBlock]:
        """Blocks ``start``..``stop`` INCLUSIVE from a peer's Deliver, parsed. ``stop`` None
        is the current height - 1 (no waiting); a ``stop`` beyond the height waits for the
        blocks (``timeout`` bounds the whole stream)."""
        for block in self.raw_blocks(start, stop, org=org, timeout=timeout):
            yield parse_block(block)

    def raw_blocks(self, start: int, stop: int | None = None, *, org: str | None = None,
                   timeout: float | None = None) -> Iterator[Any]:
        """As :meth:`blocks`, the ``common_pb2.Block`` messages."""
        if start < 0:
            raise er.InvalidInput("a block number is never negative")
        name, endpoint = self._peer(org)
        if stop is None:
            stop = self.height(name) - 1
        if stop < start:
            return
        seek = build_seek(self.identity, self.channel, start, stop, timestamp_ms=_now_ms(),
                          nonce=os.urandom(NONCE_BYTES))
        call = events_pb2_grpc.DeliverStub(self.grpc_channel(endpoint)).Deliver(
            iter([seek]), timeout=timeout)
        what = f"block delivery from {name}"
        expected = start
        try:
            for resp in call:
                kind = resp.WhichOneof("Type")
                if kind == "block":
                    if int(resp.block.header.number) != expected:
                        raise er.UpstreamError(
                            f"{what} ({endpoint.address}) sent block "
                            f"{resp.block.header.number} where {expected} was due")
                    expected += 1
                    yield resp.block
                elif kind == "status":
                    if resp.status != _STATUS_SUCCESS or expected != stop + 1:
                        raise er.UpstreamError(
                            f"{what} ({endpoint.address}) stopped at block {expected} with "
                            f"status {_status_name(resp.status)}")
                    return
        except grpc.RpcError as exc:
            raise rpc_error(what, endpoint.address, _code_name(exc), _details(exc),
                            timeout) from None
        finally:
            call.cancel()
        raise er.UpstreamError(f"{what} ({endpoint.address}) ended without a status")

    # ---- transactions --------------------------------------------------------------

    def submit(self, chaincode: str, fn: str, args: Sequence[bytes], *,
               endorsers: Sequence[str] | None = None, timestamp_ms: int | None = None,
               wait: bool = True, commit_timeout: float | None = None) -> Committed:
        """Endorse at ``endorsers`` (organisation names; default every known peer), order,
        and (``wait``) return once the transaction is VALID in a block; a transaction
        Fabric marks invalid raises (:func:`validation_error`)."""
        orgs = list(dict.fromkeys(endorsers)) if endorsers else list(self.peers)
        for org in orgs:
            self._peer(org)
        listener = self._commit_listener() if wait else None   # connects during endorsing
        proposal = self._proposal(chaincode, fn, args, timestamp_ms)
        for attempt in range(ENDORSE_ATTEMPTS):
            responses = self._endorse(orgs, proposal)
            unsigned = [o for o in orgs if not responses[o].HasField("endorsement")]
            if unsigned:
                raise er.UpstreamError(f"the peer of {', '.join(unsigned)} answered "
                                       f"transaction {proposal.tx_id} without an endorsement")
            first = responses[orgs[0]]
            differing = [o for o in orgs[1:] if responses[o].payload != first.payload]
            if not differing:
                break
            # Peers a block apart read different versions of a record just written: the
            # lagging peer catches up within moments, and endorsing has no effect.
            if attempt + 1 == ENDORSE_ATTEMPTS:
                raise er.UpstreamError(
                    f"the endorsements of transaction {proposal.tx_id} disagree: "
                    f"{', '.join(differing)} returned a different result from {orgs[0]}")
            time.sleep(0.1 * (attempt + 1))
        envelope = build_transaction(self.identity, proposal, [responses[o] for o in orgs])
        payload = bytes(first.response.payload)
        if listener is None:
            self._broadcast(envelope, proposal.tx_id)
            return Committed(proposal.tx_id, -1, "PENDING", payload)
        wait_s = self.timeout if commit_timeout is None else commit_timeout
        waiter = listener.register(proposal.tx_id, time.monotonic() + self.timeout)
        try:
            self._broadcast(envelope, proposal.tx_id)
            if not waiter.done.wait(wait_s):
                raise er.UpstreamError(
                    f"transaction {proposal.tx_id} was ordered but no commit was seen within "
                    f"{wait_s:g} s (last stream error: {listener.last_error}); it may still "
                    "commit, so look the event up before submitting it again")
        finally:
            listener.unregister(proposal.tx_id)
        refused = validation_error(proposal.tx_id, waiter.code, waiter.block,
                                   orgs, list(self.peers))
        if refused is not None:
            raise refused
        return Committed(proposal.tx_id, waiter.block, waiter.code, payload)

    def _commit_listener(self) -> _CommitListener:
        with self._lock:
            if self._closed:
                raise er.UpstreamError("the Fabric client is closed")
            if self._listener is None:
                self._listener = _CommitListener(self)
            return self._listener

    def _broadcast(self, envelope: bytes, tx_id: str) -> None:
        """Hand the envelope to an orderer, trying the next while one is unreachable or
        unavailable, until the client's deadline."""
        env = common_pb2.Envelope()
        env.ParseFromString(envelope)
        deadline = time.monotonic() + self.timeout
        n = len(self.orderers)
        index = self._orderer_start
        busy: str | None = None          # the last "unavailable" answer, if any
        failure = "no orderer was tried"
        tried = 0
        while True:
            endpoint = self.orderers[index % n]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, info = self._broadcast_once(endpoint, env,
                                                    min(remaining, BROADCAST_ATTEMPT_S))
            except grpc.RpcError as exc:
                code = _code_name(exc)
                failure = (f"{endpoint.address} is unreachable" if code == "UNAVAILABLE"
                           else f"{endpoint.address} timed out" if code == "DEADLINE_EXCEEDED"
                           else f"{endpoint.address} failed ({code.lower()}, "
                                f"{_clause(_details(exc), 200)})")
                busy = None
            else:
                if status == _STATUS_SUCCESS:
                    self._orderer_start = index % n
                    return
                name = _status_name(status)
                text = f"{endpoint.address} answered {name}" + (f" ({_clause(info, 200)})"
                                                               if info else "")
                if status == _STATUS_TOO_LARGE:
                    raise er.PayloadTooLarge(f"the ordering service refused transaction "
                                             f"{tx_id} as too large: {text}")
                if status in (_STATUS_BAD_REQUEST, _STATUS_FORBIDDEN):
                    raise er.UpstreamError(f"the ordering service refused transaction "
                                           f"{tx_id}: {text}")
                busy = failure = text
            index += 1
            tried += 1
            if tried % n == 0:            # every orderer failed once: back off a little
                pause = min(0.25 * 2 ** min(tried // n - 1, 3), deadline - time.monotonic())
                if pause > 0:
                    time.sleep(pause)
        if busy is not None:
            raise er.Backpressure(f"the ordering service is unavailable ({busy}); retry "
                                  "shortly", retry_after=ORDERER_RETRY_AFTER_S)
        raise er.UpstreamError(f"no orderer accepted transaction {tx_id} within "
                               f"{self.timeout:g} s; last: {failure}")

    def _broadcast_once(self, endpoint: Endpoint, env: Any, timeout: float) -> tuple[int, str]:
        stub = ab_pb2_grpc.AtomicBroadcastStub(self.grpc_channel(endpoint))
        call = stub.Broadcast(iter([env]), timeout=timeout)
        try:
            for resp in call:
                return int(resp.status), str(resp.info)
        finally:
            call.cancel()
        return _STATUS_SERVICE_UNAVAILABLE, "the orderer closed the stream without an answer"

    # ---- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener, self._listener = self._listener, None
            channels, self._channels = list(self._channels.values()), {}
        if listener is not None:
            listener.close()
        for channel in channels:
            channel.close()

    def __enter__(self) -> FabricClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise er.InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
