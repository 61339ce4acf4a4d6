"""``python -m bench peer`` without Go is skipped with the reason, not failed; the key it
gives Tessera is a signed-note private key of the form Go's ``note.NewSigner`` reads."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bench import peer
from ledger.core.note import NoteSigner


def test_without_go_the_peer_benchmark_is_skipped(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(peer, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(peer, "go_binary", lambda: None)
    result = peer.run(quick=True)
    assert "Go is not installed" in result["skipped"]
    assert "tessera" in result


def test_a_failed_build_is_skipped_with_its_output(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\necho 'no module proxy here' >&2\nexit 1\n")
    fake_go.chmod(0o755)
    monkeypatch.setattr(peer, "go_binary", lambda: str(fake_go))
    binary, why = peer.build_tessera(tmp_path / "cache")
    assert binary is None
    assert "no module proxy here" in why


def test_the_tessera_key_is_a_note_private_key() -> None:
    seed = bytes(range(32))
    key = peer.note_private_key("bench.example/tessera", seed)
    prefix, private, name, keyid, encoded = key.split("+")
    assert (prefix, private, name) == ("PRIVATE", "KEY", "bench.example/tessera")
    raw = base64.b64decode(encoded)
    assert raw == b"\x01" + seed
    # The key id is the one of the matching verifier key (name+keyid+base64(0x01||pub)).
    assert NoteSigner(name, seed).verifier_key.split("+")[1] == keyid
