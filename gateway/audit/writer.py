"""The single writer of an audit log: one thread owns the file and the chain.

Producers in any number of threads `submit` records; the writer thread takes all
that are queued as one batch, numbers and chains them, writes them with one
`write`, `fdatasync`s, and only then resolves their tickets (group commit). Batches
form by themselves: whatever arrives while one batch is being synced is the next.

Fail closed: the first write, sync or checkpoint error makes the writer unavailable
for good. Every ticket not yet durable, and every later `submit`, raises
`AuditUnavailable` with the reason, and the bytes of the failed batch are cut off
again where possible (if not, they were never acknowledged, and start-up treats a
partial line as torn).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import orjson

from gateway.audit.checkpoints import Checkpoint, SinkThread, append_durably, checkpoint_path
from gateway.audit.format import (
    FORMAT_VERSION,
    HASH_MEMBER_LEN,
    HASH_MEMBER_PREFIX,
    Clock,
    check_record,
    check_source,
)
from gateway.audit.keys import AuditKey
from gateway.audit.reader import segment_name
from gateway.audit.recovery import AuditUnavailable, LogState, set_aside, survey
from gateway.audit.tickets import Batch, Ticket

__all__ = ["AuditUnavailable", "AuditWriter", "Ticket"]

_SORT = orjson.OPT_SORT_KEYS
_PLACEHOLDER = "0" * 64
MAX_PENDING = 16_384


class AuditWriter:
    """Owns one log: appends chained entries durably, rotates, checkpoints.

    `max_latency`: the writer takes queued records as soon as it is free (a producer
    wakes an idle writer at once), so no record waits for a timer; this bounds the
    writer's idle sleep, and so how late a missed wake-up or a due checkpoint or
    rotation can be. `max_pending` records queued at once make `submit` wait for room
    (backpressure) instead of growing memory without bound.
    """

    def __init__(self, path: str | os.PathLike[str], *, key: bytes | None,
                 max_latency: float = 0.010, rotate_bytes: int | None = 64 << 20,
                 rotate_seconds: float | None = None, checkpoint_every: int = 10_000,
                 checkpoint_seconds: float = 60.0, checkpoint_sink: str | None = None,
                 max_pending: int = MAX_PENDING) -> None:
        if max_latency <= 0 or checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError("max_latency, checkpoint_every and checkpoint_seconds must be "
                             "positive")
        self.path = Path(path)
        self._key = AuditKey(key)
        self._max_latency = max_latency
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._checkpoint_every = checkpoint_every
        self._checkpoint_seconds = checkpoint_seconds
        self._sink_spec = checkpoint_sink
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._open = Batch()
        self._inflight: Batch | None = None
        self._idle = False
        self._urgent = False  # a record someone waits for is queued
        self._closing = False
        self._closed = False
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._sink: SinkThread | None = None
        self._clock = Clock()
        self._fd = -1
        self._lock_fd = -1
        # Chain state, touched only by the writer thread once started.
        self._chain = ""
        self._seq = 0
        self._prev = ""
        self._size = 0
        self._segment_started: float | None = None
        self._next_number = 1
        self._checkpoint_seq = -1
        self._checkpoint_time = 0.0
        self.sink_error: str | None = None

    # -- producer side -------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """Why the writer is unavailable, or None while it works."""
        return self._error

    @property
    def keyed(self) -> bool:
        return self._key.keyed

    def submit(self, record: Mapping[str, object], *, deferred: bool = False) -> Ticket:
        """Queue a record (copied now) without waiting for the disk. ValueError for a
        record the log cannot hold; AuditUnavailable when the writer has failed.

        A `deferred` record is one nobody waits for (a request's completion): it does
        not wake the writer, but rides with the next batch, or is written within
        `max_latency`, instead of costing a sync of its own.
        """
        check_record(record)
        check_source(record)
        entry = dict(record)
        with self._lock:
            while True:
                if self._error is not None:
                    raise AuditUnavailable(self._error)
                if self._closing or self._thread is None:
                    raise AuditUnavailable("the audit writer is not running")
                batch = self._open
                if len(batch.records) < self._max_pending:
                    break
                self._urgent = True  # full: write it now, deferred or not
                self._wake.notify()
                self._space.wait(self._max_latency)
            index = len(batch.records)
            batch.records.append(entry)
            if not deferred and not self._urgent:
                self._urgent = True
                if self._idle:
                    self._wake.notify()
        return Ticket(batch, index)

    def append(self, record: Mapping[str, object], timeout: float | None = 5.0) -> int:
        """Write a record and wait until it is durable; returns its seq."""
        return self.submit(record).result(timeout)

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Take the log: lock it, recover a torn tail, continue (or begin) the chain,
        and start the writer thread. AuditUnavailable when any of that fails."""
        if self._thread is not None or self._closed:
            raise AuditUnavailable("an audit writer starts once")
        try:
            self._take_lock()
            state = survey(self.path, self._key)
            self._begin(state)
        except OSError as e:
            self._release()
            raise AuditUnavailable(f"{self.path}: cannot open the audit log: "
                                   f"{e.strerror or e}") from None
        except AuditUnavailable:
            self._release()
            raise
        if self._sink_spec:
            self._sink = SinkThread(self._sink_spec, self._on_sink_error)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is queued, sync, record a final checkpoint, release the log."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        if self._sink is not None:
            self._sink.close()
        self._closed = True
        self._release()

    def __enter__(self) -> AuditWriter:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _take_lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AuditUnavailable(f"{self.path}: another audit writer holds this log "
                                   "(one writer per log keeps the chain linear)") from None

    def _release(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _begin(self, state: LogState) -> None:
        sidecar = set_aside(self.path, state) if state.torn else None
        self._open_current()
        self._chain = state.chain or secrets.token_hex(16)
        self._seq, self._prev = state.next_seq, state.prev
        self._size = state.current_size
        self._segment_started = state.current_started
        self._next_number = state.next_number
        self._checkpoint_time = time.monotonic()
        first: list[dict[str, object]] = []
        if state.chain is None:
            first.append({"source": "gateway", "action": "audit", "event": "genesis",
                          "keyed": self._key.keyed, "format": FORMAT_VERSION,
                          "reason": "a new audit log begins"})
        if sidecar is not None:
            name, digest = sidecar
            first.append({"source": "gateway", "action": "audit", "event": "torn tail",
                          "reason": f"{len(state.torn)} torn bytes after seq "
                                    f"{state.next_seq - 1} (written, never acknowledged) "
                                    f"moved to {name}",
                          "sidecar": name, "torn_bytes": len(state.torn),
                          "torn_sha256": digest})
        if first:
            self._write_batch(first)

    def _open_current(self) -> None:
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        if not existed:
            _fsync_dir(self.path.parent)

    # -- writer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._urgent and not self._closing:
                        # Producers wake an idle writer at once; the timeout bounds
                        # how long deferred records wait, and the wait should a
                        # wake-up ever be missed, and lets the checkpoint and rotation
                        # timers run when all is quiet.
                        self._idle = True
                        woken = self._wake.wait(self._max_latency)
                        self._idle = False
                        if (not woken and self._open.records) or self._timers_due():
                            break
                    batch = self._open
                    self._urgent = False
                    if batch.records:
                        self._open = Batch()
                        self._space.notify_all()
                    stop = self._closing and not batch.records
                if batch.records:
                    self._inflight = batch
                    self._commit(batch)
                    self._inflight = None
                self._timers()
                if stop:
                    self._checkpoint()
                    return
        except OSError as e:
            self._fail(f"audit log {self.path} cannot be written: {e.strerror or e}")
        except Exception as e:  # any failure must fail closed, with its reason
            self._fail(f"audit writer failed: {type(e).__name__}: {e}")

    def _commit(self, batch: Batch) -> None:
        batch.first_seq = self._seq
        records, start = batch.records, 0
        while start < len(records):
            self._rotate_if_due()
            room = None if self._rotate_bytes is None else self._rotate_bytes - self._size
            start = self._write_batch(records, start, room)
        batch.finish()
        if self._seq - 1 - self._checkpoint_seq >= self._checkpoint_every:
            self._checkpoint()

    def _write_batch(self, records: list[dict[str, object]], start: int = 0,
                     room: int | None = None) -> int:
        """Number, chain, write and sync `records[start:]`, stopping early once `room`
        bytes are used (the segment is then full); returns where it stopped. The chain
        state moves only on success."""
        seq, prev, chain, digest = self._seq, self._prev, self._chain, self._key.hexdigest
        ts = self._clock.now()
        dumps, at, span = orjson.dumps, len(HASH_MEMBER_PREFIX), HASH_MEMBER_LEN
        lines, used, end = [], 0, start
        for entry in records[start:] if start else records:
            if room is not None and used >= room and lines:
                break
            end += 1
            entry["seq"] = seq
            entry["ts"] = ts
            entry["chain"] = chain
            entry["prev"] = prev
            entry["hash"] = _PLACEHOLDER
            # One serialisation: the hash member is cut out for the hash input and
            # its placeholder overwritten in place (same length, same position).
            line = dumps(entry, option=_SORT)
            i = line.find(HASH_MEMBER_PREFIX)
            prev = digest(prev.encode() + line[:i] + line[i + span:])
            line = line[:i + at] + prev.encode() + line[i + span - 1:]
            lines.append(line)
            used += len(line) + 1
            seq += 1
        lines.append(b"")
        data = b"\n".join(lines)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)
        except OSError:
            self._cut_back()
            raise
        if self._segment_started is None:
            self._segment_started = time.time()
        self._seq, self._prev = seq, prev
        self._size += len(data)
        return end

    def _cut_back(self) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = reason
            pending = self._open
            self._open = Batch()
            self._space.notify_all()
        for batch in (self._inflight, pending):
            if batch is not None and not batch.done.is_set():
                batch.finish(reason)

    # -- rotation and checkpoints --------------------------------------------------

    def _timers_due(self) -> bool:
        return (self._seq - 1 > self._checkpoint_seq
                and time.monotonic() - self._checkpoint_time >= self._checkpoint_seconds) \
            or self._age_due()

    def _age_due(self) -> bool:
        return (self._rotate_seconds is not None and self._size > 0
                and self._segment_started is not None
                and time.time() - self._segment_started >= self._rotate_seconds)

    def _timers(self) -> None:
        if self._seq - 1 > self._checkpoint_seq and \
                time.monotonic() - self._checkpoint_time >= self._checkpoint_seconds:
            self._checkpoint()
        if self._age_due():
            self._rotate()

    def _rotate_if_due(self) -> None:
        if (self._rotate_bytes is not None and self._size >= self._rotate_bytes) \
                or self._age_due():
            self._rotate()

    def _rotate(self) -> None:
        """The current segment becomes the next numbered one; a new current begins.
        The chain simply continues: the next entry's prev is this segment's last hash."""
        os.fsync(self._fd)
        target = segment_name(self.path, self._next_number)
        if target.exists():
            raise OSError(0, f"{target} already exists; rotation would overwrite it")
        os.rename(self.path, target)
        os.close(self._fd)
        self._fd = -1
        self._next_number += 1
        self._size = 0
        self._segment_started = None
        self._open_current()

    def _checkpoint(self) -> None:
        """Record the durable head in `<log>.checkpoints` and hand it to the sink."""
        if self._seq == 0 or self._seq - 1 == self._checkpoint_seq:
            return
        point = Checkpoint(chain=self._chain, seq=self._seq - 1, hash=self._prev,
                           ts=self._clock.now())
        line = point.line(self._key)
        append_durably(checkpoint_path(self.path), line)
        self._checkpoint_seq = point.seq
        self._checkpoint_time = time.monotonic()
        if self._sink is not None:
            self._sink.put(line)

    def _on_sink_error(self, message: str) -> None:
        self.sink_error = message
        with contextlib.suppress(AuditUnavailable):
            self.submit({"source": "gateway", "action": "audit", "event": "sink failed",
                         "reason": message})


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
