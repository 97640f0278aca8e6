"""Network targets: parse what a client would connect to, refusing what is ambiguous.

A target goes through the same canonicalisation as a host selector (UTS #46
mapping, lowercase, punycode, trailing dot dropped, every IPv4 spelling a resolver
accepts), so a rule matches a host however the request spells it. Anything two
parsers could read differently (backslashes, several `@`, numbers that are not
valid IPv4) is refused as bad input rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from gateway.matching.addresses import (
    CONTROL_RE,
    BadTarget,
    IPAddress,
    canonical_host,
    decode_percent,
    ipv6_literal,
    special_for_ip,
    special_for_name,
)

__all__ = ["DEFAULT_PORTS", "MAX_TARGET_LENGTH", "BadTarget", "NetworkTarget", "check_text",
           "parse_network_target"]

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


def check_text(text: str, noun: str) -> None:
    """Refuse text that no host can be read from: shared by targets and selectors.

    Raises BadTarget naming `noun` (what the text is) and the reason.
    """
    if not isinstance(text, str):
        raise BadTarget(f"{noun} is not text")
    if not text:
        raise BadTarget(f"empty {noun}")
    if len(text) > MAX_TARGET_LENGTH:
        raise BadTarget(f"{noun} longer than {MAX_TARGET_LENGTH} characters")
    if CONTROL_RE.search(text):
        raise BadTarget(f"control character in {noun}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeError as exc:
            raise BadTarget(f"{noun} is not valid Unicode") from exc


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


def request_target(connection: NetworkTarget, scheme: str, tail: str, text: str) -> NetworkTarget:
    """What `parse_network_target(text)` gives for `text` = `scheme://AUTHORITY` + `tail`,
    where `connection` is AUTHORITY (with its port) parsed already: a proxy decides many
    requests on one connection without reading its authority again. `tail` must be an
    origin-form request target (starting with `/`)."""
    check_text(text, "target")
    path_end = _PATH_END_RE.search(tail)
    path = (tail if path_end is None else tail[: path_end.start()]) or "/"
    return NetworkTarget(connection.host, connection.ip, connection.port, scheme.lower(), path,
                         connection.special)


def parse_network_target(text: str, default_port: int | None = None) -> NetworkTarget:
    """Parse `host`, `host:port`, `[v6]:port`, `user@host` or a URL into a NetworkTarget.

    Raises BadTarget with the reason when the target is not something every
    client would read the same way.
    """
    check_text(text, "target")
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
