"""``custody --help`` from :mod:`cli.root_help` is typer's own root help, byte for byte,
and is shown without importing typer (issue #13: ``--help`` ≤ 5× a bare interpreter).

The console script is :func:`cli.entry.main`; these tests run it in fresh interpreters
(Rich reads the terminal settings from the environment once, at start) and compare its
output with what :func:`cli.main.run` (typer's rendering) prints under the same
environment: at several widths, with colour and without, and with typer's own width
setting. A change of typer's layout, or a root option or command summary that the
plain layout would show differently, fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.lazy import _plain, write_index

ROOT = Path(__file__).resolve().parents[2]

FAST = "import sys; sys.argv = ['custody', *sys.argv[1:]]; from cli.entry import main; main()"
TYPER = "import sys; from cli.main import run; sys.exit(run(sys.argv[1:]))"

_PROBE = ("import atexit, json, sys\n"
          "atexit.register(lambda: sys.stderr.write(json.dumps(sorted(sys.modules))))\n"
          + FAST)


def _run(code: str, args: list[str], **env: str) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("COLUMNS", "FORCE_COLOR", "NO_COLOR", "TERMINAL_WIDTH", "PY_COLORS",
                         "GITHUB_ACTIONS", "_TYPER_FORCE_DISABLE_TERMINAL", "TERM")}
    return subprocess.run([sys.executable, "-c", code, *args], env={**base, **env},
                          cwd=ROOT, capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("env", [
    {"COLUMNS": "80"}, {"COLUMNS": "52"}, {"COLUMNS": "137"},
    {"COLUMNS": "100", "FORCE_COLOR": "1"}, {"COLUMNS": "61", "FORCE_COLOR": "1"},
    {"TERMINAL_WIDTH": "90", "FORCE_COLOR": "1", "TERM": "xterm-256color"},
    {"COLUMNS": "120", "NO_COLOR": "1", "FORCE_COLOR": "1"},
], ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()))
def test_root_help_is_typers_byte_for_byte(env: dict[str, str]) -> None:
    fast = _run(FAST, ["--help"], **env)
    typer_help = _run(TYPER, ["--help"], **env)
    assert fast.returncode == typer_help.returncode == 0, fast.stderr + typer_help.stderr
    assert fast.stdout == typer_help.stdout
    text = re.sub(rb"\x1b\[[0-9;]*m", b"", fast.stdout)
    for part in (b"Usage: custody", b"--client-cert", b"CUSTODY_HOME", b"transfers"):
        assert part in text
    if env.get("FORCE_COLOR") and not env.get("NO_COLOR"):
        assert b"\x1b[" in fast.stdout  # the colours are compared too, not only text


def test_bare_custody_shows_the_help_and_exits_2_like_a_group_without_command() -> None:
    fast = _run(FAST, [], COLUMNS="80")
    typer_help = _run(TYPER, ["--help"], COLUMNS="80")
    assert fast.returncode == 2
    assert fast.stdout == typer_help.stdout
    assert fast.stderr == b""
    # A group of commands given none: help, exit 2, and no empty 'custody: ' sentence.
    sub = _run(TYPER, ["org"], COLUMNS="80")
    assert sub.returncode == 2
    assert b"custody org" in re.sub(rb"\x1b\[[0-9;]*m", b"", sub.stdout)
    assert sub.stderr == b""


def test_root_help_imports_neither_typer_nor_anything_of_the_ledger() -> None:
    proc = _run(_PROBE, ["--help"], COLUMNS="80")
    assert proc.returncode == 0
    modules = set(json.loads(proc.stderr.decode().splitlines()[-1]))
    assert "cli.root_help" in modules  # the probe saw the fast path run
    imported = sorted(m for m in modules if m.split(".")[0] in
                      ("typer", "click", "pydantic", "sqlalchemy", "nacl", "ledger",
                       "markdown_it", "pygments") or m.startswith("cli.commands"))
    assert imported == []


def test_other_invocations_take_typers_path() -> None:
    """Only exactly ``--help`` (or nothing) is the fast path: an option before it, a
    command's help, or a misspelt flag go to typer."""
    proc = _run(_PROBE, ["--json", "--help"], COLUMNS="80")
    assert proc.returncode == 0
    assert "typer" in set(json.loads(proc.stderr.decode().splitlines()[-1]))
    bad = _run(FAST, ["-h"], COLUMNS="80")
    assert bad.returncode == 2
    assert b"No such option: -h" in bad.stderr


def test_closed_or_cut_standard_output() -> None:
    closed = subprocess.run([sys.executable, "-c", FAST, "--help"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
                            timeout=60, pass_fds=(), close_fds=True)
    assert closed.returncode == 0
    cut = subprocess.run(f"{sys.executable} -c \"{FAST}\" --help | head -c 10", shell=True,  # noqa: S602
                         cwd=ROOT, capture_output=True, timeout=60, check=False,
                         env={**os.environ, "COLUMNS": "80"})
    assert cut.stderr == b""


def test_the_generated_index_is_up_to_date(tmp_path: Path) -> None:
    """``cli/help_index.py`` (summaries and the root help) is what ``python -m cli.lazy``
    generates from the commands now."""
    fresh = tmp_path / "help_index.py"
    write_index(str(fresh))
    assert fresh.read_text() == (ROOT / "cli" / "help_index.py").read_text(), \
        "cli/help_index.py is stale: run 'python -m cli.lazy'"


@pytest.mark.parametrize("text", [
    "Use `custody x`.", "**bold** claim", "a_b", "see <https://example.org>", "[a](b)",
    "- a list item", "1. a numbered item", "# a heading", "a  double space", "two\nlines",
    "> quoted", "a \\ backslash",
])
def test_markdown_in_root_help_text_is_refused_at_generation(text: str) -> None:
    with pytest.raises(ValueError, match="markdown"):
        _plain(text)
    assert _plain("Plain text: 'quoted', e.g. DE; 0 success (exit 1).") != ""
