"""Where a log stands when a writer starts: the chain to continue, and any torn tail.

A crash (kill -9, power loss) can leave the current segment ending in a partial line,
or in lines of garbage where the file grew before its data reached the disk. Those
bytes were never acknowledged. Start-up moves them to a sidecar file, cuts the
segment back to its last whole entry, and the writer records the event as an entry
of its own, so the chain continues and nothing disappears silently.

What start-up refuses instead: a last whole entry whose hash fails under the writer's
key (the wrong key, a keyed log opened unkeyed or the reverse, or tampering), or a
tail with no entry in its last megabyte. Those need a person and `gateway audit verify`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from gateway.audit.format import GENESIS_PREV, HASH_RE, strip_hash
from gateway.audit.keys import AuditKey
from gateway.audit.reader import numbered_segments
from gateway.errors import GatewayError

TAIL_WINDOW = 1 << 20


class AuditUnavailable(GatewayError):
    """The audit log cannot be written: callers fail closed (deny) and say why."""


@dataclass(frozen=True, slots=True)
class Tail:
    """The last whole entry of a segment, and where the good bytes end."""

    entry: dict[str, object] | None
    good_end: int
    size: int


@dataclass(frozen=True, slots=True)
class LogState:
    """What a starting writer continues from; `chain` None means a new log."""

    chain: str | None
    next_seq: int
    prev: str
    next_number: int
    current_size: int
    current_started: float | None
    torn: bytes


def _valid(line: bytes) -> dict[str, object] | None:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entry, dict):
        return None
    if type(entry.get("seq")) is not int or not isinstance(entry.get("chain"), str):
        return None
    for field in ("hash", "prev"):
        value = entry.get(field)
        if not isinstance(value, str) or not HASH_RE.match(value):
            return None
    return entry


def read_tail(path: Path) -> Tail:
    """Scan back from the end of a segment to its last line that is an entry."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_WINDOW)
        handle.seek(start)
        data = handle.read()
    end = len(data)
    if not data.endswith(b"\n"):
        end = data.rfind(b"\n") + 1
    while end > 0:
        begin = data.rfind(b"\n", 0, end - 1) + 1
        if begin == 0 and start > 0:
            break
        entry = _valid(data[begin:end])
        if entry is not None:
            return Tail(entry=entry, good_end=start + end, size=size)
        end = begin
    if start > 0:
        raise AuditUnavailable(f"{path}: no whole entry in the last {TAIL_WINDOW} bytes; "
                               "run `gateway audit verify` before writing to this log")
    return Tail(entry=None, good_end=0, size=size)


def check_last(entry: dict[str, object], line_key: AuditKey, path: Path) -> None:
    """Refuse to continue a chain whose last entry this key does not vouch for."""
    line = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    parts = strip_hash(line)
    prev = entry["prev"]
    if parts is None or not isinstance(prev, str) or \
            line_key.hexdigest(prev.encode() + parts[0]) != parts[1]:
        kind = "a keyed" if line_key.keyed else "an unkeyed"
        raise AuditUnavailable(
            f"{path}: the last entry (seq {entry['seq']}) fails its hash as {kind} "
            "entry: wrong key, keyed/unkeyed mismatch, or tampering; run "
            "`gateway audit verify`")


def _started(entry: dict[str, object] | None) -> float | None:
    ts = entry.get("ts") if entry else None
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _first_entry(path: Path) -> dict[str, object] | None:
    with open(path, "rb") as handle:
        return _valid(handle.readline())


def survey(current: Path, key: AuditKey) -> LogState:
    """Read the log's end: the entry to chain from and the torn bytes, if any."""
    numbered = numbered_segments(current)
    next_number = numbered[-1][0] + 1 if numbered else 1
    tail = read_tail(current) if current.exists() else Tail(None, 0, 0)
    torn = b""
    if tail.good_end < tail.size:
        with open(current, "rb") as handle:
            handle.seek(tail.good_end)
            torn = handle.read()
    last = tail.entry
    started = _started(_first_entry(current)) if last is not None else None
    if last is None and numbered:
        older = numbered[-1][1]
        previous = read_tail(older)
        if previous.good_end != previous.size or previous.entry is None:
            raise AuditUnavailable(f"{older}: a rotated segment that does not end in a "
                                   "whole entry; run `gateway audit verify`")
        last = previous.entry
        check_last(last, key, older)
    elif last is not None:
        check_last(last, key, current)
    if last is None:
        return LogState(chain=None, next_seq=0, prev=GENESIS_PREV, next_number=next_number,
                        current_size=tail.good_end, current_started=None, torn=torn)
    return LogState(chain=str(last["chain"]), next_seq=int(last["seq"]) + 1,  # type: ignore[call-overload]
                    prev=str(last["hash"]), next_number=next_number,
                    current_size=tail.good_end, current_started=started, torn=torn)


def set_aside(current: Path, state: LogState) -> tuple[str, str]:
    """Move the torn bytes to `<log>.torn-<seq>` (fsynced) and cut the segment back;
    returns the sidecar's name and the torn bytes' SHA-256."""
    base = f"{current.name}.torn-{state.next_seq}"
    for attempt in range(1000):
        sidecar = current.with_name(base if attempt == 0 else f"{base}.{attempt}")
        try:
            fd = os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        break
    else:
        raise AuditUnavailable(f"{current}: too many torn-tail sidecars")
    try:
        view = memoryview(state.torn)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(current, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, state.current_size)
        os.fsync(fd)
    finally:
        os.close(fd)
    return sidecar.name, hashlib.sha256(state.torn).hexdigest()
