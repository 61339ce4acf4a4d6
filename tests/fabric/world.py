"""One custody ledger on the session's Fabric network, shared by the Fabric tests.

A channel carries one ledger (one genesis), so every test that needs custody data uses
this world instead of making its own: BKA (DE, lead of CASE-F), NFI (NL) and GN (FR) as
case members; an MLAT NL<->DE and an EIO FR<->DE covering the case; one registered
artefact per test that asks for one (:meth:`FabricWorld.new_artefact`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.evidence import Digests
from ledger.fabric.store import FabricStore, load_profile
from ledger.home import now_ms
from ledger.service import ActorKey, Custody
from tests.conftest import actor_key, digests_of


class UrandomCounter:
    """Random bytes for nonces and ids (never repeated across tests or sessions)."""

    def __call__(self, n: int) -> bytes:
        return os.urandom(n)


@dataclass
class FabricWorld:
    dir: Path
    profile: dict[str, Any]
    store: FabricStore
    svc: Custody
    admin: ActorKey = field(default_factory=lambda: actor_key("admin"))
    nl: ActorKey = field(default_factory=lambda: actor_key("f-nl-cust"))
    fr: ActorKey = field(default_factory=lambda: actor_key("f-fr-cust"))
    court: ActorKey = field(default_factory=lambda: actor_key("f-court"))
    lock: threading.Lock = field(default_factory=threading.Lock)
    stores: list[FabricStore] = field(default_factory=list)

    def open(self, org: str = "DE", *, endorsers: list[str] | None = None,
             local_nodes: bool = True) -> FabricStore:
        """Another FabricStore (its own gRPC connections): another 'process'."""
        store = FabricStore.open(self.dir, org, clock=now_ms, endorsers=endorsers,
                                 local_nodes=local_nodes)
        self.stores.append(store)
        return store

    def service(self, store: FabricStore) -> Custody:
        return Custody(store, origin=self.svc.origin, clock=now_ms, random=UrandomCounter())

    def new_artefact(self, label: str) -> tuple[str, bytes, Digests]:
        data = hashlib.sha256(label.encode() + os.urandom(8)).digest() * 64
        d = digests_of(data)
        art = self.svc.register(self.admin, case="CASE-F", digests=d,
                                artefact_id=f"{label}-{os.urandom(3).hex()}")
        return str(art.result["artefact"]), data, d

    def close(self) -> None:
        for s in self.stores:
            s.close()
        self.store.close()


def build(network_dir: Path) -> FabricWorld:
    profile = load_profile(network_dir)
    store = FabricStore.open(network_dir, "DE", clock=now_ms)
    svc = Custody(store, origin=str(profile["origin"]), clock=now_ms, random=UrandomCounter())
    w = FabricWorld(network_dir, profile, store, svc)
    if store.size() == 0:
        svc.genesis(w.admin, org_id="bka", org_name="BKA", jurisdiction="DE",
                    actor_name="Anna", roles=["admin", "examiner", "custodian", "prosecutor"],
                    log_key=store.log_key)
        svc.add_org(w.admin, "nfi", "NFI", "NL")
        svc.add_org(w.admin, "gn", "Gendarmerie", "FR")
        for key, org, roles in ((w.nl, "nfi", ["custodian"]), (w.fr, "gn", ["custodian"]),
                                (w.court, "nfi", ["court"])):
            svc.enrol(w.admin, actor_id=key.actor_id, org=org, name=key.actor_id, roles=roles,
                      public_key=key.signer.public_key)
        svc.open_case(w.admin, "CASE-F", "consortium test case")
        svc.add_member(w.admin, "CASE-F", "nfi")
        svc.add_member(w.admin, "CASE-F", "gn")
        svc.add_legal_basis(w.admin, instrument="mlat", reference="MLA-F", issuing_state="NL",
                            executing_state="DE", valid_from="2020-01-01",
                            valid_until="2099-01-01", case="CASE-F", basis_id="lb-nl")
        svc.add_legal_basis(w.admin, instrument="eio", reference="EIO-F", issuing_state="FR",
                            executing_state="DE", valid_from="2020-01-01",
                            valid_until="2099-01-01", case="CASE-F", basis_id="lb-fr")
    return w
