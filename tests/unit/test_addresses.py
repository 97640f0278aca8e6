"""IP literal spellings, the special-address table, embedded IPv4 forms, host text."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.matching.addresses import (
    SPECIAL_NAMES,
    SPECIAL_RANGES,
    BadTarget,
    canonical_host,
    canonical_host_slow,
    canonical_ip,
    embedded_ipv4,
    ends_in_number,
    parse_ipv4,
    parse_ipv6,
    special_for_ip,
    special_for_name,
)

# --- IPv4 spellings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1", "127.0.0.1", id="dotted-quad"),
        pytest.param("2130706433", "127.0.0.1", id="one-decimal-number"),
        pytest.param("0177.0.0.1", "127.0.0.1", id="octal-part"),
        pytest.param("0x7f.1", "127.0.0.1", id="hex-then-24-bit"),
        pytest.param("127.1", "127.0.0.1", id="two-parts"),
        pytest.param("0x7f000001", "127.0.0.1", id="one-hex-number"),
        pytest.param("0X7F.0.0.1", "127.0.0.1", id="upper-hex-prefix"),
        pytest.param("127.0.1", "127.0.0.1", id="three-parts"),
        pytest.param("017700000001", "127.0.0.1", id="one-octal-number"),
        pytest.param("0x", "0.0.0.0", id="bare-hex-prefix-is-zero"),
        pytest.param("0", "0.0.0.0", id="zero"),
        pytest.param("169.254.43518", "169.254.169.254", id="16-bit-last-part"),
        pytest.param("0xa9.0376.0xa9fe", "169.254.169.254", id="mixed-bases"),
        pytest.param("4294967295", "255.255.255.255", id="max-number"),
        pytest.param("1.2.3.4.", "1.2.3.4", id="trailing-dot"),
        pytest.param("00000000000000000127.0.0.1", "87.0.0.1", id="long-octal-zeros"),
    ],
)
def test_parse_ipv4_spellings(text: str, expected: str) -> None:
    """Every spelling inet_aton accepts reads as the address it connects to."""
    assert parse_ipv4(text) == IPv4Address(expected)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("256.1.1.1", id="part-over-255"),
        pytest.param("1.2.3.4.5", id="five-parts"),
        pytest.param("1.2.3.256", id="last-part-over-255"),
        pytest.param("1.2.65536", id="16-bit-last-part-overflow"),
        pytest.param("4294967296", id="over-32-bits"),
        pytest.param("08.0.0.1", id="bad-octal-digit"),
        pytest.param("1..2", id="empty-part"),
        pytest.param("0xg.1", id="bad-hex-digit"),
        pytest.param("1.2.3.4..", id="two-trailing-dots"),
        pytest.param("1" * 70, id="absurd-length"),
        pytest.param("١٢٣.0.0.1", id="non-ascii-digits"),
    ],
)
def test_parse_ipv4_rejects(text: str) -> None:
    """Numbers that are not a valid IPv4 spelling raise ValueError."""
    with pytest.raises(ValueError):
        parse_ipv4(text)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("example.com", False, id="name"),
        pytest.param("1.2.3.4", True, id="dotted"),
        pytest.param("example.0x1f", True, id="hex-last-label"),
        pytest.param("example.0x", True, id="bare-hex-prefix"),
        pytest.param("example.0x1g", False, id="not-hex"),
        pytest.param("123.example", False, id="numeric-first-label"),
        pytest.param("1e5", False, id="exponent-is-a-name"),
    ],
)
def test_ends_in_number(host: str, expected: bool) -> None:
    """The WHATWG test that sends a host to the IPv4 parser."""
    assert ends_in_number(host) is expected


# --- IPv6 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("::1", IPv6Address("::1"), id="loopback"),
        pytest.param("0:0:0:0:0:0:0:1", IPv6Address("::1"), id="expanded"),
        pytest.param("FE80::1%eth0", IPv6Address("fe80::1"), id="zone-dropped"),
        pytest.param("::ffff:10.9.8.7", IPv4Address("10.9.8.7"), id="mapped-dotted-is-ipv4"),
        pytest.param("::ffff:a09:807", IPv4Address("10.9.8.7"), id="mapped-hex-is-ipv4"),
        pytest.param("0:0:0:0:0:ffff:7f00:1", IPv4Address("127.0.0.1"), id="mapped-expanded"),
        pytest.param("64:ff9b::a9fe:a9fe", IPv6Address("64:ff9b::a9fe:a9fe"), id="nat64-stays"),
    ],
)
def test_parse_ipv6(text: str, expected: object) -> None:
    """IPv6 literals drop the zone, and IPv4-mapped ones are the IPv4 address."""
    assert parse_ipv6(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("fe80::1%", "empty zone index", id="empty-zone"),
        pytest.param("1:2:3:4:5:6:7:8:9", "not an IPv6 address", id="nine-groups"),
        pytest.param("::12345", "not an IPv6 address", id="long-group"),
        pytest.param("::ffff:01.2.3.4", "not an IPv6 address", id="leading-zero-embedded"),
    ],
)
def test_parse_ipv6_rejects(text: str, reason: str) -> None:
    """Malformed IPv6 literals raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=reason):
        parse_ipv6(text)


def test_canonical_ip_leaves_other_forms() -> None:
    """Only the IPv4-mapped form collapses to IPv4; the translation forms stay IPv6."""
    for text in ("::a09:807", "::ffff:0:a09:807", "64:ff9b::a09:807", "2002:a09:807::"):
        assert canonical_ip(IPv6Address(text)) == IPv6Address(text)


# --- special table ---------------------------------------------------------------


def _sample(cidr: str) -> str:
    net = ip_network(cidr)
    return str(net.network_address + (1 if net.num_addresses > 1 else 0))


@pytest.mark.parametrize(
    ("cidr", "description"),
    [pytest.param(cidr, desc, id=cidr) for cidr, desc in SPECIAL_RANGES],
)
def test_every_special_range(cidr: str, description: str) -> None:
    """Every table entry is special, at its first and last address, with its description."""
    net = ip_network(cidr)
    assert special_for_ip(net.network_address + (1 if net.num_addresses > 1 else 0)) == description
    assert special_for_ip(net.broadcast_address) is not None


@pytest.mark.parametrize(
    ("address", "description"),
    [
        pytest.param("169.254.169.254", "link-local (cloud metadata)", id="aws-gcp-metadata"),
        pytest.param("168.63.129.16", "cloud metadata (Azure)", id="azure-wire-server"),
        pytest.param("100.100.100.200", "shared address space (CGNAT)", id="alibaba-metadata"),
        pytest.param("fd00:ec2::254", "unique local (cloud metadata)", id="aws-ipv6-metadata"),
        pytest.param("255.255.255.255", "broadcast", id="broadcast"),
        pytest.param("240.0.0.1", "reserved", id="class-e"),
        pytest.param("100.127.255.255", "shared address space (CGNAT)", id="cgnat-top"),
        pytest.param("172.31.255.255", "private (RFC 1918)", id="rfc1918-172-top"),
        pytest.param("2001:0:4136:e378::1", "IETF protocol assignments (Teredo included)",
                     id="teredo"),
        pytest.param("::", "unspecified", id="v6-unspecified"),
        pytest.param("::1", "loopback", id="v6-loopback-not-compatible"),
        pytest.param("::1:0:0:0", "reserved (::/8)", id="rest-of-colon-colon-8"),
        pytest.param("ff:ffff::", "reserved (::/8)", id="top-of-colon-colon-8"),
    ],
)
def test_special_samples(address: str, description: str) -> None:
    """Known endpoints and range edges carry the right description."""
    assert special_for_ip(canonical_ip(ip_network(address).network_address)) == description


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("8.8.8.8", id="public-v4"),
        pytest.param("172.32.0.1", id="just-above-172-16-12"),
        pytest.param("100.128.0.1", id="just-above-cgnat"),
        pytest.param("169.253.255.255", id="just-below-link-local"),
        pytest.param("192.169.0.1", id="just-above-192-168"),
        pytest.param("223.255.255.255", id="just-below-multicast"),
        pytest.param("168.63.129.17", id="next-to-azure"),
        pytest.param("2606:4700::1111", id="public-v6"),
        pytest.param("100:0:0:1::", id="outside-discard-64"),
        pytest.param("1ff:ffff::", id="just-above-colon-colon-8"),
    ],
)
def test_ordinary_addresses(address: str) -> None:
    """Addresses outside the table are not special (not ipaddress.is_private)."""
    assert special_for_ip(ip_network(address).network_address) is None


@pytest.mark.parametrize(
    ("address", "form", "ipv4", "description"),
    [
        pytest.param("::a9fe:a9fe", "IPv4-compatible", "169.254.169.254",
                     "link-local (cloud metadata), IPv4-compatible form of 169.254.169.254",
                     id="compatible-special"),
        pytest.param("::808:808", "IPv4-compatible", "8.8.8.8", None, id="compatible-public"),
        pytest.param("::2", "IPv4-compatible", "0.0.0.2",
                     "unspecified (this network), IPv4-compatible form of 0.0.0.2",
                     id="compatible-low"),
        pytest.param("::ffff:0:7f00:1", "IPv4-translated", "127.0.0.1",
                     "loopback, IPv4-translated form of 127.0.0.1", id="translated-special"),
        pytest.param("::ffff:0:808:808", "IPv4-translated", "8.8.8.8", None,
                     id="translated-public"),
        pytest.param("64:ff9b::a00:1", "NAT64", "10.0.0.1",
                     "private (RFC 1918), NAT64 form of 10.0.0.1", id="nat64-special"),
        pytest.param("64:ff9b::808:808", "NAT64", "8.8.8.8", None, id="nat64-public"),
        pytest.param("2002:a9fe:a9fe::1", "6to4", "169.254.169.254",
                     "link-local (cloud metadata), 6to4 form of 169.254.169.254",
                     id="6to4-special"),
        pytest.param("2002:808:808::", "6to4", "8.8.8.8", None, id="6to4-public"),
    ],
)
def test_embedded_forms(address: str, form: str, ipv4: str, description: str | None) -> None:
    """Translation forms carry their IPv4 and are special exactly when it is."""
    ip = IPv6Address(address)
    assert embedded_ipv4(ip) == (form, IPv4Address(ipv4))
    assert special_for_ip(ip) == description


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("::", id="unspecified"),
        pytest.param("::1", id="loopback"),
        pytest.param("2001:db8::1", id="documentation"),
        pytest.param("64:ff9b:1::a00:1", id="local-use-nat64-is-not-the-wkp"),
    ],
)
def test_no_embedded_form(address: str) -> None:
    """`::`, `::1` and other prefixes carry no IPv4 address."""
    assert embedded_ipv4(IPv6Address(address)) is None


@pytest.mark.parametrize(
    ("name", "description"),
    [
        *[pytest.param(name, desc, id=name) for name, desc in SPECIAL_NAMES.items()],
        pytest.param("foo.localhost", "loopback", id="under-localhost"),
        pytest.param("a.b.localhost", "loopback", id="deep-under-localhost"),
        pytest.param("localhost.com", None, id="localhost-dot-com"),
        pytest.param("notlocalhost", None, id="suffix-without-dot"),
        pytest.param("x.metadata.google.internal", None, id="under-metadata-name"),
    ],
)
def test_special_names(name: str, description: str | None) -> None:
    """Special names: localhost and below it, and the metadata names exactly."""
    assert special_for_name(name) == description


# --- host text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("Example.COM.", ("example.com", None), id="case-and-trailing-dot"),
        pytest.param("faß.de", ("xn--fa-hia.de", None), id="nontransitional-sharp-s"),
        pytest.param("ex。com", ("ex.com", None), id="ideographic-full-stop"),
        pytest.param("\uff25\uff38\uff0e\uff43\uff4f\uff4d", ("ex.com", None), id="fullwidth"),
        pytest.param("ex\u00adample.com", ("example.com", None), id="soft-hyphen-ignored"),
        pytest.param(
            "\uff11\uff12\uff17.0.0.1", ("127.0.0.1", IPv4Address("127.0.0.1")),
            id="fullwidth-digits",
        ),
        pytest.param("xn--fa-hia.de", ("xn--fa-hia.de", None), id="punycode-kept"),
        pytest.param("_dmarc.example.com", ("_dmarc.example.com", None), id="underscore"),
    ],
)
def test_canonical_host(host: str, expected: tuple[str, IPv4Address | None]) -> None:
    """Host text is mapped by UTS #46, lowercased, punycoded, dot-trimmed."""
    assert canonical_host(host) == expected


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        pytest.param("xn--zz.com", "not a valid punycode label", id="bad-punycode"),
        pytest.param("xn---bbk.com", "not a valid punycode label", id="non-canonical-punycode"),
        pytest.param("a..b", "empty label", id="empty-label"),
        pytest.param(".", "empty host", id="only-dot"),
        pytest.param("a" * 64 + ".com", "longer than 63 bytes", id="long-label"),
        pytest.param(".".join(["a" * 63] * 4), "longer than 253 bytes", id="long-host"),
        pytest.param("ex/ample.com", "invalid character", id="slash"),
        pytest.param("\uff45\uff58\uff0f.com", "invalid character", id="fullwidth-slash"),
        pytest.param("a\u0378b.com", "not allowed in names", id="unassigned-codepoint"),
    ],
)
def test_canonical_host_rejects(host: str, reason: str) -> None:
    """Bad host text raises BadTarget with the reason."""
    with pytest.raises(BadTarget, match=reason):
        canonical_host(host)


@given(st.text(alphabet="abcxyzXN019_-.*%:/@ ", max_size=40))
def test_canonical_host_fast_path_agrees(host: str) -> None:
    """The ASCII fast path gives the same answer (or error) as the full path."""
    try:
        expected: object = canonical_host_slow(host)
    except BadTarget:
        expected = BadTarget
    try:
        actual: object = canonical_host(host)
    except BadTarget:
        actual = BadTarget
    assert actual == expected
