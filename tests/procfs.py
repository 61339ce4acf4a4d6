"""Processes as Linux's ``/proc`` shows them (tests that count workers or kill a server)."""

from __future__ import annotations

import os
from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (one read of ``/proc``; vanished ones skipped)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)"
            out.append(int(entry))
    return out
