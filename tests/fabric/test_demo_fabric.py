"""``custody demo --network DIR``: the whole demo story on a real Fabric network of three
jurisdictions (its own network: the demo creates the channel's ledger)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import network

pytestmark = pytest.mark.fabric


def test_demo_story_on_a_fabric_network(tmp_path: Path) -> None:
    folder = tmp_path / "net"
    network.up(["DE", "NL", "FR"], folder, orderers=1)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "demo", "--network", str(folder), "--home",
             str(tmp_path / "home"), "--size-mib", "2", "--json"],
            capture_output=True, text=True, timeout=600, env=env, check=False,
            cwd=Path(__file__).resolve().parents[2])
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)
        assert summary["verdicts"] == {"true_copy": "authentic", "tampered_copy": "mismatch"}
        assert summary["audit_ok"] is True
        config = json.loads((tmp_path / "home" / "config.json").read_text())
        assert config["network"] == str(folder)
        assert not (tmp_path / "home" / "ledger.db").exists()  # the log is the network's
    finally:
        network.down(folder, purge=True)
