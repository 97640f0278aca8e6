"""Tickets: how a producer learns that its record is durable, and under which seq.

Records queued together form a batch; one event per batch tells all their producers
the outcome at once, so a ticket costs an index, not an event of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gateway.audit.recovery import AuditUnavailable


class Batch:
    """Records queued together; one event tells all their producers the outcome."""

    __slots__ = ("_callbacks", "_lock", "done", "error", "first_seq", "records")

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []
        self.done = threading.Event()
        self.first_seq = -1
        self.error: str | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def finish(self, error: str | None = None) -> None:
        """Settle the batch (durable, or failed with `error`) and tell every waiter."""
        with self._lock:
            self.error = error
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback()


class Ticket:
    """A submitted record: `result()` waits until it is durable and returns its seq."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: Batch, index: int) -> None:
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        return self._batch.done.is_set()

    def add_done_callback(self, callback: Callable[[Ticket], None]) -> None:
        """Call `callback(self)` once the outcome is known (at once if it is), from the
        writer's thread: an event loop waits with `call_soon_threadsafe`, not a thread."""
        self._batch.add_done_callback(lambda: callback(self))

    def result(self, timeout: float | None = 5.0) -> int:
        """The record's seq once it is on disk; AuditUnavailable if it never will be
        (or not within `timeout` seconds: the caller must then treat it as unrecorded)."""
        batch = self._batch
        if not batch.done.wait(timeout):
            raise AuditUnavailable(f"audit entry not durable within {timeout} s")
        if batch.error is not None:
            raise AuditUnavailable(batch.error)
        return batch.first_seq + self._index
