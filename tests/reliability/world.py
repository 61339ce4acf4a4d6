"""The small ledger every crash-campaign cycle writes to.

BKA (DE) with ``admin`` (admin, examiner, custodian, prosecutor), LKA (DE) with
``de-cust`` (custodian), NFI (NL) with ``nl-cust`` (custodian); CASE-1 with both other
organisations as members, an MLAT DE↔NL covering the case (``lb-1``) and one artefact
``art-base`` that the access writers look at. Keys are deterministic; the clock and the
nonces are real (``now_ms``, ``os.urandom``), so ledgers outlive any one process.
"""

from __future__ import annotations

import hashlib
import os
import time

from ledger.core import _sodium
from ledger.core.note import NoteSigner
from ledger.evidence import Digests
from ledger.service import ActorKey, Custody
from ledger.store.base import LedgerStore
from ledger.store.sql import SqlStore
from tests.conftest import log_signer, seed_of

ORIGIN = "crash.test.example/custody"
CASE = "CASE-1"
LEGAL_BASIS = "lb-1"
BASE_ARTEFACT = "art-base"
#: actor id -> (org, roles)
ACTORS = {
    "admin": ("bka", ["admin", "examiner", "custodian", "prosecutor"]),
    "de-cust": ("lka", ["custodian", "examiner"]),
    "nl-cust": ("nfi", ["custodian", "examiner"]),
}
#: the custodian actor of each organisation
CUSTODIAN = {"bka": "admin", "lka": "de-cust", "nfi": "nl-cust"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signer() -> NoteSigner:
    return log_signer(ORIGIN)


def log_key() -> str:
    return signer().verifier_key


def key(actor_id: str) -> ActorKey:
    return ActorKey(actor_id, _sodium.Signer(seed_of("actor:crash:" + actor_id)))


def custody(store: LedgerStore) -> Custody:
    return Custody(store, origin=ORIGIN, clock=now_ms, random=os.urandom)


def digests(label: bytes) -> Digests:
    return Digests(hashlib.sha256(label).hexdigest(), hashlib.sha512(label).hexdigest(), None,
                   len(label))


BASE_DIGESTS = digests(b"crash campaign base artefact")


def build(url: str) -> int:
    """Create the ledger at ``url`` (the database must exist, empty); returns its size."""
    store = SqlStore.open(url, signer=signer(), clock=now_ms, create=True)
    try:
        svc = custody(store)
        admin = key("admin")
        svc.genesis(admin, org_id="bka", org_name="BKA", jurisdiction="DE", actor_name="Anna",
                    roles=ACTORS["admin"][1], log_key=log_key())
        svc.add_org(admin, "lka", "LKA", "DE")
        svc.add_org(admin, "nfi", "NFI", "NL")
        for actor_id, (org, roles) in ACTORS.items():
            if actor_id != "admin":
                svc.enrol(admin, actor_id=actor_id, org=org, name=actor_id, roles=roles,
                          public_key=key(actor_id).signer.public_key)
        svc.open_case(admin, CASE, "crash campaign")
        svc.add_member(admin, CASE, "lka")
        svc.add_member(admin, CASE, "nfi")
        svc.add_legal_basis(admin, instrument="mlat", reference="MLA-CRASH-1",
                            issuing_state="NL", executing_state="DE",
                            valid_from="2020-01-01", valid_until="2099-12-31", case=CASE,
                            basis_id=LEGAL_BASIS)
        svc.register(admin, case=CASE, digests=BASE_DIGESTS, artefact_id=BASE_ARTEFACT)
        return store.size()
    finally:
        store.close()
