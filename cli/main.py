"""The ``custody`` command. Errors are mapped to exit codes once, in :func:`run`."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors its own click (and does not install the click package)
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import exceptions as _click_exceptions

from cli import context
from cli.commands import (
    browse,
    bundle,
    cases,
    custody,
    demo,
    export,
    identity,
    log,
    network,
    packages,
    report,
    server,
    setup,
    witness,
)
from cli.errors import EXIT_CODES_HELP, INVALID, NOT_FOUND, exit_code
from ledger.errors import LedgerError
from ledger.home import Home

app = typer.Typer(
    name="custody",
    help="Chain of custody for digital evidence: register artefacts by digest, move custody "
    "across agencies and borders under a recorded legal basis, log every access, and let a "
    "court verify with signatures and Merkle proofs. " + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # markdown: docstrings' single line breaks are joined, so help reflows cleanly
    rich_markup_mode="markdown",
)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(
        envvar="CUSTODY_HOME", help="Directory with configuration, keys and the embedded "
        "ledger (default: ~/.custody).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    server: Annotated[str | None, typer.Option(
        envvar="CUSTODY_SERVER", help="Use a Custody Ledger server at this URL instead of the "
        "embedded ledger; events are still signed locally.")] = None,
    backend: Annotated[str | None, typer.Option(
        envvar="CUSTODY_BACKEND", metavar="sqlite|fabric",
        help="Where the ledger lives: 'sqlite' (embedded, the default) or 'fabric' (a "
        "consortium network, with --network).")] = None,
    network: Annotated[Path | None, typer.Option(
        envvar="CUSTODY_NETWORK", help="The directory of a Fabric network made by 'custody "
        "network up' (implies --backend fabric).")] = None,
    endorsers: Annotated[str | None, typer.Option(
        metavar="ORGS", help="Fabric only: ask only these organisations' peers to endorse "
        "(comma-separated, e.g. DE). The default asks every organisation, which meets any "
        "endorsement policy; fewer shows what the policy refuses.")] = None,
) -> None:
    if backend not in (None, "sqlite", "fabric"):
        raise typer.BadParameter(f"unknown backend {backend!r}; use sqlite or fabric",
                                 param_hint="--backend")
    if backend == "fabric" and network is None:
        raise typer.BadParameter("--backend fabric needs --network DIR (the directory of "
                                 "'custody network up')", param_hint="--network")
    if backend == "sqlite" and network is not None:
        raise typer.BadParameter("--network is for --backend fabric", param_hint="--network")
    ctx.obj = context.Ctx(Home.resolve(home), json=json_, server=server,
                          network=None if network is None else network.resolve(),
                          endorsers=None if endorsers is None else
                          [e.strip().upper() for e in endorsers.split(",") if e.strip()])
    ctx.call_on_close(ctx.obj.close)


app.command()(setup.init)
app.command()(custody.register)
app.command()(custody.transfer)
app.command()(custody.receive)
app.command()(custody.access)
app.command()(custody.history)
app.command()(custody.verify)
app.command()(custody.status)
app.command()(log.audit)
app.command()(demo.demo)
app.command()(server.serve)
app.command()(server.join)
app.command()(packages.fetch)
app.command()(report.report)
app.add_typer(identity.org_app, name="org")
app.add_typer(identity.actor_app, name="actor")
app.add_typer(cases.case_app, name="case")
app.add_typer(cases.lb_app, name="legal-basis")
app.add_typer(log.app, name="log")
app.add_typer(witness.app, name="witness")
app.add_typer(bundle.app, name="bundle")
app.add_typer(export.app, name="export")
app.add_typer(network.app, name="network")
app.add_typer(packages.package_app, name="package")
app.add_typer(browse.artefact_app, name="artefact")
app.add_typer(browse.transfers_app, name="transfers")
cases.case_app.command("show")(browse.case_show)


def run(argv: list[str] | None = None) -> int:
    """Console entry point: run the app and map every error to one sentence + exit code."""
    try:
        # With standalone_mode=False, click returns the code of a typer.Exit instead of
        # raising it.
        code = app(args=argv, standalone_mode=False, prog_name="custody")
    except LedgerError as exc:
        return _say(str(exc), exit_code(exc))
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return _say("aborted", INVALID)
    except _click_exceptions.ClickException as exc:
        # One sentence like every other error, not click's usage block.
        return _say(_click_message(exc), INVALID)
    except FileNotFoundError as exc:
        return _say(f"no such file: {exc.filename}", NOT_FOUND)
    except ModuleNotFoundError as exc:
        return _say(missing_module(exc.name), INVALID)
    except OSError as exc:
        return _say(os_error(exc), INVALID)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        db = database_error(exc)
        if db is None:
            raise
        return _say(*db)
    return code if isinstance(code, int) else 0


def _say(message: str, code: int) -> int:
    context.err_console.print(f"custody: {message}", highlight=False, markup=False,
                              soft_wrap=True)
    return code


def _click_message(exc: _click_exceptions.ClickException) -> str:
    """Click's message on one line, naming the command when it is a usage error."""
    message = " ".join(exc.format_message().split())
    command = getattr(getattr(exc, "ctx", None), "command_path", None)
    if isinstance(exc, _click_exceptions.UsageError) and command:
        return f"{message} (see '{command} --help')"
    return message


#: Modules that come with an extra of the package, and that extra.
_EXTRAS = {"uvicorn": "api", "httpx": "api", "fastapi": "api", "starlette": "api",
           "pydantic_settings": "api", "blake3": "blake3", "grpc": "fabric",
           "google": "fabric", "cryptography": "fabric", "hfc": "fabric",
           "chaincode_fabric": "fabric", "fabric_protos": "fabric"}


def missing_module(name: str | None) -> str:
    """The sentence for a module that is not installed: which extra brings it."""
    top = (name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra == "api":
        return (f"this command needs the server and client extra ({top} is not installed): "
                "pip install 'custody-ledger[api]'")
    if extra:
        return f"{top} is not installed: pip install 'custody-ledger[{extra}]'"
    return (f"the Python module {top or 'of a dependency'!s} is not installed: reinstall "
            "custody-ledger (pip install 'custody-ledger[api]' for every extra)")


def os_error(exc: OSError) -> str:
    """One sentence for a file-system failure (read-only home, not a directory, ...)."""
    where = exc.filename if exc.filename is not None else "a file"
    if exc.errno == errno.EROFS:
        return f"cannot write {where}: the file system is read-only (a read-only custody home?)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where} (a read-only custody home, or another user's?)"
    if exc.errno == errno.ENOTDIR:
        return f"{where} is not a directory: a path in it is a file"
    return f"{where}: {exc.strerror or exc}"


def database_error(exc: BaseException) -> tuple[str, int] | None:
    """A database failure that escaped the store as one sentence and exit code (or None
    when ``exc`` is not one): a damaged SQLite file is named as such (exit 1), any other
    database failure is a backend failure (exit 5)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.DBAPIError):
        return None
    from ledger.store.sql import describe_database_error

    error = describe_database_error(exc)
    return str(error), exit_code(error)


def entry() -> None:
    sys.exit(run())


if __name__ == "__main__":
    entry()
