"""The README's consortium block runs verbatim: three jurisdictions on a real Fabric
network, the custody story, a refused one-sided dispatch, the court's verdicts, the
audit, and ``network down`` leaving no process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from network import procs
from tests.helpers import readme

pytestmark = pytest.mark.fabric


def consortium_commands() -> list[tuple[str, int]]:
    found = readme.commands("console title=consortium")
    assert found, "the README has a consortium block"
    return found


def test_readme_consortium_block_runs_as_printed(tmp_path: Path) -> None:
    commands = consortium_commands()
    assert commands[0][0].startswith("custody network up --orgs DE,NL,FR")
    assert commands[-1][0].startswith("custody network down")
    proc = readme.run(commands, tmp_path, timeout=900)
    records = tmp_path / "fabric-net" / "processes.json"
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Verdict: authentic" in proc.stdout
        assert "Cosigned by witnesses" in proc.stdout
        assert "Verdict: mismatch" in proc.stdout
        assert "audit passed" in proc.stdout
        assert "was endorsed by DE only" in proc.stderr
    finally:
        if proc.returncode != 0 and records.exists():  # never leave a network behind
            subprocess.run([sys.executable, "-m", "cli.main", "network", "down", "--dir",
                            str(tmp_path / "fabric-net")], check=False,
                           capture_output=True, cwd=Path(__file__).resolve().parents[2])
    # network down stopped exactly the processes it started, and none is left.
    started = procs.load(tmp_path / "fabric-net")
    assert len(started) == 9  # 3 orderers, 3 peers, 3 chaincode services
    assert not [p.pid for p in started if procs.alive(p)]
