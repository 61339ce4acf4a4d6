"""``custody backup`` and ``custody restore`` (issue #14 item 4; logic in ledger/backup.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.options import Json

if TYPE_CHECKING:
    from ledger.backup import Progress


@contextlib.contextmanager
def _progress(c: context.Ctx) -> Iterator[Progress]:
    """One Rich progress line per phase on stderr when it is a terminal (never with
    ``--json``); otherwise silent. Phases without a known total show a pulsing bar."""
    if c.json or not context.err_console.is_terminal:
        yield lambda _phase, _done, _total: None
        return
    from rich.progress import BarColumn, Progress, TaskID, TimeElapsedColumn

    with Progress("[bold]{task.description}", BarColumn(), TimeElapsedColumn(),
                  console=context.err_console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                for task in tasks.values():  # a new phase: the earlier ones are done
                    bar.update(task, total=1, completed=1)
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        yield update


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def backup(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(
        "--out", metavar="FILE", dir_okay=False,
        help="The backup file to write (a tar archive: manifest.json and the database "
        "copy). Written atomically; an existing file is not replaced without --force.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace FILE if it exists.")] = False,
    json_: Json = False,
) -> None:
    """Back up the ledger into one file while writers keep appending.

    One consistent snapshot (SQLite's online backup API, or pg_dump on PostgreSQL), with
    a manifest recording the signed checkpoint the copy ends at. It holds the ledger
    database only: keys, config.json and the evidence and package files are NOT in it."""
    from ledger.backup import backup as take

    c = context.get(ctx)
    with _progress(c) as progress:
        result = take(c.loaded(), out, force=force, progress=progress)
    if context.want_json(ctx, json_):
        context.emit_json(result.to_json())
        return
    m = result.manifest
    context.console.print(
        f"Backed up ledger [bold]{m.origin}[/] at tree size {m.tree_size} to {result.path} "
        f"({_mib(result.archive_size)}, {result.seconds:.1f} s)", highlight=False)
    context.console.print(f"  checkpoint covered: size {m.tree_size}, root {m.root}",
                          highlight=False)
    context.console.print(f"  archive sha256 {result.archive_sha256}", highlight=False)
    context.console.print("  not in it: keys, config.json, evidence and package files",
                          highlight=False)


def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(
        metavar="FILE", dir_okay=False, help="A backup written by 'custody backup'.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a ledger in place that the backup does not extend "
        "(newer, unrelated or unreadable). It is kept aside, never deleted.")] = False,
    accept_older: Annotated[bool, typer.Option(
        "--accept-older", help="Restore a backup with FEWER entries than the checkpoint "
        "this home kept. Acknowledged entries are then missing, and every client that "
        "kept a newer checkpoint (this home included) refuses the restored ledger.")]
    = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Verify the backup against this home (archive, full audit, "
        "checkpoints) and stop: nothing is replaced.")] = False,
    json_: Json = False,
) -> None:
    """Restore a backup, only after it passes a full audit and contains the checkpoint
    this home kept.

    Checked first: the archive's SHA-256, a FULL audit of the copy, its checkpoint
    signed by the pinned log key, and consistency with the checkpoint this home kept. An
    older backup is refused (exit 3) unless --accept-older; a ledger in place that the
    backup does not extend is replaced only with --force. The ledger in place is kept
    aside (SQLite: ledger.db.before-restore-TIME beside it; PostgreSQL: a schema
    custody_before_restore_TIME). A failed check changes nothing (exit 1)."""
    from ledger.backup import restore as put_back

    c = context.get(ctx)
    with _progress(c) as progress:
        result = put_back(c.loaded(), file, force=force, accept_older=accept_older,
                          check_only=check, progress=progress)
    if context.want_json(ctx, json_):
        context.emit_json(result.to_json())
        return
    m = result.manifest
    verb = "Restored" if result.restored else "Checked (nothing replaced)"
    context.console.print(
        f"{verb}: ledger [bold]{m.origin}[/] at tree size {m.tree_size} from {file} "
        f"(backup of {m.created}); audit passed, {result.entries_checked} entries "
        f"({result.seconds:.1f} s)", highlight=False)
    if result.previous:
        context.console.print(f"  the ledger that was in place is kept as {result.previous}",
                              highlight=False)
    for warning in result.warnings:
        context.err_console.print(f"[bold red]WARNING[/]: {warning}", highlight=False)
