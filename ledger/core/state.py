"""The state vocabulary: every key of the world state, and the record each key holds.

The world state (:mod:`ledger.core.rules`) is a map of JSON records by key. A key is
``ledger`` (the one ledger record) or a prefix naming the kind of record followed by an
id. The prefixes, their key builders and the records (as ``TypedDict``) live here and
nowhere else: the rules, the stores, the verifiers, the API and the CLI build and parse
keys with these names (``tests/unit/test_state_vocab.py`` fails on a literal prefix
anywhere else). Pure: no I/O, clock or randomness.

Records written by an older rules version, or before a field existed, lack the fields
marked ``NotRequired``; readers use ``.get`` with a default for those.
"""

# No ``from __future__ import annotations`` here: ``TypedDict`` tells ``NotRequired`` fields
# apart (``__optional_keys__``) only from evaluated annotations.
from typing import Any, Literal, NotRequired, TypedDict

Record = dict[str, Any]
"""A state record as the stores hand it out (untyped JSON object)."""

# ---- keys ----------------------------------------------------------------------------

#: The one ledger record (a whole key, not a prefix): origin, log key, rules version.
LEDGER = "ledger"
#: ``org/ID``: an organisation (agency).
ORG = "org/"
#: ``orgadmin/ORG``: the organisation has an admin of its own (who was enrolled first).
ORG_ADMIN = "orgadmin/"
#: ``orgkey/ORG``: an organisation's encryption keys (sealed packages are sent to them).
ORG_KEYS = "orgkey/"
#: ``actor/ID``: a person or service that signs events, with its public key and status.
ACTOR = "actor/"
#: ``case/ID``: a case, its lead organisation and its member organisations.
CASE = "case/"
#: ``lb/ID``: a legal basis (MLAT request, EIO...) that a cross-border dispatch cites.
LEGAL_BASIS = "lb/"
#: ``art/ID``: an artefact (a registered item of evidence) and its custody head.
ARTEFACT = "art/"
#: ``tr/ID``: a transfer: a dispatch and, once received, its receipt.
TRANSFER = "tr/"
#: ``sha/SHA256HEX``: every registration of the same bytes (rules version 2).
DIGEST = "sha/"
#: ``hist/SUBJECT``: the history accumulator of a subject (see :func:`history_key`).
HISTORY = "hist/"
#: ``nonce/HEX``: a used event nonce and the result kept for an idempotent retry.
NONCE = "nonce/"

#: Every record prefix, in the order a listing shows them.
PREFIXES = (ORG, ORG_ADMIN, ORG_KEYS, ACTOR, CASE, LEGAL_BASIS, ARTEFACT, TRANSFER, DIGEST,
            HISTORY, NONCE)
#: Keys outside the state map (replay bookkeeping: a replayed event has the same event
#: id, which the log refuses on its own).
UNMAPPED = (NONCE,)
#: The namespaces the state map covers: the ledger record and every mapped prefix.
MAPPED = (LEDGER, *(p for p in PREFIXES if p not in UNMAPPED))
#: Directory records: every authenticated actor of the consortium may read them
#: (:mod:`ledger.core.policy`). Organisations' encryption keys are directory records too:
#: a sender seals a package to the receiving organisation's current (public) key.
DIRECTORY = (ORG, ACTOR, ORG_ADMIN, ORG_KEYS)

#: History subjects (the part of a ``hist/`` key after the prefix): an artefact's subject
#: is its state key (``art/ID``); the registrations of some bytes are ``sha256/HEX``.
DIGEST_SUBJECT = "sha256/"
#: The refs-index name of a SHA-256 (``sha256:HEX``); an artefact's is its bare id.
DIGEST_REF = "sha256:"


def org_key(org_id: str) -> str:
    return ORG + org_id


def org_admin_key(org_id: str) -> str:
    return ORG_ADMIN + org_id


def org_keys_key(org_id: str) -> str:
    """The key of ``org_id``'s encryption keys record (``orgkey/ORG``)."""
    return ORG_KEYS + org_id


def actor_key(actor_id: str) -> str:
    return ACTOR + actor_id


def case_key(case_id: str) -> str:
    return CASE + case_id


def legal_basis_key(legal_basis_id: str) -> str:
    return LEGAL_BASIS + legal_basis_id


def artefact_key(artefact_id: str) -> str:
    return ARTEFACT + artefact_id


def transfer_key(transfer_id: str) -> str:
    return TRANSFER + transfer_id


def digest_key(sha256: str) -> str:
    """The key of the registrations of the bytes with this SHA-256 (``sha/HEX``)."""
    return DIGEST + sha256


def nonce_key(nonce: str) -> str:
    return NONCE + nonce


def artefact_subject(artefact_id: str) -> str:
    """The history subject of an artefact's events (its state key)."""
    return artefact_key(artefact_id)


def digest_subject(sha256: str) -> str:
    """The history subject of the registrations of some bytes."""
    return DIGEST_SUBJECT + sha256


def history_key(subject: str) -> str:
    """The key of a subject's history accumulator (``hist/art/ID``, ``hist/sha256/HEX``)."""
    return HISTORY + subject


def digest_ref(sha256: str) -> str:
    return DIGEST_REF + sha256


def subject_ref(subject: str) -> str:
    """The refs-index name under which a history subject's entries are listed."""
    if subject.startswith(DIGEST_SUBJECT):
        return digest_ref(subject[len(DIGEST_SUBJECT):])
    return subject.removeprefix(ARTEFACT)


def parse_key(key: str) -> tuple[str, str] | None:
    """``(prefix, id)`` of a state key (``(LEDGER, "")`` for the ledger record), or
    ``None`` for a key outside the vocabulary."""
    if key == LEDGER:
        return LEDGER, ""
    head, sep, ident = key.partition("/")
    prefix = head + sep
    return (prefix, ident) if sep and prefix in PREFIXES else None


def kind_of(key: str) -> str:
    """The prefix of a state key (``LEDGER`` for the ledger record), ``""`` if unknown."""
    parsed = parse_key(key)
    return "" if parsed is None else parsed[0]


# ---- records -------------------------------------------------------------------------


class LedgerRecord(TypedDict):
    """``ledger``: written once, by the genesis event."""

    origin: str
    log_key: str
    skew_ms: int
    genesis: str
    #: The rules version; absent on a first-release (version 1) ledger.
    rules: NotRequired[int]


class OrgRecord(TypedDict):
    """``org/ID``: the ``org.register`` payload (or the genesis's ``org``)."""

    id: str
    name: str
    jurisdiction: str
    registered_at: int


class OrgAdminRecord(TypedDict):
    """``orgadmin/ORG``: the organisation's latest enrolled admin."""

    actor: str


class OrgKeyEntry(TypedDict):
    recipient: str
    status: Literal["current", "retired", "revoked"]
    enrolled_at: int
    revoked_at: int | None
    reason: str


class OrgKeysRecord(TypedDict):
    """``orgkey/ORG``: written by ``org.key`` and ``org.key.revoke``."""

    org: str
    #: The key id packages are sealed to, or None.
    current: str | None
    keys: dict[str, OrgKeyEntry]


class ActorRecord(TypedDict):
    """``actor/ID``: the ``actor.enrol`` payload (or the genesis's ``actor``) and its status."""

    id: str
    org: str
    name: str
    roles: list[str]
    public_key: str
    key_id: str
    status: Literal["active", "revoked"]
    enrolled_at: int
    revoked_at: int | None
    #: Written by ``actor.revoke``.
    revoke_reason: NotRequired[str]


class CaseRecord(TypedDict):
    """``case/ID``."""

    id: str
    title: str
    lead_org: str
    members: list[str]
    opened_at: int


class LegalBasisRecord(TypedDict):
    """``lb/ID``: the ``legal_basis`` payload, with who recorded it and when."""

    id: str
    reference: str
    instrument: str
    #: The two states of the instrument, and their authorities.
    issuing_state: str
    executing_state: str
    issuing_authority: str
    executing_authority: str
    #: What it covers (a case, or artefacts), when, and under which restrictions.
    case: str | None
    artefacts: list[str]
    valid_from: str
    valid_until: str
    restrictions: list[str]
    document_sha256: str | None
    recorded_by: str
    recorded_at: int


class ArtefactRecord(TypedDict):
    """``art/ID``: written at registration and by every dispatch and receipt."""

    id: str
    case: str
    exhibit: str
    type: str
    digests: dict[str, str]
    size: int
    parents: list[str]
    custodian: str
    #: The event id of the latest custody event (registration, dispatch, receipt).
    head: str
    open_transfer: str | None
    registered_at: int
    registered_by: str
    incidents: int
    duplicate_of: NotRequired[str]


class PackageRecord(TypedDict):
    """A dispatch's sealed package (the ``package`` payload)."""

    sha256: str
    size: int
    format: str
    recipient: str
    also_to: list[str]
    digests: dict[str, str]


class TransferRecord(TypedDict):
    """``tr/ID``: written by the dispatch, completed by the receipt."""

    id: str
    artefact: str
    from_org: str
    to_org: str
    to_actor: str | None
    legal_basis: str | None
    status: Literal["open", "accepted", "rejected"]
    dispatched_at: int
    closed_at: int | None
    #: Rules version 2: the seals and sealed package dispatched.
    seals: NotRequired[list[str]]
    package: NotRequired[PackageRecord | None]
    #: Once received: the strong digests that differed.
    mismatched: NotRequired[list[str]]
    #: Once received on a version-2 ledger.
    package_received: NotRequired[str | None]
    seal_discrepancy: NotRequired[str]


class DigestRegistration(TypedDict):
    id: str
    case: str


class DigestRecord(TypedDict):
    """``sha/SHA256HEX``: every registration of those bytes, in log order."""

    artefacts: list[DigestRegistration]


class HistoryRecord(TypedDict):
    """``hist/SUBJECT``: ``acc = SHA-256(acc_before || leaf_hash)`` over the subject's
    entries, from 32 zero bytes (:func:`ledger.core.rules.advance_history`)."""

    n: int
    first: int
    last: int
    acc: str


class NonceRecord(TypedDict):
    """``nonce/HEX``: the event that used the nonce, and its result."""

    event_id: str
    index: int
    result: dict[str, Any]


#: The record type of every key kind.
RECORDS: dict[str, type[Any]] = {
    LEDGER: LedgerRecord, ORG: OrgRecord, ORG_ADMIN: OrgAdminRecord, ORG_KEYS: OrgKeysRecord,
    ACTOR: ActorRecord, CASE: CaseRecord, LEGAL_BASIS: LegalBasisRecord,
    ARTEFACT: ArtefactRecord, TRANSFER: TransferRecord, DIGEST: DigestRecord,
    HISTORY: HistoryRecord, NONCE: NonceRecord,
}
