"""``custody bundle export|verify`` as a careless or hostile user would run them: every
failure is one sentence and the documented exit code, nothing half-written."""

from __future__ import annotations

import json

from tests.cli.conftest import World, assert_error, invoke


def _log_key(world: World) -> str:
    return str(json.loads((world.home / "config.json").read_text())["log_key"])


def test_export_then_verify_offline_gives_the_same_verdict_as_verify(world: World) -> None:
    out = world.root / "court" / "bundle.json"
    out.parent.mkdir()
    summary = world.cli("bundle", "export", world.art, "--out", out, "--json", expect=0).json
    assert summary["entries"] >= 2
    assert summary["tree_size"] == world.size()
    online = world.cli("verify", world.evidence, "--json", expect=0).json
    offline = world.cli("bundle", "verify", out, "--log-key", _log_key(world), "--evidence",
                        world.evidence, "--json", expect=0).json
    assert offline["verdict"] == online["verdict"] == "authentic"
    assert offline["custody"] == online["custody"]
    bad = world.cli("bundle", "verify", out, "--log-key", _log_key(world), "--evidence",
                    world.tampered(), "--json", expect=1).json
    assert bad["verdict"] == "mismatch"
    intact = world.cli("bundle", "verify", out, "--log-key", _log_key(world), "--json",
                       expect=0).json
    assert intact["verdict"] == "verified"
    # On a machine without the ledger: a home that does not exist, no network.
    elsewhere = invoke(["--home", str(world.root / "no-ledger-here"), "bundle", "verify",
                        str(out), "--log-key", _log_key(world), "--evidence",
                        str(world.evidence), "--json"])
    assert elsewhere.code == 0, elsewhere.err
    assert elsewhere.json["custody"] == online["custody"]
    assert not (world.root / "no-ledger-here").exists()


def test_export_never_overwrites_silently_and_leaves_no_partial_file(world: World) -> None:
    out = world.root / "b.json"
    out.write_text("keep me")
    assert_error(world.cli("bundle", "export", world.art, "--out", out), 2, "--force")
    assert out.read_text() == "keep me"
    world.cli("bundle", "export", world.art, "--out", out, "--force", expect=0)
    assert json.loads(out.read_text())["format"] == "custody-bundle/v1"
    missing_dir = world.root / "no" / "such" / "dir" / "b.json"
    assert_error(world.cli("bundle", "export", world.art, "--out", missing_dir), 2,
                 "cannot write")
    assert_error(world.cli("bundle", "export", "art-nope", "--out", world.root / "x.json"), 4,
                 "unknown artefact")
    assert not (world.root / "x.json").exists()
    assert not list(world.root.glob(".*.tmp"))


def test_verify_refuses_what_is_not_a_bundle(world: World) -> None:
    key = _log_key(world)
    cases = {
        "garbage.json": b"\x00\xffnot json",
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
        "other.json": b'{"format": "something-else/v9"}',
        "empty.json": b"{}",
    }
    for name, data in cases.items():
        path = world.root / name
        path.write_bytes(data)
        res = world.cli("bundle", "verify", path, "--log-key", key)
        assert res.code == 1, (name, res.err)
        assert len(res.err_lines) == 1, (name, res.err)
        assert "Traceback" not in res.err
    assert_error(world.cli("bundle", "verify", world.root / "nope.json", "--log-key", key), 2,
                 "nope.json")
    assert_error(world.cli("bundle", "verify", world.root, "--log-key", key), 2,
                 "not a regular file")
    bundle = world.root / "ok.json"
    world.cli("bundle", "export", world.art, "--out", bundle, expect=0)
    res = world.cli("bundle", "verify", bundle, "--log-key", "not-a-key", "--json", expect=1)
    assert res.json["verdict"] == "fault"
    assert [f["kind"] for f in res.json["faults"]] == ["checkpoint"]
