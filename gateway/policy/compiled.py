"""CompiledPolicy: the validated policy, expanded and indexed once, then immutable.

Enforcement points share one CompiledPolicy between threads and swap it for a new
one atomically (a single reference assignment); nothing in it changes after
`compile_policy` returns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from gateway.errors import PolicyError
from gateway.matching.commands import CommandIndex, is_catch_all_command
from gateway.matching.hosts import HostIndex, is_catch_all_host
from gateway.matching.hostselectors import compile_host_selector, example_target
from gateway.matching.paths import PathIndex, is_catch_all_path
from gateway.policy.load import PolicySource, load_policy_file, parse_policy_source, validate_policy
from gateway.policy.model import Action, Effect, Mode, PolicyModel, ProxySettings, Rule
from gateway.policy.variables import VariableError, Variables, escape_literal

_PLAIN_SCALAR = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")
Fail = Callable[[str, tuple[str | int, ...]], PolicyError]

_CATCH_ALL = {
    Action.NETWORK: is_catch_all_host,
    Action.FILE_READ: is_catch_all_path,
    Action.FILE_WRITE: is_catch_all_path,
    Action.SHELL_EXEC: is_catch_all_command,
}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule after `${NAME}` expansion. `index` is its position in the file, from 0."""

    index: int
    action: Action
    effect: Effect
    selectors: tuple[str, ...]
    text: str
    line: int | None
    reason: str | None = None
    ports: frozenset[int] | None = None
    methods: frozenset[str] | None = None
    url_paths: PathIndex | None = None
    url_path_globs: tuple[str, ...] | None = None
    agents: frozenset[str] | None = None
    sets_default: bool = False
    overlay: bool = False  # file_write: writes land in an overlay's upper directory
    exec: bool = False  # file_write: the writable mount allows executing files

    @property
    def narrowed(self) -> bool:
        return any(x is not None for x in (self.ports, self.methods, self.url_paths, self.agents))

    def applies_to(self, agent: str | None) -> bool:
        return self.agents is None or (agent is not None and agent in self.agents)


@dataclass(frozen=True, slots=True)
class ActionRules:
    """The rules of one action: its effective default and an index over its selectors.

    `default_rule` is the catch-all rule that set the default, or None when the
    policy's `default:` did.
    """

    action: Action
    default: Effect
    default_rule: int | None
    index: HostIndex | PathIndex | CommandIndex


@dataclass(frozen=True, slots=True)
class CompiledProxy:
    """The `proxy:` section: whether every TLS connection is decrypted, and the hosts
    that never are."""

    intercept_all: bool = False
    passthrough: HostIndex | None = None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    file: str
    mode: Mode
    default: Effect
    rules: tuple[CompiledRule, ...]
    actions: Mapping[Action, ActionRules]
    home: str
    project_dir: str
    proxy: CompiledProxy = CompiledProxy()
    sdk_dynamic: Effect = Effect.DENY  # sdk.dynamic: a target built at run time


def compile_policy(model: PolicyModel, source: PolicySource | None = None, *,
                   project_dir: str | None = None,
                   environ: Mapping[str, str] | None = None) -> CompiledPolicy:
    """Expand variables, check every selector and build the indexes."""
    file = source.file if source else "<policy>"
    env = os.environ if environ is None else environ
    variables = Variables(model.vars, env, project_dir)

    def fail(message: str, loc: tuple[str | int, ...]) -> PolicyError:
        return PolicyError(message, file=file, line=source.line_of(loc) if source else None)

    try:
        variables.check_all()
        home, project = variables.value("HOME"), variables.value("PROJECT_DIR")
    except VariableError as e:
        raise fail(str(e), ("vars",)) from None
    rules = tuple(_compile_rule(i, rule, variables, home, source, fail)
                  for i, rule in enumerate(model.rules))
    actions = {action: _compile_action(action, model.default, rules, fail) for action in Action}
    proxy = _compile_proxy(model.proxy, variables, rules, fail)
    return CompiledPolicy(file, model.mode, model.default, rules, MappingProxyType(actions),
                          os.path.normpath(home), os.path.normpath(project), proxy,
                          model.sdk.dynamic)


def load_policy(path: str | os.PathLike[str], *, project_dir: str | None = None,
                environ: Mapping[str, str] | None = None) -> CompiledPolicy:
    """Read, validate and compile a policy file; every failure is a PolicyError."""
    model, source = load_policy_file(path)
    return compile_policy(model, source, project_dir=project_dir, environ=environ)


def compile_policy_text(text: str, *, file: str = "<policy>", project_dir: str | None = None,
                        environ: Mapping[str, str] | None = None) -> CompiledPolicy:
    source = parse_policy_source(text, file)
    return compile_policy(validate_policy(source), source, project_dir=project_dir,
                          environ=environ)


def _compile_rule(index: int, rule: Rule, variables: Variables, home: str,
                  source: PolicySource | None, fail: Fail) -> CompiledRule:
    key = rule.action.selector
    expanded: list[str] = []
    for i, raw in enumerate(rule.selectors()):
        try:
            value = variables.expand(raw)
        except VariableError as e:
            raise fail(f"rules.{index}.{key}: {e}", ("rules", index, key, i)) from None
        if key == "path" and (value == "~" or value.startswith("~/")):
            value = escape_literal(home) + value[1:]
        expanded.append(value)
    url_paths = None
    if rule.paths is not None:
        try:
            url_paths = PathIndex([(p, 0) for p in rule.paths])
        except ValueError as e:
            raise fail(f"rules.{index}.paths: {e}", ("rules", index, "paths")) from None
    compiled = CompiledRule(
        index=index,
        action=rule.action,
        effect=rule.effect,
        selectors=tuple(expanded),
        text=rule_text(rule),
        line=source.line_of(("rules", index)) if source else None,
        reason=rule.reason,
        ports=frozenset(rule.ports) if rule.ports else None,
        methods=frozenset(m.upper() for m in rule.methods) if rule.methods else None,
        url_paths=url_paths,
        url_path_globs=tuple(rule.paths) if rule.paths else None,
        agents=frozenset(rule.agents) if rule.agents else None,
        overlay=bool(rule.overlay),
        exec=bool(rule.exec),
    )
    if not compiled.narrowed and any(_CATCH_ALL[rule.action](s) for s in expanded):
        compiled = replace(compiled, sets_default=True)
    return compiled


def _compile_action(action: Action, default: Effect, rules: tuple[CompiledRule, ...],
                    fail: Fail) -> ActionRules:
    mine = [r for r in rules if r.action is action]
    catch_alls = [r for r in mine if r.sets_default]
    effects = {r.effect for r in catch_alls}
    if len(effects) > 1:
        a, b = catch_alls[0], next(r for r in catch_alls if r.effect != catch_alls[0].effect)
        raise fail(f"rules {a.index} and {b.index} are both catch-all {action.value} rules with "
                   f"different effects; keep one", ("rules", b.index))
    entries = [(s, r.index, r.effect is Effect.DENY) for r in mine for s in r.selectors
               if not (r.sets_default and _CATCH_ALL[action](s))]
    try:
        index: HostIndex | PathIndex | CommandIndex
        if action is Action.NETWORK:
            index = HostIndex([(s, k) for s, k, _ in entries])
        elif action is Action.SHELL_EXEC:
            index = CommandIndex(entries)
        else:
            index = PathIndex([(s, k) for s, k, _ in entries])
    except ValueError as e:
        first_bad = _find_bad_rule(action, entries)
        loc: tuple[str | int, ...] = ("rules", first_bad) if first_bad is not None else ("rules",)
        where = f"rules.{first_bad}.{action.selector}: " if first_bad is not None else ""
        raise fail(f"{where}{e}", loc) from None
    if catch_alls:
        return ActionRules(action, catch_alls[0].effect, catch_alls[0].index, index)
    return ActionRules(action, default, None, index)


def _compile_proxy(settings: ProxySettings, variables: Variables,
                   rules: tuple[CompiledRule, ...], fail: Fail) -> CompiledProxy:
    """Compile `proxy:`; a `methods`/`paths` rule on a passthrough host is an error, as
    the proxy could never see the requests it constrains."""
    if not settings.passthrough:
        return CompiledProxy(settings.intercept == "all")
    selectors = []
    for i, raw in enumerate(settings.passthrough):
        loc = ("proxy", "passthrough", i)
        try:
            selectors.append(variables.expand(raw))
            HostIndex([(selectors[-1], i)])
        except (VariableError, ValueError) as e:
            raise fail(f"proxy.passthrough.{i}: {e}", loc) from None
    passthrough = HostIndex([(s, i) for i, s in enumerate(selectors)])
    for rule in rules:
        if rule.action is not Action.NETWORK or (rule.methods is None and rule.url_paths is None):
            continue
        rule_hosts = HostIndex([(s, 0) for s in rule.selectors])
        for j, selector in enumerate(selectors):
            overlap = any(passthrough.match(example_target(compile_host_selector(s)))
                          for s in rule.selectors) \
                or rule_hosts.match(example_target(compile_host_selector(selector)))
            if overlap:
                raise fail(f"rules.{rule.index}: has methods/paths, but its hosts overlap "
                           f"proxy.passthrough.{j} ({selector}), whose requests are never "
                           "decrypted and so could not be checked", ("rules", rule.index))
    return CompiledProxy(settings.intercept == "all", passthrough)


def _find_bad_rule(action: Action, entries: list[tuple[str, int, bool]]) -> int | None:
    """The first rule whose selector alone fails to compile, to point the error at it."""
    for selector, key, deny in entries:
        try:
            if action is Action.NETWORK:
                HostIndex([(selector, key)])
            elif action is Action.SHELL_EXEC:
                CommandIndex([(selector, key, deny)])
            else:
                PathIndex([(selector, key)])
        except ValueError:
            return key
    return None


def rule_text(rule: Rule) -> str:
    """The rule on one line in YAML flow style, as people write it in policies."""
    data = rule.model_dump(mode="json", exclude_none=True)
    order = ["action", "host", "path", "command", "ports", "methods", "paths", "agents",
             "overlay", "exec", "effect", "reason"]
    items = []
    for key in order:
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, list):
            shown = value[0] if len(value) == 1 and key in ("host", "path", "command") else value
        else:
            shown = value
        items.append(f"{key}: {_flow(shown)}")
    return "{" + ", ".join(items) + "}"


def _flow(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        plain = _PLAIN_SCALAR.fullmatch(value) is not None
        return value if plain else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
