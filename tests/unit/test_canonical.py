"""The canonical encoder's fast path is byte-identical to the rfc8785 package (RFC 8785)."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.canonical import canonical, parse
from ledger.core.errors import InvalidInput

json_scalars = (st.none() | st.booleans()
                | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
                | st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=8), inner,
                      max_size=5),
    max_leaves=30,
)


@settings(max_examples=600)
@given(json_values)
def test_canonical_equals_rfc8785(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [True, None, "é\u2028\x00\x1f\x7f\"\\"]},
    {"\U0001f600": 1, "\ufb33": 2},          # UTF-16 order differs from code-point order
    {"n": 2**53 - 1, "m": -(2**53) + 1},
    {"f": 1.5, "g": 1e21, "h": -0.0},       # floats take the rfc8785 path
])
def test_known_edge_cases(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [{"x": 2**53}, {"x": float("nan")}, {"x": object()}])
def test_unencodable_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        canonical(value)


def test_parse_refuses_duplicates_constants_and_depth() -> None:
    with pytest.raises(InvalidInput, match="duplicate"):
        parse(b'{"a":1,"a":2}')
    with pytest.raises(InvalidInput, match="NaN"):
        parse(b'{"a":NaN}')
    with pytest.raises(InvalidInput, match="nested"):
        parse(b"[" * 40 + b"]" * 40)
