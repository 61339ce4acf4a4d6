"""The ledger's single exception tree.

Every failure the ledger can report is one of these classes. Transports map them
exactly once: the API to RFC 9457 problem+json (``api/problems.py``), the CLI to
exit codes (``cli/errors.py``). Nothing else invents error handling.

::

    LedgerError                      base; never raised directly
    ├── InvalidInput                 malformed or out-of-range input        (CLI 2, HTTP 422)
    │   └── PayloadTooLarge          a size cap was exceeded                (CLI 2, HTTP 413)
    ├── NotFound                     unknown id / index                     (CLI 4, HTTP 404)
    ├── Unauthenticated              no or bad credentials                  (CLI 3, HTTP 401)
    ├── Forbidden                    authenticated but not allowed          (CLI 3, HTTP 403)
    ├── RuleViolation                a custody rule refused the event       (CLI 3, HTTP 409)
    │   └── Conflict                 lost a race / duplicate id / replay    (CLI 3, HTTP 409)
    ├── VerificationError            a proof, signature or digest failed    (CLI 1, HTTP 422)
    │   ├── InvalidSignature         an Ed25519 / note signature failed
    │   └── CheckpointRefused        a client refused a checkpoint (``kind``: unverified,
    │                                kept-invalid, rollback, fork; ledger/core/trust.py)
    ├── IntegrityFault               stored data is inconsistent (audit)    (CLI 1, HTTP 500)
    ├── Backpressure                 overloaded; retry later                (CLI 5, HTTP 503)
    │   ├── StorageFull              the disk holding the ledger is full    (CLI 5, HTTP 503)
    │   ├── StoreUnavailable         the database server cannot be reached  (CLI 5, HTTP 503)
    │   └── RateLimited              too many requests or failed logins     (CLI 5, HTTP 429)
    └── UpstreamError                a backend (PostgreSQL, Fabric) failed  (CLI 5, HTTP 502)

Messages are one clear sentence meant for a human; ``rule`` / ``kind`` fields are
stable machine-readable codes.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger reports."""

    code = "ledger-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(LedgerError):
    """Input that is malformed, of the wrong type or out of range (a bad digest, an
    unknown option value, a non-canonical event): nothing was read or written."""

    code = "invalid-input"


class PayloadTooLarge(InvalidInput):
    """A size cap was exceeded (request body, event, upload)."""

    code = "payload-too-large"


class NotFound(LedgerError):
    """An id, index, size or file that the ledger does not have."""

    code = "not-found"


class Unauthenticated(LedgerError):
    """No credentials, or credentials that do not prove who the caller is (an unknown
    or revoked key, an expired token, a spent login challenge)."""

    code = "unauthenticated"


class Forbidden(LedgerError):
    """The caller is known but may not do this (policy, role or organisation)."""

    code = "forbidden"


class RuleViolation(LedgerError):
    """A custody rule refused an event. ``rule`` names the rule (stable code)."""

    code = "rule-violation"

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class Conflict(RuleViolation):
    """The event lost a race (stale artefact head), reuses an id, or replays a nonce."""

    code = "conflict"


class VerificationError(LedgerError):
    """A check of evidence failed: a proof, a signature, a digest or a bundle does not
    verify. For a court this is the verdict "not authentic", not a malfunction."""

    code = "verification-failed"


class InvalidSignature(VerificationError):
    """An Ed25519 signature over an event or a note does not verify."""

    code = "invalid-signature"


class CheckpointRefused(VerificationError):
    """A client refused to trust a checkpoint (:func:`ledger.core.trust.update_trusted`).

    ``kind`` is a stable code: ``unverified`` (the new checkpoint is unsigned, foreign
    or badly signed), ``kept-invalid`` (the checkpoint the client kept no longer
    verifies: its file was edited), ``rollback`` (the new checkpoint is older than the
    kept one) or ``fork`` (same size with another root or text, or no valid consistency
    proof from the kept one: a split view).
    """

    code = "checkpoint-refused"
    KINDS = ("unverified", "kept-invalid", "rollback", "fork")

    def __init__(self, message: str, kind: str = "unverified") -> None:
        super().__init__(message)
        self.kind = kind


class IntegrityFault(LedgerError):
    """Stored data contradicts itself (found by audit or a startup check)."""

    code = "integrity-fault"

    def __init__(self, message: str, index: int | None = None, kind: str = "integrity") -> None:
        super().__init__(message)
        self.index = index
        self.kind = kind


class Backpressure(LedgerError):
    """The ledger cannot take the request now (busy, overloaded); nothing was written.
    Retry after ``retry_after`` seconds."""

    code = "backpressure"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFull(Backpressure):
    """The disk (file system) holding the ledger or the evidence is full: nothing was
    written; retry once space has been freed (CLI 5, HTTP 503 with Retry-After)."""

    code = "storage-full"


class StoreUnavailable(Backpressure):
    """The ledger's database server (PostgreSQL) cannot be reached, or the connection to
    it broke: stopped, restarting, crashed, refusing connections. Retry after
    ``retry_after`` seconds; the store reconnects by itself once the server is back
    (CLI 5, HTTP 503 with Retry-After). When the connection broke while an append was
    being committed, the append may or may not have been recorded: sending the SAME
    signed event again is safe (a logged event returns its original receipt)."""

    code = "store-unavailable"


class RateLimited(Backpressure):
    """Too many requests from one address or actor, or too many failed logins: retry
    after ``retry_after`` seconds (HTTP 429)."""

    code = "rate-limited"


class UpstreamError(LedgerError):
    """A backend the ledger depends on (PostgreSQL, a Fabric peer or orderer, a remote
    server) answered with an error that is not one of the cases above."""

    code = "upstream-error"
