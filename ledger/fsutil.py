"""File-system durability helpers shared by the adapters that write files.

A new or renamed file survives a crash only once the directory that names it is synced
too (POSIX ``fsync`` of the file covers its data, not its directory entry). This module is
an adapter (it does I/O), not part of the pure core.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["fsync_dir"]


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (a file created, linked or renamed in it) to disk.

    Raises ``OSError`` as ``os.fsync`` does; callers for whom a directory sync is best
    effort suppress it. A no-op on Windows, which cannot open a directory for syncing."""
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
