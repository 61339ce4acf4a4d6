"""``custody demo``: the whole story runs, and leaves a ledger that audits clean."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, invoke


def test_demo(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    res = invoke(["demo", "--home", str(home), "--size-mib", "2"])
    assert res.code == 0, res.out[-3000:] + res.err
    assert "Demo complete" in res.out
    assert "demo step failed" not in res.err
    for step in ("crosses a border", "Rejected", "Accepted", "Verdict: authentic",
                 "Verdict: mismatch", "audit passed"):
        assert step in res.out + res.err, step
    audit = Cli(home)("audit", "--json", expect=0)
    assert audit.json["ok"] is True
    assert audit.json["entries_checked"] == Cli(home).size() == 21


def test_demo_refuses_an_existing_ledger(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    home.mkdir()
    (home / "config.json").write_text("{}")
    res = invoke(["demo", "--home", str(home), "--size-mib", "1"])
    assert res.code == 2
    assert "already holds a ledger" in res.err
