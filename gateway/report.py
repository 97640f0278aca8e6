"""`gateway report`: what a run did, from its audit log, and a policy that would have let it.

Pure functions over entries as `iter_entries` yields them; the CLI reads and prints.
Only decisions count: an entry is one when its action is one of the four and its
verdict ALLOW or DENY, so the log's own events, gateway events and completion
entries pass by.

With the policy at hand, `suggest` proposes one narrow allow rule per target its
default denied, then checks itself: it compiles the very text it prints and decides
every target seen again. What that text still would not allow is listed with the
reason. The suggestion is text for a person to review; nothing applies it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.engine import Decision, Request, Verdict, decide, url_path
from gateway.errors import GatewayError
from gateway.matching.hosts import BadTarget, parse_network_target
from gateway.matching.paths import BadPath, normalise_path
from gateway.policy.compiled import (
    CompiledPolicy,
    CompiledRule,
    compile_policy,
    compile_policy_text,
)
from gateway.policy.model import Action, Effect, PolicyModel, Rule
from gateway.policy.variables import escape_literal
from gateway.shell.analyse import analyse
from gateway.shell.words import Glob, Word

DEFAULT_TOP = 20
MAX_ROUNDS = 32
"""Rounds of suggesting: a command needs one per part the default denies."""
HINT = ("give --policy POLICY to show rule texts, allow rules never used and a suggested "
        "policy")
_ACTIONS = {a.value: a for a in Action}
_VERDICTS = frozenset(v.value for v in Verdict)
_RULE_KEYS = ("action", "host", "path", "command", "ports", "methods", "paths", "agents",
              "effect", "reason")
_TOP_KEYS = ("version", "default", "mode", "vars", "rules")
_COMMAND_BLANKS = "\n\r\f\v"  # blanks to a command pattern that variables never hold
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


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


# --- suggesting -----------------------------------------------------------------------


@dataclass
class _Need:
    """A suggested rule (its reason still to fill in) and the seen requests it is for."""

    rule: Rule
    seen: dict[Seen, int] = field(default_factory=dict)
    reach: tuple[str | None, str, int | None] | None = None  # request-level: agent, host, port


@dataclass(frozen=True, slots=True)
class Outcome:
    """One seen request as the suggested policy decides it; `why` when not allowed."""

    seen: Seen
    count: int
    decision: Decision
    why: str | None = None


@dataclass(frozen=True)
class Suggestion:
    """The suggested policy's text, what it adds, and what it still does not allow."""

    text: str
    added: tuple[Rule, ...]
    explicit: dict[int, list[Outcome]]
    not_covered: list[Outcome]
    differs: list[Outcome]
    covered: int


def suggest(summary: Summary, model: PolicyModel, policy: CompiledPolicy, *, log: str,
            environ: Mapping[str, str] | None = None) -> Suggestion:
    """The original policy plus one narrow allow per target its default denied, verified."""
    needs: dict[str, _Need] = {}
    blocked: dict[Seen, str] = {}
    suggester = _Suggester(summary, model, policy, log, environ)
    for _ in range(MAX_ROUNDS):
        text, compiled, decisions = suggester.round(needs)
        if not suggester.grow(needs, blocked, compiled, decisions):
            break
    else:
        text, compiled, decisions = suggester.round(needs)
    explicit: dict[int, list[Outcome]] = {}
    not_covered: list[Outcome] = []
    covered = 0
    for seen, decision in decisions.items():
        count = summary.seen[seen]
        if decision.verdict is Verdict.ALLOW:
            covered += 1
        elif not _by_default(compiled, decision):
            assert decision.rule is not None
            explicit.setdefault(decision.rule, []).append(Outcome(seen, count, decision))
        else:
            why = blocked.get(seen) or f"still denied: {decision.reason}"
            not_covered.append(Outcome(seen, count, decision, why))
    return Suggestion(text, tuple(suggester.rules(needs)), dict(sorted(explicit.items())),
                      _by_count(not_covered), _by_count(suggester.differs()), covered)


def _by_count(outcomes: list[Outcome]) -> list[Outcome]:
    return sorted(outcomes, key=lambda o: (-o.count, o.seen.action.value, o.seen.shown()))


def _by_default(policy: CompiledPolicy, decision: Decision) -> bool:
    """Whether the action's default decided: no rule, or the catch-all that set it."""
    return decision.rule is None or policy.rules[decision.rule].sets_default


class _NoRule(Exception):
    """No allow rule can admit exactly this target; the message says why."""


class _Suggester:
    def __init__(self, summary: Summary, model: PolicyModel, policy: CompiledPolicy, log: str,
                 environ: Mapping[str, str] | None) -> None:
        self.summary = summary
        self.model = model
        self.policy = policy
        self.log = log
        self.environ = environ

    def rules(self, needs: Mapping[str, _Need]) -> list[Rule]:
        ordered = sorted(needs.values(), key=lambda n: (
            list(Action).index(n.rule.action), n.rule.agents or [], n.rule.selectors()))
        out = []
        for need in ordered:
            seen = _many(sum(need.seen.values()), "time")
            out.append(need.rule.model_copy(update={"reason": f"seen in {self.log} ({seen})"}))
        return out

    def round(self, needs: Mapping[str, _Need]) -> tuple[str, CompiledPolicy,
                                                         dict[Seen, Decision]]:
        text = policy_yaml(self.model, self.rules(needs))
        compiled = compile_policy_text(text, file="<suggested policy>",
                                       project_dir=self.policy.project_dir,
                                       environ=self.environ)
        return text, compiled, {s: decide(compiled, s.request()) for s in self.summary.seen}

    def grow(self, needs: dict[str, _Need], blocked: dict[Seen, str], compiled: CompiledPolicy,
             decisions: Mapping[Seen, Decision]) -> bool:
        """Add a rule for each request the default still denies; False when none was new.

        Requests come before CONNECTs: a request-level allow also lets its host be
        reached, so a CONNECT to a host with suggested request rules waits a round
        instead of getting a rule that would allow every request there.
        """
        present = set(needs)
        grew = False
        pending = [(s, d) for s, d in decisions.items() if d.verdict is Verdict.DENY
                   and s not in blocked and _by_default(compiled, d)]
        pending.sort(key=lambda sd: sd[0].method is None and sd[0].url is None)
        for seen, decision in pending:
            if seen.action is Action.NETWORK and seen.method is None and seen.url is None:
                reach = (seen.agent, decision.target, decision.port)
                if any(n.reach == reach for k, n in needs.items() if k not in present):
                    continue
            made = self.allow_rule(seen, decision)
            if isinstance(made, str):
                blocked[seen] = made
                continue
            key = json.dumps(made.model_dump(mode="json", exclude_none=True), sort_keys=True)
            if key in present:
                continue
            if key not in needs:
                request_level = seen.method is not None or seen.url is not None
                needs[key] = _Need(made, reach=(seen.agent, decision.target, decision.port)
                                   if request_level else None)
                grew = True
            needs[key].seen[seen] = self.summary.seen[seen]
        return grew

    def allow_rule(self, seen: Seen, decision: Decision) -> Rule | str:
        """The narrowest allow rule for what `decision` denied, or why there is none."""
        if decision.reason.startswith(("bad input:", "cannot analyse:")):
            return decision.reason
        fields: dict[str, Any] = {}
        if seen.action is Action.NETWORK:
            fields["host"] = [host_port(decision.target, None)]
            if decision.port is not None:
                fields["ports"] = [decision.port]
            if seen.method is not None:
                fields["methods"] = [seen.method.upper()]
            if seen.url is not None:
                path = _url_path(seen.url)
                if path is None:
                    return "its URL path cannot be read, so no rule can name it"
                fields["paths"] = [escape_literal(path)]
        elif seen.action is Action.SHELL_EXEC:
            try:
                fields["command"] = [self.command_pattern(seen, decision)]
            except _NoRule as e:
                return str(e)
        else:
            fields["path"] = [escape_literal(decision.target)]
        try:
            rule = Rule(action=seen.action, effect=Effect.ALLOW,
                        agents=None if seen.agent is None else [seen.agent], **fields)
            compile_policy(self.model.model_copy(update={"rules": [rule]}),
                           project_dir=self.policy.project_dir, environ=self.environ)
        except ValidationError as e:
            return f"cannot be written as a rule: {e.errors()[0]['msg']}"
        except GatewayError as e:
            return f"cannot be written as a rule: {e}"
        return rule

    def command_pattern(self, seen: Seen, decision: Decision) -> str:
        """An allow pattern admitting the denied part only; _NoRule says why there is none."""
        try:
            cwd = self.policy.project_dir if seen.cwd is None else \
                normalise_path(seen.cwd, self.policy.project_dir)
        except BadPath as e:
            raise _NoRule(f"bad input: {e}") from None
        analysis = analyse(seen.target, home=self.policy.home, cwd=cwd)
        part = next((p for p in analysis.parts if p.text == decision.part
                     and not p.see_through), None)
        if part is None:
            raise _NoRule(decision.reason)
        if part.runtime_args:
            raise _NoRule(f"{part.text}: arguments are added at run time, which no exact "
                          "rule admits")
        words = []
        for word in part.words:
            if word.has_hole:
                raise _NoRule(f"{part.text}: {word.display()} is filled in at run time, "
                              "which no exact rule admits")
            words.append(pattern_word(word))
        return " ".join(words)

    def differs(self) -> list[Outcome]:
        """Seen requests that POLICY decides otherwise than the log says."""
        out = []
        for seen, logged in self.summary.logged.items():
            now = decide(self.policy, seen.request())
            pair = (now.verdict.value, "default" if now.rule is None else now.rule)
            if logged != {pair}:
                was = ", ".join(f"{v} by rule {r}" for v, r in sorted(logged, key=str))
                out.append(Outcome(seen, self.summary.seen[seen], now,
                                   f"logged {was}; POLICY now: {pair[0]} by rule {pair[1]}"))
        return out


def _url_path(url: str) -> str | None:
    try:
        return url_path(parse_network_target(url).path)
    except BadTarget:
        return None


def escape_command_text(text: str) -> str:
    """Literal text for a command pattern: every selector-special character and every
    blank backslashed, so the pattern word matches this text only."""
    escaped = escape_literal(text)
    return "".join("\\" + c if c in _COMMAND_BLANKS else c for c in escaped)


def pattern_word(word: Word) -> str:
    """A command pattern word admitting exactly this word: literal text escaped, an
    unquoted glob kept, since the allow matcher admits a glob word by its own text."""
    text = "".join(s.text if isinstance(s, Glob) else escape_command_text(str(s))
                   for s in word.segments)
    return text or "''"


# --- the policy as YAML -----------------------------------------------------------------


def yaml_string(text: str) -> str:
    """A double-quoted YAML scalar: JSON's escapes, plus those YAML reads as line breaks
    or refuses raw."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _yaml_key(name: str) -> str:
    """A variable name plain unless YAML would read it as something else (`on`, `null`)."""
    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, name, (True, False))
    return name if tag == "tag:yaml.org,2002:str" else yaml_string(name)


def _flow(value: object) -> str:
    """Any dumped model value in YAML flow style, every string quoted."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_key(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return yaml_string(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _yaml_value(key: str, value: object) -> str:
    if key in ("host", "path", "command") and isinstance(value, list) and len(value) == 1:
        return _flow(value[0])
    if key in ("action", "effect"):
        return str(value)
    return _flow(value)


def rule_yaml(rule: Rule) -> str:
    """One rule as a YAML flow mapping, every string quoted."""
    data = rule.model_dump(mode="json", exclude_none=True)
    return "{" + ", ".join(f"{k}: {_yaml_value(k, data[k])}" for k in _RULE_KEYS
                           if k in data) + "}"


def policy_yaml(model: PolicyModel, added: Iterable[Rule] = ()) -> str:
    """The policy re-serialised from its model (comments are lost), then `added`. Settings
    beyond version, default, mode and vars are kept too, where they differ from defaults."""
    lines = ["version: 1", f"default: {model.default.value}", f"mode: {model.mode.value}"]
    if model.vars:
        lines.append("vars:")
        lines += [f"  {_yaml_key(k)}: {yaml_string(v)}" for k, v in model.vars.items()]
    settings = model.model_dump(mode="json", exclude=set(_TOP_KEYS), exclude_defaults=True)
    lines += [f"{_yaml_key(k)}: {_flow(v)}" for k, v in settings.items()]
    extra = list(added)
    if not model.rules and not extra:
        lines.append("rules: []")
        return "\n".join(lines) + "\n"
    lines.append("rules:")
    lines += [f"  - {rule_yaml(r)}" for r in model.rules]
    if extra:
        lines.append("  # suggested by gateway report from what the log saw: review each")
        lines += [f"  - {rule_yaml(r)}" for r in extra]
    return "\n".join(lines) + "\n"


# --- the report -----------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Everything `gateway report` shows; policy-dependent parts are None without one."""

    log: str
    summary: Summary
    policy: CompiledPolicy | None = None
    unused: list[CompiledRule] | None = None
    suggestion: Suggestion | None = None


def build_report(entries: Iterable[Mapping[str, object]], *, log: str,
                 model: PolicyModel | None = None, policy: CompiledPolicy | None = None,
                 environ: Mapping[str, str] | None = None) -> Report:
    """The report over `entries`; with the policy's model and compiled form, sections 4-5."""
    summary = summarise(entries)
    if model is None or policy is None:
        return Report(log, summary)
    return Report(log, summary, policy, unused_allow_rules(summary, policy),
                  suggest(summary, model, policy, log=log, environ=environ))


def _rules_in_order(summary: Summary) -> list[tuple[int | str, Counter[str]]]:
    """Rule indexes ascending, then "default" (and any other name)."""
    return sorted(summary.rules.items(), key=lambda kv: (1, kv[0], 0) if isinstance(kv[0], str)
                  else (0, "", kv[0]))


def _rule_text(policy: CompiledPolicy | None, key: int | str) -> str | None:
    if policy is None or not isinstance(key, int):
        return None
    return policy.rules[key].text if 0 <= key < len(policy.rules) else "(not in this policy)"


def _groups(groups: Mapping[str | None, Targets]) -> list[tuple[str | None, Targets]]:
    return sorted(groups.items(), key=lambda kv: (-kv[1].total(), kv[0] or ""))


def _outcome_json(o: Outcome) -> dict[str, object]:
    out: dict[str, object] = {"action": o.seen.action.value, "agent": o.seen.agent,
                              "target": o.seen.shown(), "count": o.count}
    if o.why is not None:
        out["reason"] = o.why
    return out


def _listed(outcomes: list[Outcome], top: int) -> dict[str, object]:
    return {"distinct": len(outcomes), "targets": [_outcome_json(o) for o in outcomes[:top]]}


def report_json(report: Report, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The report as one JSON object; every list of targets holds at most `top`."""
    s, policy, sg = report.summary, report.policy, report.suggestion

    def groups(of: Mapping[str | None, Targets]) -> list[dict[str, object]]:
        return [{"agent": agent, "decisions": targets.total(), "distinct": len(targets),
                 "targets": [{"action": a, "target": t, "count": n}
                             for (a, t), n in targets.most_common(top)]}
                for agent, targets in _groups(of)]

    suggestion = None
    if sg is not None:
        suggestion = {
            "policy": sg.text,
            "added": [r.model_dump(mode="json", exclude_none=True) for r in sg.added],
            "seen": len(s.seen), "covered": sg.covered,
            "explicit_denies": [{"rule": i, "text": _rule_text(policy, i),
                                 "decisions": sum(o.count for o in os), **_listed(os, top)}
                                for i, os in sg.explicit.items()],
            "not_covered": _listed(sg.not_covered, top),
            "differs": _listed(sg.differs, top),
        }
    return {
        "log": report.log,
        "policy": None if policy is None else policy.file,
        "totals": {"decisions": s.decisions, "allowed": s.allowed, "denied": s.denied,
                   "would_deny": s.would_deny, "by_source": dict(s.by_source.most_common())},
        "rules": [{"rule": k, "decisions": c.total(), "allow": c["ALLOW"], "deny": c["DENY"],
                   "text": _rule_text(policy, k)} for k, c in _rules_in_order(s)],
        "would_deny": groups(s.would_denied),
        "denied": groups(s.enforce_denied),
        "unused_allow_rules": None if report.unused is None else
        [{"rule": r.index, "text": r.text} for r in report.unused],
        "suggestion": suggestion,
        "hint": HINT if policy is None else None,
    }


def _line(text: str, width: int = 160) -> str:
    """One line for people: line breaks and tabs shown as escapes, long text cut."""
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text if len(text) <= width else text[: width - 3] + "..."


def _many(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _agent(agent: str | None) -> str:
    return "(no agent)" if agent is None else _line(agent, 60)


def _row(count: int, action: str, target: str, tail: str = "") -> str:
    return f"  {count:>7}  {action:<10}  {_line(target)}{tail}"


def _outcome_rows(outcomes: list[Outcome], top: int) -> list[str]:
    rows = []
    for o in outcomes[:top]:
        rows.append(_row(o.count, o.seen.action.value, o.seen.shown(),
                         f"  [{_agent(o.seen.agent)}]"))
        if o.why is not None:
            rows.append(f"{'':22}{_line(o.why)}")
    if len(outcomes) > top:
        rows.append(f"  ... and {len(outcomes) - top} more")
    return rows


def render_text(report: Report, top: int = DEFAULT_TOP) -> str:
    """The report for people: short, aligned sections."""
    s, policy, sg = report.summary, report.policy, report.suggestion
    head = f"report of {report.log}" + ("" if policy is None else f" against {policy.file}")
    sources = ", ".join(f"{n} {name}" for name, n in s.by_source.most_common()) or "none"
    out = [head, f"decisions: {s.decisions} ({s.allowed} allowed, {s.denied} denied, "
                 f"{s.would_deny} would-deny)", f"by source: {sources}", "", "rules that fired:"]
    out.append(f"  {'rule':<8} {'total':>7} {'allow':>7} {'deny':>7}")
    for key, c in _rules_in_order(s):
        text = _rule_text(policy, key)
        out.append(f"  {key!s:<8} {c.total():>7} {c['ALLOW']:>7} {c['DENY']:>7}"
                   + (f"  {_line(text)}" if text else ""))
    for title, groups in (("would-deny (simulate)", s.would_denied),
                          ("denied (enforce)", s.enforce_denied)):
        out += ["", f"{title}, by agent:"]
        if not groups:
            out.append("  none")
        for agent, targets in _groups(groups):
            out.append(f"  {_agent(agent)}: {_many(targets.total(), 'decision')}, "
                       f"{_many(len(targets), 'target')}")
            out += [_row(n, a, t) for (a, t), n in targets.most_common(top)]
            if len(targets) > top:
                out.append(f"  ... and {len(targets) - top} more")
    if sg is None or report.unused is None:
        return "\n".join([*out, "", HINT])
    out += ["", "allow rules never used:"]
    out += [f"  {r.index:<8} {_line(r.text)}" for r in report.unused] or ["  none"]
    out += ["", f"suggested policy: {len(sg.added)} allow rules added; it allows {sg.covered} "
                f"of {len(s.seen)} targets seen.",
            "It is printed for review, never written: read every rule before using it.",
            "", sg.text.rstrip("\n")]
    if sg.explicit:
        out += ["", "denied by explicit rules (deny overrides allow, so no allow is suggested):"]
        for index, outcomes in sg.explicit.items():
            out.append(f"  review rule {index} {_line(_rule_text(policy, index) or '')}")
            out += _outcome_rows(outcomes, top)
    if sg.not_covered:
        out += ["", "not covered by the suggestion:", *_outcome_rows(sg.not_covered, top)]
    if sg.differs:
        out += ["", "decided otherwise by the policy than the log says (another policy?):"]
        out += _outcome_rows(sg.differs, top)
    return "\n".join(out)
