"""Read models over a store: custody timeline, court verification, ledger status.

Court verification (``verify_artefact``) is fail-closed: every entry of the artefact's
history must carry a valid signature by its signer's key and an RFC 6962 inclusion
proof against a checkpoint whose signature verifies with the log key.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from ledger import events as ev
from ledger import merkle
from ledger.checkpoint import verify_checkpoint
from ledger.errors import NotFound, VerificationError
from ledger.merkle_verify import verify_inclusion
from ledger.store.base import LedgerStore, StoredEntry


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[
        :-4] + "Z"


def _record(store: LedgerStore, key: str, what: str) -> dict[str, Any]:
    rec = store.state(key)
    if rec is None:
        raise NotFound(f"unknown {what} {key.split('/', 1)[1]!r}")
    return rec


def timeline(store: LedgerStore, artefact_id: str) -> list[dict[str, Any]]:
    """Every log entry about an artefact, oldest first, with who/where/why."""
    return _timeline(store, artefact_id)[0]


def _timeline(store: LedgerStore, artefact_id: str) -> tuple[
        list[dict[str, Any]], list[StoredEntry], dict[str, dict[str, Any]]]:
    """The timeline, plus the stored entries and actor records it was built from."""
    _record(store, "art/" + artefact_id, "artefact")
    actors: dict[str, dict[str, Any]] = {}
    orgs: dict[str, dict[str, Any]] = {}
    items = []
    entries = store.entries_at(store.refs(artefact_id))
    for stored in entries:
        index = stored.index
        entry = ev.Entry.from_leaf(stored.leaf, check_canonical=False)
        event = entry.signed.event
        actor = actors.get(event.signer) or _record(store, "actor/" + event.signer, "actor")
        actors[event.signer] = actor
        org = orgs.get(actor["org"]) or _record(store, "org/" + actor["org"], "organisation")
        orgs[actor["org"]] = org
        p = event.payload
        item: dict[str, Any] = {
            "index": index, "ledger_time": iso(entry.ledger_time), "kind": event.kind,
            "signer": event.signer, "signer_name": actor["name"], "org": actor["org"],
            "jurisdiction": org["jurisdiction"], "key_id": event.key_id,
            "event_id": entry.signed.event_id, "leaf_hash": stored.leaf_hash.hex()}
        if event.kind == ev.ARTEFACT_REGISTER:
            item |= {"summary": f"registered in case {p['case']}", "digests": p["digests"],
                     "size": p["size"]}
        elif event.kind == ev.DISPATCH:
            item |= {"summary": f"dispatched to {p['to_org']}", "to_org": p["to_org"],
                     "transfer": p["transfer"], "legal_basis": p.get("legal_basis"),
                     "purpose": p["purpose"]}
        elif event.kind == ev.RECEIPT:
            item |= {"summary": f"receipt {p['outcome']}", "outcome": p["outcome"],
                     "transfer": p["transfer"], "digests_checked": sorted(p["recomputed"]),
                     "reason": p.get("reason", "")}
        elif event.kind == ev.ACCESS:
            item |= {"summary": f"access {p['action']} ({p['outcome']})",
                     "action": p["action"], "outcome": p["outcome"], "purpose": p["purpose"]}
        elif event.kind == ev.VERIFICATION:
            item |= {"summary": f"verified: {p['verdict']}", "verdict": p["verdict"]}
        elif event.kind == ev.LEGAL_BASIS:
            item |= {"summary": f"legal basis {p['id']} ({p['instrument']} {p['reference']})"}
        else:
            item |= {"summary": event.kind}
        items.append(item)
    return items, entries, actors


def verify_artefact(store: LedgerStore, sha256: str, artefact_id: str | None = None,
                    log_key: str | None = None) -> dict[str, Any]:
    """Court verification of a file's SHA-256 (see module docstring).

    Returns ``{"verdict": "authentic" | "not-registered" | "mismatch", ...}``; raises
    :class:`VerificationError` if the ledger's own evidence (signatures, proofs,
    checkpoint) does not verify — a verdict is never given on unverified data."""
    sha256 = sha256.lower()
    if artefact_id is None:
        candidates = [ev.Entry.from_leaf(store.entry(i).leaf).signed.event
                      for i in store.refs("sha256:" + sha256)]
        ids = [e.payload["id"] for e in candidates if e.kind == ev.ARTEFACT_REGISTER]
        if not ids:
            return {"verdict": "not-registered", "artefact_id": None, "sha256": sha256,
                    "custody": [], "checkpoint": None}
        artefact_id = ids[0]
    art = _record(store, "art/" + artefact_id, "artefact")
    ledger = _record(store, "ledger", "ledger genesis")
    key = log_key or ledger["log_key"]
    if log_key is not None and log_key != ledger["log_key"]:
        raise VerificationError("the ledger's log key is not the pinned verifier key")
    note = store.latest_checkpoint()
    if note is None:
        raise VerificationError("the ledger has no checkpoint")
    cp = verify_checkpoint(note, key, expected_origin=ledger["origin"])
    items, entries, actors = _timeline(store, artefact_id)
    for item, stored in zip(items, entries, strict=True):
        index = item["index"]
        signed = ev.Entry.from_leaf(stored.leaf).signed
        ev.verify_event(signed, base64.b64decode(actors[signed.event.signer]["public_key"]))
        # The proof binds the leaf BYTES: recompute the hash, never trust the stored column.
        leaf_hash = merkle.leaf_hash(stored.leaf)
        proof = store.inclusion_proof(index, cp.size)
        verify_inclusion(leaf_hash, index, cp.size, proof, cp.root)
        item |= {"leaf_hash": leaf_hash.hex(), "inclusion_proof": [h.hex() for h in proof],
                 "tree_size": cp.size, "inclusion_verified": True}
    verdict = "authentic" if art["digests"]["sha256"] == sha256 else "mismatch"
    return {"verdict": verdict, "artefact_id": artefact_id, "sha256": sha256,
            "registered_sha256": art["digests"]["sha256"], "custodian": art["custodian"],
            "case": art["case"], "custody": items,
            "checkpoint": {"origin": cp.origin, "size": cp.size,
                           "root": cp.root.hex(), "note": note}}


def status(store: LedgerStore) -> dict[str, Any]:
    counts: dict[str, int] = {}
    open_transfers = incidents = 0
    for prefix in ("org/", "actor/", "case/", "lb/", "art/", "tr/"):
        n = 0
        for _key, rec in store.state_items(prefix):
            n += 1
            if prefix == "tr/" and rec["status"] == "open":
                open_transfers += 1
            if prefix == "art/":
                incidents += rec["incidents"]
        counts[prefix.rstrip("/")] = n
    ledger = store.state("ledger") or {}
    return {"origin": ledger.get("origin"), "size": store.size(),
            "checkpoint": store.latest_checkpoint(),
            "organisations": counts["org"], "actors": counts["actor"], "cases": counts["case"],
            "legal_bases": counts["lb"], "artefacts": counts["art"],
            "transfers": counts["tr"], "open_transfers": open_transfers,
            "integrity_incidents": incidents}
