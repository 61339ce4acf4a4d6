"""Which world-state keys carry which key-level endorsement policy (pure, no Fabric).

Every Fabric organisation is one jurisdiction (MSP id ``wire.msp_id(J)``); every ledger
organisation (agency) has a ``jurisdiction``. After the rules computed an event's writes:

* ``art/ID`` written -> its policy is the AND of the peers of the sending and receiving
  jurisdictions while a transfer is open (``open_transfer`` not null: the transfer's
  ``from_org`` / ``to_org``), else the custodian's jurisdiction's peer;
* ``org/ID`` created (genesis, ``org.register``) -> ``gate/J`` of its jurisdiction is
  created once, with J's peer as policy;
* a dispatch whose sending and receiving jurisdictions differ blind-writes
  ``gate/<receiving J>``, so validation needs the receiving organisation's endorsement.

Fabric validates a write against the key's policy as committed before the transaction
(the new policy governs the next one): a cross-border dispatch needs the sender (the
artefact's policy) and the receiver (the gate); the receipt needs both (the artefact's
policy while the transfer is open) and leaves the new custodian alone in charge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ledger.core import events as ev
from ledger.core.errors import IntegrityFault
from ledger.core.state import ARTEFACT, ORG, TRANSFER, Record, org_key, transfer_key
from ledger.fabric import wire


class StateView(Protocol):
    def get(self, key: str) -> Record | None: ...


@dataclass(frozen=True, slots=True)
class Plan:
    """What the chaincode does on top of the rules' writes."""

    #: Gate keys to create (read first: absent), sorted: (key, jurisdiction).
    new_gates: tuple[tuple[str, str], ...]
    #: Gate keys to write without reading them, sorted.
    blind_gates: tuple[str, ...]
    #: Key-level policies to set, sorted by key: (key, MSP ids that must ALL endorse).
    policies: tuple[tuple[str, tuple[str, ...]], ...]


def gate_key(jurisdiction: str) -> str:
    return wire.GATE_PREFIX + jurisdiction.upper()


def plan(kind: str, writes: Mapping[str, Record], view: StateView) -> Plan:
    """The gates and key-level policies for an accepted event's ``writes``.

    ``view`` is the state before the event (the rules' writes take precedence)."""

    def record(key: str) -> Record:
        rec = writes.get(key)
        if rec is None:
            rec = view.get(key)
        if rec is None:
            raise IntegrityFault(f"{key} is missing from the world state", kind="state")
        return rec

    def jurisdiction(org_id: str) -> str:
        return str(record(org_key(org_id))["jurisdiction"]).upper()

    policies: dict[str, tuple[str, ...]] = {}
    new_gates: dict[str, str] = {}
    blind: set[str] = set()
    for key in sorted(writes):
        rec = writes[key]
        if key.startswith(ARTEFACT):
            if rec.get("open_transfer") is not None:
                tr = record(transfer_key(rec["open_transfer"]))
                orgs = {jurisdiction(tr["from_org"]), jurisdiction(tr["to_org"])}
            else:
                orgs = {jurisdiction(rec["custodian"])}
            policies[key] = tuple(sorted(wire.msp_id(j) for j in orgs))
        elif key.startswith(ORG) and kind in (ev.GENESIS, ev.ORG_REGISTER):
            j = str(rec["jurisdiction"]).upper()
            gate = gate_key(j)
            if gate not in new_gates and view.get(gate) is None:
                new_gates[gate] = j
        elif key.startswith(TRANSFER) and kind == ev.DISPATCH:
            sender, receiver = jurisdiction(rec["from_org"]), jurisdiction(rec["to_org"])
            if sender != receiver:
                blind.add(gate_key(receiver))
    for gate, j in new_gates.items():
        policies[gate] = (wire.msp_id(j),)
        blind.discard(gate)
    return Plan(new_gates=tuple(sorted(new_gates.items())), blind_gates=tuple(sorted(blind)),
                policies=tuple(sorted(policies.items())))


def signature_policy(msp_ids: tuple[str, ...]) -> bytes:
    """A serialized ``SignaturePolicyEnvelope``: every listed MSP's peer must sign
    (n-out-of-n over ``MSPRole.PEER`` principals, in the given order)."""
    from fabric_protos.common import policies_pb2 as pol
    from fabric_protos.msp import msp_principal_pb2 as pr

    if not msp_ids:
        raise ValueError("a policy needs at least one MSP")
    identities = [
        pr.MSPPrincipal(principal_classification=pr.MSPPrincipal.ROLE,
                        principal=pr.MSPRole(msp_identifier=msp,
                                             role=pr.MSPRole.PEER).SerializeToString())
        for msp in msp_ids]
    rule = pol.SignaturePolicy(n_out_of=pol.SignaturePolicy.NOutOf(
        n=len(msp_ids),
        rules=[pol.SignaturePolicy(signed_by=i) for i in range(len(msp_ids))]))
    envelope = pol.SignaturePolicyEnvelope(version=0, rule=rule, identities=identities)
    return envelope.SerializeToString(deterministic=True)
