"""RFC 8785 (JCS) canonical JSON: the only byte encoding that is ever signed or hashed."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from ledger.core.errors import InvalidInput

#: Refuse documents nested deeper than this (defence against deep-JSON attacks, T8).
MAX_DEPTH = 32


#: RFC 8785 requires integers to be exactly representable as IEEE 754 doubles.
_MAX_SAFE_INT = 2**53 - 1
_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                          allow_nan=False).encode


def canonical(value: Any) -> bytes:
    r"""Return the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value.

    Fast path: for values whose object keys are all ASCII and that hold no floats and only
    integers within ±(2**53 - 1), the stdlib encoder with sorted keys, no whitespace and
    no ASCII escaping produces exactly the RFC 8785 bytes: key order by UTF-16 code units
    equals code-point order for ASCII, ES6 number serialisation of such integers is their
    decimal form, and string escaping is the same (short escapes for \b \t \n \f \r,
    lowercase \u00xx for other controls). ``tests/unit/test_canonical.py`` checks this
    equivalence against the ``rfc8785`` package on generated values. Everything else goes
    through ``rfc8785``.
    """
    try:
        if _fast_path_ok(value):
            return _dumps(value).encode("utf-8")
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonically encoded: {exc}") from exc


def _fast_path_ok(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        else:
            return False
    return True


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
    _check_depth(value, 1)
    return value


def _check_text(text: str) -> None:
    """I-JSON (RFC 7493), which RFC 8785 requires: strings are Unicode text, so a lone
    surrogate (an escape such as \\ud800, or its raw bytes) is refused."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("JSON text holds a lone surrogate (U+D800-U+DFFF), which is "
                               "not Unicode text") from None


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_depth(v, depth + 1)
