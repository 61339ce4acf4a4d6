"""Ed25519 checks over worker processes (ledger.parallel_verify) and the known-result
hook of ledger.core._sodium: a forged signature is reported at exactly its position whatever
the number of workers, and the answer is the same as one process's."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core import _sodium
from ledger.core.errors import InvalidSignature
from ledger.parallel_verify import Triple, VerifyPool, available_cores, verify_all

N = 3000


def _triples(n: int, seed: int = 1) -> list[Triple]:
    rng = random.Random(seed)
    keys = [_sodium.Signer(rng.randbytes(32)) for _ in range(5)]
    out = []
    for i in range(n):
        key = keys[i % len(keys)]
        msg = rng.randbytes(rng.randrange(0, 600))
        out.append((key.public_key, msg, key.sign(msg)))
    return out


VALID = _triples(N)


def _forge(triples: list[Triple], positions: set[int]) -> list[Triple]:
    out = list(triples)
    for p in positions:
        pk, msg, sig = out[p]
        out[p] = (pk, msg, sig[:10] + bytes([sig[10] ^ 1]) + sig[11:])
    return out


@pytest.fixture(scope="module")
def pools() -> Iterator[dict[int, VerifyPool]]:
    made = {w: VerifyPool(w, start_after=0) for w in (0, 1, 2, 3)}
    for pool in made.values():
        pool.start()
        assert pool.wait_ready()
    yield made
    for pool in made.values():
        pool.close()


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_a_forged_signature_among_thousands_is_reported_at_exactly_its_position(
        pools: dict[int, VerifyPool], workers: int) -> None:
    forged = _forge(VALID, {1777})
    assert pools[workers].verify(forged) == [1777]
    assert pools[workers].verify(VALID) == []


def test_workers_really_run_in_other_processes(pools: dict[int, VerifyPool]) -> None:
    pools[2].verify(VALID[:600])
    assert pools[2].started == 2
    assert pools[0].started == 0  # 0 or 1 worker: checked in the calling process


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(positions=st.sets(st.integers(0, 999), max_size=12),
       workers=st.sampled_from([0, 1, 2, 3]), batch=st.integers(1, 400))
def test_the_same_failing_positions_with_one_process_and_with_n(
        pools: dict[int, VerifyPool], positions: set[int], workers: int, batch: int) -> None:
    forged = _forge(VALID[:1000], positions)
    assert pools[workers].verify(forged, batch=batch) == sorted(positions)


def test_batches_submitted_out_of_order_answer_each_for_itself(
        pools: dict[int, VerifyPool]) -> None:
    pool = pools[2]
    chunks = [_forge(VALID[i:i + 250], {i % 7}) for i in range(0, 2000, 250)]
    results = [pool.submit(c) for c in chunks]
    for chunk_no in reversed(range(len(chunks))):  # collected newest first
        assert results[chunk_no]() == [(chunk_no * 250) % 7]
        assert results[chunk_no]() == [(chunk_no * 250) % 7]  # asking twice is fine


def test_malformed_triples_fail_without_breaking_the_pool(pools: dict[int, VerifyPool]) -> None:
    pk, msg, sig = VALID[0]
    odd = [(pk[:31], msg, sig), (pk, msg, sig[:63]), (pk, msg, sig + b"\0"), (b"", b"", b""),
           (bytes(32), msg, bytes(64)), (pk, msg, sig)]
    assert pools[2].verify(odd, batch=2) == [0, 1, 2, 3, 4] == _sodium.failing(odd)
    assert pools[2].verify(_forge(VALID, {5})[:100]) == [5]


def test_a_worker_that_dies_is_replaced_by_checks_in_the_calling_process() -> None:
    with VerifyPool(2, start_after=0) as pool:
        pool.start()
        assert pool.wait_ready()
        pending = [pool.submit(_forge(VALID[i:i + 500], {i // 500})) for i in range(0, 2000, 500)]
        for worker in pool._pool:
            worker.proc.kill()
        assert [r() for r in pending] == [[0], [1], [2], [3]]
        assert pool.verify(_forge(VALID, {2999})) == [2999]  # inline from now on


def test_until_the_workers_are_ready_batches_are_checked_here() -> None:
    with VerifyPool(2, start_after=0) as pool:
        pool.start(preload=("ledger.core.audit",))
        early = pool.submit(_forge(VALID[:300], {7}))  # most likely before they are ready
        assert early() == [7]
        assert pool.wait_ready()
        assert all(w.ready() for w in pool._pool)
        late = pool.submit(_forge(VALID[:300], {8}))
        assert pool._pool[0].waiting or pool._pool[1].waiting  # really sent to a worker
        assert late() == [8]
    with pytest.raises(ValueError, match="only ledger modules"):
        VerifyPool(2).start(preload=("os; import x",))


def test_small_jobs_stay_in_the_calling_process_and_the_pool_restarts_after_close() -> None:
    pool = VerifyPool(2, start_after=1000)
    assert pool.verify(_forge(VALID[:900], {3})) == [3]
    assert pool.started == 0
    assert pool.verify(_forge(VALID[:900], {899})) == [899]
    assert pool.started == 2
    assert pool.wait_ready()
    assert pool.verify(_forge(VALID[:900], {898})) == [898]
    pool.close()
    assert pool.started == 0
    assert pool.verify(_forge(VALID[:300], {0})) == [0]
    pool.close()


def test_verify_all_and_available_cores() -> None:
    assert available_cores() >= 1
    assert verify_all(_forge(VALID[:400], {0, 399}), workers=2) == [0, 399]
    assert verify_all([], workers=2) == []


# ---- the known-result hook of ledger.core._sodium ------------------------------------------


def test_known_results_answer_only_inside_the_block_and_only_when_they_know() -> None:
    pk, msg, sig = VALID[0]
    bad = sig[:-1] + bytes([sig[-1] ^ 1])
    asked: list[Triple] = []

    def lookup(a: bytes, b: bytes, c: bytes) -> bool | None:
        asked.append((a, b, c))
        return {sig: False, bad: True}.get(c)

    with _sodium.known_results(lookup):
        with pytest.raises(InvalidSignature, match="does not verify"):
            _sodium.verify(pk, msg, sig)  # the lookup says no: refused
        _sodium.verify(pk, msg, bad)  # the lookup says yes: accepted
        other_pk, other_msg, other_sig = VALID[1]
        _sodium.verify(other_pk, other_msg, other_sig)  # unknown: checked for real
        with pytest.raises(InvalidSignature, match="not 64 bytes"):
            _sodium.verify(pk, msg, bad[:10])  # lengths are checked before any lookup
    assert len(asked) == 3
    _sodium.verify(pk, msg, sig)  # outside the block: the real check again
    with pytest.raises(InvalidSignature):
        _sodium.verify(pk, msg, bad)
    assert _sodium.valid(pk, msg, sig)
    assert not _sodium.valid(pk, msg, bad)
