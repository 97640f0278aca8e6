"""A policy that would have let a run: one narrow allow rule per target the default
denied, checked against the very text it prints.

With the policy at hand, `suggest` proposes the rules, then compiles the YAML it
prints and decides every target seen again; what that text still would not allow is
listed with the reason. The suggestion is text for a person to review; nothing
applies it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.engine import Decision, Verdict, decide, url_path
from gateway.errors import GatewayError
from gateway.matching.hosts import BadTarget, parse_network_target
from gateway.matching.paths import BadPath, normalise_path
from gateway.policy.compiled import CompiledPolicy, compile_policy, compile_policy_text
from gateway.policy.model import Action, Effect, PolicyModel, Rule
from gateway.policy.variables import escape_literal
from gateway.report.summary import Seen, Summary, host_port, many
from gateway.shell.analyse import analyse
from gateway.shell.words import Glob, Word

MAX_ROUNDS = 32
"""Rounds of suggesting: a command needs one per part the default denies."""
_RULE_KEYS = ("action", "host", "path", "command", "ports", "methods", "paths", "agents",
              "overlay", "exec", "effect", "reason")
_TOP_KEYS = ("version", "default", "mode", "vars", "rules")
_COMMAND_BLANKS = "\n\r\f\v"  # blanks to a command pattern that variables never hold
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


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
            seen = many(sum(need.seen.values()), "time")
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
