"""The README's consortium block runs verbatim: three jurisdictions on a real Fabric
network, the custody story, a refused one-sided dispatch, the court's verdicts, the
audit, and ``network down`` leaving no process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from network import procs

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.fabric


def consortium_commands() -> list[tuple[str, int]]:
    blocks = re.findall(r"```console title=consortium\n(.*?)```", README.read_text(),
                        flags=re.S)
    assert len(blocks) == 1, "the README has one consortium block"
    out = []
    for line in blocks[0].splitlines():
        if line.startswith("$ "):
            match = re.search(r"\s+# exit (\d+)$", line)
            out.append((line[2:], int(match.group(1)) if match else 0))
    return out


def test_readme_consortium_block_runs_as_printed(tmp_path: Path) -> None:
    commands = consortium_commands()
    assert commands[0][0].startswith("custody network up --orgs DE,NL,FR")
    assert commands[-1][0].startswith("custody network down")
    script = ["set -u"]
    for i, (cmd, code) in enumerate(commands):
        script.append(cmd)
        script.append(f'rc=$?; if [ "$rc" != {code} ]; then echo "README command {i} '
                      f'exited $rc, expected {code}: {cmd!r}" >&2; exit 99; fi')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    if "CUSTODY_FABRIC_CACHE" in os.environ:
        env["CUSTODY_FABRIC_CACHE"] = os.environ["CUSTODY_FABRIC_CACHE"]
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
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
                            str(tmp_path / "fabric-net")], env=env, check=False,
                           capture_output=True, cwd=Path(__file__).resolve().parents[2])
    # network down stopped exactly the processes it started, and none is left.
    started = procs.load(tmp_path / "fabric-net")
    assert len(started) == 9  # 3 orderers, 3 peers, 3 chaincode services
    assert not [p.pid for p in started if procs.alive(p)]
