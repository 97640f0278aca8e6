"""Network targets, host selectors and the host index."""

from __future__ import annotations

import contextlib
import fnmatch
import re
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.matching.hosts import (
    BadTarget,
    HostIndex,
    HostMatch,
    NetworkTarget,
    compile_host_selector,
    is_catch_all_host,
    parse_network_target,
)

LINK_LOCAL = "link-local (cloud metadata)"

# --- parsing targets --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "scheme", "path", "special"),
    [
        pytest.param("example.com", "example.com", None, None, None, None, id="bare-host"),
        pytest.param("example.com:8443", "example.com", 8443, None, None, None, id="host-port"),
        pytest.param("Example.COM.", "example.com", None, None, None, None, id="case-trailing-dot"),
        pytest.param("localhost:8000", "localhost", 8000, None, None, "loopback", id="localhost"),
        pytest.param("[::1]", "::1", None, None, None, "loopback", id="bracketed-v6"),
        pytest.param("[::1]:8080", "::1", 8080, None, None, "loopback", id="bracketed-v6-port"),
        pytest.param("::1", "::1", None, None, None, "loopback", id="bare-v6"),
        pytest.param("0:0:0:0:0:0:0:1", "::1", None, None, None, "loopback", id="expanded-v6"),
        pytest.param("fe80::1%eth0", "fe80::1", None, None, None, "link-local", id="zone"),
        pytest.param("[fe80::1%25eth0]:80", "fe80::1", 80, None, None, "link-local",
                     id="rfc6874-zone"),
        pytest.param("user@example.com", "example.com", None, None, None, None, id="userinfo"),
        pytest.param("u:pw@example.com:81", "example.com", 81, None, None, None,
                     id="userinfo-password-port"),
        pytest.param("https://api.openai.com/v1/chat?x=1#f", "api.openai.com", 443, "https",
                     "/v1/chat", None, id="url"),
        pytest.param("http://api.openai.com@evil.com/", "evil.com", 80, "http", "/", None,
                     id="fronting-userinfo"),
        pytest.param("http://evil.com#@api.openai.com", "evil.com", 80, "http", "/", None,
                     id="fronting-fragment"),
        pytest.param("http://evil.com?@api.openai.com/", "evil.com", 80, "http", "/", None,
                     id="fronting-query"),
        pytest.param("http://evil.com/@api.openai.com", "evil.com", 80, "http",
                     "/@api.openai.com", None, id="fronting-path"),
        pytest.param("HTTPS://X.com", "x.com", 443, "https", "/", None, id="scheme-case"),
        pytest.param("https://x.com:8443/a", "x.com", 8443, "https", "/a", None,
                     id="url-explicit-port"),
        pytest.param("ws://x.com", "x.com", 80, "ws", "/", None, id="ws-default"),
        pytest.param("wss://x.com", "x.com", 443, "wss", "/", None, id="wss-default"),
        pytest.param("ftp://x.com", "x.com", None, "ftp", "/", None, id="no-default-port"),
        pytest.param("http://[::ffff:10.9.8.7]:80/", "10.9.8.7", 80, "http", "/",
                     "private (RFC 1918)", id="url-mapped-v6"),
        pytest.param("%6c%6fcalhost", "localhost", None, None, None, "loopback",
                     id="percent-localhost"),
        pytest.param("http://%6c%6fcalhost:8000/", "localhost", 8000, "http", "/", "loopback",
                     id="percent-in-url"),
        pytest.param("%31%32%37.0.0.1", "127.0.0.1", None, None, None, "loopback",
                     id="percent-ipv4"),
        pytest.param("faß.de", "xn--fa-hia.de", None, None, None, None, id="idn-sharp-s"),
        pytest.param("ex\u3002com", "ex.com", None, None, None, None, id="ideographic-dot"),
        pytest.param("bücher.example:443", "xn--bcher-kva.example", 443, None, None, None,
                     id="idn-port"),
        pytest.param("foo.localhost", "foo.localhost", None, None, None, "loopback",
                     id="under-localhost"),
        pytest.param("metadata.google.internal", "metadata.google.internal", None, None, None,
                     LINK_LOCAL, id="gcp-metadata-name"),
        pytest.param("METADATA.GOOG.", "metadata.goog", None, None, None, LINK_LOCAL,
                     id="metadata-goog"),
        pytest.param("example.com:0080", "example.com", 80, None, None, None,
                     id="port-leading-zeros"),
    ],
)
def test_parse_target(
    text: str, host: str, port: int | None, scheme: str | None, path: str | None,
    special: str | None,
) -> None:
    """Each accepted form parses to the host a client would connect to."""
    target = parse_network_target(text)
    assert (target.host, target.port, target.scheme, target.path, target.special) == (
        host, port, scheme, path, special,
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("127.0.0.1", id="dotted"),
        pytest.param("2130706433", id="decimal"),
        pytest.param("0177.0.0.1", id="octal"),
        pytest.param("0x7f.1", id="hex-short"),
        pytest.param("127.1", id="two-part"),
        pytest.param("0x7f000001", id="hex-long"),
        pytest.param("127.0.0.1.", id="trailing-dot"),
        pytest.param("[::ffff:127.0.0.1]", id="mapped-dotted"),
        pytest.param("[::ffff:7f00:1]", id="mapped-hex"),
        pytest.param("::ffff:7f00:1", id="mapped-bare"),
        pytest.param("http://0x7f.1:80/", id="in-url"),
        pytest.param("\uff11\uff12\uff17.0.0.1", id="fullwidth-digits"),
    ],
)
def test_ipv4_spellings_are_one_address(text: str) -> None:
    """Every spelling of 127.0.0.1 canonicalises to it, as IPv4, and is loopback."""
    target = parse_network_target(text)
    assert (target.host, target.ip, target.special) == (
        "127.0.0.1", IPv4Address("127.0.0.1"), "loopback",
    )


@pytest.mark.parametrize(
    ("text", "default_port", "expected"),
    [
        pytest.param("example.com", 443, 443, id="default-port-used"),
        pytest.param("example.com:80", 443, 80, id="explicit-beats-default"),
        pytest.param("http://example.com", 443, 80, id="scheme-beats-default"),
        pytest.param("ftp://example.com", 21, 21, id="unknown-scheme-takes-default"),
        pytest.param("example.com", None, None, id="no-port-known"),
    ],
)
def test_default_port(text: str, default_port: int | None, expected: int | None) -> None:
    """Ports: explicit, else the scheme's (http/ws 80, https/wss 443), else default_port."""
    assert parse_network_target(text, default_port=default_port).port == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "empty target", id="empty"),
        pytest.param("a" * 4097, "longer than 4096", id="absurd-length"),
        pytest.param("exa\x00mple.com", "control character", id="nul"),
        pytest.param("example.com\n", "control character", id="newline"),
        pytest.param("http://ex\tample.com/", "control character", id="tab-in-url"),
        pytest.param("ex\x85ample.com", "control character", id="c1-control"),
        pytest.param("\ud800.com", "not valid Unicode", id="lone-surrogate"),
        pytest.param("http://evil.com\\@api.openai.com/", "backslash", id="backslash-fronting"),
        pytest.param("evil.com\\x", "backslash", id="backslash-bare"),
        pytest.param("a@b@c.com", "more than one '@'", id="two-at-signs"),
        pytest.param("256.1.1.1", "not a valid IPv4", id="octet-over-255"),
        pytest.param("1.2.3.4.5", "not a valid IPv4", id="five-parts"),
        pytest.param("example.123", "not a valid IPv4", id="numeric-tld"),
        pytest.param("08.1.2.3", "not a valid IPv4", id="bad-octal"),
        pytest.param("example.com:", "empty port", id="empty-port"),
        pytest.param("http://example.com:/", "empty port", id="empty-port-url"),
        pytest.param("example.com:0", "port 0 outside 1-65535", id="port-zero"),
        pytest.param("example.com:65536", "port 65536 outside 1-65535", id="port-too-big"),
        pytest.param("example.com:99999999999999", "outside 1-65535", id="port-huge"),
        pytest.param("example.com:-1", "not a number", id="port-negative"),
        pytest.param("example.com:\uff18\uff10", "not a number", id="port-fullwidth"),
        pytest.param("example.com:http", "not a number", id="port-name"),
        pytest.param("[1.2.3.4]", "IPv4 literal in brackets", id="bracketed-ipv4"),
        pytest.param("[1.2.3.4]:80", "IPv4 literal in brackets", id="bracketed-ipv4-port"),
        pytest.param("[example.com]", "not an IPv6 literal", id="bracketed-name"),
        pytest.param("[::1", "without ']'", id="unclosed-bracket"),
        pytest.param("[::1]x", "unexpected text", id="text-after-bracket"),
        pytest.param("[::1]:", "empty port", id="bracket-empty-port"),
        pytest.param("[:::1]", "invalid IPv6", id="bad-v6"),
        pytest.param("http://::1/", "must be in brackets", id="bare-v6-in-url"),
        pytest.param("user@::1", "must be in brackets", id="bare-v6-userinfo"),
        pytest.param("http:///x", "empty host", id="url-without-host"),
        pytest.param("user@", "empty host", id="userinfo-only"),
        pytest.param(".", "empty host", id="only-dot"),
        pytest.param("xn--zz.com", "not a valid punycode label", id="bad-punycode"),
        pytest.param("a" * 64 + ".com", "longer than 63 bytes", id="long-label"),
        pytest.param(".".join(["a" * 60] * 5), "longer than 253 bytes", id="long-host"),
        pytest.param("a..com", "empty label", id="empty-label"),
        pytest.param("ex ample.com", "invalid character", id="space"),
        pytest.param("*.example.com", "invalid character", id="wildcard-target"),
        pytest.param("example.com/path", "invalid character", id="path-without-scheme"),
        pytest.param("http:evil.com", "not a number", id="scheme-without-slashes"),
        pytest.param("%zz.com", "invalid percent-escape", id="bad-percent"),
        pytest.param("%ff.com", "not valid UTF-8", id="percent-not-utf8"),
        pytest.param("%00.com", "control character in host", id="percent-nul"),
        pytest.param("%2f.com", "invalid character", id="percent-slash"),
        pytest.param("%256c%256fcalhost", "invalid character", id="double-percent"),
        pytest.param("\U0001f600.com", "not a valid international label", id="emoji"),
        pytest.param("a\u0378.com", "not allowed in names", id="unassigned-codepoint"),
    ],
)
def test_bad_targets(text: str, reason: str) -> None:
    """Bad input raises BadTarget whose message says why."""
    with pytest.raises(BadTarget, match=reason):
        parse_network_target(text)


@given(st.text(max_size=80))
def test_parse_raises_only_bad_target(text: str) -> None:
    """Arbitrary text either parses or raises BadTarget, never anything else."""
    with contextlib.suppress(BadTarget):
        parse_network_target(text)


_LABELS = st.sampled_from(["a", "b", "Ab", "x-1", "_s", "faß", "bücher", "xn--fa-hia", "0x"])


@st.composite
def target_texts(draw: st.DrawFn) -> str:
    """Targets in many spellings: names, IPv4 spellings, IPv6 forms, with ports."""
    kind = draw(st.sampled_from(["name", "v4", "v6"]))
    if kind == "name":
        labels = draw(st.lists(_LABELS, min_size=1, max_size=4))
        host = ".".join([*labels[:-1], labels[-1] if labels[-1] != "0x" else "com"])
        if draw(st.booleans()):
            host += "."
    elif kind == "v4":
        value = draw(st.integers(0, 2**32 - 1))
        host = draw(st.sampled_from([str(IPv4Address(value)), str(value), hex(value)]))
    else:
        value = draw(st.integers(0, 2**128 - 1))
        host = "[" + draw(st.sampled_from([str(IPv6Address(value)),
                                           IPv6Address(value).exploded])) + "]"
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    return host if port is None else f"{host}:{port}"


@given(target_texts())
def test_canonical_host_is_idempotent(text: str) -> None:
    """Parsing the canonical host again gives the same host, address and special range."""
    try:
        first = parse_network_target(text)
    except BadTarget:
        return
    again = parse_network_target(first.host)
    assert (again.host, again.ip, again.special) == (first.host, first.ip, first.special)


# --- selectors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "kind", "shown"),
    [
        pytest.param("*", "all", None, id="catch-all"),
        pytest.param("*.", "all", None, id="catch-all-trailing-dot"),
        pytest.param("Example.COM.", "name", "example.com", id="name"),
        pytest.param("faß.de", "name", "xn--fa-hia.de", id="idn-name"),
        pytest.param("a\\-b.com", "name", "a-b.com", id="escaped-literal"),
        pytest.param("*.example.com", "suffix", "example.com", id="suffix"),
        pytest.param("**.example.com", "suffix", "example.com", id="double-star-collapses"),
        pytest.param("*.faß.de", "suffix", "xn--fa-hia.de", id="idn-suffix"),
        pytest.param("api-*.example.com", "pattern", "api-*.example.com", id="in-label"),
        pytest.param("ec2.*.amazonaws.com", "pattern", "ec2.*.amazonaws.com", id="middle-label"),
        pytest.param("API-*.FAß.de", "pattern", "api-*.xn--fa-hia.de", id="idn-pattern"),
        pytest.param("127.1", "ip", "127.0.0.1", id="ipv4-short-spelling"),
        pytest.param("[::1]", "ip", "::1", id="bracketed-v6"),
        pytest.param("::ffff:10.9.8.7", "ip", "10.9.8.7", id="mapped-is-ipv4"),
        pytest.param("fe80::1%eth0", "ip", "fe80::1", id="zone-dropped"),
        pytest.param("10.0.0.0/8", "cidr", "10.0.0.0/8", id="v4-cidr"),
        pytest.param("fd00::/8", "cidr", "fd00::/8", id="v6-cidr"),
        pytest.param("[fd00::]/8", "cidr", "fd00::/8", id="bracketed-cidr"),
        pytest.param("::ffff:10.0.0.0/104", "cidr", "10.0.0.0/8", id="mapped-cidr-is-ipv4"),
    ],
)
def test_compile_selector(selector: str, kind: str, shown: str | None) -> None:
    """Selectors compile to their kind and canonical form."""
    compiled = compile_host_selector(selector)
    assert compiled.kind == kind
    value = compiled.value or compiled.ip or compiled.network
    assert (str(value) if value else None) == shown


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("10.0.0.1/8", "has host bits set", id="cidr-host-bits"),
        pytest.param("10/8", "does not appear to be", id="abbreviated-cidr"),
        pytest.param("10.0.0.0/33", "does not appear to be", id="prefix-too-long"),
        pytest.param("10.0.0.0/x", "prefix length", id="prefix-not-number"),
        pytest.param("10.0.0.0/255.0.0.0", "prefix length", id="netmask-form"),
        pytest.param("example.com:443", "takes no port", id="port"),
        pytest.param("[::1]:443", "takes no port", id="v6-port"),
        pytest.param("http://x.com", "not a URL", id="url"),
        pytest.param("u@x.com", "not a URL", id="userinfo"),
        pytest.param("1.2.3.*", "use a CIDR", id="ip-wildcard"),
        pytest.param("*.1.2.3", "use a CIDR", id="ip-suffix-wildcard"),
        pytest.param("\\*.example.com", "literal '*'", id="escaped-star"),
        pytest.param("example.com\\", "lone backslash", id="trailing-backslash"),
        pytest.param("bü*.de", "wildcard label", id="non-ascii-wildcard-label"),
        pytest.param("a?b.com", "invalid character", id="question-mark"),
        pytest.param("a*.\uff0a.com", "maps to '\\*'", id="fullwidth-star-with-wildcard"),
        pytest.param("\uff0a.example.com", "invalid character", id="fullwidth-star-alone"),
        pytest.param("[1.2.3.4]", "IPv4 literal in brackets", id="bracketed-ipv4"),
        pytest.param("example.123", "not a valid IPv4", id="numeric-tld"),
        pytest.param("*.example.123", "end in a number", id="wildcard-numeric-tld"),
        pytest.param("xn--zz.com", "punycode", id="bad-punycode"),
        pytest.param("a b.com", "invalid character", id="space"),
        pytest.param("ex\x00.com", "control character", id="nul"),
        pytest.param("::1%", "empty zone", id="empty-zone"),
        pytest.param("fd00::%1/8", "no zone", id="zone-in-cidr"),
    ],
)
def test_selector_errors(selector: str, reason: str) -> None:
    """A bad selector raises ValueError naming the selector and the problem."""
    with pytest.raises(ValueError, match=reason) as info:
        compile_host_selector(selector)
    assert repr(selector) in str(info.value)


@given(st.text(alphabet=st.sampled_from("ab1.*:/[]%@\\-_ \uff0a\u3002\u00df\x00"), max_size=30))
def test_selector_errors_are_value_errors(text: str) -> None:
    """Arbitrary selector text compiles or raises ValueError, never anything else."""
    with contextlib.suppress(ValueError):
        compile_host_selector(text)


def test_index_names_bad_selector() -> None:
    """HostIndex refuses a bad selector, naming it."""
    with pytest.raises(ValueError, match=re.escape("'10.0.0.1/8'")):
        HostIndex([("example.com", 0), ("10.0.0.1/8", 1)])


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("*", True, id="star"),
        pytest.param("*.", False, id="star-dot"),
        pytest.param("**", False, id="double-star"),
        pytest.param("\\*", False, id="escaped-star"),
        pytest.param("*.com", False, id="suffix"),
    ],
)
def test_is_catch_all_host(selector: str, expected: bool) -> None:
    """Only the exact text `*` is the catch-all."""
    assert is_catch_all_host(selector) is expected


# --- matching ---------------------------------------------------------------------

EXACT, WILD, DENY_ONLY, DENY_ONLY_WILD = "exact", "wild", "deny-only", "deny-only-wild"
_OUTCOME = {
    EXACT: (True, False), WILD: (False, False),
    DENY_ONLY: (True, True), DENY_ONLY_WILD: (False, True), None: None,
}
NAT64_METADATA = "64:ff9b::a9fe:a9fe"

MATCH_CASES = [
    ("example.com", "example.com", EXACT, "exact-name"),
    ("example.com", "EXAMPLE.com.", EXACT, "exact-name-folded"),
    ("example.com.", "example.com", EXACT, "selector-trailing-dot"),
    ("example.com", "www.example.com", None, "name-is-not-subdomain"),
    ("example.com", "example.com.evil.net", None, "name-is-not-prefix"),
    ("*.example.com", "a.example.com", WILD, "suffix-one-level"),
    ("*.example.com", "a.b.c.example.com", WILD, "suffix-any-depth"),
    ("*.example.com", "example.com", None, "suffix-not-apex"),
    ("*.example.com", "badexample.com", None, "suffix-label-boundary"),
    ("api-*.example.com", "api-v2.example.com", WILD, "in-label"),
    ("api-*.example.com", "api-.example.com", WILD, "in-label-empty"),
    ("api-*.example.com", "api.example.com", None, "in-label-needs-prefix"),
    ("api-*.example.com", "api-a.b.example.com", None, "in-label-stays-in-label"),
    ("api-*.example.com", "x.api-a.example.com", None, "in-label-anchored"),
    ("ec2.*.amazonaws.com", "ec2.us-east-1.amazonaws.com", WILD, "middle-label"),
    ("ec2.*.amazonaws.com", "ec2.a.b.amazonaws.com", None, "middle-label-one-label"),
    ("*a*b*", "xaybz", WILD, "many-stars"),
    ("*", "example.com", WILD, "catch-all-name"),
    ("*", "10.0.0.1", WILD, "catch-all-ipv4"),
    ("*", "[::1]", WILD, "catch-all-ipv6"),
    ("localhost", "localhost", EXACT, "localhost"),
    ("localhost", "127.0.0.1", None, "name-never-matches-ip"),
    ("127.0.0.1", "localhost", None, "ip-never-matches-name"),
    ("localhost", "foo.localhost", None, "localhost-not-subdomains"),
    ("*.localhost", "foo.localhost", WILD, "wildcard-localhost"),
    ("faß.de", "xn--fa-hia.de", EXACT, "idn-selector-punycode-target"),
    ("xn--fa-hia.de", "FAß.de", EXACT, "punycode-selector-idn-target"),
    ("*.faß.de", "www.faß.de", WILD, "idn-suffix"),
    ("a\\-b.com", "a-b.com", EXACT, "escaped-selector"),
    ("127.0.0.1", "2130706433", EXACT, "ip-decimal-spelling"),
    ("0x7f.1", "127.0.0.1", EXACT, "selector-spelling"),
    ("10.9.8.7", "[::ffff:10.9.8.7]", EXACT, "mapped-dotted-same-address"),
    ("10.9.8.7", "[::ffff:a09:807]", EXACT, "mapped-hex-same-address"),
    ("::ffff:10.9.8.7", "10.9.8.7", EXACT, "mapped-selector"),
    ("[::1]", "::1", EXACT, "bracketed-selector"),
    ("::1", "0:0:0:0:0:0:0:1", EXACT, "expanded-target"),
    ("0.0.0.1", "::1", None, "v6-loopback-not-compatible"),
    ("10.0.0.0/8", "10.1.2.3", EXACT, "cidr-covers"),
    ("10.0.0.0/8", "11.0.0.1", None, "cidr-outside"),
    ("10.0.0.0/8", "[::ffff:10.1.2.3]", EXACT, "cidr-covers-mapped"),
    ("::ffff:10.0.0.0/104", "10.1.1.1", EXACT, "mapped-cidr"),
    ("0.0.0.0/0", "10.1.2.3", WILD, "v4-slash-zero-not-exact"),
    ("::/0", "::1", WILD, "v6-slash-zero-not-exact"),
    ("::/0", "10.0.0.1", WILD, "v6-slash-zero-covers-ipv4"),
    ("::ffff:0:0/96", "10.0.0.1", WILD, "all-mapped-is-slash-zero"),
    ("::/8", "127.0.0.1", WILD, "v6-cidr-spanning-mapped"),
    ("fd00::/8", "fd00:ec2::254", EXACT, "v6-cidr"),
    ("fd00::/8", "10.0.0.1", None, "v6-cidr-not-ipv4"),
    ("169.254.169.254", NAT64_METADATA, DENY_ONLY, "nat64-deny-only"),
    ("169.254.169.254", "::a9fe:a9fe", DENY_ONLY, "compatible-deny-only"),
    ("169.254.169.254", "::ffff:0:a9fe:a9fe", DENY_ONLY, "translated-deny-only"),
    ("169.254.169.254", "2002:a9fe:a9fe::1", DENY_ONLY, "6to4-deny-only"),
    ("169.254.0.0/16", NAT64_METADATA, DENY_ONLY, "cidr-nat64-deny-only"),
    ("0.0.0.0/0", NAT64_METADATA, DENY_ONLY_WILD, "slash-zero-nat64-deny-only"),
    ("169.254.169.254", "64:ff9b::a9fe:a9ff", None, "nat64-other-address"),
    (NAT64_METADATA, NAT64_METADATA, EXACT, "v6-selector-allows-nat64"),
    ("64:ff9b::/96", NAT64_METADATA, EXACT, "v6-cidr-allows-nat64"),
    ("2002::/16", "2002:a9fe:a9fe::1", EXACT, "v6-cidr-allows-6to4"),
]


@pytest.mark.parametrize(
    ("selector", "target", "outcome"),
    [pytest.param(s, t, o, id=name) for s, t, o, name in MATCH_CASES],
)
def test_selector_matches(selector: str, target: str, outcome: str | None) -> None:
    """Selector semantics; the index and the plain selector agree on each case."""
    parsed = parse_network_target(target)
    expected = _OUTCOME[outcome]
    single = compile_host_selector(selector).match(parsed, 7)
    assert (None if single is None else (single.exact, single.deny_only)) == expected
    indexed = HostIndex([(selector, 7)]).match(parsed)
    assert indexed == ([] if expected is None else [HostMatch(7, *expected)])


def test_index_orders_by_key_and_keeps_duplicates() -> None:
    """Every matching selector is reported, ordered by key, duplicates by key."""
    index = HostIndex([("*", 5), ("example.com", 2), ("*.com", 9), ("example.com", 1)])
    target = parse_network_target("example.com")
    assert [m.key for m in index.match(target)] == [1, 2, 5, 9]
    assert [m.key for m in index.match(parse_network_target("a.example.com"))] == [5, 9]


@pytest.mark.parametrize(
    ("selectors", "target", "expected"),
    [
        pytest.param(["*", "localhost"], "localhost", HostMatch(0, True, False),
                     id="exact-beats-wildcard"),
        pytest.param(["0.0.0.0/0", "64:ff9b::/96"], NAT64_METADATA, HostMatch(0, True, False),
                     id="allowing-beats-deny-only"),
        pytest.param(["169.254.169.254", "::/0"], NAT64_METADATA, HostMatch(0, False, False),
                     id="wild-allowing-beats-exact-deny-only"),
        pytest.param(["0.0.0.0/0", "169.254.169.254"], NAT64_METADATA, HostMatch(0, True, True),
                     id="deny-only-exact-wins"),
    ],
)
def test_one_match_per_key(selectors: list[str], target: str, expected: HostMatch) -> None:
    """Selectors sharing a key merge into one match: allowing beats deny-only, exact wins."""
    index = HostIndex([(selector, 0) for selector in selectors])
    assert index.match(parse_network_target(target)) == [expected]


def test_index_finds_every_pattern_sharing_a_suffix() -> None:
    """In-label patterns with different literal prefixes on one suffix are all found."""
    patterns = ["a*.example.com", "api-*.example.com", "*-v2.example.com", "api-v*.example.com",
                "*.example.com", "b*.example.com", "*i-v*.*.com"]
    index = HostIndex([(pattern, key) for key, pattern in enumerate(patterns)])
    found = index.match(parse_network_target("api-v2.example.com"))
    assert [m.key for m in found] == [0, 1, 2, 3, 4, 6]


def test_large_pattern_bucket_uses_filter_correctly() -> None:
    """A bucket big enough for a combined filter still reports every member that matches."""
    patterns = [f"api-{i}*.example.com" for i in range(20)] + ["api-*.example.com"]
    index = HostIndex([(pattern, key) for key, pattern in enumerate(patterns)])
    found = index.match(parse_network_target("api-12x.example.com"))
    assert [m.key for m in found] == [1, 12, 20]
    assert index.match(parse_network_target("api-x.example.com")) == [HostMatch(20, False, False)]


def test_empty_index_matches_nothing() -> None:
    """No selectors, no matches."""
    assert HostIndex([]).match(parse_network_target("example.com")) == []


# --- property tests: index == reference, patterns == fnmatch ----------------------------

_NAME_PIECES = ["a", "b", "ab", "x-1", "localhost", "api", "api-v2"]
_WILD_PIECES = ["*", "a*", "*b", "api-*", "*-*", "x*1"]
_ADDRESSES = [
    "10.0.0.1", "10.255.0.1", "169.254.169.254", "127.0.0.1", "8.8.8.8", "192.168.1.1",
    "0.0.0.1",
]


def _v6_forms(v4: str) -> list[str]:
    value = int(IPv4Address(v4))
    return [str(IPv6Address(prefix | value)) for prefix in (
        0xFFFF << 32, 0xFFFF << 48, 0x64FF9B << 96, 0,
    )] + [str(IPv6Address(0x2002 << 112 | value << 80))]


_TARGET_IPS = _ADDRESSES + [f for a in _ADDRESSES for f in _v6_forms(a)] + [
    "::1", "::", "fd00::1", "fe80::1", "2001:db8::1", "64:ff9b:1::a00:1",
]


@st.composite
def name_selectors(draw: st.DrawFn) -> str:
    labels = draw(st.lists(st.sampled_from(_NAME_PIECES + _WILD_PIECES), min_size=1,
                           max_size=3))
    return ("*." if draw(st.booleans()) else "") + ".".join(labels)


@st.composite
def ip_selectors(draw: st.DrawFn) -> str:
    base = ip_address(draw(st.sampled_from(_TARGET_IPS)))
    if draw(st.booleans()):
        return str(base)
    bits = base.max_prefixlen
    prefix = draw(st.integers(0, bits))
    network = type(base)(int(base) & ~((1 << (bits - prefix)) - 1))
    return f"{network}/{prefix}"


_SELECTORS = st.one_of(name_selectors(), ip_selectors(), st.just("*"))
_TARGETS = st.one_of(
    st.lists(st.sampled_from(_NAME_PIECES), min_size=1, max_size=5).map(".".join),
    st.sampled_from(_TARGET_IPS),
)


def _reference(selectors: list[tuple[str, int]], target: NetworkTarget) -> list[HostMatch]:
    """Loop over compiled selectors; merge per key (allowing beats deny-only, exact wins)."""
    best: dict[int, tuple[bool, bool]] = {}
    for text, key in selectors:
        hit = compile_host_selector(text).match(target, key)
        if hit is None:
            continue
        rank = (not hit.deny_only, hit.exact)
        old = best.get(key)
        if old is None or rank > (not old[1], old[0]):
            best[key] = (hit.exact, hit.deny_only)
    return [HostMatch(key, *best[key]) for key in sorted(best)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_SELECTORS, st.integers(0, 6)), max_size=25),
    st.lists(_TARGETS, min_size=1, max_size=5),
)
def test_index_agrees_with_reference(selectors: list[tuple[str, int]], targets: list[str]) -> None:
    """HostIndex gives exactly what a loop over the compiled selectors gives."""
    index = HostIndex(selectors)
    for text in targets:
        target = parse_network_target(text)
        assert index.match(target) == _reference(selectors, target)


def _glob_reference(pattern: str, host: str) -> bool:
    """Label-by-label fnmatch; a leading `*.` stands for one or more labels."""
    labels, wanted = host.split("."), pattern.split(".")
    if len(wanted) > 1 and wanted[0] == "*":
        wanted = wanted[1:]
        if len(labels) <= len(wanted):
            return False
        labels = labels[len(labels) - len(wanted):]
    return len(labels) == len(wanted) and all(
        fnmatch.fnmatchcase(label, glob) for label, glob in zip(labels, wanted, strict=True)
    )


@settings(max_examples=300)
@given(name_selectors(), st.lists(st.sampled_from(_NAME_PIECES), min_size=1, max_size=5))
def test_name_patterns_agree_with_fnmatch(selector: str, labels: list[str]) -> None:
    """Name selectors match exactly the hosts a label-wise fnmatch accepts."""
    host = ".".join(labels)
    hit = compile_host_selector(selector).match(parse_network_target(host), 0)
    expected = selector == "*" or _glob_reference(selector, host)
    assert (hit is not None) is expected
