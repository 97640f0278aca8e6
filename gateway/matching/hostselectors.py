"""Host selectors: compile one rule's host into a matcher that says how it matches.

A selector is canonicalised exactly as a target is (see `targets`), so `*`,
`*.suffix`, in-label wildcards, names, IPs and CIDRs compare with the canonical
host. `HostSelector.match` is the plain reference that `HostIndex` must agree with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from gateway.matching.addresses import (
    MAX_HOST_LENGTH,
    IPAddress,
    canonical_host,
    canonical_label,
    embedded_ipv4,
    ends_in_number,
    ipv6_literal,
    map_uts46,
)
from gateway.matching.targets import NetworkTarget, check_text

__all__ = [
    "ALL", "CIDR", "IP", "NAME", "PATTERN", "SUFFIX",
    "HostMatch", "HostSelector", "compile_host_selector", "is_catch_all_host",
]

_WILD_LABEL_RE = re.compile(r"[a-z0-9_*-]{1,63}")
_IP_LIKE_LABEL_RE = re.compile(r"[0-9*]+")
_PREFIX_RE = re.compile(r"[0-9]{1,3}")
_MAPPED_V6 = IPv6Network("::ffff:0:0/96")
ALL = "all"
NAME = "name"
SUFFIX = "suffix"
PATTERN = "pattern"
IP = "ip"
CIDR = "cidr"


@dataclass(frozen=True, slots=True)
class HostMatch:
    """One selector key that matched, and how strongly."""

    key: int
    exact: bool
    deny_only: bool


@dataclass(frozen=True, slots=True)
class HostSelector:
    """A compiled host selector. `match` is the plain reference the index must agree with.

    kind is one of: all (`*`), name (exact), suffix (`*.x`), pattern (in-label
    `*`), ip, cidr. `covers_ipv4` marks an IPv6 CIDR spanning all IPv4-mapped
    addresses, which therefore covers every IPv4 address (like `0.0.0.0/0`).
    """

    text: str
    kind: str
    value: str = ""
    regex: re.Pattern[str] | None = None
    literal_suffix: str = ""
    ip: IPv4Address | IPv6Address | None = None
    network: IPv4Network | IPv6Network | None = None
    covers_ipv4: bool = False

    def _covers(self, ip: IPAddress) -> bool | None:
        """None when the selector does not cover `ip`, else whether it is exact."""
        if self.kind == IP:
            return True if ip == self.ip else None
        net = self.network
        if net is None:
            return None
        if ip.version == net.version and ip in net:
            return net.prefixlen != 0
        if self.covers_ipv4 and ip.version == 4:
            return False
        return None

    def match(self, target: NetworkTarget, key: int) -> HostMatch | None:
        """How this selector matches `target`, or None."""
        if self.kind == ALL:
            return HostMatch(key, False, False)
        if target.ip is None:
            host = target.host
            if self.kind == NAME:
                hit, exact = host == self.value, True
            elif self.kind == SUFFIX:
                hit, exact = host.endswith("." + self.value), False
            elif self.kind == PATTERN:
                assert self.regex is not None
                hit, exact = self.regex.fullmatch(host) is not None, False
            else:
                hit, exact = False, False
            return HostMatch(key, exact, False) if hit else None
        covered = self._covers(target.ip)
        if covered is not None:
            return HostMatch(key, covered, False)
        if isinstance(target.ip, IPv6Address):
            carried = embedded_ipv4(target.ip)
            if carried is not None:
                covered = self._covers(carried[1])
                if covered is not None:
                    return HostMatch(key, covered, True)
        return None


def example_target(selector: HostSelector) -> NetworkTarget:
    """One host that `selector` matches: two selector sets overlap where one matches an
    example of the other (used to find rules a setting would make unenforceable)."""
    if selector.kind == IP:
        assert selector.ip is not None
        return NetworkTarget(str(selector.ip), selector.ip, None, None, None, None)
    if selector.kind == CIDR:
        assert selector.network is not None
        ip = selector.network.network_address
        return NetworkTarget(str(ip), ip, None, None, None, None)
    name = {ALL: "example.invalid", NAME: selector.value,
            SUFFIX: "example." + selector.value}.get(selector.kind)
    if name is None:
        name = selector.value.replace("*", "example")
    return NetworkTarget(name, None, None, None, None, None)


def is_catch_all_host(selector: str) -> bool:
    """True for the catch-all host selector, which is exactly `*`."""
    return selector == "*"


def _unescape(text: str) -> str:
    """Resolve `\\c` escapes; an unescaped `*` stays a wildcard, an escaped one is an error."""
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        literal = next(chars, None)
        if literal is None:
            raise ValueError("ends with a lone backslash")
        if literal == "*":
            raise ValueError("a literal '*' cannot be part of a host")
        out.append(literal)
    return "".join(out)


def _cidr_selector(text: str, body: str) -> HostSelector:
    address, _, prefix = body.partition("/")
    if _PREFIX_RE.fullmatch(prefix) is None:
        raise ValueError(f"prefix length {prefix!r} is not a number")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
        if ":" not in address:
            raise ValueError("brackets hold no IPv6 address")
    if "%" in address:
        raise ValueError("a CIDR takes no zone index")
    network = ip_network(f"{address}/{prefix}", strict=True)
    if isinstance(network, IPv6Network):
        if network.subnet_of(_MAPPED_V6):
            low = int(network.network_address) & 0xFFFFFFFF
            network4 = IPv4Network((low, network.prefixlen - 96))
            return HostSelector(text, CIDR, network=network4)
        covers_ipv4 = network.supernet_of(_MAPPED_V6)
        return HostSelector(text, CIDR, network=network, covers_ipv4=covers_ipv4)
    return HostSelector(text, CIDR, network=network)


def _label_regex(label: str) -> str:
    """A label glob as a regex that cannot backtrack badly.

    Each middle literal is taken at its first occurrence (an atomic lazy
    group), which is always the best choice for a glob, so matching stays linear
    in the label length however many `*` the label holds.
    """
    pieces = [re.escape(piece) for piece in label.split("*")]
    if len(pieces) == 1:
        return pieces[0]
    middle = "".join(f"(?>[^.]*?{piece})" for piece in pieces[1:-1])
    return f"{pieces[0]}{middle}[^.]*{pieces[-1]}"


def _pattern_selector(text: str, body: str) -> HostSelector:
    collapsed = re.sub(r"\*+", "*", body)
    mapped = map_uts46(collapsed)
    if mapped.count("*") != collapsed.count("*"):
        raise ValueError("a character that maps to '*' is not a wildcard")
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if mapped == "*":
        return HostSelector(text, ALL)
    labels = mapped.split(".")
    any_depth = len(labels) > 1 and labels[0] == "*"
    if any_depth:
        labels = labels[1:]
    if all(_IP_LIKE_LABEL_RE.fullmatch(label) for label in labels) and re.search("[0-9]", mapped):
        raise ValueError("wildcards do not apply to IP addresses; use a CIDR such as 10.0.0.0/8")
    parts: list[str] = []
    for label in labels:
        if "*" in label:
            if _WILD_LABEL_RE.fullmatch(label) is None:
                raise ValueError(
                    f"wildcard label {label!r} may hold only ASCII letters, digits, '-', '_', '*'"
                )
            parts.append(label)
        else:
            parts.append(canonical_label(label))
    if "*" not in parts[-1] and ends_in_number(parts[-1]):
        raise ValueError("a name cannot end in a number")
    if any_depth and not any("*" in part for part in parts):
        suffix = ".".join(parts)
        if len(suffix) > MAX_HOST_LENGTH - 2:
            raise ValueError(f"host longer than {MAX_HOST_LENGTH} bytes")
        return HostSelector(text, SUFFIX, value=suffix)
    wild = [i for i, part in enumerate(parts) if "*" in part]
    literal_suffix = ".".join(parts[wild[-1] + 1 :]) if wild else ".".join(parts)
    regex = (r"(?:[^.]+\.)+" if any_depth else "") + r"\.".join(map(_label_regex, parts))
    shown = ("*." if any_depth else "") + ".".join(parts)
    return HostSelector(
        text, PATTERN, value=shown, regex=re.compile(regex), literal_suffix=literal_suffix
    )


def compile_host_selector(text: str) -> HostSelector:
    """Compile one host selector; ValueError names the selector and what is wrong."""
    try:
        return _compile(text)
    except ValueError as exc:
        raise ValueError(f"host selector {text!r}: {exc}") from exc


def _compile(text: str) -> HostSelector:
    check_text(text, "selector")
    body = _unescape(text)
    if "://" in body or "@" in body:
        raise ValueError("a host selector is a host name or address, not a URL")
    if "*" in body:
        return _pattern_selector(text, body)
    if "/" in body:
        return _cidr_selector(text, body)
    if body.startswith("[") or body.count(":") > 1:
        inner = body
        if body.startswith("["):
            if not body.endswith("]"):
                raise ValueError("a host selector takes no port (use ports:)" if "]:" in body
                                 else "'[' without ']'")
            inner = body[1:-1]
        ip = ipv6_literal(inner)
        return HostSelector(text, IP, ip=ip)
    if ":" in body:
        raise ValueError("a host selector takes no port (use ports:)")
    name, ipv4 = canonical_host(body)
    if ipv4 is not None:
        return HostSelector(text, IP, ip=ipv4)
    return HostSelector(text, NAME, value=name)
