"""The ONE mapping from the ledger's exception tree to exit codes.

    0 success
    1 verification failed (not authentic, mismatch, rejected receipt, audit failure)
    2 invalid input or usage
    3 refused by custody rules or permissions
    4 not found
    5 the ledger backend is busy, unreachable or failed (retry later), e.g. a full disk
      or a database server that is down or restarting
"""

from __future__ import annotations

from ledger.core import errors as e

OK, VERIFICATION_FAILED, INVALID, REFUSED, NOT_FOUND, BACKEND = 0, 1, 2, 3, 4, 5

_CODES: list[tuple[type[e.LedgerError], int]] = [
    (e.InvalidInput, INVALID),
    (e.NotFound, NOT_FOUND),
    (e.Unauthenticated, REFUSED),
    (e.Forbidden, REFUSED),
    (e.RuleViolation, REFUSED),
    (e.VerificationError, VERIFICATION_FAILED),
    (e.IntegrityFault, VERIFICATION_FAILED),
    (e.StorageFull, BACKEND),
    (e.StoreUnavailable, BACKEND),
    (e.Backpressure, BACKEND),
    (e.UpstreamError, BACKEND),
]


def exit_code(exc: e.LedgerError) -> int:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return INVALID


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 verification failed (not authentic, mismatch, rejected "
    "receipt, audit failure); 2 invalid input or usage; 3 refused by custody rules or "
    "permissions; 4 not found; 5 ledger backend busy or failed."
)
