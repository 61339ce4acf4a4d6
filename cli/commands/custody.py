"""The custody verbs: register, transfer, receive, access, history, verify, status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli import context
from cli.options import As, Json, check_choice
from cli.witness_opts import Quorum, Witnesses
from ledger import views
from ledger.errors import InvalidInput, LedgerError, NotFound
from ledger.evidence import Digests, evidence_size, hash_file
from ledger.vocab import ACCESS_ACTIONS, ARTEFACT_TYPES

FileArg = Annotated[Path, typer.Argument(help="The evidence file (read once, never stored).")]


def hashed(ctx: typer.Context, path: Path, blake3: bool = False) -> Digests:
    """Hash a file in one streaming read, with a progress bar on a terminal."""
    c = context.get(ctx)
    size = evidence_size(path)  # a block device's size comes from the device
    with context.progress(c, f"Hashing {path.name}", total=size) as update:
        return hash_file(path, blake3=blake3, progress=update)


def register(
    ctx: typer.Context,
    file: FileArg,
    case: Annotated[str, typer.Option(help="Case reference.")],
    kind: Annotated[str, typer.Option("--type", help="One of: " + ", ".join(ARTEFACT_TYPES))]
    = "file",
    exhibit: Annotated[str, typer.Option(help="Exhibit number.")] = "",
    description: Annotated[str, typer.Option(help="Description (no personal data).")] = "",
    parent: Annotated[list[str] | None, typer.Option(help="Parent artefact of a derived "
                                                     "copy (repeat).")] = None,
    blake3: Annotated[bool, typer.Option("--blake3", help="Also compute BLAKE3.")] = False,
    artefact_id: Annotated[str | None, typer.Option("--id", help="Artefact id (default: "
                                                    "generated).")] = None,
    allow_empty: Annotated[bool, typer.Option(
        "--allow-empty", help="Register a 0-byte file (refused by default: every empty "
        "file would then verify as this artefact).")] = False,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Register an artefact: SHA-256 and SHA-512 from one streaming read, signed by you.
    An empty file is refused unless --allow-empty."""
    check_choice(kind, ARTEFACT_TYPES, "type")
    c = context.get(ctx)
    actor = c.actor(as_)
    custody = c.custody()
    digests = hashed(ctx, file, blake3)
    if digests.size == 0 and not allow_empty:
        raise InvalidInput(f"{file} is empty (0 bytes): any empty file would verify as this "
                           "artefact; pass --allow-empty if that is really the evidence")
    receipt = custody.register(actor, case=case, digests=digests, kind=kind, exhibit=exhibit,
                               description=description, parents=parent or [],
                               artefact_id=artefact_id)
    art = receipt.result["artefact"]
    context.done(ctx, json_, receipt, {"artefact_id": art, **digests.as_dict(),
                                       "size": digests.size, "case": case},
                 f"Registered [bold]{art}[/] ({digests.size} bytes)\n  sha256 {digests.sha256}"
                 f"\n  sha512 {digests.sha512}")


def transfer(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    to: Annotated[str, typer.Option(help="Receiving organisation.")],
    purpose: Annotated[str, typer.Option(help="Why custody moves.")],
    legal_basis: Annotated[str | None, typer.Option(help="Legal basis id (required across "
                                                    "borders).")] = None,
    to_actor: Annotated[str | None, typer.Option(help="A named receiving actor.")] = None,
    transport: Annotated[str, typer.Option(help="Transport method, e.g. courier.")] = "",
    transport_ref: Annotated[str, typer.Option(help="Tracking reference.")] = "",
    seal: Annotated[list[str] | None, typer.Option(help="Seal number (repeat).")] = None,
    transfer_id: Annotated[str | None, typer.Option("--id", help="Transfer id (default: "
                                                    "generated).")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Dispatch custody to another organisation. Refused (exit 3) across jurisdictions
    without a legal basis covering this artefact, both states and today."""
    c = context.get(ctx)
    actor = c.actor(as_)
    receipt = c.custody().dispatch(actor, artefact=artefact, to_org=to, purpose=purpose,
                                   legal_basis=legal_basis, to_actor=to_actor,
                                   transport=transport, transport_ref=transport_ref,
                                   seals=seal or [], transfer_id=transfer_id)
    tr = receipt.result["transfer"]
    context.done(ctx, json_, receipt, {"transfer": tr, "artefact": artefact, "to": to},
                 f"Dispatched {artefact} to {to}: transfer [bold]{tr}[/]")


def receive(
    ctx: typer.Context,
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER", help="Transfer id.")],
    file: Annotated[Path, typer.Option(help="The bytes received; re-hashed BEFORE accepting.")],
    seal: Annotated[list[str] | None, typer.Option(help="Seal number received (repeat).")]
    = None,
    reason: Annotated[str, typer.Option(help="Reason, for a rejection.")] = "",
    as_: As = None,
    json_: Json = False,
) -> None:
    """Receive custody: re-hash the received file; on a match a signed acceptance makes
    your organisation the custodian (exit 0); on a mismatch a signed rejection is recorded
    as an integrity incident and custody does not move (exit 1)."""
    c = context.get(ctx)
    actor = c.actor(as_)
    custody = c.custody()
    custody.record("tr/" + transfer_id, "transfer")
    digests = hashed(ctx, file)
    receipt = custody.receive(actor, transfer=transfer_id, digests=digests, reason=reason,
                              seals=seal or [])
    outcome = receipt.result["outcome"]
    fields = {"transfer": transfer_id, "outcome": outcome, "sha256": digests.sha256,
              "mismatched": receipt.result.get("mismatched", []),
              "custodian": receipt.result.get("custodian")}
    if outcome == "accepted":
        context.done(ctx, json_, receipt, fields,
                     f"[green]Accepted[/]: digests match; {fields['custodian']} is custodian")
        return
    context.done(ctx, json_, receipt, fields,
                 "[red]Rejected[/]: the received bytes do not match the registered digests; "
                 "integrity incident recorded, custody unchanged")
    raise typer.Exit(1)


def access(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    action: Annotated[str, typer.Option(help="One of: " + ", ".join(ACCESS_ACTIONS))],
    purpose: Annotated[str, typer.Option(help="Why.")],
    authorisation: Annotated[str, typer.Option(help="Authorisation reference.")] = "",
    as_: As = None,
    json_: Json = False,
) -> None:
    """Record an access to an artefact. A denied attempt is recorded too, and exits 3."""
    check_choice(action, ACCESS_ACTIONS, "action")
    c = context.get(ctx)
    actor = c.actor(as_)
    receipt = c.custody().access(actor, artefact=artefact, action=action,
                                 purpose=purpose, authorisation=authorisation)
    context.done(ctx, json_, receipt, {"artefact": artefact, "action": action,
                                       "outcome": "success"},
                 f"Recorded {action} of {artefact}")


def history(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Show the custody timeline: who, which agency and country, legal basis, digests
    checked, log index and ledger time. Every line is a signed entry proven against the
    checkpoint this client trusts, and the list is proven complete; exit 1 otherwise."""
    from cli.commands.bundle import print_faults, proven

    c = context.get(ctx).reading_as(as_)
    cp, result = proven(c, witnesses, quorum, artefact_id=artefact)
    if result.verdict == "not-registered":
        raise NotFound(f"unknown artefact {artefact!r}")
    items = [t.to_json() for t in result.timeline]
    if context.want_json(ctx, json_):
        context.emit_json({"artefact_id": artefact, "custody": items,
                           "complete": result.complete, "tree_size": cp.size,
                           "faults": [f.to_json() for f in result.faults]})
    else:
        table(items)
    if not result.ok:
        print_faults(result)
        raise typer.Exit(1)


def table(items: list[dict[str, Any]]) -> None:
    from rich.table import Table

    out = Table("#", "ledger time (UTC)", "event", "by", "agency", "country", "legal basis")
    for it in items:
        out.add_row(str(it["index"]), it["ledger_time"], it["summary"],
                    f"{it['signer_name']} ({it['signer']})", it["org"], it["jurisdiction"],
                    it.get("legal_basis") or "")
    context.console.print(out)


def verify(
    ctx: typer.Context,
    file: FileArg,
    artefact: Annotated[str | None, typer.Option(help="The artefact the file should be.")]
    = None,
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """For courts: hash the file and give a verdict from proofs only: the artefact's signed
    entries, their inclusion proofs and the proof that the list is complete, checked
    against the checkpoint this client trusts (and, with --witness, cosigned by a quorum).
    authentic (exit 0); not-registered, mismatch or fault (exit 1)."""
    from cli.commands.bundle import proven, report

    c = context.get(ctx).reading_as(as_)
    digests = hashed(ctx, file)
    cp, result = proven(c, witnesses, quorum, artefact_id=artefact, sha256=digests.sha256)
    if artefact is not None and result.verdict == "not-registered" and not result.faults:
        raise NotFound(f"unknown artefact {artefact!r}: the checkpoint of size {cp.size} "
                       "proves it was never registered")
    if c.loaded().config.get("server") and result.artefact_id \
            and result.verdict in ("authentic", "mismatch") \
            and not _visible(c, result.artefact_id):
        # Through a server, holding the bytes is a capability: a court or an auditor
        # outside the case may verify the artefact and see its chain, and that use of
        # the capability is on the log, signed by the verifier.
        receipt = c.custody().record_verification(
            c.actor(as_), artefact=result.artefact_id, sha256=digests.sha256,
            tree_size=cp.size, verdict=result.verdict)
        c.remember_receipt(receipt)
        context.err_console.print(f"The verification is recorded at log index "
                                  f"{receipt.index}.", highlight=False)
    report(ctx, result, json_, "every entry's signature and inclusion proof verified")


def _visible(c: context.Ctx, artefact_id: str) -> bool:
    """Whether the verifier may read the artefact's record (a party to its case)."""
    try:
        return c.reader().state("art/" + artefact_id) is not None
    except LedgerError:
        return True  # the server refuses its own record: the verdict names that fault


def status(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """Ledger size, last checkpoint and counts."""
    out = views.status(context.get(ctx).reading_as(as_).reader())
    if context.want_json(ctx, json_):
        context.emit_json(out)
        return
    for key, value in out.items():
        if key != "checkpoint":
            context.console.print(f"{key.replace('_', ' ')}: {value}")
    context.console.print("checkpoint:\n" + (out["checkpoint"] or "(none)"))
