"""The path index: many path globs, matched in time that barely grows with their count.

Literal paths and directory prefixes sit in a dict walked along the target's
ancestors; literal names, `*.ext` suffixes and `name*` prefixes in dicts per
component; regular expressions only for what is left, grouped so that one call
rejects a miss. Paths are normalised in `pathnames` and globs compiled in
`pathglobs`; their public names are re-exported here, so `gateway.matching.paths`
stays the one place to import path matching from.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.matching.pathglobs import (
    MAX_PATTERN,
    PathGlob,
    compile_path_glob,
    is_catch_all_path,
    segments_regex,
)
from gateway.matching.pathnames import (
    MAX_PATH,
    MAX_SYMLINKS,
    BadPath,
    normalise_path,
    resolve_path,
)

__all__ = [
    "MAX_PATH",
    "MAX_PATTERN",
    "MAX_SYMLINKS",
    "BadPath",
    "PathGlob",
    "PathIndex",
    "compile_path_glob",
    "is_catch_all_path",
    "normalise_path",
    "resolve_path",
]

_FAN_OUT = 16


class _Group:
    """Regexes tried at one place in a path; a combined regex per node rejects misses.

    Members are `(regex, min_start, key)`: the key matches when its regex matches at
    the position and the caller's start index is at least `min_start`.
    """

    __slots__ = ("_children", "_combined", "_members")

    def __init__(self, members: Sequence[tuple[str, int, int]]) -> None:
        self._combined = (
            re.compile("|".join(f"(?:{regex})" for regex, _, _ in members))
            if len(members) > 1 else None
        )
        if len(members) <= _FAN_OUT:
            self._members = tuple((re.compile(r), lo, key) for r, lo, key in members)
            self._children: tuple[_Group, ...] = ()
        else:
            size = -(-len(members) // _FAN_OUT)
            self._members = ()
            self._children = tuple(
                _Group(members[i:i + size]) for i in range(0, len(members), size)
            )

    def collect(self, subject: str, pos: int, start: int, keys: set[int]) -> None:
        """Add to `keys` every member matching `subject` at `pos`."""
        if self._combined is not None and self._combined.match(subject, pos) is None:
            return
        for compiled, lo, key in self._members:
            if start >= lo and compiled.match(subject, pos) is not None:
                keys.add(key)
        for child in self._children:
            child.collect(subject, pos, start, keys)


def _group(members: Sequence[tuple[str, int, int]]) -> _Group | None:
    return _Group(members) if members else None


@dataclass(frozen=True, slots=True)
class _Prefix:
    """Patterns whose literal leading directories are one path: exact ones and the rest."""

    exact: tuple[int, ...]
    wild: _Group | None  # regexes for the segments after the prefix


@dataclass(frozen=True, slots=True)
class _Name:
    """Unanchored patterns keyed by a literal component name."""

    direct: tuple[tuple[int, int], ...]            # (min_start, key): the name alone
    offsets: tuple[tuple[int, _Group], ...]        # the name is segment `offset` of many


class PathIndex:
    """Many path patterns, each with a key; `match` lists the keys matching one path.

    Empty means no pattern matches anything. Built once per policy; immutable and
    safe to share between threads.
    """

    __slots__ = ("_components", "_depth", "_leads", "_loose", "_names", "_prefix_lengths",
                 "_prefixes", "_starts", "_suffixes")

    def __init__(self, patterns: Sequence[tuple[str, int]]) -> None:
        prefix_exact: dict[str, list[int]] = defaultdict(list)
        prefix_wild: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        direct: dict[str, list[tuple[int, int]]] = defaultdict(list)
        offsets: dict[str, dict[int, list[tuple[str, int, int]]]] = defaultdict(
            lambda: defaultdict(list))
        suffixes: dict[str, list[tuple[int, int]]] = defaultdict(list)
        starts: dict[str, list[tuple[int, int]]] = defaultdict(list)
        leads: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        components: list[tuple[str, int, int]] = []
        loose: list[tuple[str, int, int]] = []
        depth: list[tuple[int, int]] = []
        for pattern, key in patterns:
            glob = compile_path_glob(pattern)
            segs = glob.segments
            if glob.anchored:
                count = 0
                while count < len(segs) and segs[count].literal is not None:
                    count += 1
                prefix = "/" + "/".join(s.literal for s in segs[:count])  # type: ignore[misc]
                if count == len(segs):
                    prefix_exact[prefix].append(key)
                else:
                    prefix_wild[prefix].append((segments_regex(segs[count:], None), 0, key))
                continue
            lo, first = 0, 0  # leading `*` and `**` segments only set a minimum depth
            while first < len(segs) and (segs[first].star or segs[first].globstar):
                lo += segs[first].star
                first += 1
            rest = segs[first:]
            if not rest:
                depth.append((lo, key))
            elif len(rest) == 1 and rest[0].literal is not None:
                direct[rest[0].literal].append((lo, key))
            elif len(rest) == 1 and rest[0].suffix is not None:
                suffixes[rest[0].suffix].append((lo, key))
            elif len(rest) == 1 and rest[0].prefix is not None:
                starts[rest[0].prefix].append((lo, key))
            elif len(rest) == 1:
                target = leads[rest[0].lead] if rest[0].lead else components
                target.append((rest[0].regex + "/", lo, key))
            else:
                offset = next((i for i, s in enumerate(rest) if s.literal is not None
                               or s.globstar), None)
                name = rest[offset].literal if offset is not None else None
                if offset is not None and name is not None:
                    offsets[name][offset].append((segments_regex(rest, None), lo, key))
                else:
                    loose.append((segments_regex(rest, lo), 0, key))
        self._prefixes = {
            p: _Prefix(tuple(prefix_exact.get(p, ())), _group(prefix_wild.get(p, ())))
            for p in prefix_exact.keys() | prefix_wild.keys()
        }
        self._names = {
            n: _Name(tuple(direct.get(n, ())),
                     tuple((o, _Group(m)) for o, m in sorted(offsets[n].items())
                           ) if n in offsets else ())
            for n in direct.keys() | offsets.keys()
        }
        self._suffixes = {s: tuple(v) for s, v in suffixes.items()}
        self._starts = {s: tuple(v) for s, v in starts.items()}
        self._prefix_lengths = tuple(sorted({len(s) for s in starts}))
        self._leads = {c: _Group(v) for c, v in leads.items()}
        self._components = _group(components)
        self._loose = _group(loose)
        self._depth = tuple(sorted(depth))

    def match(self, path: str) -> list[int]:
        """Sorted keys of every pattern matching `path`.

        `path` must be normalised (`normalise_path` or `resolve_path`): other spellings
        of a path are not recognised as the same file.
        """
        if not path.startswith("/"):
            raise BadPath("path is not absolute")
        keys: set[int] = set()
        if path == "/":
            names: list[str] = []
            subject = "/"
        else:
            names = path[1:].split("/")
            subject = path + "/"
        for lo, key in self._depth:
            if lo > len(names):
                break
            keys.add(key)
        prefixes = self._prefixes
        if prefixes:
            node = prefixes.get("/")
            if node is not None:
                keys.update(node.exact)
                if node.wild is not None:
                    node.wild.collect(subject, 1, 0, keys)
        by_name, suffixes, leads, components = (
            self._names, self._suffixes, self._leads, self._components)
        name_starts, prefix_lengths = self._starts, self._prefix_lengths
        starts: list[int] = []
        pos = 1
        for index, name in enumerate(names):
            starts.append(pos)
            end = pos + len(name)
            if prefixes:
                node = prefixes.get(path[:end])
                if node is not None:
                    keys.update(node.exact)
                    if node.wild is not None:
                        node.wild.collect(subject, end + 1, 0, keys)
            if by_name:
                entry = by_name.get(name)
                if entry is not None:
                    for lo, key in entry.direct:
                        if index >= lo:
                            keys.add(key)
                    for offset, group in entry.offsets:
                        begin = index - offset
                        if begin >= 0:
                            group.collect(subject, starts[begin], begin, keys)
            if suffixes:
                dot = name.find(".")
                while dot >= 0:
                    found = suffixes.get(name[dot:])
                    if found is not None:
                        for lo, key in found:
                            if index >= lo:
                                keys.add(key)
                    dot = name.find(".", dot + 1)
            for length in prefix_lengths:
                if length > len(name):
                    break
                found = name_starts.get(name[:length])
                if found is not None:
                    for lo, key in found:
                        if index >= lo:
                            keys.add(key)
            if leads:
                group = leads.get(name[:1])
                if group is not None:
                    group.collect(subject, pos, index, keys)
            if components is not None:
                components.collect(subject, pos, index, keys)
            pos = end + 1
        if self._loose is not None:
            self._loose.collect(subject, 1, 0, keys)
        return sorted(keys)

