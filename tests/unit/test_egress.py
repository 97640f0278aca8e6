"""The proxy's pure decisions: when to decrypt, and which resolved addresses may be dialled."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from gateway.egress import authority, check_addresses, intercepts, named_exactly
from gateway.engine import Request, Verdict, decide
from gateway.errors import PolicyError
from gateway.policy.compiled import compile_policy_text
from gateway.policy.model import Action

POLICY = """
version: 1
default: deny
rules:
  - action: network
    host: "git.example.com"
    methods: [GET]
    effect: allow
  - action: network
    host: "api.example.com"
    effect: allow
  - action: network
    host: "*.example.org"
    effect: allow
  - action: network
    host: "internal.example.org"
    effect: allow
  - action: network
    host: "push.example.net"
    effect: allow
  - action: network
    host: "push.example.net"
    paths: ["/*/git-receive-pack"]
    effect: deny
  - action: network
    host: "team.example.com"
    methods: [GET]
    agents: [analyst]
    effect: allow
  - action: network
    host: "ports.example.com"
    ports: [8443]
    paths: ["/v1/**"]
    effect: allow
  - action: network
    host: "203.0.113.7"
    effect: deny
  - action: network
    host: "10.1.2.3"
    effect: allow
  - action: network
    host: "localhost"
    effect: allow
"""


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return compile_policy_text(POLICY)


@pytest.mark.parametrize(("host", "port", "agent", "expected"), [
    ("git.example.com", 443, None, True),            # allow with methods: requests must be seen
    ("api.example.com", 443, None, False),           # plain allow: passthrough
    ("push.example.net", 443, None, True),           # a deny with paths needs requests too
    ("team.example.com", 443, "analyst", True),      # the agent's constrained rule applies
    ("team.example.com", 443, "other", False),       # not this agent's rule
    ("ports.example.com", 8443, None, True),         # the port the constrained rule names
    ("ports.example.com", 443, None, False),         # another port: the rule does not apply
    ("unknown.example", 443, None, False),
    ("bad host", 443, None, False),                  # unparsable: nothing to decrypt for
])
def test_intercepts_only_where_a_rule_constrains_requests(policy, host, port, agent, expected) -> None:  # type: ignore[no-untyped-def]
    """TLS is decrypted exactly where methods/paths rules apply to this host, port and agent."""
    assert intercepts(policy, host, port, agent) is expected


def test_intercept_all_decrypts_everything_but_passthrough() -> None:
    """`proxy.intercept: all` decrypts every host except those listed as passthrough."""
    policy = compile_policy_text(POLICY.replace(
        "rules:", 'proxy:\n  intercept: all\n  passthrough: ["*.bank.example"]\nrules:', 1))
    assert intercepts(policy, "api.example.com", 443, None)
    assert not intercepts(policy, "login.bank.example", 443, None)


@pytest.mark.parametrize(("rule_host", "passthrough", "overlaps"), [
    ("api.bank.example", "*.bank.example", True),    # the rule's host is a passthrough host
    ("*.bank.example", "login.bank.example", True),  # a passthrough host under the rule's wildcard
    ("*", "login.bank.example", True),               # a rule for every host
    ("api.example.com", "*", True),                  # everything passes through
    ("*.github.com", "github.com", False),           # `*.` does not include the apex
    ("api.example.com", "*.bank.example", False),
    ("10.0.0.0/8", "10.1.2.3", True),                # an address inside the rule's CIDR
])
def test_methods_rules_on_passthrough_hosts_are_a_policy_error(rule_host, passthrough, overlaps) -> None:  # type: ignore[no-untyped-def]
    """A methods/paths rule whose hosts overlap proxy.passthrough is refused, naming both."""
    text = f"""version: 1
default: deny
proxy:
  passthrough: ["{passthrough}"]
rules:
  - action: network
    host: "{rule_host}"
    methods: [GET]
    effect: allow
"""
    if overlaps:
        with pytest.raises(PolicyError, match=r"rules\.0: has methods/paths.*passthrough\.0"):
            compile_policy_text(text)
    else:
        compile_policy_text(text)


def test_bad_passthrough_selector_names_its_place() -> None:
    """An unusable passthrough selector is an error at proxy.passthrough.N with its line."""
    with pytest.raises(PolicyError, match=r":4: proxy\.passthrough\.0"):
        compile_policy_text('version: 1\ndefault: deny\nproxy:\n  passthrough: ["a..b"]\n')


def _allowed(policy, target: str, agent: str | None = None):  # type: ignore[no-untyped-def]
    decision = decide(policy, Request(Action.NETWORK, target, agent=agent))
    assert decision.verdict is Verdict.ALLOW, decision.reason
    return decision


@pytest.mark.parametrize(("target", "addresses", "verdict", "reason"), [
    ("api.example.com:443", ["93.184.216.34"], "ALLOW", None),
    # An exact rule may pin a name to an internal address.
    ("api.example.com:443", ["127.0.0.5"], "ALLOW", None),
    ("internal.example.org:443", ["10.9.8.7"], "ALLOW", None),   # exact rule beside a wildcard
    # A wildcard never reaches a special address (rebinding through DNS).
    ("x.example.org:443", ["10.9.8.7"], "DENY", "x.example.org resolves to 10.9.8.7, which is private"),
    ("x.example.org:443", ["169.254.169.254"], "DENY", "link-local"),
    ("x.example.org:443", ["::ffff:127.0.0.1"], "DENY", "loopback"),
    ("x.example.org:443", ["64:ff9b::a09:807"], "DENY", "NAT64 form of 10.9.8.7"),
    ("x.example.org:443", ["100.64.0.1"], "DENY", "CGNAT"),
    # One bad answer among good ones refuses the name.
    ("x.example.org:443", ["93.184.216.34", "192.168.1.1"], "DENY", "192.168.1.1"),
    # An address that a rule of its own allows passes even behind a wildcard.
    ("x.example.org:443", ["10.1.2.3"], "ALLOW", None),
    # An address denied by a rule of its own is refused whatever allowed the name.
    ("api.example.com:443", ["203.0.113.7"], "DENY", "denied by rule 8"),
])
def test_resolved_addresses_are_checked_before_dialling(policy, target, addresses, verdict, reason) -> None:  # type: ignore[no-untyped-def]
    """Every address a name resolved to passes, or the connection is refused with why."""
    decision = _allowed(policy, target)
    judged = check_addresses(policy, decision, [ip_address(a) for a in addresses])
    assert judged.verdict.value == verdict
    if reason is None:
        assert judged is decision
    else:
        assert reason in judged.reason


def test_default_allow_never_reaches_a_special_address() -> None:
    """`default: allow` lets names through, but not to internal addresses they resolve to."""
    policy = compile_policy_text("version: 1\ndefault: allow\n")
    decision = _allowed(policy, "anything.example:443")
    assert not named_exactly(policy, decision)
    judged = check_addresses(policy, decision, [ip_address("10.0.0.1")])
    assert judged.verdict is Verdict.DENY and judged.rule is None


def test_denied_decision_is_left_alone(policy) -> None:  # type: ignore[no-untyped-def]
    """A decision that already denies is returned as it is."""
    decision = decide(policy, Request(Action.NETWORK, "nope.example:443"))
    assert check_addresses(policy, decision, [ip_address("10.0.0.1")]) is decision


@pytest.mark.parametrize(("host", "port", "text"), [
    ("example.com", 443, "example.com:443"),
    ("::1", 8080, "[::1]:8080"),
    ("10.0.0.1", 80, "10.0.0.1:80"),
])
def test_authority_brackets_ipv6(host: str, port: int, text: str) -> None:
    """host:port as the engine reads it."""
    assert authority(host, port) == text
