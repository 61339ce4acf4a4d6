"""Per-invocation state shared by commands: home, output mode, the opened store."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console

from ledger.home import Home, custody, open_store
from ledger.service import ActorKey, Custody
from ledger.store.base import AppendResult, LedgerStore

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class Ctx:
    home: Home
    json: bool = False
    server: str | None = None
    _store: LedgerStore | None = field(default=None, repr=False)

    def loaded(self) -> Home:
        if not self.home.config:
            self.home.load()
            if self.server:
                self.home.config["server"] = self.server
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

    def custody(self) -> Custody:
        return custody(self.loaded(), self.store())

    def reading_as(self, actor_id: str | None) -> Ctx:
        """Read as this actor (server mode authenticates reads with its key)."""
        if actor_id is not None:
            self.acting = actor_id
        return self

    def actor(self, actor_id: str | None) -> ActorKey:
        key = self.loaded().actor(actor_id)
        self.acting = key.actor_id
        return key

    def remember(self, note: str) -> None:
        self.home.remember_checkpoint(note)

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
    c.remember(receipt.checkpoint)
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
