"""Court verification (ledger.views.verify_artefact) is fail-closed and binds the leaf BYTES:
a verdict is never given on entries whose bytes differ from what the checkpoint commits to,
even where the change is in a part of the leaf the signer did not sign."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ledger import views
from ledger.errors import VerificationError
from tests.helpers.ledger_builder import build_ledger, drop_triggers, execute


def _an_artefact(store) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    for _key, art in store.state_items("art/"):
        indices = store.refs(art["id"])
        if len(indices) >= 3:
            return art["id"], art["digests"]["sha256"], indices[1]
    raise AssertionError("the builder made no artefact with a history")


def test_authentic_artefact_verifies_with_proofs(tmp_path: Path) -> None:
    store, *_ = build_ledger(tmp_path)
    art, sha, _ = _an_artefact(store)
    result = views.verify_artefact(store, sha)
    assert result["verdict"] == "authentic"
    assert result["artefact_id"] == art
    for item in result["custody"]:
        assert item["inclusion_verified"] is True
        assert item["tree_size"] == result["checkpoint"]["size"]
        assert all(len(h) == 64 for h in item["inclusion_proof"])


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
    with pytest.raises(VerificationError):
        views.verify_artefact(store, sha)


def test_pinned_log_key_must_match(tmp_path: Path) -> None:
    store, *_ = build_ledger(tmp_path)
    _art, sha, _ = _an_artefact(store)
    other = "other.example/log+01020304+AQ" + "A" * 42 + "="
    with pytest.raises(VerificationError, match="pinned"):
        views.verify_artefact(store, sha, log_key=other)


def test_unregistered_digest_is_not_registered(tmp_path: Path) -> None:
    store, *_ = build_ledger(tmp_path)
    assert views.verify_artefact(store, "ab" * 32)["verdict"] == "not-registered"
