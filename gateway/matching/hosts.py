"""The host index: every host selector of a policy, matched in a few dict lookups.

Targets are parsed in `targets` and selectors compiled in `hostselectors`; this
module indexes the compiled selectors and re-exports the public names of both, so
`gateway.matching.hosts` stays the one place to import host matching from.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import TypeVar

from gateway.matching.addresses import BadTarget, IPAddress, embedded_ipv4
from gateway.matching.hostselectors import (
    ALL,
    IP,
    NAME,
    PATTERN,
    SUFFIX,
    HostMatch,
    HostSelector,
    compile_host_selector,
    is_catch_all_host,
)
from gateway.matching.targets import NetworkTarget, parse_network_target

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


@dataclass(frozen=True, slots=True)
class _IpTable:
    """The IP selectors of one version: exact addresses, CIDRs, and those covering all.

    `zero` holds the `/0` networks and, for IPv4, the IPv6 CIDRs that span every
    IPv4-mapped address: they match every address but never exactly.
    """

    ips: dict[int, _Keys]
    nets: _NetTable
    zero: _Keys

    @classmethod
    def build(cls, ips: dict[IPAddress, list[int]],
              nets: dict[IPv4Network | IPv6Network, list[int]], zero: list[int],
              version: int) -> _IpTable:
        return cls(
            {int(ip): tuple(keys) for ip, keys in ips.items() if ip.version == version},
            _NetTable.build({n: k for n, k in nets.items() if n.version == version},
                            32 if version == 4 else 128),
            tuple(zero),
        )

    def collect(self, value: int, found: _Found, deny_only: bool) -> None:
        """Record every selector of this version that covers the address `value`."""
        keys = self.ips.get(value)
        if keys is not None:
            _add(found, keys, True, deny_only)
        for keys in self.nets.lookup(value):
            _add(found, keys, True, deny_only)
        if self.zero:
            _add(found, self.zero, False, deny_only)


def _freeze(groups: dict[_K, list[int]]) -> dict[_K, _Keys]:
    return {name: tuple(keys) for name, keys in groups.items()}


class HostIndex:
    """Every host selector of a policy, indexed so a match costs a few dict lookups.

    Exact names and IPs are dict keys; `*.suffix` is found by walking the
    target's parent domains; in-label wildcards are grouped by their literal
    suffix behind one combined regex; CIDRs are looked up once per prefix length
    present. Immutable once built, so it can be shared between threads.
    """

    __slots__ = ("_all", "_groups", "_names", "_suffixes", "_v4", "_v6")

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
            if sel.kind == ALL:
                all_keys.append(key)
            elif sel.kind == NAME:
                names.setdefault(sel.value, []).append(key)
            elif sel.kind == SUFFIX:
                suffixes.setdefault(sel.value, []).append(key)
            elif sel.kind == PATTERN:
                assert sel.regex is not None
                group = patterns.setdefault(sel.literal_suffix, {})
                group.setdefault(sel.value, (sel.regex, []))[1].append(key)
            elif sel.kind == IP:
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
        self._v4 = _IpTable.build(ips, nets, zero4, 4)
        self._v6 = _IpTable.build(ips, nets, zero6, 6)

    def match(self, target: NetworkTarget) -> list[HostMatch]:
        """Every selector key matching `target`, one HostMatch per key, ordered by key."""
        found: _Found = {}
        if self._all:
            _add(found, self._all, False, False)
        ip = target.ip
        if ip is None:
            self._match_name(target.host, found)
        elif isinstance(ip, IPv4Address):
            self._v4.collect(int(ip), found, False)
        else:
            self._v6.collect(int(ip), found, False)
            carried = embedded_ipv4(ip)
            if carried is not None:
                self._v4.collect(int(carried[1]), found, True)
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
