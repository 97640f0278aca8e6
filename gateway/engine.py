"""The decision engine: pure `decide(policy, request) -> Decision`.

No I/O, no clock, no logging. Where a decision needs the filesystem (symlinks,
scripts run by `sh FILE`), the caller passes a `FileSystem`; without one, paths
are judged as written. Deny overrides: among the rules of the asked action that
match, any deny gives DENY, else any allow gives ALLOW, else the action's default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote

from gateway.errors import RequestError
from gateway.matching.hosts import BadTarget, NetworkTarget, parse_network_target
from gateway.matching.paths import BadPath, normalise_path
from gateway.policy.compiled import ActionRules, CompiledPolicy, CompiledRule
from gateway.policy.model import Action, Effect, Mode
from gateway.shell.analyse import analyse
from gateway.shell.words import Part, Word

MAX_COMMAND_BYTES = 64 * 1024


class Verdict(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class FileSystem(Protocol):
    """What the engine may ask of the filesystem, when one is at hand."""

    def resolve(self, path: str, cwd: str) -> str:
        """The path as the kernel would open it: symlinks before `..`, from the path as
        written (relative ones against `cwd`)."""
        ...

    def read_script(self, path: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One question to the engine. `cwd` resolves relative paths (relative `cwd`s against
    the project directory); `method` makes a URL target a request-level decision."""

    action: Action
    target: str
    cwd: str | None = None
    agent: str | None = None
    method: str | None = None


ACTIONS = ", ".join(a.value for a in Action)


def make_request(action: object, target: object, *, cwd: str | None = None,
                 agent: str | None = None, method: str | None = None) -> Request:
    """A Request from loosely typed fields (a JSON line, argv); RequestError naming the
    first problem with `action` or `target`."""
    if action is None:
        raise RequestError("missing 'action'")
    try:
        kind = Action(action)
    except ValueError:
        raise RequestError(f"unknown action {action!r} (one of: {ACTIONS})") from None
    if target is None:
        raise RequestError("missing 'target'")
    if not isinstance(target, str):
        raise RequestError("'target' must be a string")
    return Request(kind, target, cwd=cwd, agent=agent, method=method)


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer. `rule` is the deciding rule's index, or None for the default."""

    action: Action
    target: str
    verdict: Verdict
    reason: str
    mode: Mode
    rule: int | None = None
    rule_text: str | None = None
    port: int | None = None
    part: str | None = None
    agent: str | None = None

    @property
    def blocks(self) -> bool:
        """Whether an enforcement point must refuse: a DENY in enforce mode."""
        return self.verdict is Verdict.DENY and self.mode is Mode.ENFORCE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action.value, self.action.selector: self.target}
        if self.port is not None:
            out["port"] = self.port
        if self.agent is not None:
            out["agent"] = self.agent
        out["verdict"] = self.verdict.value
        out["reason"] = self.reason
        out["rule"] = "default" if self.rule is None else self.rule
        out["mode"] = self.mode.value
        if self.part is not None:
            out["part"] = self.part
        return out


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule whose selector matched; `counts` is False when something else rules it out."""

    rule: CompiledRule
    counts: bool = True
    note: str = ""


@dataclass(slots=True)
class Trace:
    """What `explain` shows: the normalisation steps and every matching rule, per target."""

    steps: list[str] = field(default_factory=list)
    candidates: list[tuple[str, list[Candidate]]] = field(default_factory=list)


def decide(policy: CompiledPolicy, request: Request, fs: FileSystem | None = None,
           trace: Trace | None = None) -> Decision:
    """Decide one request. Never raises for bad targets: they get DENY with a reason."""
    judge = _JUDGES[request.action]
    return judge(policy, request, fs, trace)


# --- network --------------------------------------------------------------------------


def decide_parsed(policy: CompiledPolicy, request: Request, target: NetworkTarget) -> Decision:
    """A network decision on `request` whose target the caller has parsed already
    (`request_target`): the answer `decide` gives, without parsing it again."""
    return _judge_network(policy, request, target, None)


def _decide_network(policy: CompiledPolicy, request: Request, fs: FileSystem | None,
                    trace: Trace | None) -> Decision:
    try:
        target = parse_network_target(request.target)
    except BadTarget as e:
        return _bad_input(policy, request, str(e))
    return _judge_network(policy, request, target, trace)


def _judge_network(policy: CompiledPolicy, request: Request, target: NetworkTarget,
                   trace: Trace | None) -> Decision:
    if trace is not None:
        trace.steps.append(f"target {request.target!r} -> host {target.host!r}, "
                           f"port {target.port if target.port is not None else 'unknown'}"
                           + (f", path {target.path!r}" if target.path else "")
                           + (f"; special: {target.special}" if target.special else ""))
    table = policy.actions[Action.NETWORK]
    method = request.method.upper() if request.method else None
    request_level = method is not None or target.path is not None
    candidates = []
    for match in table.index.match(target):  # type: ignore[union-attr]
        rule = policy.rules[match.key]
        note = _network_mismatch(rule, target, method, request_level, request.agent)
        if note is None and rule.effect is Effect.ALLOW:
            if match.deny_only:
                note = "matches the IPv4 address this form carries; only a deny applies so"
            elif target.special and not match.exact:
                note = f"a wildcard cannot allow a {target.special} address"
        candidates.append(Candidate(rule, note is None, note or ""))
    if trace is not None:
        trace.candidates.append((target.host, candidates))
    outcome = _settle(policy, table, target.host, candidates, special=target.special)
    return _make(policy, request, target.host, outcome, port=target.port)


def _network_mismatch(rule: CompiledRule, target: NetworkTarget, method: str | None,
                      request_level: bool, agent: str | None) -> str | None:
    """Why a rule whose host matched does not apply to this request, or None if it does."""
    if not rule.applies_to(agent):
        return "for other agents"
    if rule.ports is not None and target.port not in rule.ports:
        return "port unknown" if target.port is None else f"port {target.port} not in ports"
    constrained = rule.methods is not None or rule.url_paths is not None
    if not constrained:
        return None
    if not request_level:
        # Host level: an allow makes the host reachable for per-request checks;
        # a deny with methods/paths refuses only matching requests.
        return None if rule.effect is Effect.ALLOW else "applies to matching requests only"
    # Request level. What is unknown counts against an allow and for a deny.
    deny = rule.effect is Effect.DENY
    if rule.methods is not None:
        if method is None and not deny:
            return "method unknown"
        if method is not None and method not in rule.methods:
            return f"method {method} not in methods"
    if rule.url_paths is not None:
        path = url_path(target.path)
        if path is None and not deny:
            return "URL path unknown"
        if path is not None and not rule.url_paths.match(path):
            return f"URL path {path} not in paths"
    return None


def url_path(raw: str | None) -> str | None:
    """A URL path as servers read it: percent-decoded once, `.`/`..`/`//` folded. None
    when unknown or undecodable (which counts against an allow and for a deny)."""
    if raw is None:
        return None
    try:
        return normalise_path(unquote(raw, errors="strict"), "/")
    except (BadPath, UnicodeDecodeError):
        return None


# --- files ----------------------------------------------------------------------------


def _decide_file(policy: CompiledPolicy, request: Request, fs: FileSystem | None,
                 trace: Trace | None) -> Decision:
    try:
        cwd = _cwd(policy, request.cwd)
        path = normalise_path(request.target, cwd)
        resolved = fs.resolve(request.target, cwd) if fs is not None else path
    except BadPath as e:
        return _bad_input(policy, request, str(e))
    table = policy.actions[request.action]
    if trace is not None:
        trace.steps.append(f"path {request.target!r} -> {path!r}"
                           + (f" (resolves to {resolved!r})" if resolved != path else ""))
    outcome = _judge_path(policy, table, request, path, trace)
    if resolved != path and outcome[0] is Verdict.ALLOW:
        verdict, rule, reason = _judge_path(policy, table, request, resolved, trace)
        if verdict is Verdict.DENY:
            outcome = verdict, rule, f"{path} resolves to {resolved}: {reason}"
    return _make(policy, request, path, outcome)


def _judge_path(policy: CompiledPolicy, table: ActionRules, request: Request, path: str,
                trace: Trace | None) -> Outcome:
    candidates = [_agent_candidate(policy.rules[key], request.agent)
                  for key in table.index.match(path)]  # type: ignore[union-attr]
    if trace is not None:
        trace.candidates.append((path, candidates))
    return _settle(policy, table, path, candidates)


def _cwd(policy: CompiledPolicy, cwd: str | None) -> str:
    if cwd is None:
        return policy.project_dir
    if "\x00" in cwd:
        raise BadPath("cwd contains a NUL byte")
    return normalise_path(cwd, policy.project_dir)


# --- commands -------------------------------------------------------------------------


def _decide_command(policy: CompiledPolicy, request: Request, fs: FileSystem | None,
                    trace: Trace | None) -> Decision:
    command = request.target
    problem = _command_problem(command)
    if problem:
        return _bad_input(policy, request, problem)
    try:
        cwd = _cwd(policy, request.cwd)
    except BadPath as e:
        return _bad_input(policy, request, str(e))
    reader: Callable[[str], str | None] | None = None
    if fs is not None:
        reader = fs.read_script
    analysis = analyse(command, home=policy.home, cwd=cwd, read_script=reader)
    table = policy.actions[Action.SHELL_EXEC]
    if analysis.cannot_analyse is not None:
        if trace is not None:
            trace.steps.append(analysis.cannot_analyse)
        return _make(policy, request, command, (Verdict.DENY, None, analysis.cannot_analyse))
    if trace is not None:
        trace.steps.append("parts: " + "; ".join(
            p.text + (" (seen through)" if p.see_through else "") for p in analysis.parts))
    index = table.index
    allowed_by: CompiledRule | None = None
    denied: Decision | None = None
    for part in analysis.parts:
        candidates = [_agent_candidate(policy.rules[k], request.agent)
                      for k in index.denies(part)]  # type: ignore[union-attr]
        if not part.see_through:
            candidates += [_agent_candidate(policy.rules[k], request.agent)
                           for k in index.allows(part)]  # type: ignore[union-attr]
        if trace is not None:
            trace.candidates.append((part.text, candidates))
        if part.see_through:
            candidates = [c for c in candidates if c.rule.effect is Effect.DENY]
            if not any(c.counts for c in candidates):
                continue
        verdict, rule, reason = _settle(policy, table, command, candidates, part=part)
        if verdict is Verdict.DENY and denied is None:
            denied = _make(policy, request, command, (verdict, rule, reason), part=part.text)
            if trace is None:
                return denied  # the first denied part decides; explain still shows the rest
        if allowed_by is None and rule is not None and verdict is Verdict.ALLOW:
            allowed_by = rule
    if denied is not None:
        return denied
    if allowed_by is not None:
        return _make(policy, request, command,
                     (Verdict.ALLOW, allowed_by, _allow_reason(allowed_by)))
    if not analysis.parts:
        return _make(policy, request, command,
                     (Verdict.ALLOW, None, "nothing runs (assignments only)"))
    return _make(policy, request, command, _settle(policy, table, command, []))


def decide_shell_itself(policy: CompiledPolicy, request: Request,
                        argv: Sequence[str]) -> Decision:
    """A shell started with no code to run (interactive, or reading a pipe) runs
    whatever it reads, which nothing checks: only a rule that allows the shell's own
    line may allow it, never the default or a catch-all. `request.target` is the line."""
    part = Part(tuple(Word.of(a) for a in argv), request.target)
    table = policy.actions[Action.SHELL_EXEC]
    index = table.index
    candidates = [_agent_candidate(policy.rules[k], request.agent)
                  for k in (*index.denies(part), *index.allows(part))]  # type: ignore[union-attr]
    verdict, rule, reason = _settle(policy, table, request.target, candidates, part=part)
    reads = f"{part.text} reads its commands from its input, which nothing checks"
    if verdict is Verdict.ALLOW and (rule is None or rule.sets_default):
        verdict, rule, reason = (Verdict.DENY, None,
                                 f"{reads}; only a rule allowing {part.program} itself may "
                                 "allow it")
    else:
        reason = f"{reads}: {reason}"
    return _make(policy, request, request.target, (verdict, rule, reason), part=part.text)


def decide_dynamic(policy: CompiledPolicy, action: Action, why: str, *,
                   agent: str | None = None) -> Decision:
    """An action whose target is built at run time, so no rule can be matched before it
    runs (the SDK's static analysis): the policy's `sdk.dynamic` decides. `allow` relies
    on the runtime enforcement (proxy, shim, mounts) to judge the real target."""
    if policy.sdk_dynamic is Effect.ALLOW:
        return Decision(action, "", Verdict.ALLOW, f"dynamic: {why}; sdk.dynamic is allow, "
                        "so the runtime enforcement judges the real target", policy.mode,
                        agent=agent)
    return Decision(action, "", Verdict.DENY, f"dynamic: {why}, so it cannot be judged "
                    "before it runs (sdk.dynamic is deny)", policy.mode, agent=agent)


def _command_problem(command: str) -> str | None:
    if not command.strip():
        return "empty command"
    if "\x00" in command:
        return "command contains a NUL byte"
    if len(command) > MAX_COMMAND_BYTES:
        return f"command longer than {MAX_COMMAND_BYTES} bytes"
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:
        return "command holds undecodable bytes"
    return None


# --- settling -------------------------------------------------------------------------


def _agent_candidate(rule: CompiledRule, agent: str | None) -> Candidate:
    if rule.applies_to(agent):
        return Candidate(rule)
    return Candidate(rule, False, "for other agents")


Outcome = tuple[Verdict, CompiledRule | None, str]
"""What settling decides: the verdict, the deciding rule (None: the default) and why."""


def _settle(policy: CompiledPolicy, table: ActionRules, target: str,
            candidates: Iterable[Candidate], *, special: str | None = None,
            part: Part | None = None) -> Outcome:
    """Deny overrides; the lowest-numbered rule of the winning effect is named."""
    deny = allow = None
    for c in candidates:
        if not c.counts:
            continue
        if c.rule.effect is Effect.DENY:
            deny = c.rule if deny is None or c.rule.index < deny.index else deny
        elif allow is None or c.rule.index < allow.index:
            allow = c.rule
    prefix = f"{part.text}: " if part is not None else ""
    if deny is not None:
        return Verdict.DENY, deny, prefix + (deny.reason or
                                             f"denied by rule {deny.index} {deny.text}")
    if allow is not None:
        return Verdict.ALLOW, allow, _allow_reason(allow)
    if special is not None:
        return Verdict.DENY, None, f"{target} is {special}; only a rule naming it may allow it"
    if table.default_rule is not None:
        rule = policy.rules[table.default_rule]
        verdict = Verdict.ALLOW if rule.effect is Effect.ALLOW else Verdict.DENY
        how = "allowed" if verdict is Verdict.ALLOW else "denied"
        return verdict, rule, prefix + (rule.reason or
                                        f"{how} by catch-all rule {rule.index} {rule.text}")
    verdict = Verdict.ALLOW if table.default is Effect.ALLOW else Verdict.DENY
    what = "matches no allow rule" if verdict is Verdict.DENY else "matches no rule"
    shown = part.text if part else target
    return verdict, None, f"{shown} {what}; the policy default is {table.default.value}"


def _allow_reason(rule: CompiledRule) -> str:
    return rule.reason or f"allowed by rule {rule.index} {rule.text}"


def _make(policy: CompiledPolicy, request: Request, target: str, outcome: Outcome,
          port: int | None = None, part: str | None = None) -> Decision:
    verdict, rule, reason = outcome
    return Decision(request.action, target, verdict, reason, policy.mode,
                    None if rule is None else rule.index, None if rule is None else rule.text,
                    port, part, request.agent)


def _bad_input(policy: CompiledPolicy, request: Request, why: str) -> Decision:
    shown = request.target if len(request.target) <= 200 else request.target[:200] + "..."
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return Decision(request.action, shown, Verdict.DENY,
                    f"bad input: {why}", policy.mode, agent=request.agent)


_JUDGES = {
    Action.NETWORK: _decide_network,
    Action.FILE_READ: _decide_file,
    Action.FILE_WRITE: _decide_file,
    Action.SHELL_EXEC: _decide_command,
}
