"""``custody`` imports only what the command line needs (issue #13): a test of IMPORTS, not
of time (speed is measured by ``python -m bench startup``).

Each case runs ``custody ARGS`` in a fresh interpreter and lists ``sys.modules`` at the
end. What is forbidden, and why it is reachable at all:

* For ``custody --help`` and every ``custody COMMAND --help``: the store and its
  stack (``sqlalchemy``, ``alembic`` and its ``mako``, ``psycopg``, ``ledger.store``),
  the payload models and rules (``pydantic``, ``ledger.core.payloads``, ``ledger.core.rules``,
  ``ledger.service``), libsodium bindings and canonical JSON (``nacl``, ``rfc8785``),
  the API and its client (``fastapi``, ``starlette``, ``uvicorn``, ``httpx``), the court
  report (``jinja2``, ``babel``, ``weasyprint``), sealed packages (``pyrage``), Fabric
  (``grpc``, ``google.protobuf``, ``cryptography``) and Rich's progress bars. A command
  module is imported only when its command (or its help) is asked for: ``cli.lazy``
  lists commands from ``cli.help_index`` without importing them. pydantic was imported
  by typer itself, which coerces option values through pydantic ``TypeAdapter``s even
  for options that were not given; ``cli.lazy`` builds that coercion only for a value
  that is given.
* ``custody --help`` imports no command module at all.

Still imported, and allowed here: ``typer`` and ``rich`` (with ``markdown_it`` and
``pygments``, which ``typer.rich_utils`` imports to render any help in Rich markdown
mode). This file runs :func:`cli.main.run`; the console script's root help
(:mod:`cli.root_help`, without typer) is checked in ``tests/cli/test_root_help.py``, and
``custody status`` on an embedded ledger (no SQLAlchemy, no pydantic) in
``tests/cli/test_quick_status.py``. Other commands that open the ledger import SQLAlchemy
and pydantic through ``ledger.store.sql`` (see docs/benchmarks.md, "CLI start-up").

The same file checks that the lazy command tree is the one an eager registration of
every command builds: the same commands and sub-commands, the same help text for every
one of them, and an up-to-date ``cli.help_index``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import typer
import typer.main

from cli.help_index import SUMMARIES
from cli.lazy import summaries_of
from cli.main import COMMANDS, app, main

HEAVY = ("sqlalchemy", "alembic", "mako", "psycopg", "pydantic", "pydantic_core", "nacl",
         "rfc8785", "fastapi", "starlette", "uvicorn", "httpx", "jinja2", "babel",
         "weasyprint", "pyrage", "grpc", "google.protobuf", "cryptography", "rich.progress",
         "ledger.store", "ledger.core.payloads", "ledger.core.rules", "ledger.service",
         "ledger.views", "ledger.core.bundle", "api")

#: The commands and sub-commands of ``custody`` when the lazy group replaced the eager
#: registration (every one must still exist; new ones may be added).
EXISTING = [
    "init", "register", "transfer", "receive", "access", "history", "verify", "status",
    "audit", "demo", "serve", "join", "fetch", "report",
    "org", "org add", "org list", "org key", "org key rotate", "org key revoke",
    "org key show", "actor", "actor enrol", "actor revoke", "actor list",
    "case", "case open", "case add-member", "case list", "case show",
    "legal-basis", "legal-basis add", "legal-basis list",
    "log", "log checkpoint", "log verifier-key", "log entries", "log rebuild-state",
    "log proof", "log proof inclusion", "log proof consistency",
    "witness", "witness init", "witness run", "bundle", "bundle export", "bundle verify",
    "export", "export case-uco", "network", "network up", "network status",
    "network down", "network keys", "package", "package upload",
    "artefact", "artefact show", "artefact list", "transfers", "transfers list",
]

_PROBE = """
import contextlib, io, json, sys
from cli.main import run
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = run(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _probe(*argv: str) -> dict[str, Any]:
    """Run ``custody ARGV`` in a fresh interpreter: exit code, output, modules loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_root_help_imports_no_command_and_nothing_heavy() -> None:
    res = _probe("--help")
    assert res["code"] == 0
    assert "Commands" in res["out"]
    assert " status " in res["out"]
    assert _heavy(res["modules"]) == []
    assert [m for m in res["modules"] if m.startswith("cli.commands.")] == []


@pytest.mark.parametrize("argv", [["status", "--help"], ["verify", "--help"]],
                         ids=" ".join)
def test_command_help_imports_nothing_heavy(argv: list[str]) -> None:
    res = _probe(*argv)
    assert res["code"] == 0
    assert f"custody {argv[0]} [OPTIONS]" in res["out"]
    assert _heavy(res["modules"]) == []
    assert [m for m in res["modules"] if m.startswith("cli.commands.")] == [
        "cli.commands.custody"]


@pytest.mark.parametrize("name", [e.name for e in COMMANDS
                                  if e.name not in ("status", "verify")])
def test_every_command_help_imports_nothing_heavy(name: str) -> None:
    """Every command and group (its module is the one a sub-command's help loads too)."""
    res = _probe(name, "--help")
    assert res["code"] == 0, res["out"]
    assert _heavy(res["modules"]) == [], name


# ---- the lazy tree is the eager one ---------------------------------------------------------


def _eager() -> typer.Typer:
    """The app as ``cli/main.py`` registered it before: every command up front."""
    eager = typer.Typer(name="custody", help=app.info.help, no_args_is_help=True,
                        pretty_exceptions_enable=False, add_completion=False,
                        rich_markup_mode="markdown")
    eager.callback()(main)
    for entry in COMMANDS:
        target = entry.load()
        if isinstance(target, typer.Typer):
            eager.add_typer(target, name=entry.name)
        else:
            eager.command()(target)
    return eager


def _paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, sub in getattr(group, "commands", {}).items():
        out.append((*prefix, name))
        out.extend(_paths(sub, (*prefix, name)))
    return out


def _help(application: typer.Typer, path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        application(args=[*path, "--help"], standalone_mode=False, prog_name="custody")
    return out.getvalue()


def test_the_lazy_tree_is_the_eager_tree() -> None:
    eager = _eager()
    lazy_paths = _paths(typer.main.get_command(app))
    assert lazy_paths == _paths(typer.main.get_command(eager))
    missing = sorted(set(EXISTING) - {" ".join(p) for p in lazy_paths})
    assert not missing, f"commands removed: {missing}"
    for path in [(), *lazy_paths]:
        assert _help(app, path) == _help(eager, path), " ".join(path) or "--help"


def test_help_index_is_up_to_date() -> None:
    """``cli/help_index.py`` holds what each command's help says (else: ``python -m
    cli.lazy`` rewrites it)."""
    actual = summaries_of(typer.main.get_command(_eager()))
    stale = {name: text for name, text in actual.items() if SUMMARIES.get(name) != text}
    assert not stale, "cli/help_index.py is stale: run 'python -m cli.lazy'"


def test_unknown_command_still_suggests() -> None:
    out = io.StringIO()
    from cli.main import run

    with contextlib.redirect_stderr(out):
        code = run(["stauts"])
    assert code == 2
    assert "status" in out.getvalue()
