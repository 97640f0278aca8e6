"""What a run did: the decisions of an audit log, counted and grouped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.engine import Request, Verdict
from gateway.policy.compiled import (
    CompiledPolicy,
    CompiledRule,
)
from gateway.policy.model import Action, Effect

_ACTIONS = {a.value: a for a in Action}
_VERDICTS = frozenset(v.value for v in Verdict)


def is_decision(entry: Mapping[str, object]) -> bool:
    """An entry is a decision iff its action is one of the four and its verdict ALLOW or DENY."""
    return entry.get("action") in _ACTIONS and entry.get("verdict") in _VERDICTS


def host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _text(entry: Mapping[str, object], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) else None


def _int(entry: Mapping[str, object], key: str) -> int | None:
    value = entry.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Seen:
    """A distinct request the log holds a decision for: enough to decide it again.

    A network request-level decision (an HTTP request the proxy saw) keeps its method
    and URL; a CONNECT keeps host and port only.
    """

    action: Action
    agent: str | None
    target: str
    port: int | None = None
    method: str | None = None
    url: str | None = None
    cwd: str | None = None

    @classmethod
    def of(cls, entry: Mapping[str, object]) -> Seen:
        action = _ACTIONS[str(entry["action"])]
        target = _text(entry, action.selector) or ""
        agent = _text(entry, "agent")
        if action is Action.NETWORK:
            level = entry.get("event") != "connect"
            return cls(action, agent, target, _int(entry, "port"),
                       _text(entry, "method") if level else None,
                       _text(entry, "url") if level else None)
        return cls(action, agent, target, cwd=_text(entry, "cwd"))

    def request(self) -> Request:
        target = self.target
        if self.action is Action.NETWORK:
            target = self.url if self.url is not None else host_port(self.target, self.port)
        return Request(self.action, target, cwd=self.cwd, agent=self.agent, method=self.method)

    def shown(self) -> str:
        if self.action is not Action.NETWORK:
            return self.target
        where = host_port(self.target, self.port)
        if self.method is not None and self.url is not None:
            return f"{where} {self.method} {self.url}"
        return where


def shown_target(entry: Mapping[str, object]) -> str:
    """What a decision was about, for people: a command shows the part that decided."""
    seen = Seen.of(entry)
    if seen.action is Action.SHELL_EXEC:
        return _text(entry, "part") or seen.target
    return seen.shown()


# --- counting -------------------------------------------------------------------------

Targets = Counter[tuple[str, str]]
"""(action, target as shown) -> how many decisions."""


@dataclass
class Summary:
    """Counts over the decisions of a log; `seen` keeps each distinct request."""

    decisions: int = 0
    allowed: int = 0
    denied: int = 0
    would_deny: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    rules: dict[int | str, Counter[str]] = field(default_factory=dict)
    would_denied: dict[str | None, Targets] = field(default_factory=dict)
    enforce_denied: dict[str | None, Targets] = field(default_factory=dict)
    seen: Counter[Seen] = field(default_factory=Counter)
    logged: dict[Seen, set[tuple[str, int | str]]] = field(default_factory=dict)

    def add(self, entry: Mapping[str, object]) -> None:
        if not is_decision(entry):
            return
        self.decisions += 1
        self.by_source[str(entry.get("source", "?"))] += 1
        verdict = str(entry["verdict"])
        rule = _int(entry, "rule")
        key: int | str = rule if rule is not None else str(entry.get("rule", "default"))
        self.rules.setdefault(key, Counter())[verdict] += 1
        seen = Seen.of(entry)
        self.seen[seen] += 1
        self.logged.setdefault(seen, set()).add((verdict, key))
        if verdict == Verdict.ALLOW:
            self.allowed += 1
            return
        simulated = entry.get("mode") == "simulate"
        if simulated:
            self.would_deny += 1
        else:
            self.denied += 1
        groups = self.would_denied if simulated else self.enforce_denied
        groups.setdefault(seen.agent, Counter())[(seen.action.value, shown_target(entry))] += 1

    @property
    def named_rules(self) -> set[int]:
        return {k for k in self.rules if isinstance(k, int)}


def summarise(entries: Iterable[Mapping[str, object]]) -> Summary:
    summary = Summary()
    for entry in entries:
        summary.add(entry)
    return summary


def unused_allow_rules(summary: Summary, policy: CompiledPolicy) -> list[CompiledRule]:
    """Allow rules no decision named. For a command, only the rule that allowed its first
    part is named, so a rule allowing later parts may be listed although it was needed."""
    named = summary.named_rules
    return [r for r in policy.rules if r.effect is Effect.ALLOW and r.index not in named]


def many(n: int, noun: str) -> str:
    """`1 time`, `2 times`."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
