"""RFC 8785 (JCS) canonical JSON: the only byte encoding that is ever signed or hashed."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from ledger.errors import InvalidInput

#: Refuse documents nested deeper than this (defence against deep-JSON attacks, T8).
MAX_DEPTH = 32


def canonical(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonically encoded: {exc}") from exc


def parse(data: bytes | str) -> Any:
    """Parse JSON strictly: no NaN/Infinity, no duplicate keys, bounded depth."""

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise InvalidInput(f"duplicate JSON key {k!r}")
            out[k] = v
        return out

    def bad_constant(name: str) -> Any:
        raise InvalidInput(f"JSON constant {name} is not allowed")

    try:
        value = json.loads(data, object_pairs_hook=no_dupes, parse_constant=bad_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"malformed JSON: {exc}") from exc
    _check_depth(value, 0)
    return value


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for v in value.values():
            _check_depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_depth(v, depth + 1)
