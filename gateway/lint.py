"""`gateway check` warnings: rules that never match, redundant rules, over-broad allows.

Warnings never change a decision; they point at rules whose effect is probably not
what their author meant. Each names the rule's file and line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gateway.matching.addresses import SPECIAL_RANGES
from gateway.matching.hosts import compile_host_selector
from gateway.policy.compiled import CompiledPolicy, CompiledRule
from gateway.policy.model import Action, Effect

_GLOB_CHARS = re.compile(r"(?<!\\)[*?\[{]")


@dataclass(frozen=True, slots=True)
class Warning:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: warning: {self.message}"


def lint_policy(policy: CompiledPolicy) -> list[Warning]:
    found: list[Warning] = []

    def warn(rule: CompiledRule, message: str) -> None:
        found.append(Warning(policy.file, rule.line, f"rule {rule.index}: {message}"))

    for rule in policy.rules:
        for problem in _never_matches(rule):
            warn(rule, problem)
        for problem in _over_broad(policy, rule):
            warn(rule, problem)
    for rule, problem in _redundant(policy):
        warn(rule, problem)
    return sorted(found, key=lambda w: (w.line or 0, w.message))


def _never_matches(rule: CompiledRule) -> list[str]:
    problems = []
    if rule.action in (Action.FILE_READ, Action.FILE_WRITE):
        for selector in rule.selectors:
            segments = selector.split("/")
            if "." in segments[1:] or ".." in segments:
                problems.append(f"path {selector!r} can never match: targets are normalised, "
                                "so they hold no '.' or '..' segments")
    if rule.action is Action.NETWORK and rule.effect is Effect.ALLOW:
        for selector in rule.selectors:
            host = selector.lower().rstrip(".")
            if host.endswith(".localhost") and "*" in host:
                problems.append(f"host {selector!r} can never allow anything: names under "
                                ".localhost are loopback, which only an exact rule may allow")
    return problems


def _over_broad(policy: CompiledPolicy, rule: CompiledRule) -> list[str]:
    if rule.effect is not Effect.ALLOW:
        return []
    problems = []
    for selector in rule.selectors:
        if rule.action in (Action.FILE_READ, Action.FILE_WRITE):
            prefix = _literal_prefix(selector).rstrip("/")
            if prefix in ("", policy.home.rstrip("/")) or prefix.count("/") < 1:
                problems.append(f"over-broad allow: {rule.action.value} of {selector!r} "
                                "reaches the whole filesystem or home directory")
        elif rule.action is Action.NETWORK:
            problems += _covers_special(selector)
            if selector == "*" or re.fullmatch(r"\*\.[^.*]+", selector):
                problems.append(f"over-broad allow: host {selector!r} admits whole top-level "
                                "domains or every host")
        elif selector.startswith("*"):
            problems.append(f"over-broad allow: command {selector!r} admits any program")
    return problems


def _covers_special(selector: str) -> list[str]:
    """A CIDR allow that covers special addresses allows them: make that choice visible.
    The selector is read exactly as the host index reads it (mapped forms included)."""
    network = compile_host_selector(selector).network
    if network is None or network.prefixlen == 0:
        return []  # not a CIDR; or like a wildcard, it never allows a special address
    covered = [f"{cidr} ({what})" for cidr, what in SPECIAL_RANGES
               if _overlaps(network, ipaddress.ip_network(cidr))]
    if not covered:
        return []
    return [f"allow of {selector} covers special addresses: {', '.join(covered[:3])}"
            + (" ..." if len(covered) > 3 else "")]


def _overlaps(a: ipaddress.IPv4Network | ipaddress.IPv6Network,
              b: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


def _literal_prefix(pattern: str) -> str:
    match = _GLOB_CHARS.search(pattern)
    return pattern if match is None else pattern[: match.start()]


def _redundant(policy: CompiledPolicy) -> list[tuple[CompiledRule, str]]:
    out: list[tuple[CompiledRule, str]] = []
    seen: dict[tuple[object, ...], CompiledRule] = {}
    for rule in policy.rules:
        narrowing = (rule.ports, rule.methods, rule.agents,
                     rule.url_path_globs)
        for selector in rule.selectors:
            key = (rule.action, selector, narrowing)
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = rule
            elif earlier.effect is rule.effect:
                out.append((rule, f"redundant: rule {earlier.index} already "
                                  f"{rule.effect.value}s {selector!r}"))
            else:
                allow = rule if rule.effect is Effect.ALLOW else earlier
                deny = earlier if allow is rule else rule
                out.append((allow, f"never takes effect for {selector!r}: rule {deny.index} "
                                   "denies the same, and deny overrides allow"))
    for action in Action:
        table = policy.actions[action]
        mine = [r for r in policy.rules if r.action is action and not r.sets_default]
        opposite = {r.effect for r in mine}
        for rule in mine:
            if rule.effect is table.default and not rule.narrowed and len(opposite) == 1:
                if action is Action.NETWORK and rule.effect is Effect.ALLOW:
                    continue  # an exact allow still matters for special addresses
                out.append((rule, f"redundant: it {rule.effect.value}s what the "
                                  f"{action.value} default already {rule.effect.value}s, and "
                                  "no rule of the other effect competes with it"))
    return out
