"""Strict schemas of each event kind's payload (fields from product.md's data model).

Models validate only: the exact signed JSON dict is what is kept and hashed, so a
payload is never re-serialised from a model. Unknown fields are refused (``extra=forbid``)
and every string has a length cap (threat T8).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from ledger.core import events as ev
from ledger.core.errors import InvalidInput
from ledger.core.vocab import (
    ACCESS_ACTIONS,
    ARTEFACT_TYPES,
    COUNTRIES,
    DIGEST_HEX_LENGTH,
    INSTRUMENTS,
    LEGACY_DIGESTS,
    ROLES,
    STRONG_DIGESTS,
)


def _country(value: str) -> str:
    if value not in COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value


def _id(value: str) -> str:
    if not ev.ID_RE.match(value):
        raise ValueError("must be 1-64 characters of letters, digits, '.', '_', ':' or '-'")
    return value


Id = Annotated[str, AfterValidator(_id)]
Country = Annotated[str, AfterValidator(_country)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PublicKeyB64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
#: An age X25519 recipient: "age1" and 58 characters of the bech32 alphabet (lower case).
AGE_RECIPIENT_RE = r"^age1[02-9ac-hj-np-z]{58}$"
AgeRecipient = Annotated[str, StringConstraints(pattern=AGE_RECIPIENT_RE)]
#: An organisation's encryption key id (:func:`ledger.core.events.org_key_id`).
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Role = Literal["examiner", "custodian", "prosecutor", "court", "auditor", "admin"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]  # noqa: S101


def _no_repeats(what: str) -> AfterValidator:
    """A list validator: no item twice (``what`` names the items in the error)."""
    def check(values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError(f"{what} must not repeat")
        return values
    return AfterValidator(check)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_digests(value: dict[str, str], *, need_sha256: bool) -> dict[str, str]:
    allowed = set(STRONG_DIGESTS) | set(LEGACY_DIGESTS)
    for alg, hexval in value.items():
        if alg not in allowed:
            raise ValueError(f"unknown digest algorithm {alg!r}")
        if not re.fullmatch(rf"[0-9a-f]{{{DIGEST_HEX_LENGTH[alg]}}}", hexval):
            raise ValueError(f"{alg} digest must be {DIGEST_HEX_LENGTH[alg]} lowercase hex chars")
    if need_sha256 and "sha256" not in value:
        raise ValueError("a sha256 digest is required")
    return value


class OrgInfo(_Strict):
    id: Id
    name: Name
    jurisdiction: Country


class ActorInfo(_Strict):
    id: Id
    org: Id
    name: Name
    roles: Annotated[list[Role], Field(min_length=1, max_length=6), _no_repeats("roles")]
    public_key: PublicKeyB64


class Genesis(_Strict):
    log_key: Annotated[str, StringConstraints(max_length=400)]
    skew_ms: Annotated[int, Field(ge=1000, le=86_400_000)]
    org: OrgInfo
    actor: ActorInfo
    #: The rules version of the ledger (``ledger.core.rules.RULES``); absent in the first
    #: release's genesis events, which are version 1.
    rules: Literal[1, 2] = 1


class OrgRegister(OrgInfo):
    pass


class ActorEnrol(ActorInfo):
    pass


class ActorRevoke(_Strict):
    actor: Id
    reason: Text = ""


class OrgKey(_Strict):
    """Enrol (or rotate to) an organisation's age X25519 encryption key."""

    org: Id
    recipient: AgeRecipient


class OrgKeyRevoke(_Strict):
    org: Id
    key_id: KeyId
    reason: Text = ""


class CaseOpen(_Strict):
    id: Id
    title: Text = ""


class CaseAddMember(_Strict):
    case: Id
    org: Id


class LegalBasis(_Strict):
    id: Id
    instrument: Literal[INSTRUMENTS]  # type: ignore[valid-type]
    reference: Name
    issuing_state: Country
    issuing_authority: Text = ""
    executing_state: Country
    executing_authority: Text = ""
    valid_from: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    valid_until: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    case: Id | None = None
    artefacts: Annotated[list[Id], Field(max_length=1000)] = []
    restrictions: Annotated[list[Text], Field(max_length=50)] = []
    document_sha256: Hex64 | None = None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _date(cls, v: str) -> str:
        dt.date.fromisoformat(v)
        return v


class Acquisition(_Strict):
    tool: Text = ""
    version: Text = ""
    method: Text = ""
    performer: Text = ""
    started: Text = ""
    ended: Text = ""
    location: Text = ""


class ArtefactRegister(_Strict):
    id: Id
    case: Id
    exhibit: Annotated[str, StringConstraints(max_length=100)] = ""
    type: Literal[ARTEFACT_TYPES] = "file"  # type: ignore[valid-type]
    description: Text = ""
    size: Annotated[int, Field(ge=0, le=2**53)]
    digests: dict[str, str]
    container: Annotated[str, StringConstraints(max_length=100)] = ""
    embedded_digests: dict[str, str] = {}
    acquisition: Acquisition | None = None
    parents: Annotated[list[Id], Field(max_length=100)] = []
    #: The artefact already registered with the same bytes (sha256) that this one
    #: knowingly duplicates (a second exhibit of the same bytes).
    duplicate_of: Id | None = None

    @field_validator("digests")
    @classmethod
    def _digests(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_digests(v, need_sha256=True)

    @field_validator("embedded_digests")
    @classmethod
    def _embedded(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_digests(v, need_sha256=False)


class Transport(_Strict):
    method: Text = ""
    reference: Text = ""


class Package(_Strict):
    """The sealed package of a dispatch (age v1): what travels, and for whom."""

    #: SHA-256 of the package bytes (the age file), as sent.
    sha256: Hex64
    size: Annotated[int, Field(ge=0, le=2**53)]
    format: Literal["age-v1"]
    #: The key id of the receiving organisation's current encryption key.
    recipient: KeyId
    #: Further key ids of the SENDING organisation the package is also sealed to.
    also_to: Annotated[list[KeyId], Field(max_length=10), _no_repeats("key ids")] = []
    #: Digests of the plaintext (the evidence bytes inside the package).
    digests: dict[str, str]

    @field_validator("digests")
    @classmethod
    def _digests(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_digests(v, need_sha256=True)


class Dispatch(_Strict):
    transfer: Id
    artefact: Id
    to_org: Id
    to_actor: Id | None = None
    purpose: Name
    legal_basis: Id | None = None
    transport: Transport = Transport()
    seals: Annotated[list[Annotated[str, StringConstraints(max_length=100)]],
                     Field(max_length=100)] = []
    package: Package | None = None


class Receipt(_Strict):
    transfer: Id
    artefact: Id
    outcome: Literal["accepted", "rejected"]
    recomputed: dict[str, str]
    reason: Text = ""
    seals: Annotated[list[Annotated[str, StringConstraints(max_length=100)]],
                     Field(max_length=100)] = []
    #: SHA-256 of the package that arrived (a sealed dispatch).
    package_sha256: Hex64 | None = None
    #: Why the seals received differ from those dispatched (an integrity incident).
    seal_discrepancy: Text = ""

    @field_validator("recomputed")
    @classmethod
    def _digests(cls, v: dict[str, str]) -> dict[str, str]:
        _check_digests(v, need_sha256=True)
        if set(v) - set(STRONG_DIGESTS):
            raise ValueError("recomputed digests must be sha256, sha512 or blake3")
        return v


class Access(_Strict):
    artefact: Id
    action: Literal[ACCESS_ACTIONS]  # type: ignore[valid-type]
    purpose: Name
    authorisation: Text = ""
    outcome: Literal["success", "denied"]
    source: Literal["cli", "api", "chaincode", "other"] = "cli"


class AuthDenied(_Strict):
    """A refused login: who tried, with which client certificate, and why."""

    actor: Id
    #: The organisation named by the client certificate (its subject's O), if any.
    certificate_org: Annotated[str, StringConstraints(max_length=256)] = ""
    #: The certificate's subject (RFC 4514) and SHA-256 fingerprint, for the record.
    certificate_subject: Annotated[str, StringConstraints(max_length=512)] = ""
    certificate_sha256: Hex64 | None = None
    reason: Text
    address: Annotated[str, StringConstraints(max_length=100)] = ""


class Verification(_Strict):
    artefact: Id
    sha256: Hex64
    verdict: Literal["authentic", "mismatch"]
    tree_size: Annotated[int, Field(ge=0)]


SCHEMAS: dict[str, type[_Strict]] = {
    ev.GENESIS: Genesis, ev.ORG_REGISTER: OrgRegister, ev.ACTOR_ENROL: ActorEnrol,
    ev.ACTOR_REVOKE: ActorRevoke, ev.CASE_OPEN: CaseOpen, ev.CASE_ADD_MEMBER: CaseAddMember,
    ev.LEGAL_BASIS: LegalBasis, ev.ARTEFACT_REGISTER: ArtefactRegister, ev.DISPATCH: Dispatch,
    ev.RECEIPT: Receipt, ev.ACCESS: Access, ev.VERIFICATION: Verification,
    ev.ORG_KEY: OrgKey, ev.ORG_KEY_REVOKE: OrgKeyRevoke, ev.AUTH_DENIED: AuthDenied,
}


def validate(kind: str, payload: dict[str, Any]) -> Any:
    """Validate ``payload`` against its kind's schema; one clear :class:`InvalidInput`."""
    try:
        return SCHEMAS[kind].model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidInput(f"invalid {kind} payload: {where}: {first['msg']}") from exc
