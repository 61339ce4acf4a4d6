"""The ``custody`` command. Errors are mapped to exit codes once, in :func:`run`."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import BACKEND, EXIT_CODES_HELP, INVALID, NOT_FOUND, exit_code
from cli.help_index import SUMMARIES
from cli.lazy import Lazy, LazyGroup
from cli.options import install_help_style
from ledger.core.errors import LedgerError

#: Every command and group of commands, in the order ``custody --help`` lists them. A
#: command's module is imported only when the command is run or its help is shown
#: (:mod:`cli.lazy`), so ``custody status`` does not import the API, the court report or
#: Fabric, and ``custody --help`` imports no command at all.
COMMANDS: tuple[Lazy, ...] = (
    Lazy("init", "cli.commands.setup:init"),
    Lazy("register", "cli.commands.custody:register"),
    Lazy("transfer", "cli.commands.custody:transfer"),
    Lazy("receive", "cli.commands.custody:receive"),
    Lazy("access", "cli.commands.custody:access"),
    Lazy("history", "cli.commands.custody:history"),
    Lazy("verify", "cli.commands.custody:verify"),
    Lazy("status", "cli.commands.custody:status"),
    Lazy("audit", "cli.commands.log:audit"),
    Lazy("backup", "cli.commands.backup:backup"),
    Lazy("restore", "cli.commands.backup:restore"),
    Lazy("demo", "cli.commands.demo:demo"),
    Lazy("serve", "cli.commands.server:serve"),
    Lazy("join", "cli.commands.server:join"),
    Lazy("fetch", "cli.commands.packages:fetch"),
    Lazy("report", "cli.commands.report:report"),
    Lazy("org", "cli.commands.identity:org_app"),
    Lazy("actor", "cli.commands.identity:actor_app"),
    Lazy("case", "cli.commands.cases:case_app"),
    Lazy("legal-basis", "cli.commands.cases:lb_app"),
    Lazy("log", "cli.commands.log:app"),
    Lazy("witness", "cli.commands.witness:app"),
    Lazy("bundle", "cli.commands.bundle:app"),
    Lazy("export", "cli.commands.export:app"),
    Lazy("network", "cli.commands.network:app"),
    Lazy("package", "cli.commands.packages:package_app"),
    Lazy("artefact", "cli.commands.browse:artefact_app"),
    Lazy("transfers", "cli.commands.browse:transfers_app"),
)


class CustodyGroup(LazyGroup):
    table = COMMANDS
    summaries = SUMMARIES
    pretty_exceptions_short = True


install_help_style()  # before any help is rendered, the root's included

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
    cls=CustodyGroup,
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
    ca: Annotated[Path | None, typer.Option(
        "--ca", envvar="CUSTODY_CA", metavar="FILE", help="With --server https://…: trust "
        "this CA (PEM) for the server's certificate instead of the one pinned by 'custody "
        "join --ca' or the system store.")] = None,
    client_cert: Annotated[Path | None, typer.Option(
        "--client-cert", envvar="CUSTODY_CLIENT_CERT", metavar="FILE", help="With --server: "
        "present this client certificate (mutual TLS) instead of the one pinned at join "
        "time; needs --client-key.")] = None,
    client_key: Annotated[Path | None, typer.Option(
        "--client-key", envvar="CUSTODY_CLIENT_KEY", metavar="FILE",
        help="The private key of --client-cert.")] = None,
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
    if (client_cert is None) != (client_key is None):
        raise typer.BadParameter("--client-cert and --client-key go together",
                                 param_hint="--client-cert")
    if backend == "sqlite" and network is not None:
        raise typer.BadParameter("--network is for --backend fabric", param_hint="--network")
    from cli import context
    from ledger.home import Home

    ctx.obj = context.Ctx(Home.resolve(home), json=json_, server=server,
                          network=None if network is None else network.resolve(),
                          endorsers=None if endorsers is None else
                          [e.strip().upper() for e in endorsers.split(",") if e.strip()],
                          tls={name: str(path.expanduser().resolve()) for name, path in
                               (("ca", ca), ("cert", client_cert), ("key", client_key))
                               if path is not None})
    ctx.call_on_close(ctx.obj.close)


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
    except typer.TyperException as exc:  # click's errors (typer vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without a command: its
            return INVALID  # help was just shown, and there is no other sentence to say
        # One sentence like every other error, not click's usage block.
        return _say(_click_message(exc), INVALID)
    except FileNotFoundError as exc:
        return _say(f"no such file: {exc.filename}", NOT_FOUND)
    except ModuleNotFoundError as exc:
        return _say(missing_module(exc.name), INVALID)
    except OSError as exc:
        return _say(os_error(exc), BACKEND if exc.errno in _FULL_DISK else INVALID)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        db = database_error(exc)
        if db is None:
            raise
        return _say(*db)
    return code if isinstance(code, int) else 0


def _say(message: str, code: int) -> int:
    from cli import context

    context.err_console.print(f"custody: {message}", highlight=False, markup=False,
                              soft_wrap=True)
    return code


def _click_message(exc: typer.TyperException) -> str:
    """Click's message on one line, naming the command when it is a usage error (only a
    usage error carries the context of its command)."""
    message = " ".join(exc.format_message().split())
    command = getattr(getattr(exc, "ctx", None), "command_path", None)
    if command:
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


#: errnos of a full disk, a full quota, or a file over the size limit (RLIMIT_FSIZE)
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_error(exc: OSError) -> str:
    """One sentence for a file-system failure (read-only home, not a directory, ...)."""
    where = exc.filename if exc.filename is not None else "a file"
    if exc.errno == errno.EROFS:
        return f"cannot write {where}: the file system is read-only (a read-only custody home?)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where} (a read-only custody home, or another user's?)"
    if exc.errno in _FULL_DISK:
        where = exc.filename if exc.filename is not None else "the custody home"
        return (f"cannot write {where}: the disk is full ({exc.strerror}); free some "
                "space and retry")
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
