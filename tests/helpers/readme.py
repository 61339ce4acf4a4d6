"""Run the README's console blocks verbatim (shared by the README tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(info: str = "console") -> list[tuple[str, int]]:
    """Every ``$ `` line of the README's code blocks whose info string is exactly
    ``info``, with the exit code it documents (``# exit N`` at the end; 0 otherwise)."""
    blocks = re.findall(rf"```{re.escape(info)}\n(.*?)```", README.read_text(), flags=re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            if line.startswith("$ "):
                cmd = line[2:]
                match = re.search(r"\s+# exit (\d+)$", cmd)
                out.append((cmd, int(match.group(1)) if match else 0))
    return out


def run(commands: list[tuple[str, int]], cwd: Path,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the commands in one bash, in order, stopping (exit 99) at the first one whose
    exit code differs from the documented one; no CUSTODY_* variable leaks in."""
    script = ["set -u"]
    for i, (cmd, code) in enumerate(commands):
        script.append(cmd)
        script.append(f'rc=$?; if [ "$rc" != {code} ]; then echo "README command {i} '
                      f'exited $rc, expected {code}: {cmd!r}" >&2; exit 99; fi')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CUSTODY_") or k == "CUSTODY_FABRIC_CACHE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
