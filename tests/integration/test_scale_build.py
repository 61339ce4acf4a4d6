"""The synthetic log of ``python -m bench scale`` is a valid ledger.

``bench/scale.py`` writes its bulk entries directly (not through ``SqlStore``), in
transactions of ``CHUNK`` entries. The full audit — leaves, signatures, custody rules
replayed, checkpoints and their consistency, every Merkle node, the state, its history
and the state-map nodes — passes over a small build, so the rows it writes are the ones
the store would have written; and the store then appends to it (its writer checks the
signed checkpoint and every state-map bucket it reads).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scale
from ledger.store.audit_sql import audit_store
from ledger.store.sql import SqlStore

pytestmark = pytest.mark.timeout(300)


def test_a_small_scale_build_passes_the_audit(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "CHUNK", 1_000)  # several bulk transactions
    monkeypatch.setattr(scale, "JOB", 500)
    db = tmp_path / "big.db"
    info = scale.build(db, 4_321, artefacts=25)
    assert info["set_up_entries"] == 1 + 3 + 1 + 25
    store = SqlStore.open(f"sqlite:///{db}", signer=None, clock=lambda: 0)
    try:
        assert store.size() == 4_321
        sizes = [size for size, _ in store.checkpoints()]
        assert sizes[-5:] == [1_030, 2_030, 3_030, 4_030, 4_321]
        report = audit_store(store, log_verifier_key=scale.log_signer().verifier_key)
        assert report.ok, report
        assert report.entries_checked == 4_321
    finally:
        store.close()
    figures = scale.appends(f"sqlite:///{db}", 25, n_single=5, batches=1)
    assert figures["size_before"] == 4_321
    store = SqlStore.open(f"sqlite:///{db}", signer=None, clock=lambda: 0)
    try:
        assert audit_store(store, log_verifier_key=scale.log_signer().verifier_key).ok
    finally:
        store.close()
