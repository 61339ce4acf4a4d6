"""Discovery and execution of the benchmark modules in ``bench/``.

A benchmark is any module ``bench/<name>.py`` with ``run(quick: bool) -> dict``
(see the package docstring). Discovery is by file name, so engineers add a
benchmark by adding a file, without editing a shared list.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import ssl
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "custody-ledger-bench/1"
PACKAGE_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PACKAGE_DIR / "results"
# Modules in bench/ that are not benchmarks themselves. (``refs`` is both a library of
# reference measurements and a benchmark that reports all of them.)
HELPERS = frozenset({"registry"})
# Reference measurements are listed first in ``all``; the rest run alphabetically.
FIRST = ("refs", "hashing")

Benchmark = Callable[[bool], dict[str, Any]]


def in_all(name: str) -> bool:
    """Whether ``all`` runs this benchmark (a module may opt out with ``IN_ALL = False``,
    e.g. one that starts a Fabric network)."""
    return bool(getattr(importlib.import_module(f"bench.{name}"), "IN_ALL", True))


def available() -> list[str]:
    """Names of the benchmark modules present in ``bench/``, in run order."""
    names = {
        m.name
        for m in pkgutil.iter_modules([str(PACKAGE_DIR)])
        if not m.name.startswith("_") and not m.ispkg and m.name not in HELPERS
    }
    ordered = [n for n in FIRST if n in names]
    return ordered + sorted(names - set(ordered))


def load(name: str) -> Benchmark:
    module = importlib.import_module(f"bench.{name}")
    fn = getattr(module, "run", None)
    if not callable(fn):
        raise TypeError(f"bench/{name}.py has no run(quick: bool) -> dict function")
    return fn  # type: ignore[no-any-return]


def host_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "hashlib_openssl": ssl.OPENSSL_VERSION,
        # Other work on a shared 2-vCPU machine skews multi-threaded figures most.
        "loadavg_at_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_all(names: list[str], quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the named benchmarks; a failing one is recorded under ``errors``, not raised."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "host": host_info(),
        "results": {},
        "errors": {},
        "durations_s": {},
    }
    for name in names:
        log(f"bench: running {name}{' (quick)' if quick else ''} ...")
        start = time.perf_counter()
        try:
            doc["results"][name] = load(name)(quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            doc["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
        doc["durations_s"][name] = round(time.perf_counter() - start, 2)
    doc["loadavg_at_end"] = _loadavg()
    return doc
