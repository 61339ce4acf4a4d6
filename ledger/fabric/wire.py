"""What the chaincode and the Fabric client agree on: names and the error encoding.

A refusal by the custody rules inside the chaincode travels back to the client as the
peer's proposal-response message; :func:`encode_error` / :func:`decode_error` carry the
ledger exception (class, rule or kind code, sentence) across, so a refused event on
Fabric raises the same exception, with the same exit code and HTTP status, as on SQLite.
"""

from __future__ import annotations

import json

from ledger.core import errors as er

CHANNEL = "custody"
CHAINCODE = "custody"
#: Chaincode functions.
FN_SUBMIT = "submit"      # args: [signed event JSON]     -> result JSON
FN_PING = "ping"          # args: []                       -> b"pong" (no state; benchmark no-op)
FN_GET = "get"            # args: [state key]              -> record JSON or b"" (query only)
#: Name of the chaincode event set by every accepted custody event.
EVENT_NAME = "custody"
#: World-state keys that only the chaincode uses (never in the derived log's state).
GATE_PREFIX = "gate/"

_PREFIX = "custody-error "
_CLASSES: dict[str, type[er.LedgerError]] = {
    cls.__name__: cls for cls in (
        er.InvalidInput, er.PayloadTooLarge, er.NotFound, er.Unauthenticated, er.Forbidden,
        er.RuleViolation, er.Conflict, er.VerificationError, er.InvalidSignature,
        er.IntegrityFault, er.Backpressure, er.UpstreamError)}


def msp_id(jurisdiction: str) -> str:
    """The Fabric MSP id of the organisation of a jurisdiction (``DE`` -> ``DEMSP``)."""
    return f"{jurisdiction.upper()}MSP"


def encode_error(exc: er.LedgerError) -> str:
    """The chaincode's error message for a ledger exception."""
    body: dict[str, object] = {"class": type(exc).__name__, "message": exc.message}
    if isinstance(exc, er.RuleViolation):
        body["rule"] = exc.rule
    if isinstance(exc, er.IntegrityFault):
        body["kind"] = exc.kind
    return _PREFIX + json.dumps(body, sort_keys=True)


def decode_error(message: str) -> er.LedgerError | None:
    """The ledger exception inside a peer's error message, or None when the message is
    not one of ours (a Fabric failure)."""
    start = message.find(_PREFIX)
    if start < 0:
        return None
    try:
        body = json.JSONDecoder().raw_decode(message[start + len(_PREFIX):])[0]
        cls = _CLASSES[body["class"]]
        text = str(body["message"])
        if issubclass(cls, er.RuleViolation):
            return cls(str(body["rule"]), text)
        if issubclass(cls, er.IntegrityFault):
            return cls(text, kind=str(body.get("kind", "integrity")))
        return cls(text)
    except (ValueError, KeyError, TypeError):
        return None
