"""Court verification (ledger.views.verify → ledger.core.bundle.verify_bundle) binds the leaf
BYTES and rests on proofs only: a verdict is never given on entries whose bytes differ
from what the checkpoint commits to, even where the change is in a part of the leaf the
signer did not sign, and never on a record of the state cache."""

from __future__ import annotations

import re
from pathlib import Path

from ledger import views
from tests.helpers.ledger_builder import build_ledger, drop_triggers, execute


def _an_artefact(store) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    for _key, art in store.state_items("art/"):
        indices = store.refs(art["id"])
        if len(indices) >= 3:
            return art["id"], art["digests"]["sha256"], indices[1]
    raise AssertionError("the builder made no artefact with a history")


def _key(store) -> str:  # type: ignore[no-untyped-def]
    return str(store.state("ledger")["log_key"])


def test_authentic_artefact_verifies_with_proofs(tmp_path: Path) -> None:
    store, *_ = build_ledger(tmp_path)
    art, sha, _ = _an_artefact(store)
    result = views.verify(store, log_key=_key(store), sha256=sha)
    assert result.verdict == "authentic", result.faults
    assert result.artefact_id == art
    assert result.complete
    out = result.to_json()
    assert out["custody"]
    assert out["checkpoint"]["size"] == store.size()
    for item in out["custody"]:
        assert item["inclusion_verified"] is True
        assert all(len(h) == 64 for h in item["inclusion_proof"])
    other = views.verify(store, log_key=_key(store), sha256="cd" * 32, artefact_id=art)
    assert other.verdict == "mismatch"


def test_unsigned_leaf_field_changed_with_stale_hash_column_is_refused(tmp_path: Path) -> None:
    """An insider rewrites the ledger_time in a leaf (not covered by the actor's
    signature) and leaves the leaf_hash column alone: verification must fail, not say
    'authentic'."""
    store, *_ = build_ledger(tmp_path)
    _art, sha, index = _an_artefact(store)
    leaf = store.entry(index).leaf
    forged = re.sub(rb'"ledger_time":(\d)', lambda m: b'"ledger_time":' + bytes(
        [ord("1") if m.group(1) != b"1" else ord("2")]), leaf, count=1)
    assert forged != leaf
    drop_triggers(store)
    execute(store, "UPDATE entries SET leaf = :leaf WHERE idx = :idx",
            {"leaf": forged, "idx": index})
    result = views.verify(store, log_key=_key(store), sha256=sha)
    assert result.verdict == "fault"
    assert any(f.kind == "inclusion" and f.index == index for f in result.faults)


def test_pinned_log_key_must_match(tmp_path: Path) -> None:
    store, *_ = build_ledger(tmp_path)
    _art, sha, _ = _an_artefact(store)
    other = "other.example/log+01020304+AQ" + "A" * 42 + "="
    result = views.verify(store, log_key=other, sha256=sha)
    assert result.verdict == "fault"
    assert [f.kind for f in result.faults] == ["checkpoint"]
    assert "pinned log key" in result.faults[0].detail


def test_unregistered_digest_is_proven_not_registered(tmp_path: Path) -> None:
    store, *_ = build_ledger(tmp_path)
    result = views.verify(store, log_key=_key(store), sha256="ab" * 32)
    assert result.verdict == "not-registered"
    assert result.complete
    assert not result.faults
