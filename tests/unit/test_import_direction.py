"""Imports point down only (architecture.md): the pure core does no I/O, has no clock and
no randomness, and nothing in ``ledger`` imports a transport (api, cli).

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
PURE_CORE = ("canonical", "_sodium", "events", "payloads", "rules", "merkle", "merkle_verify",
             "note", "checkpoint", "vocab", "errors", "audit", "vmap", "trust", "witness",
             "bundle")
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


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` statement in ``path`` names (absolute form)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(LEDGER.parent).with_suffix("").parts[:-1])
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
    return [LEDGER / f"{m}.py" for m in PURE_CORE if (LEDGER / f"{m}.py").exists()]


def test_the_core_modules_exist() -> None:
    missing = [m for m in PURE_CORE if not (LEDGER / f"{m}.py").exists()]
    assert set(missing) <= {"audit"}, f"pure core modules missing: {missing}"


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


def test_pure_core_imports_only_pure_ledger_modules() -> None:
    pure = {f"ledger.{m}" for m in PURE_CORE}
    for path in core_paths():
        ledger_imports = {n for n in imported_modules(path)
                          if n == "ledger" or n.startswith("ledger.")}
        modules = {".".join(n.split(".")[:2]) for n in ledger_imports if n != "ledger"}
        # `from ledger import events` names ledger.events; keep only real modules
        modules = {m for m in modules if (LEDGER / (m.split(".")[1] + ".py")).exists()
                   or (LEDGER / m.split(".")[1]).is_dir()}
        assert modules <= pure, f"{path.name} imports {sorted(modules - pure)}"


def test_ledger_never_imports_a_transport() -> None:
    offenders = {}
    for path in sorted(LEDGER.rglob("*.py")):
        bad = _hits(imported_modules(path), TRANSPORTS)
        if bad:
            offenders[str(path.relative_to(LEDGER.parent))] = bad
    assert not offenders


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The parser is not vacuous: it finds direct, dotted, from- and nested imports."""
    probe = LEDGER / "_import_probe_for_tests.py"
    assert not probe.exists()
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom sqlalchemy import select\n"
                      "def f():\n    import cli.main\n    from ledger.store import sql\n")
    tree_names = set()
    for node in ast.walk(ast.parse(sample.read_text())):
        if isinstance(node, ast.Import):
            tree_names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            tree_names.add(node.module or "")
    assert _hits(tree_names, FORBIDDEN_IN_CORE) == ["cli.main", "ledger.store", "os.path",
                                                    "sqlalchemy"]
    assert FORBIDDEN_CALLS.search("stamp = dt.datetime.now(dt.UTC)")
    assert FORBIDDEN_CALLS.search("nonce = os.urandom(16)")
