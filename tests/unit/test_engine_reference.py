"""The compiled engine agrees with a plain reference evaluator on random policies.

The reference loops over every rule and every selector, matching each on its own
(no index, no catch-all bookkeeping beyond the rule itself), and applies
deny-overrides as docs/policy.md states it. Any disagreement is an index or
settling bug.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.engine import Request, decide
from gateway.matching.commands import CommandIndex
from gateway.matching.hosts import BadTarget, compile_host_selector, parse_network_target
from gateway.matching.paths import BadPath, compile_path_glob, normalise_path
from gateway.policy.compiled import compile_policy_text
from gateway.policy.model import Action
from gateway.shell.analyse import analyse

HOSTS = ["a.com", "b.a.com", "*.a.com", "x*.com", "*", "10.0.0.0/8", "10.1.2.3", "127.0.0.1",
         "localhost", "*.localhost", "::1", "0.0.0.0/0", "xy.com"]
HOST_TARGETS = ["a.com", "b.a.com", "c.b.a.com", "xy.com:443", "xz.com:80", "10.1.2.3",
                "0x0a.1.2.3:443", "127.0.0.1:8080", "localhost:3000", "q.localhost",
                "[::1]:443", "[::ffff:10.1.2.3]", "8.8.8.8", "http://a.com/x", "nope.org"]
PATHS = ["/p/**", "/p/w/**", "*.pem", ".env", "*/.*", "/p/w/*.py", "**", "/p/w/a.py",
         "/etc/passwd", "/p/*/x", "w"]
PATH_TARGETS = ["/p/w/a.py", "/p/w/.env", "/p/key.pem", "/etc/passwd", "/p/w/sub/x", "/home/u/.ssh/id",
                "/p/w", "/w/z", "/p/q/x", "rel/a.py", "/p/w/../../etc/passwd"]
COMMANDS = ["python*", "rm*", "rm -rf /tmp/*", "git push *", "ls", "*", "cd*", "echo*", "sudo*"]
COMMAND_TARGETS = ["python x.py", "rm -rf /tmp/a", "rm -rf /", "git push origin main", "git push",
                   "ls", "ls -la", "cd w && python x.py", "echo hi | python -", "sudo rm x",
                   "timeout 5 python a.py", "xargs ls", "bash -c 'rm -rf /tmp/x'"]


@dataclass(frozen=True)
class RawRule:
    selectors: tuple[str, ...]
    effect: str
    ports: tuple[int, ...] | None = None


def rules_strategy(selectors: list[str], with_ports: bool) -> st.SearchStrategy[list[RawRule]]:
    rule = st.builds(
        RawRule,
        st.lists(st.sampled_from(selectors), min_size=1, max_size=3).map(tuple),
        st.sampled_from(["allow", "deny"]),
        st.one_of(st.none(), st.lists(st.sampled_from([80, 443, 8080]), min_size=1,
                                      max_size=2).map(tuple)) if with_ports else st.none())
    return st.lists(rule, max_size=8)


def catch_all_effects(rules: list[RawRule], alls: set[str]) -> set[str]:
    return {r.effect for r in rules if r.ports is None and alls & set(r.selectors)}


def build(action: Action, rules: list[RawRule], default: str) -> str:
    key = action.selector
    lines = []
    for r in rules:
        sel = "[" + ", ".join(f"'{s}'" for s in r.selectors) + "]"
        ports = f", ports: [{', '.join(map(str, r.ports))}]" if r.ports else ""
        lines.append(f"- {{action: {action.value}, {key}: {sel}{ports}, effect: {r.effect}}}")
    return f"version: 1\ndefault: {default}\nrules:\n" + ("\n".join(lines) or "  []") + "\n"


def settle(deny: list[int], allow: list[int], default: str, default_rule: int | None,
           special: bool = False) -> tuple[str, int | None]:
    if deny:
        return "DENY", min(deny)
    if allow:
        return "ALLOW", min(allow)
    if special:
        return "DENY", None
    return default.upper(), default_rule


def defaults(rules: list[RawRule], alls: set[str], default: str) -> tuple[str, int | None]:
    for i, r in enumerate(rules):
        if r.ports is None and alls & set(r.selectors):
            return r.effect, i
    return default, None


def reference_network(rules: list[RawRule], default: str, text: str) -> tuple[str, int | None]:
    try:
        target = parse_network_target(text)
    except BadTarget:
        return "DENY", None
    eff_default, default_rule = defaults(rules, {"*"}, default)
    deny, allow = [], []
    for i, r in enumerate(rules):
        catch_all = r.ports is None and "*" in r.selectors
        for sel in r.selectors:
            if catch_all and sel == "*":
                continue
            m = compile_host_selector(sel).match(target, i)
            if m is None or (r.ports is not None and target.port not in r.ports):
                continue
            if r.effect == "deny":
                deny.append(i)
            elif not m.deny_only and (target.special is None or m.exact):
                allow.append(i)
    return settle(deny, allow, eff_default, default_rule, target.special is not None)


def reference_path(rules: list[RawRule], default: str, text: str) -> tuple[str, int | None]:
    try:
        path = normalise_path(text, "/p")
    except BadPath:
        return "DENY", None
    alls = {"**", "/**"}
    eff_default, default_rule = defaults(rules, alls, default)
    deny, allow = [], []
    for i, r in enumerate(rules):
        catch_all = bool(alls & set(r.selectors))
        for sel in r.selectors:
            if (catch_all and sel in alls) or not compile_path_glob(sel).match(path):
                continue
            (deny if r.effect == "deny" else allow).append(i)
    return settle(deny, allow, eff_default, default_rule)


def reference_command(rules: list[RawRule], default: str, text: str) -> tuple[str, int | None]:
    analysis = analyse(text, home="/h", cwd="/p")
    if analysis.cannot_analyse is not None:
        return "DENY", None
    eff_default, default_rule = defaults(rules, {"*"}, default)
    first_allow = None
    for part in analysis.parts:
        deny, allow = [], []
        for i, r in enumerate(rules):
            catch_all = "*" in r.selectors
            for sel in r.selectors:
                if catch_all and sel == "*":
                    continue
                index = CommandIndex([(sel, i, r.effect == "deny")])
                if r.effect == "deny" and index.denies(part):
                    deny.append(i)
                elif r.effect == "allow" and not part.see_through and index.allows(part):
                    allow.append(i)
        if part.see_through and not deny:
            continue
        verdict, rule = settle(deny, allow, eff_default, default_rule)
        if verdict == "DENY":
            return verdict, rule
        if first_allow is None and rule is not None:
            first_allow = rule
    if first_allow is not None:
        return "ALLOW", first_allow
    if not analysis.parts:
        return "ALLOW", None
    return eff_default.upper(), default_rule


def engine(action: Action, rules: list[RawRule], default: str, target: str
           ) -> tuple[str, int | None]:
    policy = compile_policy_text(build(action, rules, default), project_dir="/p",
                                 environ={"HOME": "/h"})
    decision = decide(policy, Request(action, target))
    return decision.verdict.value, decision.rule


@settings(max_examples=300, deadline=None)
@given(rules_strategy(HOSTS, True), st.sampled_from(["allow", "deny"]),
       st.sampled_from(HOST_TARGETS))
def test_network_engine_agrees_with_the_reference(rules: list[RawRule], default: str,
                                                  target: str) -> None:
    """Host index + settling give the reference's verdict and rule for network targets."""
    assume(len(catch_all_effects(rules, {"*"})) <= 1)  # else a policy error, tested elsewhere
    assert engine(Action.NETWORK, rules, default, target) == \
        reference_network(rules, default, target)


@settings(max_examples=300, deadline=None)
@given(rules_strategy(PATHS, False), st.sampled_from(["allow", "deny"]),
       st.sampled_from(PATH_TARGETS))
def test_path_engine_agrees_with_the_reference(rules: list[RawRule], default: str,
                                               target: str) -> None:
    """Path index + settling give the reference's verdict and rule for file targets."""
    assume(len(catch_all_effects(rules, {"**", "/**"})) <= 1)
    assert engine(Action.FILE_READ, rules, default, target) == \
        reference_path(rules, default, target)


@settings(max_examples=200, deadline=None)
@given(rules_strategy(COMMANDS, False), st.sampled_from(["allow", "deny"]),
       st.sampled_from(COMMAND_TARGETS))
def test_command_engine_agrees_with_the_reference(rules: list[RawRule], default: str,
                                                  target: str) -> None:
    """Command index + per-part settling give the reference's verdict and rule."""
    assume(len(catch_all_effects(rules, {"*"})) <= 1)
    assert engine(Action.SHELL_EXEC, rules, default, target) == \
        reference_command(rules, default, target)
