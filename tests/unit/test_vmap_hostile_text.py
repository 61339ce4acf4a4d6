"""Two hostile inputs a browser verifier found: text where the map root or a map key
should be must be a ``map`` fault (VerificationError), never an uncaught exception."""

from __future__ import annotations

import pytest

from ledger.core import vmap
from ledger.core.errors import VerificationError


@pytest.mark.parametrize("line", ["custody-map/v1 é" + "A" * 43, "custody-map/v1 ÿÿÿÿ"])
def test_non_ascii_map_root_line_is_malformed(line: str) -> None:
    with pytest.raises(VerificationError, match="malformed state-map root"):
        vmap.root_of([line])


def test_map_key_with_an_unpaired_surrogate_does_not_hold() -> None:
    proof = vmap.MapProof("art/\ud800", None, (), tuple(bytes(32) for _ in range(16)))
    with pytest.raises(VerificationError, match="not valid UTF-8"):
        vmap.verify_map_proof(bytes(32), proof)
