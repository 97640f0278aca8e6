"""Name resolution for the proxy: once per connection, before the address check.

The proxy dials exactly the address it checked, so a name is never looked up twice
(DNS rebinding between the check and the connect is closed). A hosts file, read at
start, answers first: it pins names to addresses (internal services, test hosts)
without editing the machine's /etc/hosts.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address

from gateway.errors import GatewayError
from gateway.matching.addresses import BadTarget, canonical_host, canonical_ip, parse_ipv6

IPAddress = IPv4Address | IPv6Address
RESOLVE_TIMEOUT = 5.0
MAX_HOSTS_BYTES = 1 << 20


class HostsFileError(GatewayError):
    pass


class ResolveError(Exception):
    """A name that could not be resolved: the connection fails, nothing is dialled."""


def parse_hosts_file(text: str, file: str = "<hosts>") -> dict[str, tuple[IPAddress, ...]]:
    """Read /etc/hosts syntax: `ADDRESS NAME [NAME...]`, `#` comments. A name listed on
    several lines gets every address, in order. Errors name FILE:LINE."""
    table: dict[str, list[IPAddress]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 2:
            raise HostsFileError(f"{file}:{number}: expected 'ADDRESS NAME [NAME...]'")
        try:
            ip = _parse_address(fields[0])
        except ValueError:
            raise HostsFileError(f"{file}:{number}: {fields[0]!r} is not an IP address") \
                from None
        for name in fields[1:]:
            try:
                host, as_ip = canonical_host(name)
            except BadTarget as e:
                raise HostsFileError(f"{file}:{number}: {name!r}: {e}") from None
            if as_ip is not None or ":" in host:
                raise HostsFileError(f"{file}:{number}: {name!r} is an address, not a name")
            table.setdefault(host, []).append(ip)
    return {name: tuple(ips) for name, ips in table.items()}


def load_hosts_file(path: str | os.PathLike[str]) -> dict[str, tuple[IPAddress, ...]]:
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_HOSTS_BYTES + 1)
    except OSError as e:
        raise HostsFileError(f"{name}: cannot read hosts file: {e.strerror or e}") from None
    if len(raw) > MAX_HOSTS_BYTES:
        raise HostsFileError(f"{name}: hosts file is larger than {MAX_HOSTS_BYTES} bytes")
    try:
        return parse_hosts_file(raw.decode("utf-8"), name)
    except UnicodeDecodeError:
        raise HostsFileError(f"{name}: hosts file is not UTF-8") from None


def _parse_address(text: str) -> IPAddress:
    if ":" in text:
        return parse_ipv6(text)
    return IPv4Address(text)  # strict dotted quad: a hosts file is no place for 0x7f.1


class Resolver:
    """Resolves a canonical host name to its addresses: the hosts table, else the
    system resolver, bounded by `timeout`. IPv4-mapped answers become IPv4."""

    def __init__(self, hosts: Mapping[str, tuple[IPAddress, ...]] | None = None,
                 timeout: float = RESOLVE_TIMEOUT) -> None:
        self.hosts = dict(hosts or {})
        self.timeout = timeout

    async def resolve(self, host: str) -> list[IPAddress]:
        pinned = self.hosts.get(host)
        if pinned is not None:
            return list(pinned)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.timeout)
        except TimeoutError:
            raise ResolveError(f"cannot resolve {host}: no answer within "
                               f"{self.timeout:g} s") from None
        except (OSError, UnicodeError) as e:
            raise ResolveError(f"cannot resolve {host}: {getattr(e, 'strerror', None) or e}") \
                from None
        found: list[IPAddress] = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = str(sockaddr[0]).split("%", 1)[0]
            ip = canonical_ip(IPv6Address(text)) if family == socket.AF_INET6 \
                else IPv4Address(text)
            if ip not in found:
                found.append(ip)
        if not found:
            raise ResolveError(f"cannot resolve {host}: no addresses")
        return found
