"""Group commit: concurrent write requests share one durable transaction.

Requests put their signed event on a bounded queue and wait; one writer thread takes
everything queued (up to ``max_batch``), calls ``store.append_many`` (one transaction,
one fsync, one checkpoint) and resolves each request with its own result or refusal.
The custody rules still judge events one after the other inside the transaction, so
two dispatches of one artefact in one batch still give one success and one conflict.
A full queue is :class:`~ledger.core.errors.Backpressure` (503 + Retry-After), never an
unbounded backlog (threat T11). A 201 is sent only after the commit returned.

The thread outlives any failure: a database that went away fails that batch's requests
with :class:`~ledger.core.errors.StoreUnavailable` (503 + Retry-After; the store reconnects
by itself), and anything unexpected fails only that batch (and is logged).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import cast

from ledger.core.errors import Backpressure, LedgerError
from ledger.core.events import SignedEvent
from ledger.store.base import AppendResult, LedgerStore

_STOP = object()
log = logging.getLogger("custody.api.commit")


class GroupCommitter:
    def __init__(self, store: LedgerStore, *, max_queue: int, max_batch: int,
                 max_wait: float = 0.003, max_gap: float = 0.001) -> None:
        self.store = store
        self.max_batch = max_batch
        #: Batch formation: when more than one event is waiting (concurrent writers),
        #: wait at most ``max_wait`` seconds in all, and at most ``max_gap`` for each next
        #: event, for more to join. Each batch is one commit (one fsync, one checkpoint
        #: signature) and, for the API, one new log size (the next requests re-read
        #: their authorisation records): fuller batches cost less per event. A lone
        #: event is committed at once.
        self.max_wait = max_wait
        self.max_gap = max_gap
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Batches committed, events in them, largest batch (``custody.api.commit`` logs
        #: each batch's size and commit time at DEBUG level).
        self.batches = self.events = self.largest = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # none, or it died
                self._thread = threading.Thread(target=self._run, name="custody-group-commit",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    def submit(self, signed: SignedEvent) -> Future[AppendResult]:
        self.start()
        fut: Future[AppendResult] = Future()
        try:
            self._queue.put_nowait((signed, fut))
        except queue.Full:
            raise Backpressure("the write queue is full; retry shortly", 1.0) from None
        return fut

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items = [first]
            stop = False
            deadline = time.monotonic() + self.max_wait
            while len(items) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if wait <= 0 or len(items) < 2:  # a lone writer is not kept waiting
                        break
                    try:  # concurrent writers: a bounded wait for those arriving now
                        nxt = self._queue.get(timeout=min(wait, self.max_gap))
                    except queue.Empty:
                        break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            pending = cast("list[tuple[SignedEvent, Future[AppendResult]]]", items)
            try:
                self._commit(pending)
            except Exception:  # a bug here must never stop every later write (F2)
                log.exception("group commit failed")
                for _signed, fut in pending:
                    with contextlib.suppress(InvalidStateError):  # answered or cancelled
                        fut.set_exception(LedgerError(
                            "the write failed unexpectedly; the error has been logged"))
            if stop:
                return

    def _commit(self, items: list[tuple[SignedEvent, Future[AppendResult]]]) -> None:
        # The same event twice in one batch: commit it once and answer both (idempotency).
        slots: dict[str, int] = {}
        batch: list[SignedEvent] = []
        waiters: list[list[Future[AppendResult]]] = []
        for signed, fut in items:
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                eid = signed.event_id
            except LedgerError as exc:  # one bad event fails alone, never the writer thread
                fut.set_exception(exc)
                continue
            if eid in slots:
                waiters[slots[eid]].append(fut)
                continue
            slots[eid] = len(batch)
            batch.append(signed)
            waiters.append([fut])
        if not batch:
            return
        t0 = time.perf_counter()
        try:
            outcomes = self.store.append_many(batch)
        except BaseException as exc:  # the whole transaction failed: tell every waiter
            for futs in waiters:
                for fut in futs:
                    fut.set_exception(exc if isinstance(exc, Exception) else
                                      LedgerError("the writer stopped"))
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.events += len(batch)
        self.largest = max(self.largest, len(batch))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("group commit: %d events in %.2f ms (queue %d)", len(batch),
                      (time.perf_counter() - t0) * 1000, self._queue.qsize())
        for outcome, futs in zip(outcomes, waiters, strict=True):
            for n, fut in enumerate(futs):
                if isinstance(outcome, LedgerError):
                    fut.set_exception(outcome)
                elif n == 0:
                    fut.set_result(outcome)
                else:
                    fut.set_result(AppendResult(outcome.index, outcome.leaf_hash,
                                                outcome.event_id, outcome.ledger_time,
                                                outcome.checkpoint, outcome.result, True))
