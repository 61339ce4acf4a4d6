"""CASE/UCO JSON-LD of verified court bundles (``custody export case-uco``).

The graph says only what verified bundles prove: the timeline of each
:class:`~ledger.core.bundle.VerifyResult`, the state-map values proven in ``bundle.maps`` and
the payloads of the bundle's accepted leaves (each one's leaf hash is the one the
verified timeline names). Nothing is read from the operator's tables. A case's list of
artefacts is proven only when :func:`scan_case` recomputed the checkpoint's root from
every leaf of the log; otherwise the caller says so with ``CaseListing(proven=False)``
and the graph says it too.

Terms are those of CASE 1.5.0 / UCO 1.5.0 (as bundled with ``case-utils``); the mapping
is in ``docs/case-uco.md``. Node identifiers are ``kb:<Class>-<UUIDv5>``: the UUID is
derived from the ledger's origin and the event id / artefact id / actor id (facets and
hashes follow ``case_utils.inherent_uuid``), so the same ledger at the same checkpoint
gives the same graph. Pure: no I/O and no clock (the generation time is passed in).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.core import events as ev
from ledger.core import merkle
from ledger.core.bundle import Bundle, TimelineItem, VerifyResult, iso
from ledger.core.errors import LedgerError, VerificationError
from ledger.core.state import actor_key, legal_basis_key, org_key

#: The CASE release whose terms this module writes (and ``case_validate`` checks).
CASE_VERSION = "1.5.0"
#: Base IRI of the ``kb:`` prefix: the export's own individuals.
KB = "urn:custody-ledger:kb:"

_UCO = "https://ontology.unifiedcyberontology.org/uco/"
CONTEXT: dict[str, str] = {
    "kb": KB,
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": _UCO + "action/",
    "uco-core": _UCO + "core/",
    "uco-identity": _UCO + "identity/",
    "uco-location": _UCO + "location/",
    "uco-observable": _UCO + "observable/",
    "uco-tool": _UCO + "tool/",
    "uco-types": _UCO + "types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
_PREFIXES = {"uco-observable": _UCO + "observable/", "uco-identity": _UCO + "identity/",
             "uco-location": _UCO + "location/"}

#: Our digest names → UCO ``HashNameVocab``. BLAKE3 is not in the vocabulary (UCO 1.5):
#: as a ``uco-types:Hash`` it would make ``case_validate`` fail (an Info result), so such
#: digests are written in the description instead (:func:`_unlisted`).
HASH_METHODS = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256", "sha512": "SHA512"}
_OUTCOME_STATUS = {"accepted": "Success", "rejected": "Fail", "success": "Success",
                   "denied": "Fail", "authentic": "Success", "mismatch": "Fail"}


@dataclass(frozen=True, slots=True)
class CaseListing:
    """Which artefacts make up a case, and whether that list is proven complete."""

    case: str
    artefacts: tuple[str, ...]
    #: True: every leaf of the log up to the checkpoint was read and hashed to its root,
    #: so no registration in the case is missing. False: the operator's state listed them.
    proven: bool
    tree_size: int
    #: From the signed ``case.open`` / ``case.add-member`` entries (only when proven).
    title: str | None = None
    lead_org: str | None = None
    members: tuple[str, ...] = ()


def scan_case(leaves: Iterable[bytes], *, case: str, origin: str, size: int,
              root: bytes) -> CaseListing | None:
    """The case's registrations, proven complete: ``leaves`` must be EVERY leaf of the log
    from index 0, in order, up to the checkpoint's ``size``; their RFC 6962 root must be
    the checkpoint's ``root`` (else :class:`VerificationError`). None when the log has no
    ``case.open`` of ``case`` at that size."""
    frontier = merkle.Frontier.empty()
    orgs: dict[str, str] = {}  # actor id -> org id, from genesis and enrolments
    found = False
    title: str | None = None
    lead: str | None = None
    members: list[str] = []
    artefacts: list[str] = []
    wanted = (b'"kind":"ledger.genesis"', b'"kind":"actor.enrol"', b'"kind":"case.open"',
              b'"kind":"case.add-member"', b'"kind":"artefact.register"')
    for position, leaf in enumerate(leaves):
        if position >= size:
            raise VerificationError(f"the log holds more than the checkpoint's {size} entries "
                                    "in this read")
        frontier.add_leaf(merkle.leaf_hash(leaf))
        if not any(w in leaf for w in wanted):  # a cheap filter; kinds are parsed below
            continue
        try:
            entry = ev.Entry.from_leaf(leaf)
        except LedgerError as exc:
            raise VerificationError(f"log entry {position} does not parse: {exc}") from None
        event = entry.signed.event
        if entry.index != position or event.origin != origin:
            raise VerificationError(f"log entry {position} is not entry {position} of {origin}")
        p = event.payload
        if event.kind == ev.GENESIS:
            orgs[str(p["actor"]["id"])] = str(p["actor"]["org"])
        elif event.kind == ev.ACTOR_ENROL:
            orgs[str(p["id"])] = str(p["org"])
        elif event.kind == ev.CASE_OPEN and p.get("id") == case:
            found, title, lead = True, str(p.get("title", "")), orgs.get(event.signer)
        elif event.kind == ev.CASE_ADD_MEMBER and p.get("case") == case:
            members.append(str(p["org"]))
        elif event.kind == ev.ARTEFACT_REGISTER and p.get("case") == case:
            artefacts.append(str(p["id"]))
    if frontier.size != size or frontier.root() != root:
        raise VerificationError(f"the log's {frontier.size} entries do not hash to the root of "
                                f"the trusted checkpoint (size {size}): the list of the "
                                "case's artefacts cannot be proven")
    if not found:
        return None
    return CaseListing(case, tuple(artefacts), True, size, title, lead, tuple(members))


# ---- the graph ---------------------------------------------------------------------------


def case_uco_graph(items: Sequence[tuple[Bundle, VerifyResult]], *, generated_at_ms: int,
                   tool: str, tool_version: str = "",
                   listing: CaseListing | None = None) -> dict[str, Any]:
    """The CASE/UCO JSON-LD document (``@context`` and ``@graph``) of the artefacts of
    ``items``: each a bundle and ITS verification, which must be ``verified`` or
    ``authentic`` (no fault), all at one checkpoint. ``listing`` (for a case export) names
    the case's artefacts; they must be exactly those of ``items``. Raises ValueError on
    inputs that break these preconditions."""
    if not items:
        raise ValueError("nothing to export: no verified bundle")
    first = items[0][1].checkpoint
    if first is None:
        raise ValueError("a verification without a checkpoint")
    for bundle, result in items:
        if not result.ok or result.faults or not result.complete:
            raise ValueError(f"the bundle of {result.artefact_id} did not verify "
                             f"({result.verdict}); it cannot be exported")
        cp = result.checkpoint
        if cp is None or (cp.origin, cp.size, cp.root) != (first.origin, first.size, first.root):
            raise ValueError("the bundles are not proven at one checkpoint")
        if bundle.origin != first.origin:
            raise ValueError("a bundle of another ledger")
    ids = [r.artefact_id for _, r in items]
    if len(set(ids)) != len(ids):
        raise ValueError("an artefact is given twice")
    if listing is not None:
        if sorted(listing.artefacts) != sorted(str(i) for i in ids):
            raise ValueError("the bundles are not exactly the artefacts of the case listing")
        if listing.tree_size != first.size:
            raise ValueError("the case listing is of another checkpoint than the bundles")
        if any(r.case != listing.case for _, r in items):
            raise ValueError(f"an artefact is not registered in case {listing.case}")
    g = _Graph(first.origin)
    annotations: list[str] = []
    written: dict[str, list[str]] = {}  # case -> the nodes of its artefacts
    authorizations: dict[str, list[str]] = {}
    for bundle, result in items:
        art = _Artefact(g, bundle, result)
        written.setdefault(str(result.case), []).extend(art.write())
        annotations.append(art.annotation(listing))
        auths = authorizations.setdefault(str(result.case), [])
        auths.extend(a for a in art.authorizations if a not in auths)
    tool_id = g.oid("Tool", "tool", tool, tool_version)
    g.put({"@id": tool_id, "@type": "uco-tool:Tool", "uco-core:name": tool,
           **({"uco-tool:version": tool_version} if tool_version else {}),
           "uco-tool:toolType": "chain-of-custody ledger client (CASE/UCO export)"})
    cp_id = g.oid("ObservableObject", "checkpoint", str(first.size), first.root)
    g.put({"@id": cp_id, "@type": "uco-observable:ObservableObject",
           "uco-core:name": f"signed checkpoint of {first.origin} at tree size {first.size}",
           "uco-core:description": [
               f"RFC 6962 root {first.root}; state-map root {first.map_root}",
               "C2SP signed note, verbatim (verify it with the log's verifier key, obtained "
               "out of band; witness cosignature lines included):\n" + first.note]})
    witnesses = sorted({w for _, r in items for w in r.witnesses})
    export_id = g.oid("InvestigativeAction", "export", str(first.size), first.root,
                      *sorted(str(i) for i in ids))
    g.put({"@id": export_id, "@type": "case-investigation:InvestigativeAction",
           "uco-core:name": "CASE/UCO export of verified custody bundles",
           "uco-core:description": [
               f"Every statement of this graph comes from signed log entries and state-map "
               f"proofs verified against the checkpoint of {first.origin} at tree size "
               f"{first.size} (root {first.root}); none from the operator's tables.",
               *([f"The checkpoint is cosigned by the witnesses {', '.join(witnesses)}."]
                 if witnesses else [])],
           "uco-action:instrument": [_ref(tool_id)],
           "uco-action:object": [_ref(cp_id)],
           "uco-action:result": [_ref(a) for a in annotations],
           "uco-action:endTime": _time(generated_at_ms),
           "uco-action:actionStatus": "Success"})
    for case in sorted(written):
        _investigation(g, case, listing if listing and listing.case == case else None,
                       [*written[case], export_id], authorizations[case])
    g.stubs()
    return {"@context": dict(CONTEXT), "@graph": g.nodes()}


def _investigation(g: _Graph, case: str, listing: CaseListing | None, objects: list[str],
                   authorizations: list[str]) -> None:
    inv = g.oid("Investigation", "case", case)
    notes: list[str] = [f"case {case} of ledger {g.origin}"]
    if listing is not None and listing.proven:
        if listing.title:
            notes.append(f"title: {listing.title}")
        if listing.lead_org:
            notes.append(f"lead organisation: {listing.lead_org}")
        if listing.members:
            notes.append("member organisations: " + ", ".join(listing.members))
        notes.append(f"The list of the case's artefacts is proven complete: every entry of the "
                     f"log up to tree size {listing.tree_size} was read and hashed to the "
                     "checkpoint's root, and these are all its registrations in the case.")
    elif listing is not None:
        notes.append("The list of the case's artefacts comes from the operator's state, NOT "
                     "from a proof: every artefact listed is proven by its own bundle, but "
                     "that no artefact of the case is missing is not proven.")
    else:
        notes.append("This export covers only the artefact(s) named; other artefacts of the "
                     "case are not part of it.")
    g.put({"@id": inv, "@type": "case-investigation:Investigation", "uco-core:name": case,
           "case-investigation:investigationForm": "case",
           "uco-core:description": notes,
           "case-investigation:relevantAuthorization": [_ref(a) for a in authorizations],
           "uco-core:object": [_ref(o) for o in objects]})


class _Graph:
    """Nodes by ``@id`` in creation order, and the ids referenced but not yet described."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.ns = uuid.uuid5(uuid.NAMESPACE_URL, "urn:custody-ledger:" + origin)
        self.order: list[str] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.wanted: dict[str, tuple[str, str]] = {}  # id -> (kind, ledger id) for stubs

    def oid(self, cls: str, *parts: str) -> str:
        return f"kb:{cls}-{uuid.uuid5(self.ns, '/'.join((cls, *parts)))}"

    def put(self, node: dict[str, Any]) -> str:
        """Add a node (the first description of an id stands); empty values are left out."""
        nid = str(node["@id"])
        if nid not in self.by_id:
            self.order.append(nid)
            self.by_id[nid] = {k: v for k, v in node.items() if v not in (None, "", [])}
        return nid

    def facet(self, owner: str, prefix: str, local: str, **props: Any) -> str:
        """A facet of ``owner`` with the id ``case_utils.inherent_uuid`` gives it."""
        owner_uuid = uuid.UUID(owner[-36:])
        fid = f"kb:{local}-{uuid.uuid5(owner_uuid, _PREFIXES[prefix] + local)}"
        return self.put({"@id": fid, "@type": f"{prefix}:{local}", **props})

    def hashes(self, digests: Mapping[str, str]) -> list[dict[str, str]]:
        out = []
        for alg in sorted(a for a in digests if a in HASH_METHODS):
            value = str(digests[alg]).lower()
            hid = "kb:Hash-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:hash::{alg}:{value}"))
            self.put({"@id": hid, "@type": "uco-types:Hash",
                      "uco-types:hashMethod": HASH_METHODS[alg],
                      "uco-types:hashValue": {"@type": "xsd:hexBinary", "@value": value}})
            out.append(_ref(hid))
        return out

    def org(self, org_id: str) -> str:
        oid = self.oid("Organization", "org", org_id)
        self.wanted.setdefault(oid, ("org", org_id))
        return oid

    def person(self, actor_id: str) -> str:
        pid = self.oid("Person", "actor", actor_id)
        self.wanted.setdefault(pid, ("actor", actor_id))
        return pid

    def file(self, artefact_id: str) -> str:
        fid = self.oid("File", "artefact", artefact_id)
        self.wanted.setdefault(fid, ("artefact", artefact_id))
        return fid

    def reference(self, owner: str, context: str, identifier: str) -> dict[str, str]:
        """An ``ExternalReference`` node (an id in another system), as a reference."""
        rid = self.oid("ExternalReference", owner, context, identifier)
        return _ref(self.put({"@id": rid, "@type": "uco-core:ExternalReference",
                              "uco-core:definingContext": context,
                              "uco-core:externalIdentifier": identifier}))

    def stubs(self) -> None:
        """Describe every referenced identity or artefact that no bundle proved a record of
        (its id is signed in an event; nothing else about it is in the export)."""
        classes = {"org": "uco-identity:Organization", "actor": "uco-identity:Person",
                   "artefact": "uco-observable:File"}
        what = {"org": "organisation", "actor": "actor", "artefact": "artefact"}
        for nid, (kind, ledger_id) in list(self.wanted.items()):
            if nid in self.by_id:
                continue
            self.put({"@id": nid, "@type": classes[kind], "uco-core:name": ledger_id,
                      "uco-core:description": f"{what[kind]} {ledger_id} of ledger "
                      f"{self.origin}, named in a signed event; its record is not part of "
                      "the exported bundles",
                      "uco-core:externalReference": [self.reference(
                          nid, f"custody-ledger {what[kind]} id ({self.origin})", ledger_id)]})

    def nodes(self) -> list[dict[str, Any]]:
        return [self.by_id[n] for n in self.order]


def _unlisted(digests: Mapping[str, str]) -> list[str]:
    """Digests whose algorithm UCO's hash vocabulary lacks, as description lines."""
    return [f"{alg} {digests[alg]} (not in UCO's HashNameVocab, so not a uco-types:Hash)"
            for alg in sorted(digests) if alg not in HASH_METHODS]


def _ref(node_id: str) -> dict[str, str]:
    return {"@id": node_id}


def _time(ms: int) -> dict[str, str]:
    return {"@type": "xsd:dateTime", "@value": iso(ms)}


def _date_time(day: str, end: bool) -> dict[str, str] | None:
    try:
        dt.date.fromisoformat(day)
    except (TypeError, ValueError):
        return None
    return {"@type": "xsd:dateTime",
            "@value": f"{day}T23:59:59.999Z" if end else f"{day}T00:00:00Z"}


class _Artefact:
    """One artefact's nodes, from its bundle and its verification."""

    def __init__(self, g: _Graph, bundle: Bundle, result: VerifyResult) -> None:
        self.g, self.bundle, self.result = g, bundle, result
        self.id = str(result.artefact_id)
        self.maps = {m.key: m.value for m in bundle.maps if m.value is not None}
        by_index = {t.index: t for t in result.timeline}
        self.leaves: dict[int, ev.Entry] = {}
        for e in bundle.entries:  # only the leaves the verified timeline names, by hash
            item = by_index.get(e.index)
            if item is not None and merkle.leaf_hash(e.leaf).hex() == item.leaf_hash:
                self.leaves[e.index] = ev.Entry.from_leaf(e.leaf)
        if set(self.leaves) != set(by_index):
            raise ValueError(f"the bundle of {self.id} lacks a leaf of its verified timeline")
        self.file = g.file(self.id)
        self.authorizations: list[str] = []

    def payload(self, item: TimelineItem) -> dict[str, Any]:
        return dict(self.leaves[item.index].signed.event.payload)

    def write(self) -> list[str]:
        g, r = self.g, self.result
        reg = self.payload(r.timeline[0])
        self._file(reg)
        prev_action: str | None = None
        prev_record: str | None = None
        custodian, open_to, open_tr, incidents = "", "", "", 0
        written: list[str] = [self.file]
        for item in r.timeline:
            p = self.payload(item)
            action = g.oid("InvestigativeAction", "event", item.event_id)
            record = g.oid("ProvenanceRecord", "event", item.event_id)
            node: dict[str, Any] = {
                "@id": action, "@type": "case-investigation:InvestigativeAction",
                "uco-action:startTime": _time(item.ledger_time),
                "uco-action:performer": _ref(self._person(item.signer)),
                "uco-action:object": [_ref(self.file)] + ([_ref(prev_record)]
                                                          if prev_record else []),
                "uco-action:result": [_ref(record)],
                "case-investigation:wasInformedBy": _ref(prev_action) if prev_action else None,
                "uco-core:externalReference": [
                    g.reference(action, f"custody-ledger event id ({g.origin})",
                                item.event_id)]}
            lines = [f"{item.summary} (log entry {item.index}, leaf hash {item.leaf_hash}, "
                     f"signed by {item.signer} of {item.org} with key {item.key_id}; ledger "
                     f"time {iso(item.ledger_time)} assigned by the log, claimed time "
                     f"{iso(self.leaves[item.index].signed.event.claimed_time)} signed by "
                     "the actor)"]
            if item.kind == ev.ARTEFACT_REGISTER:
                custodian = item.org
                node["uco-core:name"] = f"registration of {self.id}"
                node["uco-action:result"] = [_ref(self.file), _ref(record)]
                node["uco-action:object"] = []
                lines += self._registration(p, node)
            elif item.kind == ev.DISPATCH:
                open_to, open_tr = str(p["to_org"]), str(p["transfer"])
                node["uco-core:name"] = (f"dispatch of {self.id} from {item.org} to {open_to} "
                                         f"(transfer {p['transfer']})")
                lines += self._dispatch(item, p, node, action)
            elif item.kind == ev.RECEIPT:
                accepted = p["outcome"] == "accepted"
                node["uco-core:name"] = (f"receipt of {self.id} by {item.org}: {p['outcome']} "
                                         f"(transfer {p['transfer']})")
                lines += self._receipt(item, p, node, custodian)
                if accepted:
                    custodian = open_to or item.org
                    incidents += 1 if p.get("seal_discrepancy") else 0
                else:
                    incidents += 1
                open_to = open_tr = ""
            elif item.kind == ev.ACCESS:
                node["uco-core:name"] = (f"access {p['action']} of {self.id} by {item.signer}: "
                                         f"{p['outcome']}")
                node["uco-action:objective"] = p["purpose"]
                node["uco-action:actionStatus"] = _OUTCOME_STATUS[p["outcome"]]
                lines.append(f"access {p['action']}, outcome {p['outcome']}, purpose "
                             f"{p['purpose']!r}, source {p.get('source', 'cli')}")
                if p.get("authorisation"):
                    lines.append(f"authorisation stated: {p['authorisation']}")
            elif item.kind == ev.VERIFICATION:
                node["uco-core:name"] = f"verification of {self.id}: {p['verdict']}"
                node["uco-action:actionStatus"] = _OUTCOME_STATUS[p["verdict"]]
                copy = g.oid("ObservableObject", "event", item.event_id, "verified")
                g.put({"@id": copy, "@type": "uco-observable:ObservableObject",
                       "uco-core:name": f"the bytes verified against {self.id}",
                       "uco-core:hasFacet": [_ref(g.facet(
                           copy, "uco-observable", "ContentDataFacet",
                           **{"uco-observable:hash": g.hashes({"sha256": p["sha256"]})}))]})
                node["uco-action:object"].append(_ref(copy))
                lines.append(f"verdict {p['verdict']}: sha256 {p['sha256']} "
                             f"{'equals' if p['verdict'] == 'authentic' else 'differs from'} "
                             f"the registered sha256 (at tree size {p['tree_size']})")
            node["uco-core:description"] = lines
            g.put(node)
            state = [f"custodian after this event: {custodian}"]
            if open_to:
                state.append(f"in transit to {open_to} (transfer {open_tr})")
            state.append(f"integrity incidents so far: {incidents}")
            g.put({"@id": record, "@type": "case-investigation:ProvenanceRecord",
                   "uco-core:name": f"{self.id} after log entry {item.index} ({item.summary})",
                   "case-investigation:exhibitNumber": r.exhibit or None,
                   "uco-core:object": [_ref(self.file)],
                   "uco-core:description": state})
            written += [action, record]
            prev_action, prev_record = action, record
        if custodian != r.custodian or incidents != r.incidents:  # pragma: no cover
            raise ValueError(f"the timeline of {self.id} does not replay to its verified state")
        return written

    # -- the artefact itself ---------------------------------------------------------------

    def _file(self, reg: Mapping[str, Any]) -> None:
        g, r = self.g, self.result
        size = r.size if r.size is not None else reg["size"]
        facets = [
            _ref(g.facet(self.file, "uco-observable", "FileFacet",
                         **{"uco-observable:sizeInBytes": size})),
            _ref(g.facet(self.file, "uco-observable", "ContentDataFacet",
                         **{"uco-observable:sizeInBytes": size,
                            "uco-observable:hash": g.hashes(r.registered)}))]
        lines = [f"artefact {self.id} of case {r.case}"
                 + (f", exhibit {r.exhibit}" if r.exhibit else "")
                 + f", type {reg.get('type', 'file')}, {size} bytes"]
        if reg.get("description"):
            lines.append(str(reg["description"]))
        lines += _unlisted(r.registered)
        lines.append(f"custodian at tree size {r.checkpoint.size if r.checkpoint else '?'}: "
                     f"{r.custodian}; integrity incidents: {r.incidents}"
                     + (f"; open transfer {r.open_transfer}" if r.open_transfer else ""))
        parents = [g.file(str(x)) for x in reg.get("parents") or []]
        if reg.get("duplicate_of"):
            lines.append(f"registered as a second exhibit of the same bytes as "
                         f"{reg['duplicate_of']}")
            g.file(str(reg["duplicate_of"]))
        g.put({"@id": self.file, "@type": "uco-observable:File", "uco-core:name": self.id,
               "uco-core:tag": [str(reg.get("type", "file"))],
               "uco-core:description": lines, "uco-core:hasFacet": facets,
               "case-investigation:wasDerivedFrom": [_ref(x) for x in parents],
               "uco-core:externalReference": [g.reference(
                   self.file, f"custody-ledger artefact id ({g.origin})", self.id)]})

    def _unwritten(self, node: str, key: str) -> tuple[str, Mapping[str, Any] | None]:
        """``node``, and the verified state record ``key`` behind it when there is one and
        the graph does not hold ``node`` yet (None otherwise: each node is written once)."""
        rec = self.maps.get(key)
        return node, (None if rec is None or node in self.g.by_id else rec)

    def _person(self, actor_id: str) -> str:
        g = self.g
        pid, rec = self._unwritten(g.person(actor_id), actor_key(actor_id))
        if rec is None:
            return pid
        org_id = str(rec.get("org", ""))
        org = self._org(org_id)
        refs = [g.reference(pid, f"custody-ledger actor id ({g.origin})", actor_id)]
        if rec.get("key_id"):
            refs.append(g.reference(pid, "custody-ledger event-signing key id (C2SP "
                                    "signed-note key hash of the actor's Ed25519 key)",
                                    str(rec["key_id"])))
        if rec.get("public_key"):
            refs.append(g.reference(pid, "Ed25519 public key (base64) of the actor",
                                    str(rec["public_key"])))
        valid = f"key valid from log entry {rec.get('enrolled_at')}"
        if rec.get("revoked_at") is not None:
            valid += f", revoked at log entry {rec['revoked_at']}"
        g.put({"@id": pid, "@type": "uco-identity:Person",
               "uco-core:name": str(rec.get("name") or actor_id),
               "uco-core:description": [
                   f"actor {actor_id} of organisation {org_id}; roles: "
                   + ", ".join(str(x) for x in rec.get("roles") or []), valid],
               "uco-core:externalReference": refs})
        rel = g.oid("Relationship", "actor", actor_id, "member-of", org_id)
        g.put({"@id": rel, "@type": "uco-core:Relationship", "uco-core:source": [_ref(pid)],
               "uco-core:target": _ref(org), "uco-core:kindOfRelationship": "Member_Of",
               "uco-core:isDirectional": True})
        return pid

    def _org(self, org_id: str) -> str:
        g = self.g
        oid, rec = self._unwritten(g.org(org_id), org_key(org_id))
        if rec is None:
            return oid
        facets = []
        country = str(rec.get("jurisdiction") or "")
        if country:
            loc = g.oid("Location", "country", country)
            g.put({"@id": loc, "@type": "uco-location:Location", "uco-core:name": country,
                   "uco-core:hasFacet": [_ref(g.facet(
                       loc, "uco-location", "SimpleAddressFacet",
                       **{"uco-location:country": country}))]})
            facets.append(_ref(g.facet(oid, "uco-identity", "AddressFacet",
                                       **{"uco-identity:address": _ref(loc)})))
        g.put({"@id": oid, "@type": "uco-identity:Organization",
               "uco-core:name": str(rec.get("name") or org_id),
               "uco-core:description": f"organisation {org_id}, jurisdiction {country} "
               "(ISO 3166-1 alpha-2)",
               "uco-core:hasFacet": facets,
               "uco-core:externalReference": [g.reference(
                   oid, f"custody-ledger organisation id ({g.origin})", org_id)]})
        return oid

    # -- one kind of event each ------------------------------------------------------------

    def _registration(self, p: Mapping[str, Any], node: dict[str, Any]) -> list[str]:
        g = self.g
        lines = [f"registered {self.id} in case {p['case']}"
                 + (f" as exhibit {p['exhibit']}" if p.get("exhibit") else "")
                 + ": digests " + ", ".join(f"{a} {v}" for a, v in sorted(p["digests"].items()))]
        if p.get("container"):
            lines.append(f"container format {p['container']}")
        if p.get("embedded_digests"):
            lines.append("digests embedded in the container (as recorded, not recomputed): "
                         + ", ".join(f"{a} {v}" for a, v in
                                     sorted(p["embedded_digests"].items())))
        acq = p.get("acquisition") or {}
        if acq:
            lines.append("acquisition: " + "; ".join(f"{k} {acq[k]}" for k in sorted(acq)
                                                      if acq[k]))
            if acq.get("tool"):
                tool = g.oid("Tool", "acquisition-tool", str(acq["tool"]),
                             str(acq.get("version", "")))
                g.put({"@id": tool, "@type": "uco-tool:Tool", "uco-core:name": acq["tool"],
                       "uco-tool:version": acq.get("version") or None,
                       "uco-tool:toolType": "acquisition"})
                node["uco-action:instrument"] = [_ref(tool)]
        if p.get("parents"):
            lines.append("derived from " + ", ".join(p["parents"]))
        return lines

    def _dispatch(self, item: TimelineItem, p: Mapping[str, Any], node: dict[str, Any],
                  action: str) -> list[str]:
        g = self.g
        node["uco-action:objective"] = p["purpose"]
        node["uco-action:participant"] = [_ref(g.org(str(p["to_org"])))] + (
            [_ref(g.person(str(p["to_actor"])))] if p.get("to_actor") else [])
        lines = [f"transfer {p['transfer']} to {p['to_org']}"
                 + (f" (recipient {p['to_actor']})" if p.get("to_actor") else "")
                 + f", purpose {p['purpose']!r}"]
        transport = p.get("transport") or {}
        if transport.get("method") or transport.get("reference"):
            lines.append(f"transport {transport.get('method', '')} "
                         f"{transport.get('reference', '')}".rstrip())
        if p.get("seals"):
            lines.append("seals " + ", ".join(p["seals"]))
        lb = p.get("legal_basis")
        if lb:
            auth = self._authorization(str(lb), item)
            rel = g.oid("Relationship", "event", item.event_id, "legal-basis")
            g.put({"@id": rel, "@type": "uco-core:Relationship", "uco-core:source": [
                _ref(action)], "uco-core:target": _ref(auth),
                "uco-core:kindOfRelationship": "Authorized_By", "uco-core:isDirectional": True,
                "uco-core:description": f"the signed dispatch cites legal basis {lb}"})
            lines.append(f"legal basis {lb}")
        else:
            lines.append("no legal basis cited (a domestic transfer)")
        pkg = p.get("package")
        if pkg:
            obj = g.oid("ObservableObject", "event", item.event_id, "package")
            g.put({"@id": obj, "@type": "uco-observable:ObservableObject",
                   "uco-core:name": f"sealed package of transfer {p['transfer']} (age v1)",
                   "uco-core:description": f"encrypted to key {pkg['recipient']} of "
                   f"{p['to_org']}" + (f", also to {', '.join(pkg['also_to'])}"
                                       if pkg.get("also_to") else ""),
                   "uco-core:hasFacet": [_ref(g.facet(
                       obj, "uco-observable", "ContentDataFacet",
                       **{"uco-observable:sizeInBytes": pkg["size"],
                          "uco-observable:isEncrypted": True,
                          "uco-observable:hash": g.hashes({"sha256": pkg["sha256"]})}))]})
            node["uco-action:result"].append(_ref(obj))
        return lines

    def _authorization(self, lb_id: str, item: TimelineItem) -> str:
        g = self.g
        aid = g.oid("Authorization", "legal-basis", lb_id)
        rec = self.maps.get(legal_basis_key(lb_id)) or dict(
            item.details.get("legal_basis_record") or {})
        if aid not in g.by_id:
            lines = [f"legal basis {lb_id}: {rec.get('instrument')} {rec.get('reference')}, "
                     f"issuing state {rec.get('issuing_state')}, executing state "
                     f"{rec.get('executing_state')}, valid {rec.get('valid_from')} to "
                     f"{rec.get('valid_until')} (UTC dates of the ledger)"]
            for key, label in (("issuing_authority", "issuing authority"),
                               ("executing_authority", "executing authority"),
                               ("case", "scope: case"),
                               ("document_sha256", "SHA-256 of the document")):
                if rec.get(key):
                    lines.append(f"{label} {rec[key]}")
            if rec.get("artefacts"):
                lines.append("scope: artefacts " + ", ".join(rec["artefacts"]))
            if rec.get("restrictions"):
                lines.append("restrictions: " + "; ".join(rec["restrictions"]))
            if rec.get("recorded_at") is not None:
                lines.append(f"recorded at log entry {rec['recorded_at']}"
                             + (f" by {rec['recorded_by']}" if rec.get("recorded_by") else ""))
            g.put({"@id": aid, "@type": "case-investigation:Authorization",
                   "uco-core:name": lb_id,
                   "case-investigation:authorizationType": str(rec.get("instrument") or ""),
                   "case-investigation:authorizationIdentifier": sorted(
                       {lb_id, str(rec.get("reference") or lb_id)}),
                   "uco-core:startTime": _date_time(str(rec.get("valid_from")), False),
                   "uco-core:endTime": _date_time(str(rec.get("valid_until")), True),
                   "uco-core:description": lines})
        if aid not in self.authorizations:
            self.authorizations.append(aid)
        return aid

    def _receipt(self, item: TimelineItem, p: Mapping[str, Any], node: dict[str, Any],
                 custodian: str) -> list[str]:
        g = self.g
        registered = self.result.registered
        accepted = p["outcome"] == "accepted"
        node["uco-action:actionStatus"] = _OUTCOME_STATUS[p["outcome"]]
        copy = g.oid("ObservableObject", "event", item.event_id, "received")
        recomputed = dict(p["recomputed"])
        same = sorted(a for a, v in recomputed.items() if registered.get(a) == v)
        differ = sorted(a for a, v in recomputed.items() if registered.get(a) != v)
        g.put({"@id": copy, "@type": "uco-observable:ObservableObject",
               "uco-core:name": f"the bytes received in transfer {p['transfer']}",
               "uco-core:description": ["digests recomputed by the receiver before "
                                        "accepting", *_unlisted(recomputed)],
               "uco-core:hasFacet": [_ref(g.facet(
                   copy, "uco-observable", "ContentDataFacet",
                   **{"uco-observable:hash": g.hashes(recomputed)}))]})
        node["uco-action:object"].append(_ref(copy))
        lines = []
        if differ:
            lines.append("recomputed " + ", ".join(differ) + " DIFFER from the registered "
                         "digests" + (f"; {', '.join(same)} equal" if same else ""))
        else:
            lines.append("recomputed " + ", ".join(same) + " equal the registered digests")
        lines.append(f"accepted: custody moves to {item.org}" if accepted else
                     f"rejected: an integrity incident; custody stays with {custodian}")
        if p.get("reason"):
            lines.append(f"reason: {p['reason']}")
        if p.get("seals"):
            lines.append("seals " + ", ".join(p["seals"]))
        if p.get("seal_discrepancy"):
            lines.append(f"seal discrepancy (an integrity incident): {p['seal_discrepancy']}")
        if p.get("package_sha256"):
            lines.append(f"package received: sha256 {p['package_sha256']}")
        return lines

    def annotation(self, listing: CaseListing | None) -> str:
        g, r = self.g, self.result
        cp = r.checkpoint
        aid = g.oid("Annotation", "verdict", self.id, str(cp.size if cp else ""),
                    cp.root if cp else "")
        statements = [
            f"verdict {r.verdict}: the {len(r.timeline)} signed events of {self.id} are "
            f"included in the log at tree size {cp.size if cp else '?'} and are its complete "
            "history by the checkpoint's signed state map; every signature verifies with a "
            "key enrolled on the log, and the events form a valid custody chain"]
        if r.witnesses:
            statements.append("checkpoint cosigned by " + ", ".join(r.witnesses))
        if r.also_registered_as:
            statements.append("the same bytes are also registered as "
                              + ", ".join(r.also_registered_as))
        if listing is not None and not listing.proven:
            statements.append(f"listed as an artefact of case {listing.case} by the "
                              "operator's state (not proven complete)")
        g.put({"@id": aid, "@type": "uco-core:Annotation", "uco-core:object": [_ref(self.file)],
               "uco-core:statement": statements})
        return aid
