"""The proxy's resolver: a hosts file first, then the system resolver, one answer per name."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from pathlib import Path

import pytest

from gateway.proxy.resolver import (
    HostsFileError,
    ResolveError,
    Resolver,
    load_hosts_file,
    parse_hosts_file,
)


def test_hosts_file_maps_names_to_every_listed_address() -> None:
    """/etc/hosts syntax: comments, several names per line, a name on several lines."""
    table = parse_hosts_file("# pinned\n127.0.0.5 API.test git.test  # two names\n"
                             "::1 api.test\n\n10.0.0.1\tdb.internal\n")
    assert table == {"api.test": (ip_address("127.0.0.5"), ip_address("::1")),
                     "git.test": (ip_address("127.0.0.5"),),
                     "db.internal": (ip_address("10.0.0.1"),)}


def test_hosts_file_maps_ipv4_mapped_addresses_to_ipv4() -> None:
    """An IPv4-mapped IPv6 address is the IPv4 address a socket reaches."""
    assert parse_hosts_file("::ffff:10.0.0.1 db.test")["db.test"] == (ip_address("10.0.0.1"),)


@pytest.mark.parametrize(("text", "message"), [
    ("127.0.0.1", "hosts:1: expected 'ADDRESS NAME"),
    ("\n0x7f.1 api.test", "hosts:2: '0x7f.1' is not an IP address"),
    ("300.1.1.1 api.test", "is not an IP address"),
    ("127.0.0.1 10.0.0.1", "is an address, not a name"),
    ("127.0.0.1 bad..name", "hosts:1: 'bad..name'"),
])
def test_bad_hosts_lines_name_file_and_line(text: str, message: str) -> None:
    """Each unusable line is an error naming FILE:LINE."""
    with pytest.raises(HostsFileError, match=message.replace("(", r"\(")):
        parse_hosts_file(text, "hosts")


def test_unreadable_hosts_file_is_one_error(tmp_path: Path) -> None:
    """A missing or non-UTF-8 file is a HostsFileError naming it."""
    with pytest.raises(HostsFileError, match="cannot read hosts file"):
        load_hosts_file(tmp_path / "missing")
    bad = tmp_path / "hosts"
    bad.write_bytes(b"127.0.0.1 caf\xe9.test\n")
    with pytest.raises(HostsFileError, match="not UTF-8"):
        load_hosts_file(bad)


def test_resolver_answers_from_the_hosts_table_first() -> None:
    """A pinned name never reaches the system resolver."""
    resolver = Resolver({"localhost": (ip_address("127.0.0.9"),)})
    assert asyncio.run(resolver.resolve("localhost")) == [ip_address("127.0.0.9")]


def test_resolver_uses_the_system_resolver_for_other_names() -> None:
    """localhost resolves through the system to loopback addresses only."""
    found = asyncio.run(Resolver().resolve("localhost"))
    assert found and all(ip.is_loopback for ip in found)


def test_unresolvable_name_is_a_resolve_error() -> None:
    """A name that does not exist fails with a message naming it (names under .invalid)."""
    with pytest.raises(ResolveError, match=r"cannot resolve no-such-host\.invalid"):
        asyncio.run(Resolver(timeout=3).resolve("no-such-host.invalid"))
