"""Network targets and host selectors: parse, canonicalise, index, match.

A target and a selector go through the same canonicalisation (UTS #46 mapping,
lowercase, punycode, trailing dot dropped, every IPv4 spelling a resolver
accepts), so a rule matches a host however the request spells it. Anything two
parsers could read differently (backslashes, several `@`, numbers that are not
valid IPv4) is refused as bad input rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from types import MappingProxyType
from typing import TypeVar

from gateway.matching.addresses import (
    CONTROL_RE,
    MAX_HOST_LENGTH,
    BadTarget,
    IPAddress,
    canonical_host,
    canonical_label,
    decode_percent,
    embedded_ipv4,
    ends_in_number,
    ipv6_literal,
    map_uts46,
    special_for_ip,
    special_for_name,
)

__all__ = [
    "BadTarget",
    "HostIndex",
    "HostMatch",
    "HostSelector",
    "NetworkTarget",
    "compile_host_selector",
    "is_catch_all_host",
    "parse_network_target",
]

MAX_TARGET_LENGTH = 4096
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType(
    {"http": 80, "ws": 80, "https": 443, "wss": 443}
)

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_PORT_RE = re.compile(r"[0-9]+")
_AUTHORITY_END_RE = re.compile(r"[/?#]")
_PATH_END_RE = re.compile(r"[?#]")


@dataclass(frozen=True, slots=True)
class NetworkTarget:
    """A canonical network target: what a client would really connect to."""

    host: str
    ip: IPv4Address | IPv6Address | None
    port: int | None
    scheme: str | None
    path: str | None
    special: str | None


@dataclass(frozen=True, slots=True)
class HostMatch:
    """One selector key that matched, and how strongly."""

    key: int
    exact: bool
    deny_only: bool


def _port(text: str) -> int:
    if not text:
        raise BadTarget("empty port")
    if _PORT_RE.fullmatch(text) is None:
        raise BadTarget(f"port {text[:20]!r} is not a number")
    value = int(text) if len(text) <= 10 else 1 << 40
    if not 1 <= value <= 65535:
        shown = text if len(text) <= 10 else text[:10] + "..."
        raise BadTarget(f"port {shown} outside 1-65535")
    return value


def _host_and_port(hostport: str, bare_ipv6: bool) -> tuple[str, IPAddress | None, int | None]:
    """Split `host[:port]` / `[v6][:port]` and canonicalise the host."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise BadTarget("'[' without ']'")
        ip = ipv6_literal(hostport[1:end])
        rest = hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadTarget("unexpected text after ']'")
        return str(ip), ip, _port(rest[1:]) if rest else None
    if hostport.count(":") > 1:
        if not bare_ipv6:
            raise BadTarget("an IPv6 literal with a port or in a URL must be in brackets")
        ip = ipv6_literal(hostport)
        return str(ip), ip, None
    host, colon, port_text = hostport.partition(":")
    port = _port(port_text) if colon else None
    name, ipv4 = canonical_host(decode_percent(host) if "%" in host else host)
    return name, ipv4, port


def parse_network_target(text: str, default_port: int | None = None) -> NetworkTarget:
    """Parse `host`, `host:port`, `[v6]:port`, `user@host` or a URL into a NetworkTarget.

    Raises BadTarget with the reason when the target is not something every
    client would read the same way.
    """
    if not isinstance(text, str):
        raise BadTarget("target is not text")
    if not text:
        raise BadTarget("empty target")
    if len(text) > MAX_TARGET_LENGTH:
        raise BadTarget(f"target longer than {MAX_TARGET_LENGTH} characters")
    if CONTROL_RE.search(text):
        raise BadTarget("control character in target")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeError as exc:
            raise BadTarget("target is not valid Unicode") from exc
    scheme_match = _SCHEME_RE.match(text)
    scheme: str | None = None
    path: str | None = None
    authority = text
    if scheme_match is not None:
        scheme = scheme_match[1].lower()
        rest = text[scheme_match.end() :]
        end = _AUTHORITY_END_RE.search(rest)
        authority = rest if end is None else rest[: end.start()]
        tail = "" if end is None else rest[end.start() :]
        path_end = _PATH_END_RE.search(tail)
        path = (tail if path_end is None else tail[: path_end.start()]) or "/"
    if "\\" in authority:
        raise BadTarget("backslash in the authority")
    at_count = authority.count("@")
    if at_count > 1:
        raise BadTarget("more than one '@' in the authority")
    hostport = authority.rpartition("@")[2]
    if not hostport:
        raise BadTarget("empty host")
    host, ip, port = _host_and_port(hostport, bare_ipv6=scheme is None and at_count == 0)
    if port is None:
        port = DEFAULT_PORTS.get(scheme, default_port) if scheme else default_port
    special = special_for_name(host) if ip is None else special_for_ip(ip)
    return NetworkTarget(host, ip, port, scheme, path, special)


# --- selectors ---------------------------------------------------------------

_WILD_LABEL_RE = re.compile(r"[a-z0-9_*-]{1,63}")
_IP_LIKE_LABEL_RE = re.compile(r"[0-9*]+")
_PREFIX_RE = re.compile(r"[0-9]{1,3}")
_MAPPED_V6 = IPv6Network("::ffff:0:0/96")
_ALL = "all"
_NAME = "name"
_SUFFIX = "suffix"
_PATTERN = "pattern"
_IP = "ip"
_CIDR = "cidr"


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
        if self.kind == _IP:
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
        if self.kind == _ALL:
            return HostMatch(key, False, False)
        if target.ip is None:
            host = target.host
            if self.kind == _NAME:
                hit, exact = host == self.value, True
            elif self.kind == _SUFFIX:
                hit, exact = host.endswith("." + self.value), False
            elif self.kind == _PATTERN:
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
            return HostSelector(text, _CIDR, network=network4)
        covers_ipv4 = network.supernet_of(_MAPPED_V6)
        return HostSelector(text, _CIDR, network=network, covers_ipv4=covers_ipv4)
    return HostSelector(text, _CIDR, network=network)


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
        return HostSelector(text, _ALL)
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
        return HostSelector(text, _SUFFIX, value=suffix)
    wild = [i for i, part in enumerate(parts) if "*" in part]
    literal_suffix = ".".join(parts[wild[-1] + 1 :]) if wild else ".".join(parts)
    regex = (r"(?:[^.]+\.)+" if any_depth else "") + r"\.".join(map(_label_regex, parts))
    shown = ("*." if any_depth else "") + ".".join(parts)
    return HostSelector(
        text, _PATTERN, value=shown, regex=re.compile(regex), literal_suffix=literal_suffix
    )


def compile_host_selector(text: str) -> HostSelector:
    """Compile one host selector; ValueError names the selector and what is wrong."""
    try:
        return _compile(text)
    except ValueError as exc:
        raise ValueError(f"host selector {text!r}: {exc}") from exc


def _compile(text: str) -> HostSelector:
    if not isinstance(text, str):
        raise ValueError("not text")
    if not text:
        raise ValueError("empty")
    if len(text) > MAX_TARGET_LENGTH:
        raise ValueError(f"longer than {MAX_TARGET_LENGTH} characters")
    if CONTROL_RE.search(text):
        raise ValueError("control character")
    try:
        text.encode("utf-8")
    except UnicodeError as exc:
        raise ValueError("not valid Unicode") from exc
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
        return HostSelector(text, _IP, ip=ip)
    if ":" in body:
        raise ValueError("a host selector takes no port (use ports:)")
    name, ipv4 = canonical_host(body)
    if ipv4 is not None:
        return HostSelector(text, _IP, ip=ipv4)
    return HostSelector(text, _NAME, value=name)


# --- index -------------------------------------------------------------------

_Keys = tuple[int, ...]
_Found = dict[int, tuple[bool, bool]]
_K = TypeVar("_K", bound=Hashable)


def _add(found: _Found, keys: _Keys, exact: bool, deny_only: bool) -> None:
    """Record matches; one entry per key, keeping the strongest way it matched.

    A match that counts for allow beats a deny-only one; among equals, exact wins.
    """
    for key in keys:
        old = found.get(key)
        if old is None or (old[1] and not deny_only):
            found[key] = (exact, deny_only)
        elif old[1] == deny_only and exact and not old[0]:
            found[key] = (True, deny_only)


_FILTER_AT = 8  # buckets larger than this get a combined regex in front


@dataclass(frozen=True, slots=True)
class _Bucket:
    """Patterns sharing a literal prefix; a big bucket has one combined regex as a filter."""

    combined: re.Pattern[str] | None
    members: tuple[tuple[re.Pattern[str], _Keys], ...]

    @classmethod
    def build(cls, members: list[tuple[re.Pattern[str], _Keys]]) -> _Bucket:
        combined = None
        if len(members) > _FILTER_AT:
            combined = re.compile("|".join(f"(?:{regex.pattern})" for regex, _ in members))
        return cls(combined, tuple(members))

    def keys(self, host: str) -> list[_Keys]:
        if self.combined is not None and self.combined.fullmatch(host) is None:
            return []
        return [keys for regex, keys in self.members if regex.fullmatch(host) is not None]


@dataclass(frozen=True, slots=True)
class _PatternGroup:
    """In-label wildcard patterns sharing a literal suffix, bucketed by literal prefix.

    Only buckets whose prefix starts the host are tried, so a hit costs a few
    regexes, not one per pattern.
    """

    lengths: tuple[int, ...]
    buckets: dict[str, _Bucket]

    @classmethod
    def build(cls, patterns: dict[str, tuple[re.Pattern[str], list[int]]]) -> _PatternGroup:
        by_prefix: dict[str, list[tuple[re.Pattern[str], _Keys]]] = {}
        for shown, (regex, keys) in patterns.items():
            prefix = "" if shown.startswith("*") else shown.partition("*")[0]
            by_prefix.setdefault(prefix, []).append((regex, tuple(keys)))
        buckets = {prefix: _Bucket.build(members) for prefix, members in by_prefix.items()}
        return cls(tuple(sorted({len(prefix) for prefix in buckets})), buckets)

    def keys(self, host: str) -> list[_Keys]:
        hits: list[_Keys] = []
        for length in self.lengths:
            if length > len(host):
                break
            bucket = self.buckets.get(host[:length])
            if bucket is not None:
                hits.extend(bucket.keys(host))
        return hits


@dataclass(frozen=True, slots=True)
class _NetTable:
    """CIDRs of one IP version grouped by prefix length: mask, then one dict lookup per length."""

    lengths: tuple[tuple[int, dict[int, _Keys]], ...]

    @classmethod
    def build(cls, nets: dict[IPv4Network | IPv6Network, list[int]], bits: int) -> _NetTable:
        by_length: dict[int, dict[int, _Keys]] = {}
        for net, keys in nets.items():
            by_length.setdefault(net.prefixlen, {})[int(net.network_address)] = tuple(keys)
        full = (1 << bits) - 1
        return cls(tuple((full ^ (full >> n), by_length[n]) for n in sorted(by_length)))

    def lookup(self, value: int) -> list[_Keys]:
        hits = []
        for mask, table in self.lengths:
            keys = table.get(value & mask)
            if keys is not None:
                hits.append(keys)
        return hits


def _freeze(groups: dict[_K, list[int]]) -> dict[_K, _Keys]:
    return {name: tuple(keys) for name, keys in groups.items()}


class HostIndex:
    """Every host selector of a policy, indexed so a match costs a few dict lookups.

    Exact names and IPs are dict keys; `*.suffix` is found by walking the
    target's parent domains; in-label wildcards are grouped by their literal
    suffix behind one combined regex; CIDRs are looked up once per prefix length
    present. Immutable once built, so it can be shared between threads.
    """

    __slots__ = (
        "_all", "_groups", "_ips4", "_ips6", "_names", "_nets4", "_nets6", "_suffixes",
        "_zero4", "_zero6",
    )

    def __init__(self, selectors: Sequence[tuple[str, int]]) -> None:
        names: dict[str, list[int]] = {}
        suffixes: dict[str, list[int]] = {}
        patterns: dict[str, dict[str, tuple[re.Pattern[str], list[int]]]] = {}
        ips: dict[IPAddress, list[int]] = {}
        nets: dict[IPv4Network | IPv6Network, list[int]] = {}
        all_keys: list[int] = []
        zero4: list[int] = []
        zero6: list[int] = []
        for text, key in selectors:
            sel = compile_host_selector(text)
            if sel.kind == _ALL:
                all_keys.append(key)
            elif sel.kind == _NAME:
                names.setdefault(sel.value, []).append(key)
            elif sel.kind == _SUFFIX:
                suffixes.setdefault(sel.value, []).append(key)
            elif sel.kind == _PATTERN:
                assert sel.regex is not None
                group = patterns.setdefault(sel.literal_suffix, {})
                group.setdefault(sel.value, (sel.regex, []))[1].append(key)
            elif sel.kind == _IP:
                assert sel.ip is not None
                ips.setdefault(sel.ip, []).append(key)
            else:
                assert sel.network is not None
                if sel.covers_ipv4:
                    zero4.append(key)
                if sel.network.prefixlen == 0:
                    (zero4 if sel.network.version == 4 else zero6).append(key)
                else:
                    nets.setdefault(sel.network, []).append(key)
        self._all: _Keys = tuple(all_keys)
        self._names = _freeze(names)
        self._suffixes = _freeze(suffixes)
        self._groups = {suffix: _PatternGroup.build(group) for suffix, group in patterns.items()}
        self._ips4 = {int(ip): tuple(k) for ip, k in ips.items() if ip.version == 4}
        self._ips6 = {int(ip): tuple(k) for ip, k in ips.items() if ip.version == 6}
        self._nets4 = _NetTable.build({n: k for n, k in nets.items() if n.version == 4}, 32)
        self._nets6 = _NetTable.build({n: k for n, k in nets.items() if n.version == 6}, 128)
        self._zero4: _Keys = tuple(zero4)
        self._zero6: _Keys = tuple(zero6)

    def match(self, target: NetworkTarget) -> list[HostMatch]:
        """Every selector key matching `target`, one HostMatch per key, ordered by key."""
        found: _Found = {}
        if self._all:
            _add(found, self._all, False, False)
        ip = target.ip
        if ip is None:
            self._match_name(target.host, found)
        elif isinstance(ip, IPv4Address):
            self._match_ipv4(int(ip), found, False)
        else:
            value = int(ip)
            keys = self._ips6.get(value)
            if keys is not None:
                _add(found, keys, True, False)
            for keys in self._nets6.lookup(value):
                _add(found, keys, True, False)
            if self._zero6:
                _add(found, self._zero6, False, False)
            carried = embedded_ipv4(ip)
            if carried is not None:
                self._match_ipv4(int(carried[1]), found, True)
        if not found:
            return []
        return [HostMatch(key, ex, deny) for key, (ex, deny) in sorted(found.items())]

    def _match_name(self, host: str, found: _Found) -> None:
        keys = self._names.get(host)
        if keys is not None:
            _add(found, keys, True, False)
        suffixes, groups = self._suffixes, self._groups
        if not (suffixes or groups):
            return
        dot = host.find(".")
        while dot >= 0:
            parent = host[dot + 1 :]
            keys = suffixes.get(parent)
            if keys is not None:
                _add(found, keys, False, False)
            group = groups.get(parent)
            if group is not None:
                for keys in group.keys(host):
                    _add(found, keys, False, False)
            dot = host.find(".", dot + 1)
        group = groups.get("")
        if group is not None:
            for keys in group.keys(host):
                _add(found, keys, False, False)

    def _match_ipv4(self, value: int, found: _Found, deny_only: bool) -> None:
        keys = self._ips4.get(value)
        if keys is not None:
            _add(found, keys, True, deny_only)
        for keys in self._nets4.lookup(value):
            _add(found, keys, True, deny_only)
        if self._zero4:
            _add(found, self._zero4, False, deny_only)
