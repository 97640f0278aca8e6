"""The audit log's entry format: canonical JSON, the record a producer supplies, and
the fixed values every verifier needs (see docs/audit.md).

Canonical JSON is `json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` encoded as UTF-8. Records are flat objects whose keys are short
ASCII names and whose values are strings, integers within +/-(2**53 - 1), booleans or
null: for those types the form coincides with RFC 8785, and orjson produces it
byte for byte (a property test holds it to that).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import orjson

if TYPE_CHECKING:
    from gateway.engine import Decision

FORMAT_VERSION: Final = 1
SOURCES: Final = frozenset({"proxy", "shim", "fs", "sdk", "cli", "gateway"})
# Fields the writer adds; a producer's record must not carry them.
RESERVED: Final = frozenset({"seq", "ts", "chain", "prev", "hash"})
GENESIS_PREV: Final = "0" * 64
MAX_INT: Final = 2**53 - 1
MAX_RECORD_BYTES: Final = 64 * 1024
KEY_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
HASH_RE: Final = re.compile(r"[0-9a-f]{64}\Z")
# Names checked once here, so the common record costs a set lookup per field.
KNOWN_FIELDS: Final = frozenset({
    "source", "agent", "action", "host", "path", "command", "verdict", "mode", "rule",
    "reason", "port", "part", "method", "url", "status", "bytes", "duration_ms", "event",
    "keyed", "format", "sidecar", "torn_bytes", "torn_sha256", "pid", "cwd", "client",
    "sni", "scheme", "error"})

# The hash member as it appears in a canonical line: `,"hash":"` + 64 hex + `"`.
HASH_MEMBER_PREFIX: Final = b',"hash":"'
HASH_MEMBER_LEN: Final = len(HASH_MEMBER_PREFIX) + 64 + 1

_SORTED: Final = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | \
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _refuse(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not a plain JSON type")


def canonical_json(obj: Mapping[str, object]) -> bytes:
    """The canonical bytes of a flat record or entry; ValueError on anything else.

    Only str, int (|n| <= 2**53 - 1, not bool subclasses beyond bool itself), bool and
    None values under ASCII keys: a value the log holds must mean the same to every
    JSON reader, and these are the types whose canonical form is unambiguous.
    """
    check_record(obj, reserved_ok=True)
    return dump(obj if type(obj) is dict else dict(obj))


def dump(obj: Mapping[str, object]) -> bytes:
    """Canonical bytes of an object already checked by `check_record`."""
    try:
        return orjson.dumps(obj, default=_refuse, option=_SORTED)
    except (TypeError, orjson.JSONEncodeError) as e:
        raise ValueError(f"not canonical JSON: {e}") from None


def check_record(obj: object, *, reserved_ok: bool = False) -> None:
    """Raise ValueError unless `obj` is a flat object the log can hold."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"an audit record is a JSON object, not {type(obj).__name__}")
    known = KNOWN_FIELDS
    for key, value in obj.items():
        if key not in known:
            if type(key) is not str or not KEY_RE.match(key):
                raise ValueError(f"field name {key!r} is not a short ASCII name")
            if not reserved_ok and key in RESERVED:
                raise ValueError(f"field {key!r} is set by the writer, not the producer")
        kind = type(value)
        if kind is str:
            if not value.isascii():  # type: ignore[attr-defined]
                try:
                    value.encode("utf-8")  # type: ignore[attr-defined]
                except UnicodeEncodeError:
                    raise ValueError(f"field {key!r} holds an unpaired surrogate") from None
        elif kind is int:
            if not -MAX_INT <= value <= MAX_INT:  # type: ignore[operator]
                raise ValueError(f"field {key!r}: integer outside +/-(2**53 - 1)")
        elif kind is not bool and value is not None:
            raise ValueError(f"field {key!r}: {kind.__name__} is not allowed "
                             "(strings, integers, booleans and null only)")


def check_source(record: Mapping[str, object]) -> None:
    source = record.get("source")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(sorted(SOURCES))}, "
                         f"not {source!r}")


def record_from_decision(decision: Decision, *, source: str,
                         details: Mapping[str, object] | None = None) -> dict[str, object]:
    """The producer's half of an entry for one decision: who, what, the verdict and
    why, plus flat details (method, url, status, bytes, duration_ms...).

    Details never override the decision's own fields: a detail named like one of
    them is refused, so an entry cannot claim a verdict the engine did not give.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(sorted(SOURCES))}, "
                         f"not {source!r}")
    record: dict[str, object] = {
        "source": source,
        "agent": decision.agent,
        "action": decision.action.value,
        decision.action.selector: decision.target,
        "verdict": decision.verdict.value,
        "mode": decision.mode.value,
        "rule": "default" if decision.rule is None else decision.rule,
        "reason": decision.reason,
    }
    if decision.port is not None:
        record["port"] = decision.port
    if decision.part is not None:
        record["part"] = decision.part
    if details:
        for key, value in details.items():
            if key in record:
                raise ValueError(f"detail {key!r} would override the decision's own field")
            record[key] = value
    check_record(record)
    return record


class Clock:
    """RFC 3339 UTC timestamps with microseconds, cheap enough for every entry: the
    date and time of day are formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1_000_000):06d}Z"


def strip_hash(line: bytes) -> tuple[bytes, str] | None:
    """A canonical line's bytes without its hash member, and the hash; None when the
    line has no hash member where the canonical form puts one."""
    i = line.find(HASH_MEMBER_PREFIX)
    if i < 0:
        return None
    end = i + HASH_MEMBER_LEN
    if line[end - 1:end] != b'"':
        return None
    return line[:i] + line[end:], line[i + len(HASH_MEMBER_PREFIX):end - 1].decode("latin-1")
