"""The Fabric backend: custody events are Fabric transactions; each organisation derives
the RFC 6962 log from its own peer's blocks.

Writes: :meth:`FabricStore.append` submits the signed event to the ``custody``
chaincode (which applies the same rules, :func:`ledger.core.rules.apply`, over world state and
sets the state-based endorsement policies), waits until the transaction is VALID in a
block, then takes that block into the organisation's derived log and returns the
receipt from it.

The derived log (:class:`OrgNode`) is an ordinary SQL ledger (``ledger.store.sql``) in
the organisation's node directory, fed ONLY by :meth:`SqlStore.append_derived`: the VALID
custody transactions of each block, in block order, with the transaction time as ledger
time, one database transaction and one checkpoint per block. Every organisation applies
the same deterministic steps to the same blocks, so every organisation's log has the
same entries, roots and state-map roots at the same block height, and no world-state key
is written by every transaction (no "log head" key that would make transactions of one
block conflict). Each node signs its checkpoints with its own key; the other nodes
cosign them (C2SP tlog-cosignature, one witness per jurisdiction) after checking that
their own log has the same checkpoint body at that size.

Reads (entries, proofs, state, bundles) come from the organisation's derived log, after
it has caught up with its peer.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ledger import keys
from ledger.core import _sodium
from ledger.core.bundle import Bundle, Fault
from ledger.core.canonical import canonical
from ledger.core.checkpoint import Checkpoint, cosign, cosignature_verifier_key
from ledger.core.errors import (
    Conflict,
    IntegrityFault,
    InvalidInput,
    LedgerError,
    NotFound,
    UpstreamError,
)
from ledger.core.events import SignedEvent
from ledger.core.note import NoteSigner, split_note
from ledger.fabric import wire
from ledger.store.base import AppendResult, StoredEntry
from ledger.store.sql import SqlStore

if TYPE_CHECKING:
    from ledger.core.audit import AuditReport
    from ledger.store.repair import Repair

Clock = Callable[[], int]
#: Reads catch up with the peer when the last catch-up is older than this (ms).
FRESH_MS = 250


class ParsedTxLike(Protocol):
    tx_id: str
    timestamp_ms: int
    code: str
    chaincode: str | None
    fn: str | None
    args: list[bytes]


class ParsedBlockLike(Protocol):
    number: int
    header_hash: bytes
    previous_hash: bytes

    @property
    def txs(self) -> Sequence[ParsedTxLike]: ...


class Chain(Protocol):
    """What the store needs from a Fabric client (``ledger.fabric.client.FabricClient``)."""

    def submit(self, chaincode: str, fn: str, args: list[bytes], *,
               endorsers: Sequence[str] | None = None, timestamp_ms: int | None = None,
               wait: bool = True, commit_timeout: float | None = None) -> Any: ...

    def height(self, org: str | None = None) -> int: ...

    def blocks(self, start: int, stop: int | None = None, *,
               org: str | None = None) -> Iterator[Any]: ...

    def close(self) -> None: ...


def custody_events(block: ParsedBlockLike) -> list[tuple[SignedEvent, int]]:
    """The VALID custody transactions of a block, in block order, as (event, time)."""
    out: list[tuple[SignedEvent, int]] = []
    for tx in block.txs:
        if tx.code != "VALID" or tx.chaincode != wire.CHAINCODE or tx.fn != wire.FN_SUBMIT:
            continue
        try:
            signed = SignedEvent.from_json(json.loads(tx.args[0]))
        except (LedgerError, ValueError, IndexError) as exc:
            raise IntegrityFault(f"block {block.number}: VALID custody transaction {tx.tx_id} "
                                 f"does not carry a signed event ({exc})",
                                 kind="divergence") from None
        out.append((signed, tx.timestamp_ms))
    return out


@dataclass(frozen=True)
class NodeKeys:
    """An organisation node's two keys: the log key (signs its checkpoints) and its
    witness key (cosigns the other organisations' checkpoints)."""

    log: NoteSigner
    witness_name: str
    witness_seed: bytes

    @property
    def witness_key(self) -> str:
        return cosignature_verifier_key(self.witness_name,
                                        _sodium.public_key_from_seed(self.witness_seed))


def node_keys(node_dir: Path, origin: str, org: str) -> NodeKeys:
    """Load the node's keys, creating them (0600, unencrypted: the node signs unattended)
    on first use."""
    log_path, witness_path = node_dir / "log.key", node_dir / "witness.key"
    witness_name = f"{origin}/witness/{org}"
    if not log_path.exists():
        keys.write_key(log_path, origin, os.urandom(32), None)
    if not witness_path.exists():
        keys.write_key(witness_path, witness_name, os.urandom(32), None)
    return NodeKeys(NoteSigner(origin, keys.load_seed(log_path, None)), witness_name,
                    keys.load_seed(witness_path, None))


class OrgNode:
    """One organisation's derived log."""

    def __init__(self, org: str, node_dir: Path, origin: str, clock: Clock) -> None:
        self.org = org
        self.dir = node_dir
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys = node_keys(node_dir, origin, org)
        db = node_dir / "ledger.db"
        create = not db.exists()
        self.store = SqlStore.open(f"sqlite:///{db}", signer=self.keys.log, clock=clock,
                                   create=create, check=not create)

    @property
    def log_key(self) -> str:
        return self.keys.log.verifier_key

    def sync(self, chain: Chain, upto: int | None = None) -> int:
        """Take in every block of the peer not taken in yet (or up to block ``upto``, which
        the peer is known to have); return the next block number."""
        done = self.store.fabric_height()
        start = 0 if done is None else done[0] + 1
        last_hash = None if done is None else done[1]
        last = chain.height() - 1 if upto is None else upto
        if last < start:
            return start
        for block in chain.blocks(start, last):
            if last_hash is not None and block.previous_hash != last_hash:
                raise IntegrityFault(f"block {block.number} of {self.org}'s peer does not "
                                     f"follow block {block.number - 1} of the derived log "
                                     "(previous hash differs)", kind="divergence")
            self.store.append_derived(custody_events(block), block.number, block.header_hash)
            last_hash = block.header_hash
            start = block.number + 1
        return start

    def cosign(self, other: OrgNode, now_s: int) -> bool:
        """Cosign ``other``'s newest checkpoint if this node's log has the same checkpoint
        body at that size; return whether a cosignature was added."""
        note = other.store.latest_checkpoint()
        if note is None:
            return False
        body = split_note(note)[0]
        cp = Checkpoint.parse(body)
        size = cp.size
        if self.keys.witness_key in other.store.cosignatures(size):
            return False
        try:
            mine = split_note(self.store.checkpoint_at(size))[0]
        except NotFound:
            return False  # this node has not reached that size yet
        if mine != body:
            raise IntegrityFault(f"the checkpoint of size {size} of {other.org} differs from "
                                 f"{self.org}'s at the same size: the derived logs disagree",
                                 kind="divergence")
        line = cosign(cp, self.keys.witness_name, self.keys.witness_seed, now_s)
        other.store.add_cosignature(size, self.keys.witness_key, line)
        return True

    def close(self) -> None:
        self.store.close()


def load_profile(network_dir: Path) -> dict[str, Any]:
    path = Path(network_dir) / "network.json"
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"no Fabric network in {network_dir} (no network.json); run "
                       "'custody network up' first") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the connection profile {path}: {exc}") from None
    if not isinstance(profile, dict) or "orgs" not in profile:
        raise InvalidInput(f"{path} is not a Custody Ledger connection profile")
    return profile


class FabricStore:
    """``LedgerStore`` on a Fabric network, as seen by organisation ``org``."""

    def __init__(self, profile: dict[str, Any], org: str, *, clock: Clock,
                 chains: dict[str, Chain], witnesses: bool = True,
                 endorsers: Sequence[str] | None = None) -> None:
        if org not in profile["orgs"]:
            raise InvalidInput(f"the network has no organisation {org!r}; it has: "
                               + ", ".join(sorted(profile["orgs"])))
        self.profile = profile
        self.org = org
        self.clock = clock
        self.origin = str(profile["origin"])
        self.chains = chains
        self.nodes: dict[str, OrgNode] = {}
        for name in sorted(chains):
            self.nodes[name] = OrgNode(name, Path(profile["orgs"][name]["node_dir"]),
                                       self.origin, clock)
        self.node = self.nodes[org]
        self.witnesses = witnesses
        self._synced_at = -FRESH_MS
        #: Serialises following the chain within this process (threads of an API server).
        self._follow = threading.RLock()
        #: The organisations whose peers endorse each submission (default: every one, so
        #: any endorsement policy is met); fewer is how a one-sided dispatch is tried.
        self.endorsers = None if endorsers is None else [e.upper() for e in endorsers]
        unknown = sorted(set(self.endorsers or ()) - set(profile["orgs"]))
        if unknown:
            raise InvalidInput(f"the network has no organisation {', '.join(unknown)}; it "
                               "has: " + ", ".join(sorted(profile["orgs"])))
        self.sync()

    @classmethod
    def open(cls, network_dir: Path, org: str, *, clock: Clock, local_nodes: bool = True,
             endorsers: Sequence[str] | None = None) -> FabricStore:
        """Open the store of ``org`` on the network in ``network_dir``. With
        ``local_nodes`` the other organisations' nodes in the same directory (a network
        run on one machine) are kept in step too, and cosign each other's checkpoints."""
        from ledger.fabric.client import FabricClient

        profile = load_profile(network_dir)
        org = org.upper()
        if org not in profile["orgs"]:
            raise InvalidInput(f"the network in {network_dir} has no organisation {org!r}; "
                               "it has: " + ", ".join(sorted(profile["orgs"])))
        names = sorted(profile["orgs"]) if local_nodes else [org]
        chains: dict[str, Chain] = {}
        try:
            for name in names:
                chains[name] = FabricClient.from_profile(profile, name)
            return cls(profile, org, clock=clock, chains=chains, endorsers=endorsers)
        except BaseException:
            for chain in chains.values():
                chain.close()
            raise

    # ---- following the chain ---------------------------------------------------------

    def sync(self) -> None:
        """Bring every local node up to its peer's height, then cross-cosign."""
        with self._follow:
            self._sync_all()

    def _sync_all(self) -> None:
        for name, node in self.nodes.items():
            node.sync(self.chains[name])
        self._synced_at = self.clock()
        if self.witnesses and len(self.nodes) > 1:
            now_s = self.clock() // 1000
            for a in self.nodes.values():
                for b in self.nodes.values():
                    if a is not b:
                        a.cosign(b, now_s)

    def _fresh(self) -> SqlStore:
        """The organisation's derived log, caught up with its peer unless it was less than
        :data:`FRESH_MS` ago (a long-lived store, e.g. the API, reads like a replica that
        is at most that far behind; a CLI command opens a store, which syncs)."""
        if self.clock() - self._synced_at >= FRESH_MS:
            with self._follow:
                self.node.sync(self.chains[self.org])
            self._synced_at = self.clock()
        return self.node.store

    def _taken_in(self, block: int) -> None:
        """Wait until this organisation's node has taken in ``block`` (the other local
        nodes follow, and cosign, at the next :meth:`sync`)."""
        for _ in range(50):
            with self._follow:  # one thread of this process fetches; the others wait
                done = self.node.store.fabric_height()  # another writer may have taken it
                if done is not None and done[0] >= block:
                    return
                self.node.sync(self.chains[self.org], upto=block)
        raise UpstreamError(f"block {block} is committed but {self.org}'s peer did not deliver "
                            "it; retry (the event is not submitted twice)")

    # ---- writes ------------------------------------------------------------------------

    def append(self, signed: SignedEvent) -> AppendResult:
        body = canonical(signed.to_json())
        try:
            committed = self.chains[self.org].submit(
                wire.CHAINCODE, wire.FN_SUBMIT, [body], endorsers=self.endorsers,
                timestamp_ms=self.clock())
        except Conflict as exc:
            if exc.rule != "replay":
                raise
            self.sync()  # a retry of an event that was committed: the original receipt
            earlier = self.node.store.receipt(signed.event_id, duplicate=True)
            if earlier is None:
                raise
            return earlier
        self._taken_in(int(committed.block))
        receipt = self.node.store.receipt(signed.event_id)
        if receipt is None:
            raise IntegrityFault(f"transaction {committed.tx_id} is VALID in block "
                                 f"{committed.block} but the derived log has no event "
                                 f"{signed.event_id}", kind="divergence")
        return receipt

    def append_many(self, batch: Sequence[SignedEvent]) -> list[AppendResult | LedgerError]:
        """Each event is its own Fabric transaction, submitted in order (a later event of
        the batch may depend on an earlier one)."""
        out: list[AppendResult | LedgerError] = []
        seen: set[str] = set()
        for signed in batch:
            if signed.event_id in seen:
                out.append(Conflict("duplicate-in-batch", f"event {signed.event_id} is twice "
                                    "in one batch"))
                continue
            seen.add(signed.event_id)
            try:
                out.append(self.append(signed))
            except LedgerError as exc:
                out.append(exc)
        return out

    # ---- reads: the organisation's derived log ----------------------------------------

    def size(self) -> int:
        return self._fresh().size()

    def entry(self, index: int) -> StoredEntry:
        return self._fresh().entry(index)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[StoredEntry]:
        return self._fresh().entries(start, end)

    def entries_at(self, indices: Sequence[int]) -> list[StoredEntry]:
        return self._fresh().entries_at(indices)

    def find_event(self, event_id: str) -> int | None:
        return self._fresh().find_event(event_id)

    def state(self, key: str) -> dict[str, Any] | None:
        return self._fresh().state(key)

    def cached_state(self, key: str) -> dict[str, Any] | None:
        return self._fresh().cached_state(key)

    def state_items(self, prefix: str, after: str = "",
                    page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._fresh().state_items(prefix, after, page=page)

    def refs(self, ref: str) -> list[int]:
        return self._fresh().refs(ref)

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint of this organisation's log, with the cosignatures of the
        other organisations' nodes that have checked it."""
        self.sync()
        note = self.node.store.latest_checkpoint()
        if note is None:
            return None
        return self.node.store.cosigned_note(Checkpoint.parse(split_note(note)[0]).size)

    def checkpoints(self, after: int = 0, page: int = 1000) -> Iterator[tuple[int, str]]:
        return self._fresh().checkpoints(after, page=page)

    def checkpoint_at(self, size: int) -> str:
        return self._fresh().checkpoint_at(size)

    def root(self, size: int) -> bytes:
        return self._fresh().root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._fresh().inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self._fresh().consistency_proof(old, new)

    def bundle(self, *, artefact_id: str | None = None, sha256: str | None = None,
               size: int | None = None) -> tuple[Bundle, list[Fault]]:
        self.sync()  # the newest checkpoint, cosigned by the other local nodes
        return self.node.store.bundle(artefact_id=artefact_id, sha256=sha256, size=size)

    def add_cosignature(self, size: int, witness_key: str, line: str) -> str:
        return self.node.store.add_cosignature(size, witness_key, line)

    def cosignatures(self, size: int) -> dict[str, str]:
        return self._fresh().cosignatures(size)

    def cosigned_note(self, size: int) -> str:
        return self._fresh().cosigned_note(size)

    def witnessed_checkpoint(self, min_witnesses: int = 1) -> tuple[int, str] | None:
        return self._fresh().witnessed_checkpoint(min_witnesses)

    # ---- consortium facts --------------------------------------------------------------

    @property
    def log_key(self) -> str:
        """The verifier key of this organisation's node (pin it to verify its log)."""
        return self.node.log_key

    def node_keys(self) -> list[str]:
        """The log keys of the organisation nodes known here (the genesis names one)."""
        return sorted(n.log_key for n in self.nodes.values())

    def audit(self, *, trusted_checkpoint: str | None = None,
              log_verifier_key: str | None = None,
              progress: Callable[[int], None] | None = None) -> AuditReport:
        """This organisation's log, derived from the chain, audited like a SQL store
        (the genesis may name any organisation node's log key)."""
        from ledger.store.audit_sql import audit_store

        return audit_store(self.node.store, trusted_checkpoint=trusted_checkpoint,
                           progress=progress, log_verifier_key=log_verifier_key,
                           genesis_log_keys=self.node_keys())

    def rebuild_state(self, log_key: str) -> Repair:
        raise InvalidInput("on a Fabric network an organisation's log is derived from its "
                           "peer's blocks: move the ledger.db* files out of "
                           f"{self.node.dir} and the next command derives it again")

    def witness_keys(self) -> dict[str, str]:
        """The witness (cosignature) keys of the other local organisations' nodes."""
        return {name: n.keys.witness_key for name, n in self.nodes.items() if name != self.org}

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
        for chain in self.chains.values():
            chain.close()
