"""Imports point down only (docs/architecture.md): the pure core (every module in
``ledger/core/``) does no I/O, has no clock and no randomness and imports nothing of the
layers above it; nothing in ``ledger`` imports a transport (api, cli).

Parsed with ``ast`` (imports inside functions count too), plus a text check for
clock/randomness calls that an allowed module (``datetime``) could make.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import ledger

LEDGER = Path(ledger.__file__).resolve().parent
CORE = LEDGER / "core"
FORBIDDEN_IN_CORE = ("sqlalchemy", "alembic", "ledger.store", "ledger.service",
                     "ledger.evidence", "api", "cli", "fastapi", "starlette", "uvicorn",
                     "httpx", "os", "io", "pathlib", "shutil", "socket", "time", "random",
                     "secrets", "subprocess", "threading", "multiprocessing", "asyncio",
                     "tempfile", "logging", "sys")
TRANSPORTS = ("api", "cli")
#: Clock and randomness reached through an allowed module or a builtin.
FORBIDDEN_CALLS = re.compile(
    r"\.now\(|\.utcnow\(|\.today\(|time\.time|time\.monotonic|perf_counter|os\.urandom|"
    r"random\.|secrets\.|\bopen\(|\binput\(|\bprint\(|SigningKey\.generate"
)


def imported_modules(path: Path, root: Path | None = None) -> set[str]:
    """Every module an ``import`` statement in ``path`` names (absolute form); ``root``
    is the folder holding the ``ledger`` package (relative imports resolve from it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    root = LEDGER.parent if root is None else root
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _hits(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names for f in forbidden if n == f or n.startswith(f + "."))


def core_paths() -> list[Path]:
    """Every module of the core package, sub-packages included."""
    return sorted(CORE.rglob("*.py"))


def test_the_core_holds_the_rules_the_proofs_and_the_errors() -> None:
    names = {p.stem for p in core_paths()}
    assert {"rules", "events", "payloads", "canonical", "merkle", "merkle_verify", "note",
            "checkpoint", "bundle", "errors", "audit"} <= names, sorted(names)


@pytest.mark.parametrize("path", core_paths(), ids=lambda p: p.stem)
def test_pure_core_imports_no_io_clock_or_randomness(path: Path) -> None:
    bad = _hits(imported_modules(path), FORBIDDEN_IN_CORE)
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", core_paths(), ids=lambda p: p.stem)
def test_pure_core_calls_no_clock_or_randomness(path: Path) -> None:
    lines = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
             if FORBIDDEN_CALLS.search(line.split("#", 1)[0])
             and not line.strip().startswith(('"""', "``"))]
    assert not lines, f"{path.name} reads a clock, randomness or files:\n" + "\n".join(lines)


def test_pure_core_imports_only_the_core() -> None:
    for path in core_paths():
        outside = sorted(n for n in imported_modules(path)
                         if (n == "ledger" or n.startswith("ledger."))
                         and n not in ("ledger", "ledger.core")
                         and not n.startswith("ledger.core."))
        assert not outside, f"{path.name} imports {outside}"


def test_ledger_never_imports_a_transport() -> None:
    offenders = {}
    for path in sorted(LEDGER.rglob("*.py")):
        bad = _hits(imported_modules(path), TRANSPORTS)
        if bad:
            offenders[str(path.relative_to(LEDGER.parent))] = bad
    assert not offenders


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The checks are not vacuous: the same parser finds direct, dotted, from-, relative
    and nested imports, and the call check finds a clock and randomness."""
    pkg = tmp_path / "ledger" / "core"
    pkg.mkdir(parents=True)
    sample = pkg / "sample.py"
    sample.write_text("import os.path\nfrom sqlalchemy import select\n"
                      "from .. import service\n"
                      "def f():\n    import cli.main\n    from ledger.store import sql\n")
    names = imported_modules(sample, root=tmp_path)
    assert _hits(names, FORBIDDEN_IN_CORE) == ["cli.main", "ledger.service", "ledger.store",
                                               "ledger.store.sql", "os.path", "sqlalchemy",
                                               "sqlalchemy.select"]
    assert "ledger.service" in names
    assert FORBIDDEN_CALLS.search("stamp = dt.datetime.now(dt.UTC)")
    assert FORBIDDEN_CALLS.search("nonce = os.urandom(16)")
    assert not FORBIDDEN_CALLS.search("when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)")
