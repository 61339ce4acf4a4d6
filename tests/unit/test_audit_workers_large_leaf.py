"""A leaf larger than 64 KiB goes through the audit's worker processes like any other
(a legal basis may name 1,000 artefacts): the batch framing does not cap it."""

from __future__ import annotations

import base64

from ledger.core import _sodium, merkle
from ledger.core import events as ev
from ledger.core.audit import LEAF_HASH_OK, LEAF_OK, SIGNATURE_OK, check_leaves
from ledger.parallel_verify import VerifyPool


def _leaf(payload_bytes: int) -> tuple[bytes, bytes]:
    key = _sodium.Signer(b"\x07" * 32)
    event = ev.Event(kind=ev.LEGAL_BASIS, origin="test.example/big", nonce="ab" * 16,
                     claimed_time=1_790_000_000_000, signer="prosecutor",
                     key_id=ev.actor_key_id("prosecutor", key.public_key),
                     payload={"id": "LB-1", "note": "x" * payload_bytes})
    leaf = ev.Entry(3, 1_790_000_000_001, ev.sign_event(event, key)).leaf_bytes()
    return leaf, key.public_key


def test_a_leaf_over_64_kib_is_checked_and_parsed_by_the_workers() -> None:
    leaf, key = _leaf(70_000)
    assert len(leaf) > 65_535
    items = [(leaf, merkle.leaf_hash(leaf), key), (leaf[:-1], merkle.leaf_hash(leaf), b""),
             (b"x" * 70_000, merkle.leaf_hash(b"x" * 70_000), key)]
    want = [LEAF_HASH_OK | LEAF_OK | SIGNATURE_OK, 0, LEAF_HASH_OK]
    assert check_leaves(items) == want
    with VerifyPool(2, start_after=0) as pool:
        pool.start(preload=("ledger.core.audit",))
        assert pool.wait_ready()
        got = pool.check_leaves(items)()
        assert pool.started == 2
    codes = [c[0] if isinstance(c, tuple) else c for c in got]
    assert codes == want
    parsed = got[0]
    assert isinstance(parsed, tuple)
    assert parsed[1]["event"]["sig"] == base64.b64encode(
        ev.Entry.from_leaf(leaf).signed.signature).decode()
