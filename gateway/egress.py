"""Pure decisions the egress proxy needs beyond `decide`: whether to decrypt a
connection, and whether the addresses a name resolved to may be dialled.

Like the engine, no I/O: the proxy resolves names and passes the addresses in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from gateway.engine import Decision, Request, Verdict, decide
from gateway.matching.addresses import canonical_ip, special_for_ip
from gateway.matching.hosts import BadTarget, NetworkTarget, parse_network_target
from gateway.policy.compiled import CompiledPolicy, CompiledRule
from gateway.policy.model import Action, Effect


def authority(host: str, port: int) -> str:
    """`host:port` as the engine reads it, IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def intercepts(policy: CompiledPolicy, host: str, port: int, agent: str | None) -> bool:
    """Whether a TLS connection to host:port must be decrypted: `proxy.intercept: all`,
    or requests there are constrained (`constrains_requests`). Passthrough hosts never
    are; the policy compiler refuses rules that would need it."""
    try:
        target = parse_network_target(authority(host, port))
    except BadTarget:
        return False
    proxy = policy.proxy
    if proxy.passthrough is not None and proxy.passthrough.match(target):
        return False
    return proxy.intercept_all or constrains_requests(policy, target, port, agent)


def constrains_requests(policy: CompiledPolicy, target: NetworkTarget, port: int,
                        agent: str | None) -> bool:
    """Whether a rule for this host, port and agent has methods or paths (deny rules
    too: `allow github.com` + `deny POST */git-receive-pack` needs each request seen).
    Where none does, every request to host:port is decided as host:port itself."""
    return any(r.methods is not None or r.url_paths is not None
               for r in _rules_for(policy, target, port, agent))


def constrains_paths(policy: CompiledPolicy, target: NetworkTarget, port: int,
                     agent: str | None) -> bool:
    """Whether a rule for this host, port and agent has paths. Where none does, a
    request's decision depends on its method alone, never on its URL."""
    return any(r.url_paths is not None for r in _rules_for(policy, target, port, agent))


def _rules_for(policy: CompiledPolicy, target: NetworkTarget, port: int,
               agent: str | None) -> Iterator[CompiledRule]:
    index = policy.actions[Action.NETWORK].index
    for match in index.match(target):  # type: ignore[union-attr]
        rule = policy.rules[match.key]
        if rule.applies_to(agent) and (rule.ports is None or port in rule.ports):
            yield rule


def named_exactly(policy: CompiledPolicy, decision: Decision) -> bool:
    """Whether an allow rule names the decision's host exactly (not by a wildcard, a
    CIDR /0 or the default) for its port and agent: only such a rule may let a name
    resolve to a special address (`localhost`, a name pinned to an internal service)."""
    if decision.verdict is not Verdict.ALLOW:
        return False
    try:
        target = parse_network_target(decision.target)
    except BadTarget:
        return False
    index = policy.actions[Action.NETWORK].index
    for match in index.match(target):  # type: ignore[union-attr]
        rule = policy.rules[match.key]
        if match.exact and rule.effect is Effect.ALLOW and not rule.sets_default \
                and rule.applies_to(decision.agent) \
                and (rule.ports is None or decision.port in rule.ports):
            return True
    return False


def check_addresses(policy: CompiledPolicy, decision: Decision,
                    addresses: Sequence[IPv4Address | IPv6Address]) -> Decision:
    """Judge the addresses an allowed name resolved to; the proxy dials only what passed.

    Every address must pass, or the connection is refused (a name answering with one
    public and one internal address is how rebinding starts): an address denied by a
    rule of its own is refused; a special address (loopback, private, link-local,
    metadata...) is refused unless a rule names the host exactly or allows that
    address. Returns `decision` itself when all pass, else a DENY saying which failed.
    """
    if decision.verdict is not Verdict.ALLOW or not addresses:
        return decision
    exact = None
    for ip in map(canonical_ip, addresses):
        where = str(ip) if decision.port is None else authority(str(ip), decision.port)
        by_ip = decide(policy, Request(Action.NETWORK, where, agent=decision.agent))
        if by_ip.verdict is Verdict.DENY and by_ip.rule is not None \
                and policy.rules[by_ip.rule].effect is Effect.DENY \
                and not policy.rules[by_ip.rule].sets_default:
            return _refused(decision, by_ip.rule, f"{decision.target} resolves to {ip}: "
                                                  f"{by_ip.reason}")
        special = special_for_ip(ip)
        if special is None or by_ip.verdict is Verdict.ALLOW:
            continue
        if exact is None:
            exact = named_exactly(policy, decision)
        if not exact:
            return _refused(decision, None,
                            f"{decision.target} resolves to {ip}, which is {special}; only a "
                            "rule naming the host exactly, or that address, may allow it")
    return decision


def _refused(decision: Decision, rule: int | None, reason: str) -> Decision:
    return replace(decision, verdict=Verdict.DENY, rule=rule, rule_text=None, reason=reason)

