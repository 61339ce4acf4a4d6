"""``custody case …`` and ``custody legal-basis …``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from cli import context
from cli.commands.setup import check_country
from cli.options import As, Json, check_choice
from ledger.core.errors import InvalidInput
from ledger.core.state import CASE, LEGAL_BASIS
from ledger.core.vocab import INSTRUMENTS
from ledger.evidence import hash_file

case_app = typer.Typer(help="Cases and their member organisations (joint investigation "
                       "teams).", no_args_is_help=True)
lb_app = typer.Typer(help="Legal bases: MLAT requests, EIOs, production orders, JIT "
                     "agreements…", no_args_is_help=True)


@case_app.command("open")
def case_open(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference, e.g. CASE-2026-001.")],
    title: Annotated[str, typer.Option(help="Short title.")] = "",
    as_: As = None,
    json_: Json = False,
) -> None:
    """Open a case led by the acting actor's organisation."""
    c = context.get(ctx)
    actor = c.actor(as_)
    receipt = c.custody().open_case(actor, ref, title)
    context.done(ctx, json_, receipt, {"case": ref}, f"Opened case {ref}")


@case_app.command("add-member")
def case_add_member(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    org: Annotated[str, typer.Option(help="Organisation to add.")],
    as_: As = None,
    json_: Json = False,
) -> None:
    """Add an organisation to a case (e.g. a joint investigation team partner)."""
    c = context.get(ctx)
    actor = c.actor(as_)
    receipt = c.custody().add_member(actor, ref, org)
    context.done(ctx, json_, receipt, {"case": ref, "org": org}, f"Added {org} to case {ref}")


@case_app.command("list")
def case_list(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """List cases."""
    context.listing(ctx, json_, CASE, ["id", "title", "lead_org", "members"], as_)


def _date(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise InvalidInput(f"{what} must be a date like 2026-12-31, not {value!r}") from exc


@lb_app.command("add")
def lb_add(
    ctx: typer.Context,
    instrument: Annotated[str, typer.Option(help="One of: " + ", ".join(INSTRUMENTS))],
    reference: Annotated[str, typer.Option(help="The instrument's reference, e.g. "
                                           "MLA-2026-0042.")],
    issuing_state: Annotated[str, typer.Option(help="Issuing (requesting) state, ISO code.")],
    executing_state: Annotated[str, typer.Option(help="Executing state, ISO code.")],
    valid_until: Annotated[str, typer.Option(help="Last valid day, YYYY-MM-DD.")],
    valid_from: Annotated[str | None, typer.Option(help="First valid day (default: "
                                                   "today).")] = None,
    case: Annotated[str | None, typer.Option(help="Case it covers (all its artefacts).")]
    = None,
    artefact: Annotated[list[str] | None, typer.Option(help="Artefact it covers (repeat).")]
    = None,
    restriction: Annotated[list[str] | None, typer.Option(help="Restriction, e.g. "
                                                          "speciality (repeat).")] = None,
    issuing_authority: Annotated[str, typer.Option(help="Issuing authority.")] = "",
    executing_authority: Annotated[str, typer.Option(help="Executing authority.")] = "",
    document: Annotated[Path | None, typer.Option(help="The legal document: its SHA-256 is "
                                                  "recorded, never its content.")] = None,
    basis_id: Annotated[str | None, typer.Option("--id", help="Id (default: generated).")]
    = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Record a legal basis for transfers between two states."""
    c = context.get(ctx)
    check_choice(instrument, INSTRUMENTS, "instrument")
    issuing_state = check_country(issuing_state.strip().upper())
    executing_state = check_country(executing_state.strip().upper())
    until = _date(valid_until, "--valid-until") or ""
    since = _date(valid_from, "--valid-from")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    if until < (since or today):
        raise InvalidInput(f"--valid-until {until} is before --valid-from {since or today}; a "
                           "legal basis cannot end before it starts")
    doc = hash_file(document).sha256 if document else None
    actor = c.actor(as_)
    custody = c.custody()
    today = dt.datetime.fromtimestamp(custody.clock() / 1000, tz=dt.UTC).date().isoformat()
    receipt = custody.add_legal_basis(
        actor, instrument=instrument, reference=reference,
        issuing_state=issuing_state, executing_state=executing_state,
        valid_until=until, valid_from=since, case=case, artefacts=artefact or [],
        restrictions=restriction or [], issuing_authority=issuing_authority,
        executing_authority=executing_authority, document_sha256=doc, basis_id=basis_id)
    lb = receipt.result["legal_basis"]
    if until < today:  # recorded (it documents what happened), but it covers nothing now
        context.err_console.print(f"custody: warning: legal basis {lb} expired on {until}; "
                                  "it does not cover any transfer from today",
                                  highlight=False, markup=False)
    context.done(ctx, json_, receipt, {"legal_basis": lb, "document_sha256": doc},
                 f"Recorded legal basis {lb} ({instrument} {reference}, "
                 f"{issuing_state}↔{executing_state})")


@lb_app.command("list")
def lb_list(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """List legal bases."""
    context.listing(ctx, json_, LEGAL_BASIS, ["id", "instrument", "reference",
                                              "issuing_state", "executing_state",
                                              "valid_from", "valid_until", "case"], as_)


def _register_show() -> None:
    # ``custody case show`` lives with the other read views (browse), listed last.
    from cli.commands.browse import case_show

    case_app.command("show")(case_show)


_register_show()
