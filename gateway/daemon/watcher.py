"""Live policy: watch the directories of the policy and agents files and reload.

Editors and Kubernetes config maps replace files rather than edit them (write a new
file, rename it over the old; or swap a `..data` symlink), so the watcher looks at the
directory, not the file, and treats any event touching the file's name, or a
`..data` swap, as a change. Events arriving together are reloaded once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TextIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gateway.runtime import Runtime

SETTLE_SECONDS = 0.2


class PolicyWatcher(FileSystemEventHandler):
    """Reloads `runtime` when its policy or agents file changes, or when asked."""

    def __init__(self, runtime: Runtime, err: TextIO, settle: float = SETTLE_SECONDS) -> None:
        self.runtime = runtime
        self.err = err
        self.settle = settle
        files = [runtime.policy_path] + ([runtime.agents_path] if runtime.agents_path else [])
        self._names = {p.name for p in files} | {"..data"}
        self._dirs = {os.path.abspath(p.parent) for p in files}
        self._observer = Observer()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        for directory in self._dirs:
            self._observer.schedule(self, directory, recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(5)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(Path(os.fsdecode(p)).name in self._names for p in paths if p):
            self.reload_soon("policy file changed")

    def reload_soon(self, why: str) -> None:
        """Reload after events settle (a rename comes with several events)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.settle, self._reload, (why,))
            self._timer.daemon = True
            self._timer.start()

    def _reload(self, why: str) -> None:
        error = self.runtime.reload(why)
        if error is None:
            print(f"gateway: policy reloaded ({why}): sha256 {self.runtime.policy_sha256[:12]}",
                  file=self.err, flush=True)
        else:
            print(f"gateway: policy change rejected, the running policy stays: {error}",
                  file=self.err, flush=True)
