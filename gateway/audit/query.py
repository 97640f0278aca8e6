"""Reading an audit log for people: filters, summaries and a table view.

Pure functions over entries (dicts as `iter_entries` yields them); the CLI does
the printing. Filters never trust an entry's shape: a field that is missing or of
another type simply does not match.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

TARGET_KEYS = ("host", "path", "command")
_RELATIVE = re.compile(r"(\d+)([smhd])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 time (`2026-11-24T08:00:00Z`, a date alone) or an age (`90s`, `15m`,
    `2h`, `7d`: that long before now)."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use RFC 3339, or an age like 15m, 2h, 7d)")\
            from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def target_of(entry: Mapping[str, object]) -> str:
    for key in TARGET_KEYS:
        value = entry.get(key)
        if isinstance(value, str):
            return value
    return ""


def entry_time(entry: Mapping[str, object]) -> datetime | None:
    ts = entry.get("ts")
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Filter:
    """Which entries to keep; a field left None matches everything."""

    agent: str | None = None
    source: str | None = None
    action: str | None = None
    verdict: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: Mapping[str, object]) -> bool:
        for key in ("agent", "source", "action"):
            wanted = getattr(self, key)
            if wanted is not None and entry.get(key) != wanted:
                return False
        if self.verdict is not None and str(entry.get("verdict", "")).upper() != \
                self.verdict.upper():
            return False
        if self.target is not None and not fnmatch.fnmatchcase(target_of(entry), self.target):
            return False
        if self.since is not None or self.until is not None:
            when = entry_time(entry)
            if when is None:
                return False
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when > self.until:
                return False
        return True


def select(entries: Iterable[Mapping[str, object]], flt: Filter) -> Iterator[Mapping[str, object]]:
    return (e for e in entries if flt.matches(e))


@dataclass
class Stats:
    """Counts over a log: what a person wants first after a run."""

    entries: int = 0
    by_agent: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    by_verdict: Counter[str] = field(default_factory=Counter)
    denied_targets: Counter[str] = field(default_factory=Counter)

    def add(self, entry: Mapping[str, object]) -> None:
        self.entries += 1
        self.by_agent[str(entry.get("agent") or "anonymous")] += 1
        self.by_action[str(entry.get("action", "?"))] += 1
        verdict = str(entry.get("verdict", "none (gateway event)"))
        self.by_verdict[verdict] += 1
        if verdict == "DENY":
            self.denied_targets[f"{entry.get('action', '?')} {target_of(entry)}"] += 1

    def as_json(self, top: int) -> dict[str, object]:
        return {"entries": self.entries, "by_agent": dict(self.by_agent.most_common()),
                "by_action": dict(self.by_action.most_common()),
                "by_verdict": dict(self.by_verdict.most_common()),
                "top_denied": [{"target": t, "count": n}
                               for t, n in self.denied_targets.most_common(top)]}

    def render(self, top: int) -> str:
        lines = [f"{self.entries} entries"]
        for title, counter in (("by agent", self.by_agent), ("by action", self.by_action),
                               ("by verdict", self.by_verdict)):
            lines.append(f"{title}:")
            lines += [f"  {n:>8}  {name}" for name, n in counter.most_common()]
        lines.append(f"top denied targets (of {len(self.denied_targets)}):")
        lines += [f"  {n:>8}  {t}" for t, n in self.denied_targets.most_common(top)]
        return "\n".join(lines)


def summarise(entries: Iterable[Mapping[str, object]]) -> Stats:
    stats = Stats()
    for entry in entries:
        stats.add(entry)
    return stats


def table_row(entry: Mapping[str, object], width: int = 60) -> str:
    """One entry on one line: time, seq, source, agent, verdict, action, target, rule."""
    target = (target_of(entry) or str(entry.get("event") or "")).replace("\n", "\\n")
    if len(target) > width:
        target = target[: width - 3] + "..."
    mode = " (simulate)" if entry.get("mode") == "simulate" else ""
    return (f"{entry.get('ts', '-')!s:27} {entry.get('seq', '-')!s:>7} "
            f"{entry.get('source', '-')!s:7} {entry.get('agent') or 'anonymous'!s:12} "
            f"{entry.get('verdict', '-')!s:5}{mode} {entry.get('action', '-')!s:10} {target} "
            f"[rule {entry.get('rule', '-')}]")
