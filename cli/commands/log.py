"""``custody log …`` (checkpoint, verifier key, entries, proofs) and ``custody audit``."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.options import As, Json
from cli.witness_opts import Quorum, Witnesses, WitnessPolicy, check_witnessed, witness_policy
from ledger.core.errors import InvalidInput, LedgerError, NotFound, VerificationError
from ledger.core.state import LEDGER

if TYPE_CHECKING:

    from ledger.core.audit import AuditReport

app = typer.Typer(help="Read the transparency log: checkpoints, entries and Merkle proofs "
                  "(RFC 6962, C2SP tlog-checkpoint).", no_args_is_help=True)


@app.command()
def checkpoint(
    ctx: typer.Context,
    witnessed: Annotated[bool, typer.Option(
        "--witnessed", help="Print the newest checkpoint the server holds witness "
        "cosignatures for, with them; with --witness, exit 1 unless a quorum of those "
        "witnesses validly cosigned it.")] = False,
    witness: Witnesses = None,
    quorum: Quorum = None,
    json_: Json = False,
) -> None:
    """Print the current checkpoint exactly, as a C2SP signed note, once it verifies with
    the pinned log key and extends the checkpoint this client kept (which it then
    replaces). Exit 1 for an unsigned, forked or rolled-back checkpoint."""
    if witnessed or witness or quorum is not None:
        _witnessed_checkpoint(ctx, witness_policy(witness, quorum), json_)
        return
    note, _decision = context.get(ctx).latest_trusted()
    _print_note(ctx, json_, note)


def _print_note(ctx: typer.Context, json_: bool, note: str) -> None:
    """The signed note exactly as text, or ``{"origin", "size", "root", "note"}``."""
    if not context.want_json(ctx, json_):
        typer.echo(note, nl=False)
        return
    lines = note.split("\n")
    context.emit_json({"origin": lines[0], "size": int(lines[1]), "root": lines[2],
                       "note": note})


@app.command("verifier-key")
def verifier_key(ctx: typer.Context, json_: Json = False) -> None:
    """Print the log's public key as a C2SP note verifier key (name+keyid+base64)."""
    ledger = context.get(ctx).reader().state(LEDGER)
    if ledger is None:
        raise NotFound("the log has no genesis entry")
    if context.want_json(ctx, json_):
        context.emit_json({"verifier_key": ledger["log_key"], "origin": ledger["origin"]})
        return
    typer.echo(ledger["log_key"])


@app.command()
def entries(
    ctx: typer.Context,
    start: Annotated[int, typer.Option(min=0, help="First index.")] = 0,
    end: Annotated[int | None, typer.Option(min=0, help="Stop before this index.")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """List log entries. With --json: JSON lines {index, leaf_hash, entry}, where entry is
    the base64 of the exact leaf bytes L and leaf_hash = SHA-256(0x00 || L)."""
    as_json = context.want_json(ctx, json_)
    for row in context.get(ctx).reading_as(as_).reader().entries(start, end):
        if as_json:
            context.emit_json({"index": row.index, "leaf_hash": row.leaf_hash.hex(),
                               "entry": base64.b64encode(row.leaf).decode()})
        else:
            typer.echo(f"{row.index}\t{row.leaf_hash.hex()}\t{row.leaf.decode()}")


proof = typer.Typer(help="Merkle proofs (RFC 6962 §2.1.1 audit paths and §2.1.2 "
                    "consistency proofs).", no_args_is_help=True)
app.add_typer(proof, name="proof")


def _size(ctx: typer.Context, size: int | None) -> int:
    current = context.get(ctx).reader().size()
    if size is None:
        return current
    if size > current:
        raise InvalidInput(f"the log has {current} entries; --size {size} is too large")
    return size


@proof.command()
def inclusion(
    ctx: typer.Context,
    index: Annotated[int, typer.Option(min=0, help="Leaf index.")],
    size: Annotated[int | None, typer.Option(min=1, help="Tree size (default: current).")] = None,
    json_: Json = False,
) -> None:
    """Print the inclusion proof (audit path) of one entry."""
    store = context.get(ctx).reader()
    tree_size = _size(ctx, size)
    if index >= tree_size:
        raise InvalidInput(f"index {index} is not below tree size {tree_size}")
    hashes = [h.hex() for h in store.inclusion_proof(index, tree_size)]
    out = {"index": index, "tree_size": tree_size,
           "leaf_hash": store.entry(index).leaf_hash.hex(), "hashes": hashes}
    if context.want_json(ctx, json_):
        context.emit_json(out)
    else:
        typer.echo(f"leaf {index} of {tree_size}: {out['leaf_hash']}")
        for h in hashes:
            typer.echo(h)


@proof.command()
def consistency(
    ctx: typer.Context,
    old: Annotated[int, typer.Option(min=0, help="The older tree size.")],
    new: Annotated[int | None, typer.Option(min=0, help="The newer size (default: current).")]
    = None,
    json_: Json = False,
) -> None:
    """Print the consistency proof between two tree sizes."""
    new_size = _size(ctx, new)
    if old > new_size:
        raise InvalidInput(f"--old {old} is larger than the new size {new_size}")
    hashes = [h.hex() for h in context.get(ctx).reader().consistency_proof(old, new_size)]
    out = {"old_size": old, "new_size": new_size, "hashes": hashes}
    if context.want_json(ctx, json_):
        context.emit_json(out)
    else:
        for h in hashes:
            typer.echo(h)


def audit(
    ctx: typer.Context,
    checkpoint_file: Annotated[Path | None, typer.Option(
        "--checkpoint", exists=True, dir_okay=False,
        help="An earlier checkpoint you kept (signed note); the log must extend it.")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Re-verify the whole ledger from scratch: every leaf hash, signature, key validity,
    custody rule, ledger time, checkpoint signature and root, and consistency, against
    the log key pinned in this home. When it passes, the checkpoint this client keeps
    advances to the ledger's latest one (only if it verifies and extends it). Exit 0 when
    everything verifies, 1 otherwise."""
    c = context.get(ctx).reading_as(as_)
    store = c.reader()
    home = c.loaded()
    pinned = home.config.get("log_key")
    trusted = _checkpoint_file(checkpoint_file) if checkpoint_file \
        else home.remembered_checkpoint()
    with context.progress(c, "Auditing", total=store.size()) as advance:
        # Embedded: every table; Fabric: the log derived from the chain; a server: what it
        # serves, replayed here against the pinned log key.
        report = store.audit(trusted_checkpoint=trusted, log_verifier_key=pinned,
                             progress=advance)
    if report.ok:
        report = _advance_kept_checkpoint(c, report)
    if context.want_json(ctx, json_):
        context.emit_json(report.to_json())
    elif report.ok:
        context.console.print(f"[green]audit passed[/]: {report.entries_checked} entries, "
                              f"tree size {report.tree_size}, root {report.root_hex}")
    if not report.ok:
        if not context.want_json(ctx, json_):
            where = "" if report.first_bad_index is None \
                else f" at index {report.first_bad_index}"
            context.err_console.print(f"audit FAILED{where} ({report.kind}): {report.detail}")
        raise typer.Exit(1)


def _checkpoint_file(path: Path) -> str:
    """A checkpoint the user kept (``--checkpoint FILE``): a signed note, or one clear
    sentence (exit 2) — never an audit "failure" caused by a wrong file."""
    from ledger.core.checkpoint import Checkpoint
    from ledger.core.note import split_note

    try:
        text = path.read_text(encoding="utf-8")
        Checkpoint.parse(split_note(text)[0])
    except OSError as exc:
        raise InvalidInput(f"cannot read --checkpoint {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, LedgerError) as exc:
        why = exc.message if isinstance(exc, LedgerError) else "it is not UTF-8 text"
        raise InvalidInput(f"--checkpoint {path} is not a signed checkpoint note ({why})") \
            from None
    return text


@app.command("rebuild-state")
def rebuild_state(ctx: typer.Context, json_: Json = False) -> None:
    """Rebuild the state cache from the log after it was edited outside the log (writes
    and reads refuse it until then). The replayed state is written only if it gives the
    state-map root signed in the latest checkpoint; otherwise exit 1 and nothing changes.
    Embedded ledgers (run it on the server's machine for a server's database)."""
    c = context.get(ctx)
    done = c.reader().rebuild_state(c.loaded().pinned_log_key())
    if context.want_json(ctx, json_):
        context.emit_json(done.to_json())
    elif done.repaired:
        context.console.print(f"Rebuilt {len(done.repaired)} state record(s) from the log "
                              f"(size {done.size}): {', '.join(done.repaired)}")
    else:
        context.console.print(f"The state cache already matches the log (size {done.size})")


def _advance_kept_checkpoint(c: context.Ctx, report: AuditReport) -> AuditReport:
    """After a passing audit, move the kept checkpoint to the ledger's latest one through
    the client's trust rules (ledger/core/trust.py); a refusal fails the audit."""
    if c.reader().latest_checkpoint() is None:
        return report
    try:
        c.trusted_checkpoint()
    except VerificationError as exc:
        return replace(report, ok=False, first_bad_index=None, kind="consistency",
                       detail=exc.message)
    return report


# ---- witnessed checkpoints (--witnessed --witness KEY --quorum N; cli/witness_opts.py) --

def _witnessed_checkpoint(ctx: typer.Context, policy: WitnessPolicy | None,
                          json_: bool = False) -> None:
    """Print the newest checkpoint with at least ``quorum`` cosignatures, after checking
    the log's signature with the pinned key and, with a policy, the quorum of trusted
    witnesses (VerificationError, exit 1, otherwise)."""
    c = context.get(ctx)
    store = c.reader()
    need = policy.quorum if policy else 1
    # Fewer cosignatures than the quorum anywhere: check the newest cosigned checkpoint
    # anyway, so the refusal says how many valid of how many required it has.
    found = store.witnessed_checkpoint(need) or store.witnessed_checkpoint(1)
    if found is None:
        if policy is None:
            raise NotFound("no checkpoint of this log has a witness cosignature yet")
        raise VerificationError(f"cosignature quorum not met: no checkpoint is cosigned, "
                                f"0 valid of {need} required")
    _size, note = found
    log_key = c.loaded().pinned_log_key()
    if policy is None:
        from ledger.core.checkpoint import verify_checkpoint

        verify_checkpoint(note, log_key)
    else:
        check_witnessed(note, log_key, policy)
    _print_note(ctx, json_, note)
