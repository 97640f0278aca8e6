"""The one-screen account printed when a run ends: what the agent was allowed and
refused, where, and the log's head hash to verify it against."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.audit.reader import iter_entries
from gateway.audit.recovery import read_tail
from gateway.errors import GatewayError
from gateway.report.summary import Summary, summarise

TOP = 5


@dataclass
class RunSummary:
    agent: str
    exit_code: int
    decisions: Summary
    head: str | None
    log: Path | None
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        d = self.decisions
        lines = [f"gateway run: {self.agent} exited with status {self.exit_code}"]
        if self.log is None:
            lines.append("  decisions  in the gateway's own audit log (not on this machine)")
            return "\n".join(lines + [f"  note: {n}" for n in self.notes])
        lines.append(f"  decisions  {d.decisions}: {d.allowed} allowed, {d.denied} denied"
                     + (f", {d.would_deny} would be denied (simulate)" if d.would_deny else ""))
        if d.by_source:
            lines.append("  by source  " + ", ".join(
                f"{k} {v}" for k, v in sorted(d.by_source.items())))
        counts: Counter[tuple[str, str]] = Counter()
        for groups in (d.enforce_denied, d.would_denied):
            for targets in groups.values():
                counts.update(targets)
        if counts:
            lines.append("  top denied")
            for (action, target), n in counts.most_common(TOP):
                lines.append(f"    {n:>4}  {action:<10} {_short(target)}")
        if self.log is not None:
            lines.append(f"  audit log  {self.log}")
            lines.append(f"  head       {self.head or '(empty)'}  "
                         f"(gateway audit verify {self.log})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def summarise_run(log: Path | None, since_seq: int, agent: str, exit_code: int,
                  notes: Iterable[str] = ()) -> RunSummary:
    """The decisions made for `agent` after `since_seq` in `log`."""
    head = None
    decisions = Summary()
    if log is not None:
        try:
            decisions = summarise(e for e in iter_entries(log) if _belongs(e, since_seq, agent))
            tail = read_tail(log).entry
            head = str(tail["hash"]) if tail else None
        except (OSError, GatewayError) as e:
            notes = [*notes, f"the audit log could not be read: {e}"]
    return RunSummary(agent, exit_code, decisions, head, log, list(notes))


def _belongs(entry: Mapping[str, object], since_seq: int, agent: str) -> bool:
    seq = entry.get("seq")
    return isinstance(seq, int) and seq > since_seq and entry.get("agent") == agent


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
