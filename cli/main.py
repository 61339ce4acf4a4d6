"""The ``custody`` command. Errors are mapped to exit codes once, in :func:`run`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors its own click (and does not install the click package)
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import exceptions as _click_exceptions

from cli import context
from cli.commands import bundle, cases, custody, demo, identity, log, server, setup, witness
from cli.errors import EXIT_CODES_HELP, INVALID, exit_code
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
) -> None:
    ctx.obj = context.Ctx(Home.resolve(home), json=json_, server=server)
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
app.add_typer(identity.org_app, name="org")
app.add_typer(identity.actor_app, name="actor")
app.add_typer(cases.case_app, name="case")
app.add_typer(cases.lb_app, name="legal-basis")
app.add_typer(log.app, name="log")
app.add_typer(witness.app, name="witness")
app.add_typer(bundle.app, name="bundle")


def run(argv: list[str] | None = None) -> int:
    """Console entry point: run the app and map every error to one sentence + exit code."""
    try:
        # With standalone_mode=False, click returns the code of a typer.Exit instead of
        # raising it.
        code = app(args=argv, standalone_mode=False, prog_name="custody")
    except LedgerError as exc:
        context.err_console.print(f"custody: {exc}", highlight=False, markup=False)
        return exit_code(exc)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        context.err_console.print("custody: aborted", highlight=False)
        return INVALID
    except _click_exceptions.ClickException as exc:
        exc.show()
        return INVALID
    except FileNotFoundError as exc:
        context.err_console.print(f"custody: no such file: {exc.filename}", markup=False)
        return 4
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


def entry() -> None:
    sys.exit(run())


if __name__ == "__main__":
    entry()
