"""Signed checkpoints: the chain head, recorded apart from the log.

A checkpoint is one JSON line `{"chain", "hash", "mac", "seq", "ts"}` where `mac` is
HMAC-SHA256(key, canonical JSON of the other four). Its input starts with `{`, an
entry's with a hex digit, so neither can stand in for the other. Kept on another
mount or sent to a command (syslog, an object store with retention), checkpoints
let `verify` notice a log cut short or replaced wholesale, which no chain can show
by itself.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.audit.format import HASH_RE, dump
from gateway.audit.keys import AuditKey

SINK_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    seq: int
    hash: str
    ts: str

    def line(self, key: AuditKey) -> bytes:
        """The checkpoint as a signed JSON line."""
        body = {"chain": self.chain, "hash": self.hash, "seq": self.seq, "ts": self.ts}
        mac = key.hexdigest(dump(body))
        return dump({**body, "mac": mac}) + b"\n"


def checkpoint_path(log: str | os.PathLike[str]) -> Path:
    """The checkpoint file beside a log: `<log>.checkpoints`."""
    return Path(os.fspath(log) + ".checkpoints")


def parse_checkpoint(line: bytes, key: AuditKey) -> Checkpoint:
    """One checkpoint line, its MAC checked; ValueError says what is wrong."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"chain", "hash", "mac", "seq", "ts"}:
        raise ValueError("not a checkpoint object")
    chain, seq, hash_, ts, mac = obj["chain"], obj["seq"], obj["hash"], obj["ts"], obj["mac"]
    if not (isinstance(chain, str) and type(seq) is int and isinstance(ts, str)
            and isinstance(hash_, str) and HASH_RE.match(hash_) and isinstance(mac, str)):
        raise ValueError("malformed checkpoint fields")
    body = {"chain": chain, "hash": hash_, "seq": seq, "ts": ts}
    if key.hexdigest(dump(body)) != mac:
        raise ValueError("its MAC does not match: forged, or made with another key")
    return Checkpoint(chain=chain, seq=seq, hash=hash_, ts=ts)


def read_checkpoints(path: str | os.PathLike[str],
                     key: AuditKey) -> list[Checkpoint]:
    """Every checkpoint in a file, in order; ValueError names the first bad line."""
    out = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                out.append(parse_checkpoint(line, key))
            except ValueError as e:
                raise ValueError(f"{path}:{number}: {e}") from None
    return out


def append_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Append and fsync; OSError when that is not possible."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


class SinkThread:
    """Delivers checkpoint lines to an external sink off the writer's path: a file
    (`/mnt/elsewhere/audit.checkpoints`, appended and fsynced) or `|command args`
    (split like a shell would, run without one, the line on its stdin). A failure
    is reported through `on_error` and the next checkpoint is tried again."""

    def __init__(self, sink: str, on_error: Callable[[str], None]) -> None:
        self._sink = sink.strip()
        if self._sink.startswith("|"):
            self._argv: list[str] | None = shlex.split(self._sink[1:])
            if not self._argv:
                raise ValueError("checkpoint sink: empty command after '|'")
        else:
            self._argv = None
            if not self._sink:
                raise ValueError("checkpoint sink: empty path")
        self._on_error = on_error
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-sink", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        self._queue.put(line)

    def close(self, timeout: float = SINK_TIMEOUT) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (line := self._queue.get()) is not None:
            try:
                self._deliver(line)
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                self._on_error(f"checkpoint sink {self._sink!r} failed: {e}")

    def _deliver(self, line: bytes) -> None:
        if self._argv is None:
            append_durably(self._sink, line)
            return
        result = subprocess.run(self._argv, input=line, capture_output=True,
                                timeout=SINK_TIMEOUT, check=False)
        if result.returncode != 0:
            raise ValueError(f"exit status {result.returncode}: "
                             f"{result.stderr.decode(errors='replace').strip()[:200]}")
