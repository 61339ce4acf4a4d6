"""Moving evidence packages through a server: ``custody package upload PACKAGE`` and
``custody fetch TRANSFER``.

A package is the encrypted file a sealed transfer carries (age format; the server cannot
open it), named by its SHA-256. The sender uploads it; the receiving agency fetches it by
transfer: the package's digest comes from the transfer's record (``tr/ID``), which must
agree with the signed dispatch, and the downloaded bytes must have exactly that digest
before they are written where asked. Both commands resume an interrupted transfer: run
them again. Packages only move through a server, so an embedded home is told so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import context
from cli.options import As, Json
from ledger.core.errors import InvalidInput, NotFound, VerificationError
from ledger.core.state import transfer_key

if TYPE_CHECKING:
    from ledger.store.base import LedgerStore

package_app = typer.Typer(help="Evidence packages (the encrypted files of sealed transfers) "
                          "on a server: upload them; receivers get them with 'custody "
                          "fetch'.", no_args_is_help=True)


def _remote(c: context.Ctx) -> Any:
    """The server this home is a client of (a RemoteStore), or one sentence (exit 2)."""
    if not c.loaded().config.get("server"):
        raise InvalidInput("evidence packages move through a server, and this home uses an "
                           "embedded ledger: use a client home ('custody join --server URL') "
                           "or --server URL")
    from ledger.store.remote import RemoteStore

    store = c.reader()
    if not isinstance(store, RemoteStore):  # pragma: no cover - a server home opens one
        raise InvalidInput("this home does not reach its server")
    return store


@contextlib.contextmanager
def _bar(c: context.Ctx, label: str) -> Iterator[Callable[[int, int], None]]:
    """A byte-counting progress bar on stderr when it is a terminal (``update(done,
    total)``); silent otherwise or with --json."""
    if c.json or not context.err_console.is_terminal:
        yield lambda _done, _total: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(f"[bold]{label}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=context.err_console,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


@package_app.command("upload")
def upload(
    ctx: typer.Context,
    package: Annotated[Path, typer.Argument(help="The package file (made by 'custody "
                                            "transfer --seal-file … --out PACKAGE').")],
    as_: As = None,
    json_: Json = False,
) -> None:
    """Upload a package to the server (examiners and custodians). An interrupted upload
    continues where the server got to: run the command again. The server keeps the
    package only if its SHA-256 is the one computed here."""
    from ledger.evidence import evidence_size, hash_file

    c = context.get(ctx).reading_as(as_)
    c.json = context.want_json(ctx, json_)
    store = _remote(c)
    size = evidence_size(package)
    if size == 0:
        raise InvalidInput(f"{package} is empty: a package is never 0 bytes")
    with context.progress(c, f"Hashing {package.name}", total=size) as update:
        digest = hash_file(package, progress=update).sha256
    with _bar(c, f"Uploading {package.name}") as bar:
        result = store.upload_package(package, digest, progress=bar)
    out = {"package": str(package), "sha256": digest, "size": size,
           "status": result["status"], "resumed_from": result["resumed_from"],
           "server": store.base_url}
    if c.json:
        context.emit_json(out)
        return
    if result["status"] == "present":
        context.console.print(f"The server already holds {package.name} ({size} bytes, "
                              f"sha256 {digest}); nothing to upload")
        return
    resumed = (f", resumed at byte {result['resumed_from']}"
               if result["resumed_from"] else "")
    context.console.print(f"Uploaded {package.name} ({size} bytes{resumed})\n"
                          f"  sha256 {digest}")


def _package_of(store: LedgerStore, transfer: str) -> dict[str, Any]:
    """The package of ``transfer`` as its record names it, checked against the signed
    dispatch the record says it comes from."""
    from ledger.core import events as ev

    record = store.state(transfer_key(transfer))
    if record is None:
        raise NotFound(f"unknown transfer {transfer!r}")
    package = record.get("package")
    if not isinstance(package, dict) or not isinstance(package.get("sha256"), str):
        raise NotFound(f"transfer {transfer} carries no package (it was dispatched without "
                       "a sealed file); the evidence travels another way")
    index = record.get("dispatched_at")
    if isinstance(index, int):
        event = ev.Entry.from_leaf(store.entry(index).leaf, check_canonical=False).signed.event
        signed = event.payload.get("package")
        if event.kind != ev.DISPATCH or event.payload.get("transfer") != transfer \
                or not isinstance(signed, dict) or signed.get("sha256") != package["sha256"]:
            raise VerificationError(f"the server's record of transfer {transfer} names a "
                                    "package that its signed dispatch does not")
    return package


def fetch(
    ctx: typer.Context,
    transfer: Annotated[str, typer.Argument(metavar="TRANSFER", help="Transfer id.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the package (default: TRANSFER.age here).")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Download the package a transfer carries (sender and receiving agency only). Its
    SHA-256 must be the dispatched one (exit 1 and nothing kept otherwise); a transfer
    without a package is exit 4. An interrupted download continues from where it stopped
    (FILE.part): run the command again."""
    c = context.get(ctx).reading_as(as_)
    c.json = context.want_json(ctx, json_)
    store = _remote(c)
    package = _package_of(store, transfer)
    digest = str(package["sha256"])
    dest = out if out is not None else Path(f"{transfer}.age")
    if dest.is_dir():
        raise InvalidInput(f"{dest} is a directory; give the package's file name with --out")
    with _bar(c, f"Fetching {transfer}") as bar:
        try:
            result = store.download_package(digest, dest, progress=bar)
        except NotFound:
            raise NotFound(f"the server does not hold the package of {transfer} (sha256 "
                           f"{digest}) yet: the sender uploads it with 'custody package "
                           "upload PACKAGE'") from None
    expected = package.get("size")
    if isinstance(expected, int) and result["size"] != expected:
        dest.unlink()
        raise VerificationError(f"the package of {transfer} has {result['size']} bytes, not "
                                f"the dispatched {expected}; it was deleted")
    fields = {"transfer": transfer, "path": str(dest), "sha256": digest,
              "size": result["size"], "format": package.get("format"),
              "resumed_from": result["resumed_from"]}
    if c.json:
        context.emit_json(fields)
        return
    resumed = (f", resumed at byte {result['resumed_from']}"
               if result["resumed_from"] else "")
    context.console.print(f"Fetched the package of {transfer} to {dest} ({result['size']} "
                          f"bytes{resumed}); its SHA-256 is the dispatched one\n"
                          f"  sha256 {digest}")
