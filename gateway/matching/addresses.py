"""IP literals as a resolver reads them, and the fixed table of special addresses.

A special address (loopback, private, link-local, ...) may only be allowed by a
rule that names it exactly, so what counts as special must not drift with the
Python release: the table below is ours, not `ipaddress.is_private`.

IPv4 literals are read the way `inet_aton` and the WHATWG URL standard read them
(`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`), because that is what a client
will connect to. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address itself;
the other IPv6 forms that carry an IPv4 address are different addresses that a
translator forwards, reported by `embedded_ipv4`.

Host text is canonicalised here too (UTS #46 mapping, punycode, label rules),
so that targets and selectors share one reading of every name.
"""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address, IPv6Address, ip_network
from urllib.parse import unquote_to_bytes

import idna

IPAddress = IPv4Address | IPv6Address

_IPV4_SPECIAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified (this network)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
    ("168.63.129.16/32", "cloud metadata (Azure)"),
)

_IPV6_SPECIAL: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (Teredo included)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6)"),
    ("fc00::/7", "unique local (private)"),
    ("fd00:ec2::254/128", "unique local (cloud metadata)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)

SPECIAL_RANGES: tuple[tuple[str, str], ...] = _IPV4_SPECIAL + _IPV6_SPECIAL
"""Every special range with its description, in the order the docs list them."""

SPECIAL_NAMES: dict[str, str] = {
    "localhost": "loopback",
    "metadata.google.internal": "link-local (cloud metadata)",
    "metadata.goog": "link-local (cloud metadata)",
}
"""Special host names; every name under `.localhost` is loopback too."""

_RESERVED_V6 = "reserved (::/8)"
_MAPPED_PREFIX = 0xFFFF  # ::ffff:0:0/96, as the top 96 bits
_TRANSLATED_PREFIX = 0xFFFF0000  # ::ffff:0:0:0/96
_NAT64_PREFIX = 0x64FF9B << 64  # 64:ff9b::/96
_SIXTOFOUR_PREFIX = 0x2002  # 2002::/16, as the top 16 bits
_V4_MASK = 0xFFFFFFFF

_Table = tuple[tuple[int, dict[int, str]], ...]


def _build_table(entries: tuple[tuple[str, str], ...], bits: int) -> _Table:
    """Group ranges by prefix length, longest first, for longest-prefix lookup."""
    by_length: dict[int, dict[int, str]] = {}
    for cidr, description in entries:
        net = ip_network(cidr)
        by_length.setdefault(net.prefixlen, {})[int(net.network_address)] = description
    full = (1 << bits) - 1
    return tuple(
        (full ^ (full >> length), by_length[length]) for length in sorted(by_length, reverse=True)
    )


_V4_TABLE = _build_table(_IPV4_SPECIAL, 32)
_V6_TABLE = _build_table(_IPV6_SPECIAL, 128)


def _lookup(table: _Table, value: int) -> str | None:
    for mask, entries in table:
        description = entries.get(value & mask)
        if description is not None:
            return description
    return None


def embedded_ipv4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 translation form carries, with the form's name.

    IPv4-mapped addresses are not covered: `canonical_ip` turns them into IPv4.
    """
    value = int(ip)
    top = value >> 32
    if top == 0:
        if value <= 1:
            return None  # `::` and `::1` are their own addresses
        return "IPv4-compatible", IPv4Address(value)
    if top == _TRANSLATED_PREFIX:
        return "IPv4-translated", IPv4Address(value & _V4_MASK)
    if top == _NAT64_PREFIX:
        return "NAT64", IPv4Address(value & _V4_MASK)
    if value >> 112 == _SIXTOFOUR_PREFIX:
        return "6to4", IPv4Address((value >> 80) & _V4_MASK)
    return None


def special_for_ip(ip: IPAddress) -> str | None:
    """Describe the special range holding `ip`, or None for an ordinary address."""
    if isinstance(ip, IPv4Address):
        return _lookup(_V4_TABLE, int(ip))
    description = _lookup(_V6_TABLE, int(ip))
    if description is not None:
        return description
    carried = embedded_ipv4(ip)
    if carried is not None:
        form, v4 = carried
        inner = _lookup(_V4_TABLE, int(v4))
        return None if inner is None else f"{inner}, {form} form of {v4}"
    if int(ip) >> 120 == 0:
        return _RESERVED_V6
    return None


def special_for_name(name: str) -> str | None:
    """Describe a special host name (already canonical), or None."""
    description = SPECIAL_NAMES.get(name)
    if description is None and name.endswith(".localhost"):
        return SPECIAL_NAMES["localhost"]
    return description


def canonical_ip(ip: IPAddress) -> IPAddress:
    """The address a socket reaches: IPv4-mapped IPv6 is the IPv4 address."""
    if ip.version == 6 and int(ip) >> 32 == _MAPPED_PREFIX:
        return IPv4Address(int(ip) & _V4_MASK)
    return ip


_NUMBER_RE = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_DEC_RE = re.compile(r"[0-9]+")
_OCT_RE = re.compile(r"0[0-7]+")
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]*")


def ends_in_number(host: str) -> bool:
    """True when the host's last label reads as a number, so it must be an IPv4 literal.

    This is the WHATWG "ends in a number" test: such a host is never looked up
    as a name, so it is either a valid IPv4 spelling or bad input.
    """
    last = host.rpartition(".")[2]
    return _NUMBER_RE.fullmatch(last) is not None


def _ipv4_part(part: str) -> int:
    if _HEX_RE.fullmatch(part):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        if _OCT_RE.fullmatch(part):
            return int(part, 8)
        raise ValueError(f"{part!r} is not an octal number")
    if _DEC_RE.fullmatch(part):
        return int(part)
    raise ValueError(f"{part!r} is not a number")


def parse_ipv4(text: str) -> IPv4Address:
    """Read an IPv4 literal in any spelling `inet_aton` accepts; ValueError otherwise.

    One to four parts of decimal, octal (leading 0) or hex (0x); the last part
    fills the remaining bytes. A single trailing dot is tolerated as in URLs.
    """
    if len(text) > 64:
        raise ValueError("IPv4 literal too long")
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 4:
        raise ValueError("more than four parts")
    if any(not part for part in parts):
        raise ValueError("empty part")
    numbers = [_ipv4_part(part) for part in parts]
    value = 0
    for number in numbers[:-1]:
        if number > 255:
            raise ValueError(f"part {number} is over 255")
        value = value << 8 | number
    last_bits = 8 * (5 - len(numbers))
    if numbers[-1] >= 1 << last_bits:
        raise ValueError(f"last part {numbers[-1]} is too large")
    return IPv4Address(value << last_bits | numbers[-1])


def parse_ipv6(text: str) -> IPAddress:
    """Read an IPv6 literal (zone index dropped); IPv4-mapped comes back as IPv4.

    Raises ValueError naming what is wrong.
    """
    address, percent, zone = text.partition("%")
    if percent and not zone:
        raise ValueError("empty zone index")
    if len(address) > 64:
        raise ValueError("IPv6 literal too long")
    try:
        ip = IPv6Address(address)
    except AddressValueError as exc:
        raise ValueError(f"{address!r} is not an IPv6 address") from exc
    return canonical_ip(ip)


# --- host text ---------------------------------------------------------------

MAX_HOST_LENGTH = 253
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL_RE = re.compile(r"[a-z0-9_-]{1,63}")
_PLAIN_NAME_RE = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
_DOTTED_QUAD_RE = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_IDNA_ERRORS = (idna.IDNAError, UnicodeError, ValueError, IndexError)


class BadTarget(ValueError):
    """A target that cannot be judged; `str(e)` is the human reason."""


def canonical_label(label: str) -> str:
    """One label after UTS #46 mapping, as ASCII; BadTarget when it is not a valid label."""
    if label.isascii():
        if _LABEL_RE.fullmatch(label) is None:
            if not label:
                raise BadTarget("empty label in host")
            if len(label) > 63:
                raise BadTarget(f"label {label[:20]!r}... longer than 63 bytes")
            raise BadTarget(f"invalid character in host label {label!r}")
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)
            except _IDNA_ERRORS as exc:
                raise BadTarget(f"{label!r} is not a valid punycode label") from exc
        return label
    try:
        return idna.alabel(label).decode("ascii")
    except _IDNA_ERRORS as exc:
        raise BadTarget(f"{label!r} is not a valid international label") from exc


def map_uts46(host: str) -> str:
    """UTS #46 non-transitional mapping, with the ASCII case done directly."""
    if host.isascii():
        return host.lower()
    try:
        return idna.uts46_remap(host, std3_rules=False, transitional=False)
    except _IDNA_ERRORS as exc:
        raise BadTarget(f"host {host!r} holds a character not allowed in names") from exc


def canonical_host(host: str) -> tuple[str, IPv4Address | None]:
    """Canonical text of a host name or IPv4 literal (no brackets, no port).

    Returns the ASCII name or dotted-quad text, and the IPv4 address if it is one.
    Plain ASCII names and dotted quads take a fast path that gives the same answer.
    """
    if host.isascii():
        lowered = host.lower()
        if _DOTTED_QUAD_RE.fullmatch(lowered):
            try:
                return lowered, IPv4Address(lowered)
            except AddressValueError:
                pass
        elif (
            len(lowered) <= MAX_HOST_LENGTH
            and _PLAIN_NAME_RE.fullmatch(lowered)
            and "xn--" not in lowered
            and not ends_in_number(lowered)
        ):
            return lowered, None
    return canonical_host_slow(host)


def canonical_host_slow(host: str) -> tuple[str, IPv4Address | None]:
    """`canonical_host` without the fast path: the reference it must agree with."""
    mapped = map_uts46(host)
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise BadTarget("empty host")
    if ends_in_number(mapped):
        try:
            ip = parse_ipv4(mapped)
        except ValueError as exc:
            raise BadTarget(f"{host!r} ends in a number but is not a valid IPv4 address") from exc
        return str(ip), ip
    name = ".".join([canonical_label(label) for label in mapped.split(".")])
    if len(name) > MAX_HOST_LENGTH:
        raise BadTarget(f"host longer than {MAX_HOST_LENGTH} bytes")
    return name, None


def ipv6_literal(text: str) -> IPAddress:
    """A bracketed or bare IPv6 literal; IPv4 in brackets is refused."""
    if ":" not in text:
        if ends_in_number(text):
            raise BadTarget(f"IPv4 literal in brackets: [{text}]")
        raise BadTarget(f"[{text}] is not an IPv6 literal")
    try:
        return parse_ipv6(text)
    except ValueError as exc:
        raise BadTarget(f"invalid IPv6 literal: {exc}") from exc


def decode_percent(host: str) -> str:
    """Decode percent-escapes once, as a URL parser does before judging the host."""
    if _BAD_PERCENT_RE.search(host):
        raise BadTarget("invalid percent-escape in host")
    try:
        decoded = unquote_to_bytes(host).decode("utf-8")
    except UnicodeError as exc:
        raise BadTarget("percent-escapes in host are not valid UTF-8") from exc
    if CONTROL_RE.search(decoded):
        raise BadTarget("control character in host")
    return decoded
