"""``custody export case-uco``: an artefact's (or a case's) custody as CASE/UCO JSON-LD.

Everything written comes from verified court bundles (``ledger.core.bundle``) at the client's
trusted checkpoint, exactly as ``custody bundle export`` obtains them; the mapping is
``ledger.court.case_uco`` and ``docs/case-uco.md``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.commands.bundle import checkpoint_for, write_atomic_files
from cli.options import As
from cli.witness_opts import Quorum, Witnesses
from ledger.core.errors import Forbidden, InvalidInput, NotFound, VerificationError
from ledger.core.state import ARTEFACT, case_key

if TYPE_CHECKING:
    from ledger.core.bundle import Bundle, VerifyResult
    from ledger.core.checkpoint import Checkpoint
    from ledger.court.case_uco import CaseListing

app = typer.Typer(help="Export proven custody data in standard formats for other tools.",
                  no_args_is_help=True)

TOOL = "custody-ledger"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("custody-ledger")
    except PackageNotFoundError:  # a checkout that was never installed
        return ""


def generation_time_ms() -> int:
    """Now, or ``SOURCE_DATE_EPOCH`` (seconds; the reproducible-builds convention) when
    set, so that the same ledger exported twice gives the same bytes."""
    fixed = os.environ.get("SOURCE_DATE_EPOCH")
    if fixed is not None:
        try:
            return int(fixed) * 1000
        except ValueError:
            raise InvalidInput("SOURCE_DATE_EPOCH must be an integer number of seconds") \
                from None
    return int(time.time() * 1000)


def _verified(c: context.Ctx, artefact: str, cp: Checkpoint, keys: tuple[str, ...],
              need: int) -> tuple[Bundle, VerifyResult]:
    from ledger.core.bundle import verify_bundle

    bundle, cache_faults = c.reader().bundle(artefact_id=artefact, size=cp.size)
    result = verify_bundle(bundle, log_key=c.loaded().pinned_log_key(), witnesses=keys,
                           quorum=need, expect=cp).with_faults(cache_faults)
    if result.verdict == "not-registered":
        raise NotFound(f"unknown artefact {artefact!r} at checkpoint size {cp.size}")
    if not result.ok:
        kinds = ", ".join(sorted({f.kind for f in result.faults})) or result.verdict
        raise VerificationError(f"export refused: the proofs of artefact {artefact!r} do not "
                                f"verify at checkpoint size {cp.size} ({kinds} faults; "
                                f"'custody bundle export {artefact}' names them)")
    return bundle, result


def _listing(c: context.Ctx, case: str, cp: Checkpoint) -> CaseListing:
    """The case's artefacts: proven from every leaf of the log when this client may read
    the log (embedded, or an auditor of a server), else the operator's state (said so)."""
    from ledger.court.case_uco import CaseListing, scan_case

    store = c.reader()
    try:
        listing = scan_case((s.leaf for s in store.entries(0, cp.size)), case=case,
                            origin=cp.origin, size=cp.size, root=cp.root)
    except Forbidden:
        rec = store.state(case_key(case))
        if rec is None:
            raise NotFound(f"unknown case {case!r}") from None
        arts = sorted((r.get("registered_at", 0), str(r["id"]))
                      for _k, r in store.state_items(ARTEFACT) if r.get("case") == case)
        return CaseListing(case, tuple(a for _i, a in arts), False, cp.size)
    if listing is None:
        raise NotFound(f"unknown case {case!r} at checkpoint size {cp.size}")
    return listing


@app.command("case-uco")
def case_uco(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON-LD file.")],
    artefact: Annotated[str | None, typer.Argument(
        metavar="[ARTEFACT]", help="Artefact id (or use --case).")] = None,
    case: Annotated[str | None, typer.Option(
        "--case", help="Export every artefact of this case.")] = None,
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]
    = False,
    as_: As = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Write the custody of an artefact, or of every artefact of a case, as CASE/UCO
    JSON-LD (CASE 1.5.0; check it with `case_validate FILE`). Only what the verified court
    bundles prove is written: the artefacts and their digests, each custody event as an
    investigative action with its provenance record, the signers, their organisations and
    key ids, and the legal bases cited. A bundle that does not verify is refused (exit 1)."""
    from ledger.court.case_uco import CASE_VERSION, case_uco_graph

    if (artefact is None) == (case is None):
        raise InvalidInput("name one artefact, or a case with --case CASE")
    c = context.get(ctx).reading_as(as_)
    if out.exists() and not force:
        raise InvalidInput(f"{out} exists; use --force to overwrite it")
    cp, keys, need = checkpoint_for(c, witnesses, quorum)
    listing: CaseListing | None = None
    if case is not None:
        listing = _listing(c, case, cp)
        if not listing.artefacts:
            raise NotFound(f"case {case!r} has no registered artefact at checkpoint size "
                           f"{cp.size}: nothing to export")
        names = list(listing.artefacts)
    else:
        names = [str(artefact)]
    items = [_verified(c, name, cp, keys, need) for name in names]
    generated = generation_time_ms()
    graph = case_uco_graph(items, generated_at_ms=generated, tool=TOOL,
                           tool_version=_version(), listing=listing)
    data = json.dumps(graph, indent=1, sort_keys=True, ensure_ascii=False).encode() + b"\n"
    write_atomic_files({out: data})
    events = sum(len(r.timeline) for _b, r in items)
    summary = {
        "out": str(out), "bytes": len(data), "case_version": CASE_VERSION,
        "case": listing.case if listing else items[0][1].case,
        "artefacts": [r.artefact_id for _b, r in items], "events": events,
        "nodes": len(graph["@graph"]), "tree_size": cp.size, "root": cp.root.hex(),
        "witnesses": sorted({w for _b, r in items for w in r.witnesses}),
        "case_listing": None if listing is None else
        ("proven" if listing.proven else "operator-state"),
    }
    if context.want_json(ctx, json_):
        context.emit_json(summary)
        return
    context.console.print(f"Wrote {out} ({len(data)} bytes, CASE {CASE_VERSION}): "
                          f"{len(items)} artefact(s), {events} custody events proven at "
                          f"checkpoint size {cp.size}")
    if listing is not None and not listing.proven:
        context.err_console.print(
            f"note: the artefacts of case {listing.case} were listed by the operator's state, "
            "which this client cannot check (the log is readable by auditors only): each "
            "artefact is proven by its own bundle, the completeness of the list is NOT",
            highlight=False)
