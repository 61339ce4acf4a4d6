"""Per-invocation state shared by commands: home, output mode, the opened store."""

from __future__ import annotations

import contextlib
import errno
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions

from ledger.core.errors import CheckpointRefused, NotFound, VerificationError
from ledger.home import Home, custody, open_store

if TYPE_CHECKING:  # not imported at run time: the store and the service load when used
    from ledger.core.trust import TrustDecision
    from ledger.service import ActorKey, Custody
    from ledger.store.base import AppendResult, LedgerStore
    from ledger.views import StateReader

_T = TypeVar("_T")

#: Width used when the output is not a terminal (a pipe or a file): wide enough that no
#: table cell or line is ever cut or ellipsised.
UNBOUNDED_WIDTH = 100_000


class _Console(Console):
    """A Rich console that is as wide as the terminal on a terminal, and unbounded when
    redirected: ``custody history X > report.txt`` keeps every value whole (no cut at
    80 columns, no "…"). Tables size to their content, never to this width."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNBOUNDED_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console: Console = _Console(soft_wrap=True)
err_console: Console = _Console(stderr=True, soft_wrap=True)


@dataclass
class Ctx:
    home: Home
    json: bool = False
    server: str | None = None
    #: A Fabric network directory (``--network``) overriding the home's.
    network: Path | None = None
    #: Fabric: the organisations asked to endorse (``--endorsers``; default all).
    endorsers: list[str] | None = None
    #: TLS files given on the command line (``--ca``, ``--client-cert``, ``--client-key``;
    #: absolute paths), overriding those pinned in the home by ``custody join``.
    tls: dict[str, str] = field(default_factory=dict)
    _store: LedgerStore | None = field(default=None, repr=False)

    def loaded(self) -> Home:
        if not self.home.config:
            self.home.load()
            if self.server:
                self.home.config["server"] = self.server
            if self.network is not None:
                self.home.config["network"] = str(self.network)
            if self.endorsers is not None:
                self.home.config["fabric_endorsers"] = self.endorsers
            if self.tls:
                self.home.config["tls"] = {**self.home.config.get("tls", {}), **self.tls}
        return self.home

    #: The acting actor (``--as``); in server mode reads authenticate as this actor.
    acting: str | None = None

    _writable: bool = field(default=False, repr=False)

    def store(self) -> LedgerStore:
        """The store for writing (loads the log key in embedded mode)."""
        if self._store is not None and not self._writable:
            self._store.close()  # a read-only store was opened first: upgrade it
            self._store = None
        if self._store is None:
            self._store = open_store(self.loaded(), actor_id=self.acting)
            self._writable = True
        return self._store

    def reader(self) -> LedgerStore:
        """A store for reading only: no log key (and so no passphrase) is needed."""
        if self._store is None:
            self._store = open_store(self.loaded(), writable=False, actor_id=self.acting)
        return self._store

    def quick_read(self, read: Callable[[StateReader], _T]) -> _T:
        """``read`` over the sqlite3-only reader of an embedded ledger
        (:func:`ledger.home.open_quick_reader`: no SQLAlchemy, the same verified reads),
        else over :meth:`reader`. A ``sqlite3`` error there (a damaged or locked file)
        goes to the full store, which says in one sentence what is wrong."""
        import sqlite3

        from ledger.home import open_quick_reader

        quick = open_quick_reader(self.loaded()) if self._store is None else None
        if quick is not None:
            try:
                return read(quick)
            except sqlite3.Error:
                pass
            finally:
                quick.close()
        return read(self.reader())

    def custody(self) -> Custody:
        """The use cases, for a write. The ledger must first extend the checkpoint this
        client kept: nothing is appended to a truncated or forked log (exit 1)."""
        store = self.store()
        if self.loaded().remembered_checkpoint() is not None:
            self.trusted_checkpoint()
        return custody(self.loaded(), store)

    def reading_as(self, actor_id: str | None) -> Ctx:
        """Read as this actor (server mode authenticates reads with its key)."""
        if actor_id is not None:
            self.acting = actor_id
        return self

    def actor(self, actor_id: str | None) -> ActorKey:
        key = self.loaded().actor(actor_id)
        self.acting = key.actor_id
        return key

    def remember(self, note: str, *, older_ok: bool = False) -> TrustDecision:
        """Keep ``note`` (the ledger's checkpoint) as this client's trusted checkpoint,
        only if it verifies with the pinned log key and extends the one kept (consistency
        proof from the store, fetched only when needed). Raises
        :class:`~ledger.core.errors.CheckpointRefused` (exit 1) and leaves the kept file as it
        was otherwise. ``older_ok`` is for append receipts (:meth:`remember_receipt`)."""
        return self.loaded().remember_checkpoint(
            note, lambda old, new: self.reader().consistency_proof(old, new),
            older_ok=older_ok)

    def remember_receipt(self, receipt: AppendResult) -> TrustDecision:
        """Check an append receipt's checkpoint (embedded or from a server) and keep it
        if it advances the kept one. It must verify with the pinned log key, cover the
        appended index, and be consistent with the kept checkpoint; it may be OLDER than
        the kept one (another process of this home appended meanwhile, or an idempotent
        retry returns the original receipt) when the kept one provably extends it."""
        decision = self.remember(receipt.checkpoint, older_ok=True)
        if decision.received.size <= receipt.index:
            raise CheckpointRefused(
                f"the append receipt's checkpoint (size {decision.received.size}) does not "
                f"cover its own log index {receipt.index}, so the receipt is not evidence "
                "of the append", "unverified")
        return decision

    def latest_trusted(self) -> tuple[str, TrustDecision]:
        """The ledger's latest checkpoint note and the trust decision on it. A rollback
        is re-checked once with a fresh fetch: another process of this home may have
        kept a newer checkpoint between our fetch and our check; a truly stale view
        stays stale and is refused."""
        for attempt in range(2):
            note = self.reader().latest_checkpoint()
            if note is None:
                raise NotFound("the log has no checkpoint yet")
            try:
                return note, self.remember(note)
            except CheckpointRefused as exc:
                if exc.kind != "rollback" or attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def trusted_checkpoint(self) -> str:
        """The ledger's latest checkpoint, once it has passed :meth:`remember`: verified
        with the pinned log key and proven to extend the checkpoint this client kept,
        which it then replaces. Returns the note now kept (the whole signed note,
        cosignature lines included). Raises CheckpointRefused (exit 1) otherwise."""
        return self.latest_trusted()[1].note

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def get(ctx: typer.Context) -> Ctx:
    obj = ctx.find_root().obj
    assert isinstance(obj, Ctx)  # noqa: S101
    return obj


def want_json(ctx: typer.Context, local: bool) -> bool:
    return local or get(ctx).json


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")


@contextlib.contextmanager
def progress(c: Ctx, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr when it is a terminal; otherwise silent.

    Yields ``update(done)`` taking the cumulative amount done."""
    if c.json or not err_console.is_terminal or not total:
        yield lambda _done: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()] \
        if label.startswith("Hashing") else [BarColumn(), TimeRemainingColumn()]
    with Progress(f"[bold]{label}", *columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def done(ctx: Any, json_: bool, receipt: AppendResult, fields: dict[str, Any],
         message: str) -> None:
    """Report a successful append: JSON object, or one line of text."""
    c = get(ctx)
    try:
        c.remember_receipt(receipt)
    except VerificationError as exc:  # the append happened: say so, then refuse
        message = f"log index {receipt.index} was appended, but {exc.message}"
        if isinstance(exc, CheckpointRefused):
            raise CheckpointRefused(message, exc.kind) from None
        raise VerificationError(message) from None
    except OSError as exc:  # the append happened; the kept checkpoint could not be saved
        from ledger.core.errors import StorageFull, UpstreamError

        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        raise (StorageFull if full else UpstreamError)(
            f"log index {receipt.index} was appended, but the checkpoint this client keeps "
            f"could not be saved ({exc.strerror}{': the disk is full' if full else ''}); "
            "free some space, then run 'custody log checkpoint'") from None
    if want_json(ctx, json_):
        emit_json({**fields, "log_index": receipt.index, "event_id": receipt.event_id,
                   "ledger_time": receipt.ledger_time, "duplicate": receipt.duplicate})
    else:
        console.print(f"{message} [dim](log index {receipt.index})[/]")


def listing(ctx: Any, json_: bool, prefix: str, columns: list[str],
            as_: str | None = None) -> None:
    """List state records under ``prefix`` as JSON lines or a table."""
    records = [rec for _key, rec in get(ctx).reading_as(as_).reader().state_items(prefix)]
    if want_json(ctx, json_):
        for rec in records:
            emit_json(rec)
        return
    from rich.table import Table

    table = Table(*columns)
    for rec in records:
        table.add_row(*(", ".join(v) if isinstance(v := rec.get(col), list)
                        else ("" if v is None else str(v)) for col in columns))
    console.print(table)
