"""The write watcher: every change made under a writable mount becomes an audit entry
(source `fs`), decided under the policy's `file_write` rules.

watchdog's threads only hand events to a queue; one worker thread decides and
submits them and never waits for the disk (the audit writer batches). The worker keeps
a picture of each watched tree (`gateway.fs.snapshot`: inode, type, size, mtime per
path). Where events were lost (the kernel's inotify queue overflowed, or our own queue
passed its bound) it rescans, records what differs from its picture as entries marked
`rescan`, and notes the rescan and its reason in the log. A rescan also runs after a
quiet spell and at `stop()`, so a change no event reported is still recorded. See
docs/watcher.md.

The watcher records; it does not prevent: the mounts do. `denied_paths()` is what an
overlay's commit must leave out.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from gateway.audit.recovery import AuditUnavailable
from gateway.audit.tickets import Ticket
from gateway.engine import Decision, Request, Verdict
from gateway.errors import GatewayError
from gateway.fs.snapshot import GONE, Tree, lstat, scan_tree, seen_from
from gateway.policy.model import Action
from gateway.runtime import Runtime

try:  # the kernel's queue overflow reaches the watches' callbacks, not the handlers
    from watchdog.observers.inotify import InotifyEmitter
    from watchdog.observers.inotify_c import CallbackId, InotifyConstants, InotifyFD, Mask
except Exception:  # not Linux (watchdog refuses the import), or a watchdog without them
    InotifyFD = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.1
MAX_QUEUED = 65_536
RESCAN_EVERY = 5.0
RESCAN_COST_FACTOR = 20  # periodic rescans take at most a twentieth of the time
QUIET_SECONDS = 1.0  # no events for this long before a periodic rescan or a recheck
SETTLE_SECONDS = 0.6  # longer than watchdog holds a move while it waits for its other half
SETTLE_LIMIT = 5.0
FLUSH_TIMEOUT = 5.0

# Opens and closes without a write are never asked of the kernel: reads would fill its
# queue. A directory's "modified" (a child came or went) is the child's own event.
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileAttribEvent, DirAttribEvent,
    FileClosedEvent, FileDeletedEvent, DirDeletedEvent, FileMovedEvent, DirMovedEvent]
_KINDS = {"created": "created", "modified": "modified", "attrib": "modified",
          "closed": "closed", "deleted": "deleted", "moved": "moved"}
_RESCAN, _STOP = "rescan", "stop"

_Item = tuple[str, str, str, float]
"""A queued event: kind, path, destination (moves), when it arrived."""


@dataclass(frozen=True, slots=True)
class WatchStats:
    """Counters since start. `events`: what the OS reported; `entries`: audit entries
    submitted; `coalesced`: modifications folded into an entry just made; `duplicates`:
    events a rescan had already recorded; `rescans` that ran and the changes they
    `found`; `overflows`: times events were lost; `errors`: entries the log refused,
    `last_error` saying why."""

    events: int = 0
    entries: int = 0
    coalesced: int = 0
    duplicates: int = 0
    rescans: int = 0
    found: int = 0
    overflows: int = 0
    errors: int = 0
    last_error: str | None = None


_COUNTERS = ("events", "entries", "coalesced", "duplicates", "rescans", "found", "overflows",
             "errors")


class _Root:
    """A watched directory, where the agent sees it, and its tree."""

    __slots__ = ("agent", "host", "prefix", "tree")

    def __init__(self, host: str, agent: str) -> None:
        self.host, self.agent = host, agent
        self.prefix = host.rstrip("/") + "/"
        self.tree = Tree()

    def holds(self, path: str) -> bool:
        return path == self.host or path.startswith(self.prefix)

    def agent_path(self, path: str) -> str:
        """The agent's name for a path under this root, as text the log can hold
        (undecodable bytes as `\\xNN`)."""
        shown = self.agent.rstrip("/") + path[len(self.prefix) - 1:] or "/"
        try:
            shown.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(shown).decode("utf-8", "backslashreplace")
        return shown


class WriteWatcher:
    """Records every create, modify, delete and move under `directories` in the audit
    log of `runtime`, decided as `file_write` by `agent`.

    `path_map` maps a watched directory to where the agent sees it (an overlay's upper
    directory to the mount's target), so decisions and entries name the agent's paths.
    `rescan_every`: after that many seconds, once no event came for a second, compare
    the trees with what was recorded (None: only after lost events and at stop).
    """

    def __init__(self, runtime: Runtime, directories: Sequence[str | os.PathLike[str]], *,
                 agent: str | None = None,
                 path_map: Mapping[str | os.PathLike[str], str] | None = None,
                 rescan_every: float | None = RESCAN_EVERY, max_queued: int = MAX_QUEUED,
                 coalesce: float = COALESCE_SECONDS) -> None:
        self.runtime, self.agent = runtime, agent
        self._rescan_every, self._max_queued, self._window = rescan_every, max_queued, coalesce
        mapped = {os.path.realpath(k): v for k, v in (path_map or {}).items()}
        self._roots: list[_Root] = []
        for directory in directories:
            host = os.path.realpath(directory)
            if not os.path.isdir(host):
                raise GatewayError(f"{directory}: cannot watch it: not a directory")
            for other in self._roots:
                if other.holds(host) or _Root(host, host).holds(other.host):
                    raise GatewayError(f"{directory}: it overlaps {other.host}; watch one "
                                       "directory of the two")
            agent_dir = mapped.pop(host, host)
            if not os.path.isabs(agent_dir):
                raise GatewayError(f"{directory}: the agent's path {agent_dir!r} is not "
                                   "absolute")
            self._roots.append(_Root(host, os.path.normpath(agent_dir)))
        if mapped:
            raise GatewayError(f"path_map names {', '.join(sorted(mapped))}, which is not "
                               "watched")
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._denied: set[str] = set()
        self._observer: BaseObserver | None = None
        self._inotify: Any = None
        self._worker: threading.Thread | None = None
        self._stopped = False
        self._dropping = self._recheck = False
        self._last_event = time.monotonic()
        self._next_rescan = self._rescanned_at = 0.0
        self._recent: dict[str, float] = {}  # host path -> when its last write was recorded
        self._rescan_deleted: set[str] = set()  # deletions a rescan recorded
        self._last_ticket: Ticket | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._last_error: str | None = None

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        """Watch, then take the trees as they are: what the log starts from. GatewayError
        when a directory cannot be watched (the inotify watch limit, say)."""
        if self._observer is not None:
            return
        relay = _Relay(self)
        observer: BaseObserver | None = None
        root = self._roots[0].host if self._roots else ""
        try:
            if InotifyFD is not None:
                self._inotify = InotifyFD()
                self._inotify.start()
                observer = BaseObserver(InotifyEmitter, inotify_fd=self._inotify)
            else:
                observer = Observer()
            for watched in self._roots:
                root = watched.host
                observer.schedule(relay, root, recursive=True, event_filter=_EVENTS)
            observer.start()
            if self._inotify is not None:  # joins each root's watch, changing nothing
                mask = Mask(InotifyConstants.IN_MASK_ADD | InotifyConstants.IN_DELETE_SELF)
                for watched in self._roots:
                    root = watched.host
                    self._inotify.add_callback(os.fsencode(root), mask, relay,
                                               CallbackId(id(relay)))
        except OSError as e:
            self._halt(observer)
            raise GatewayError(f"{root}: cannot watch it: {e.strerror or e}") from None
        self._observer = observer
        for watched in self._roots:
            watched.tree = Tree(scan_tree(watched.host))
        self._last_event = self._next_rescan = time.monotonic()
        self._worker = threading.Thread(target=self._run, name="gateway-fs-watch",
                                        daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Let the events on their way arrive, stop watching, compare the trees with what
        was recorded one last time, and wait until every entry is on disk."""
        if self._observer is None or self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + SETTLE_LIMIT
        while time.monotonic() < deadline and \
                time.monotonic() - self._last_event < SETTLE_SECONDS:
            time.sleep(0.05)
        self._halt(self._observer)
        self._queue.put((_STOP, "", "", time.monotonic()))
        if self._worker is not None:
            self._worker.join()
        if self._last_ticket is not None:
            try:
                self._last_ticket.result(FLUSH_TIMEOUT)
            except AuditUnavailable as e:
                self._failed(str(e))

    def _halt(self, observer: BaseObserver | None) -> None:
        if observer is not None and observer.is_alive():
            observer.stop()
            observer.join(5)
        if self._inotify is not None and self._inotify.is_alive():
            self._inotify.stop()
            self._inotify.join(5)

    def __enter__(self) -> WriteWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what others read -----------------------------------------------------------

    @property
    def stats(self) -> WatchStats:
        return WatchStats(**self._counts, last_error=self._last_error)

    def denied_paths(self) -> frozenset[str]:
        """The agent's paths (absolute, normalised) where a write, deletion or move was
        denied in enforce mode: what an overlay's commit leaves out. A would-deny of
        simulate mode is recorded but not listed (simulate blocks nothing)."""
        with self._lock:
            return frozenset(self._denied)

    # -- watchdog's threads ---------------------------------------------------------

    def _receive(self, event: FileSystemEvent) -> None:
        kind = _KINDS.get(event.event_type)
        if kind is None:
            return
        now = self._last_event = time.monotonic()
        self._counts["events"] += 1
        if self._dropping:
            return
        if self._queue.qsize() > self._max_queued:
            self._dropping = True
            self._lost(f"more than {self._max_queued} events waited to be recorded")
            return
        self._queue.put((kind, os.fsdecode(event.src_path), os.fsdecode(event.dest_path), now))

    def _lost(self, reason: str) -> None:
        with self._lock:
            self._counts["overflows"] += 1
        log.warning("fs watcher: events were lost (%s); rescanning", reason)
        self._queue.put((_RESCAN, reason, "", time.monotonic()))

    # -- the worker -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                kind, path, dest, when = self._queue.get(timeout=QUIET_SECONDS / 2)
            except queue.Empty:
                now = time.monotonic()
                if now - self._last_event < QUIET_SECONDS:
                    continue
                if self._recheck:
                    self._guarded(self._rescan, "a check after lost events found changes "
                                  "no event reported", True)
                elif self._rescan_every is not None and now >= self._next_rescan:
                    self._guarded(self._rescan, "a periodic check found changes no event "
                                  "reported", True)
                continue
            if kind == _STOP:
                self._guarded(self._rescan, "the check at stop found changes no event "
                              "reported", True)
                return
            if kind == _RESCAN:
                if when >= self._rescanned_at:  # else a rescan since has seen those changes
                    self._guarded(self._rescan, path, False)
                    self._recheck = True  # watchdog may still be rebuilding its watches
            else:
                self._guarded(self._apply, kind, path, dest, when)

    def _guarded(self, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception as e:  # the worker must outlive any one event
            log.exception("fs watcher: %s failed", getattr(step, "__name__", step))
            self._failed(f"{type(e).__name__}: {e}")

    def _failed(self, why: str) -> None:
        self._counts["errors"] += 1
        self._last_error = why

    def _apply(self, kind: str, path: str, dest: str, when: float) -> None:
        root = next((r for r in self._roots if r.holds(path)), None)
        if root is None:
            return
        if kind == "created":
            self._created(root, path, when)
        elif kind in ("modified", "closed"):
            self._modified(root, path, when, closed=kind == "closed")
        elif kind == "deleted":
            self._deleted(root, path)
        else:
            self._moved(root, path, dest, when)

    def _created(self, root: _Root, path: str, when: float) -> None:
        st, old = lstat(path), root.tree.get(path)
        if st is not None and old is not None and old.recorded and old.ino == st.st_ino:
            self._counts["duplicates"] += 1  # a rescan (or watchdog, twice) reported it
            return
        seen = seen_from(st, True) if st is not None else GONE
        root.tree.set(path, seen)
        self._rescan_deleted.discard(path)
        self._wrote(path, when)
        self._record(root, "deleted" if seen.whiteout else "created", path)

    def _modified(self, root: _Root, path: str, when: float, *, closed: bool) -> None:
        st, old = lstat(path), root.tree.get(path)
        if st is not None:
            seen = seen_from(st, old.recorded if old else True)
            if old is None:  # its creation was among lost events
                root.tree.set(path, seen)
                self._wrote(path, when)
                self._record(root, "created", path)
                return
            if (closed or stat.S_ISDIR(seen.mode)) and old.same(seen):
                return  # closed after writes already seen; a directory's times or xattrs
            root.tree.set(path, seen)
        elif closed:
            return
        if self._coalesced(path, when):
            self._counts["coalesced"] += 1
            return
        self._record(root, "modified", path)

    def _deleted(self, root: _Root, path: str) -> None:
        old = root.tree.get(path)
        removed = root.tree.pop(path)
        self._recent.pop(path, None)
        if old is None and path in self._rescan_deleted:
            self._rescan_deleted.discard(path)
            self._counts["duplicates"] += 1
            return
        if old is None or not old.whiteout:  # a whiteout goes when the path is written again
            self._record(root, "deleted", path)
        for child, seen in removed:  # a directory moved away: its contents left with it
            if child != path and not seen.whiteout:
                self._record(root, "deleted", child)

    def _moved(self, root: _Root, src: str, dest: str, when: float) -> None:
        tree = root.tree
        arrived = tree.get(dest)
        if tree.get(src) is None and src in self._rescan_deleted and \
                arrived is not None and arrived.recorded:
            self._rescan_deleted.discard(src)
            self._counts["duplicates"] += 1
            return
        moved = tree.pop(src)
        if moved:
            tree.pop(dest)  # what the move replaced
            for path, seen in moved:
                tree.set(dest + path[len(src):], seen._replace(recorded=True))
        else:  # from outside what was seen, or inside a directory whose move came first
            st = lstat(dest)
            if arrived is None or st is None or st.st_ino != arrived.ino:
                tree.pop(dest)
                tree.set(dest, seen_from(st, True) if st is not None else GONE)
        self._rescan_deleted.discard(dest)
        self._recent.pop(src, None)
        self._wrote(dest, when)
        self._record(root, "moved", dest, src=src)
        source = self._decide(root, src)
        if source.verdict is Verdict.DENY:  # taking a file away is a write to it too
            self._submit(source, {"event": "moved", "dest": root.agent_path(dest)})

    def _coalesced(self, path: str, when: float) -> bool:
        last = self._recent.get(path)
        if last is not None and when - last < self._window:
            return True
        self._wrote(path, when)
        return False

    def _wrote(self, path: str, when: float) -> None:
        """Remember when `path`'s last entry was made; forget what is past the window."""
        recent = self._recent
        recent.pop(path, None)
        recent[path] = when
        while recent:  # oldest first: entries are inserted in the order they happen
            oldest = next(iter(recent))
            if when - recent[oldest] < self._window:
                break
            del recent[oldest]

    # -- rescans --------------------------------------------------------------------

    def _rescan(self, reason: str, quiet: bool) -> None:
        """Compare each tree with what was recorded; record the differences and, when
        events were lost or differences found, note the rescan and why."""
        self._dropping = self._recheck = False
        self._rescan_deleted.clear()
        started = self._rescanned_at = time.monotonic()
        for root in self._roots:
            changes = root.tree.diff(scan_tree(root.host), self._rescan_deleted)
            if changes or not quiet:
                if quiet:
                    log.warning("fs watcher: %s: %s", root.host, reason)
                ticket = self.runtime.note({
                    "source": "gateway", "action": "audit", "event": "fs rescan",
                    "reason": reason, "path": root.agent, "agent": self.agent,
                    "changes": len(changes)})
                self._last_ticket = ticket or self._last_ticket
            for kind, path in changes:
                self._record(root, kind, path, rescan=True)
            self._counts["found"] += len(changes)
        self._counts["rescans"] += 1
        elapsed = time.monotonic() - started
        self._next_rescan = time.monotonic() + max(self._rescan_every or 0.0,
                                                   RESCAN_COST_FACTOR * elapsed)

    # -- recording ------------------------------------------------------------------

    def _decide(self, root: _Root, path: str) -> Decision:
        request = Request(Action.FILE_WRITE, root.agent_path(path), agent=self.agent)
        return self.runtime.decide(request)

    def _record(self, root: _Root, kind: str, path: str, *, src: str | None = None,
                rescan: bool = False) -> None:
        details: dict[str, object] = {"event": kind}
        if src is not None:
            details["src"] = root.agent_path(src)
        if rescan:
            details["rescan"] = True
        self._submit(self._decide(root, path), details)

    def _submit(self, decision: Decision, details: Mapping[str, object]) -> None:
        if decision.blocks:
            with self._lock:
                self._denied.add(decision.target)
        try:
            self._last_ticket = self.runtime.record(decision, "fs", details)
        except (AuditUnavailable, ValueError) as e:
            self._failed(str(e))
            return
        self._counts["entries"] += 1


class _Relay(FileSystemEventHandler):
    """watchdog's handler, on its dispatch thread: queue the event, nothing more. Also an
    inotify callback on each watched directory, for the one thing that is not an event:
    the kernel's queue overflowed."""

    def __init__(self, watcher: WriteWatcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher._receive(event)

    def on_event(self, event: object) -> None:
        pass  # the emitter reports the directory's events

    def on_watch_deleted(self, wd: object) -> None:
        pass

    def on_queue_overflow(self) -> None:
        self._watcher._lost("the kernel's inotify queue overflowed")


__all__ = ["WatchStats", "WriteWatcher"]
