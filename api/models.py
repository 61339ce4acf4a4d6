"""Request and response models of the API (strict: ``extra=forbid``, lengths, caps).

Signed events are validated twice on purpose: here for the OpenAPI contract and a fast
422, then by the ledger's own strict parser on the raw bytes (:mod:`ledger.core.events`),
which is the only parser whose result is ever appended.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ledger.core import events as ev

PAGE_MAX = 1000
IdStr = Annotated[str, StringConstraints(pattern=ev.ID_RE.pattern)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Index = Annotated[int, Field(ge=0, le=2**62)]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description=f"page size, at most {PAGE_MAX}")]
JsonObject = dict[str, Any]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EventBody(Strict):
    """An unsigned event (see ``ledger.core.events``); the payload schema depends on ``kind``."""

    v: Literal[1]
    kind: Literal[ev.KINDS]  # type: ignore[valid-type]
    origin: Annotated[str, StringConstraints(min_length=1, max_length=256,
                                             pattern=r"^[^\s+]+$")]
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    claimed_time: Annotated[int, Field(ge=0, le=ev.MAX_TIME_MS)]
    signer: IdStr
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}$")]
    prev: Hex64 | None
    payload: JsonObject


class SignedEventBody(Strict):
    """A signed event exactly as the CLI produces it: ``{"event", "sig"}``."""

    event: EventBody
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class AppendReceipt(BaseModel):
    """Where an event landed: index, leaf hash and the signed checkpoint covering it."""

    index: int
    leaf_hash: str
    event_id: str
    ledger_time: int
    checkpoint: str
    result: JsonObject
    duplicate: bool


class BatchOutcome(BaseModel):
    status: int
    receipt: AppendReceipt | None = None
    problem: JsonObject | None = None


class BatchBody(Strict):
    events: Annotated[list[SignedEventBody], Field(min_length=1, max_length=256)]


class BatchResult(BaseModel):
    outcomes: list[BatchOutcome]


class ChallengeRequest(Strict):
    actor: IdStr


class ChallengeResponse(BaseModel):
    challenge: str
    expires_at: int
    sign: str = Field(description="what to sign: the domain tag followed by the challenge")


class TokenRequest(Strict):
    actor: IdStr
    challenge: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    signature: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme, not a secret
    expires_at: int
    actor: str


class Health(BaseModel):
    status: Literal["ok"]
    origin: str | None
    size: int


class LogInfo(BaseModel):
    origin: str | None
    size: int
    checkpoint: str | None
    verifier_key: str | None


class VerifierKey(BaseModel):
    origin: str
    verifier_key: str


class CheckpointItem(BaseModel):
    size: int
    note: str


class CheckpointPage(BaseModel):
    items: list[CheckpointItem]
    next_after: int | None


class RootOut(BaseModel):
    size: int
    root: str


class InclusionProofOut(BaseModel):
    index: int
    size: int
    leaf_hash: str | None = None
    proof: list[str]


class ConsistencyProofOut(BaseModel):
    old: int
    new: int
    proof: list[str]


class EntryOut(BaseModel):
    index: int
    leaf: str = Field(description="the exact leaf bytes, base64")
    leaf_hash: str
    ledger_time: int


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_start: int | None


class EventLocation(BaseModel):
    event_id: str
    index: int


class StateRecord(BaseModel):
    key: str
    value: JsonObject


class StatePage(BaseModel):
    items: list[StateRecord]
    next_after: str | None


class RefPage(BaseModel):
    ref: str
    indices: list[int]
    next_after: int | None


class TimelineStep(BaseModel):
    index: int
    event_id: str
    kind: str
    ledger_time: int
    claimed_time: int
    signer: str
    org: str | None
    jurisdiction: str | None
    payload: JsonObject


class ArtefactOut(BaseModel):
    artefact: JsonObject
    access: AppendReceipt | None = None


class ArtefactList(BaseModel):
    items: list[JsonObject]
    next_after: str | None


class History(BaseModel):
    artefact: str
    steps: list[TimelineStep]
    next_after: int | None


class Digests(BaseModel):
    sha256: str
    sha512: str
    size: int


class VerifyRequest(Strict):
    sha256: Hex64
    artefact: IdStr | None = None


class VerifyOut(BaseModel):
    """``ledger.core.bundle.VerifyResult`` serialised: the verdict and what it rests on."""

    verdict: Literal["authentic", "mismatch", "not-registered", "verified", "fault"]
    artefact_id: str | None
    sha256: str | None
    registered_digests: dict[str, str]
    registered_sha256: str | None
    size: int | None
    case: str | None
    exhibit: str | None
    custodian: str | None
    open_transfer: str | None
    incidents: int
    complete: bool
    custody: list[JsonObject]
    checkpoint: JsonObject | None
    witnesses: list[str]
    faults: list[JsonObject]
    also_registered_as: list[str]


class BundleOut(BaseModel):
    """A court bundle (docs/bundle.md) and the server's own cache faults."""

    bundle: JsonObject
    cache_faults: list[JsonObject]


class ObjectOut(BaseModel):
    """A world-state record (organisation, actor, case, legal basis, transfer)."""

    id: str
    record: JsonObject


class ObjectList(BaseModel):
    items: list[JsonObject]
    next_after: str | None


class LogCheck(BaseModel):
    size: int
    checked_from: int
    checked_to: int
    checkpoint_verified: bool
    root_matches: bool
    leaf_hashes_match: bool
    problems: list[str]


# ---- witness cosignatures (C2SP tlog-cosignature; api/routes/witness.py) --------------

#: A witness verifier key ``name+keyid+base64(0x04 || Ed25519 public key)``.
WitnessKey = Annotated[str, StringConstraints(
    min_length=1, max_length=300, pattern=r"^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$")]
CosignatureLine = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class CosignatureIn(Strict):
    """A witness's cosignature over the server's checkpoint of ``size``."""

    size: Annotated[int, Field(ge=1, le=2**62)]
    witness_key: WitnessKey
    cosignature: CosignatureLine = Field(
        description="the C2SP tlog-cosignature line '— <name> base64(keyid || timestamp "
        "|| signature)'")


class CosignatureOut(BaseModel):
    size: int
    witness_key: str
    cosignature: str = Field(description="the stored line (the first one for this witness "
                             "and size)")
    duplicate: bool = Field(description="true when this witness had already cosigned this "
                            "size")


class CosignatureItem(BaseModel):
    witness_key: str
    cosignature: str


class WitnessedCheckpoint(BaseModel):
    size: int
    note: str = Field(description="the log-signed checkpoint with every stored cosignature "
                      "line appended")
    cosignatures: list[CosignatureItem]
