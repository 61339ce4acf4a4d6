"""The store's leaf encoder equals ``Entry.leaf_bytes()`` byte for byte (RFC 8785).

``ledger.store.sql.leaf_bytes`` builds the leaf around the signed event's own canonical
bytes instead of re-encoding the whole entry; any difference would change every leaf
hash, so it is checked here on generated events (unicode text, nested payloads, index
and time at the edges of the safe-integer range, and beyond it, where the encoder falls
back to ``Entry.leaf_bytes``)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import events as ev
from ledger.store.sql import leaf_bytes
from tests.conftest import LOG_NAME, T0, actor_key

_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)
_SAFE = 2**53 - 1
_INDEX = st.integers(min_value=0, max_value=_SAFE) | st.sampled_from([0, 1, _SAFE])
_ADMIN = actor_key("admin")


def _signed(payload: dict[str, object], nonce: int, claimed: int) -> ev.SignedEvent:
    body = ev.Event(kind=ev.ACCESS, origin=LOG_NAME, nonce=f"{nonce:032x}",
                    claimed_time=claimed, signer="admin", key_id=_ADMIN.key_id,
                    payload=payload, prev=None)
    return ev.sign_event(body, _ADMIN.signer)


@settings(max_examples=300, deadline=None)
@given(payload=st.dictionaries(_TEXT, _VALUES, max_size=6), nonce=st.integers(0, 2**128 - 1),
       index=_INDEX, ledger_time=_INDEX)
def test_leaf_bytes_equal_the_entry_encoding(payload: dict[str, object], nonce: int,
                                             index: int, ledger_time: int) -> None:
    signed = _signed(payload, nonce, T0)
    assert leaf_bytes(index, ledger_time, signed) == \
        ev.Entry(index, ledger_time, signed).leaf_bytes()


def _outcome(fn: Callable[..., bytes], *args: object) -> bytes | type[BaseException]:
    try:
        return fn(*args)
    except Exception as exc:
        return type(exc)


def test_leaf_bytes_outside_the_safe_range_behave_like_the_reference() -> None:
    """Beyond 2**53 - 1 the fast path is not taken: same bytes or same refusal."""
    signed = _signed({"artefact": "a", "n": 1}, 7, T0)
    for index, ledger_time in ((_SAFE + 1, T0), (3, _SAFE + 1), (2**64, 2**64)):
        assert _outcome(leaf_bytes, index, ledger_time, signed) == \
            _outcome(ev.Entry(index, ledger_time, signed).leaf_bytes)
