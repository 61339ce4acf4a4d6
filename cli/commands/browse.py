"""Read-only views a daily user reaches for: ``custody artefact show|list``, ``custody case
show`` and ``custody transfers list [--pending]`` (the receiving custodian's inbox).

They read the world state through the store protocol (``state`` / ``state_items``): in
embedded mode each record is checked against the signed state map; in server mode the
server authorises each read for the ``--as`` actor, and what that actor may not see is
simply absent (a hidden record is "not found", as in every other command).

Why ``custody transfers`` (plural) and not ``custody transfer list``: ``custody transfer
ART --to ORG`` is the dispatch verb, with the artefact as its first argument, so a
``list`` under it would be ambiguous with an artefact called ``list``. The noun groups
(``artefact``, ``case``, ``transfers``) are for reading; the verbs stay as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import context
from cli.options import As, Json
from ledger.core.errors import NotFound
from ledger.core.state import ACTOR, ARTEFACT, CASE, LEGAL_BASIS, TRANSFER, transfer_key

if TYPE_CHECKING:
    from ledger.store.base import LedgerStore

artefact_app = typer.Typer(help="Read artefacts: exhibit number, type, description, digests, "
                           "custodian, open transfer and incidents.", no_args_is_help=True)
transfers_app = typer.Typer(help="Read transfers; 'custody transfers list --pending' is the "
                            "inbox of the caller's organisation.", no_args_is_help=True)

def _record(store: LedgerStore, prefix: str, ident: str, what: str) -> dict[str, Any]:
    rec = store.state(prefix + ident)
    if rec is None:
        raise NotFound(f"unknown {what} {ident!r}")
    return rec


def _description(store: LedgerStore, art: dict[str, Any]) -> str:
    """The description is in the signed registration event, not in the state record."""
    from ledger.core import events as ev

    index = art.get("registered_at")
    if not isinstance(index, int):
        return ""
    entry = ev.Entry.from_leaf(store.entry(index).leaf, check_canonical=False)
    event = entry.signed.event
    if event.kind != ev.ARTEFACT_REGISTER or event.payload.get("id") != art["id"]:
        return ""
    return str(event.payload.get("description") or "")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in columns))
    context.console.print(table)


def _fields(pairs: list[tuple[str, Any]]) -> None:
    for label, value in pairs:
        context.console.print(f"{label + ':':<15} {_cell(value)}", highlight=False,
                              markup=False)


# ---- artefacts ---------------------------------------------------------------------------


def artefact_view(store: LedgerStore, artefact_id: str) -> dict[str, Any]:
    """The artefact's state record with its description and its open transfer's record."""
    art = _record(store, ARTEFACT, artefact_id, "artefact")
    out = {**art, "description": _description(store, art)}
    open_tr = art.get("open_transfer")
    out["open_transfer_detail"] = store.state(transfer_key(open_tr)) if open_tr else None
    return out


@artefact_app.command("show")
def artefact_show(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(metavar="ARTEFACT", help="Artefact id.")],
    as_: As = None,
    json_: Json = False,
) -> None:
    """Show one artefact: case, exhibit number, type, description, size, digests,
    custodian, open transfer and integrity incidents."""
    store = context.get(ctx).reading_as(as_).reader()
    art = artefact_view(store, artefact)
    if context.want_json(ctx, json_):
        context.emit_json(art)
        return
    tr = art["open_transfer_detail"]
    open_tr = (f"{tr['id']} from {tr['from_org']} to {tr['to_org']} (dispatched at log "
               f"index {tr['dispatched_at']})") if tr else (art.get("open_transfer") or "none")
    _fields([("artefact", art["id"]), ("case", art["case"]), ("exhibit", art.get("exhibit")),
             ("type", art.get("type")), ("description", art["description"]),
             ("size", f"{art.get('size')} bytes"), ("parents", art.get("parents") or "none"),
             ("custodian", art.get("custodian")), ("open transfer", open_tr),
             ("incidents", art.get("incidents", 0)),
             ("registered", f"log index {art.get('registered_at')} by "
                            f"{art.get('registered_by')}")])
    for algo, digest in sorted((art.get("digests") or {}).items()):
        _fields([(algo, digest)])


@artefact_app.command("list")
def artefact_list(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option(help="Only the artefacts of this case.")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """List the artefacts this actor may see (all of them in embedded mode)."""
    store = context.get(ctx).reading_as(as_).reader()
    if case is not None:
        _record(store, CASE, case, "case")
    rows = [rec for _key, rec in store.state_items(ARTEFACT)
            if case is None or rec.get("case") == case]
    if context.want_json(ctx, json_):
        for rec in rows:
            context.emit_json(rec)
        return
    _table(["id", "case", "exhibit", "type", "size", "custodian", "open_transfer",
            "incidents"], rows)


# ---- cases -------------------------------------------------------------------------------


def case_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="CASE", help="Case reference.")],
    as_: As = None,
    json_: Json = False,
) -> None:
    """Show one case: title, lead organisation, members, and its artefacts and legal
    bases."""
    store = context.get(ctx).reading_as(as_).reader()
    case = _record(store, CASE, ref, "case")
    arts = [rec["id"] for _k, rec in store.state_items(ARTEFACT) if rec.get("case") == ref]
    bases = [rec["id"] for _k, rec in store.state_items(LEGAL_BASIS) if rec.get("case") == ref]
    out = {**case, "artefacts": arts, "legal_bases": bases}
    if context.want_json(ctx, json_):
        context.emit_json(out)
        return
    _fields([("case", case["id"]), ("title", case.get("title")),
             ("lead", case.get("lead_org")), ("members", case.get("members") or "none"),
             ("opened", f"log index {case.get('opened_at')}"),
             ("artefacts", arts or "none"), ("legal bases", bases or "none")])


# ---- transfers ---------------------------------------------------------------------------


def _caller_org(c: context.Ctx, store: LedgerStore, as_: str | None) -> str:
    """The organisation of the reading actor (``--as``, else the home's default actor,
    else the only local one): its public record, no private key needed."""
    home = c.loaded()
    actor_id = as_ or home.config.get("default_actor")
    if actor_id is None:
        local = home.local_actors()
        if len(local) != 1:
            from ledger.core.errors import InvalidInput

            raise InvalidInput("several local actors exist; choose one with --as ACTOR")
        actor_id = local[0]
    return str(_record(store, ACTOR, str(actor_id), "actor")["org"])


@transfers_app.command("list")
def transfers_list(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option(
        "--pending", help="Only open transfers TO the caller's organisation: the inbox of "
        "transfers it has to receive.")] = False,
    artefact: Annotated[str | None, typer.Option(help="Only the transfers of this "
                                                 "artefact.")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """List transfers: id, artefact, from and to organisation, legal basis, status."""
    c = context.get(ctx).reading_as(as_)
    store = c.reader()
    rows = [rec for _key, rec in store.state_items(TRANSFER)
            if artefact is None or rec.get("artefact") == artefact]
    if pending:
        org = _caller_org(c, store, as_)
        rows = [rec for rec in rows if rec.get("status") == "open" and rec.get("to_org") == org]
    if context.want_json(ctx, json_):
        for rec in rows:
            context.emit_json(rec)
        return
    if pending and not rows:
        context.console.print("No transfers waiting for your organisation.")
        return
    _table(["id", "artefact", "from_org", "to_org", "to_actor", "legal_basis", "status",
            "dispatched_at"], rows)
