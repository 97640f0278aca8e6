"""File paths and path globs: normalise, resolve like the kernel, match many globs fast.

Targets are compared as normalised absolute paths (`.`, `..` and `//` folded). Globs
are gitignore-like (docs/policy.md, "Paths"): `*` and `?` stay within one segment,
`**` spans segments, `[...]` classes, `\\c` is a literal `c`. A pattern without a
leading `/` matches at any depth, and a pattern that matches a directory matches
everything beneath it. Matching is case-sensitive and byte-exact: no Unicode
normalisation, as on Linux.

`PathIndex` answers "which patterns match" in time that barely grows with the
pattern count: literal paths and directory prefixes in a dict walked along the
target's ancestors, literal names, `*.ext` suffixes and `name*` prefixes in dicts per
component, and regular expressions only for what is left, grouped so that one call
rejects a miss.
"""

from __future__ import annotations

import os
import re
import stat
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_PATH = 4096
"""Longest path accepted, in UTF-8 bytes (Linux PATH_MAX)."""

MAX_PATTERN = 16384
"""Longest pattern accepted: variables double their length by escaping."""

MAX_SYMLINKS = 40
"""Symbolic links followed in one resolution before giving up, as Linux does."""

_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class BadPath(ValueError):
    """A path that cannot be judged; str(e) is the reason."""


def _check(text: str, what: str) -> None:
    """Refuse what no file name may hold, or what the kernel would refuse."""
    if not isinstance(text, str):
        raise BadPath(f"{what} is not a string")
    if not text:
        raise BadPath(f"empty {what}")
    if len(text) > MAX_PATH or (
        not text.isascii() and len(text.encode("utf-8", "surrogatepass")) > MAX_PATH
    ):
        raise BadPath(f"{what} longer than {MAX_PATH} bytes")
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        raise BadPath(f"{what} contains {_bad_char(bad.group())}")


def _bad_char(char: str) -> str:
    if char == "\x00":
        return "a NUL byte"
    if "\ud800" <= char <= "\udfff":
        return "undecodable bytes"
    return f"a control character (U+{ord(char):04X})"


def _fold(path: str) -> str:
    """Fold `.`, `..` and repeated slashes of an absolute path, lexically."""
    if not (
        "//" in path or "/./" in path or "/../" in path or path.endswith(("/", "/.", "/.."))
    ):
        return path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def normalise_path(path: str, cwd: str) -> str:
    """The absolute, lexically folded form of `path`; relative paths are taken from `cwd`.

    A leading `//` is `/`, as on Linux. Raises BadPath with the reason for input that
    names no file (empty, NUL or control characters, undecodable bytes, too long).
    """
    _check(path, "path")
    if not path.startswith("/"):
        _check(cwd, "cwd")
        if not cwd.startswith("/"):
            raise BadPath("cwd is not absolute")
        path = cwd + "/" + path
    folded = _fold(path)
    if len(folded) > MAX_PATH and len(folded.encode("utf-8")) > MAX_PATH:
        raise BadPath(f"path longer than {MAX_PATH} bytes")
    return folded


def resolve_path(path: str, cwd: str | None = None) -> str:
    """The path the kernel would reach: symlinks followed component by component.

    Takes the path as written (absolute, or relative to `cwd`), before lexical folding:
    a `..` after a symlink leaves the link's target, so `w/link/../key` with
    `link -> /secret/x` is `/secret/key`. The part from the first missing component
    on is kept lexically (lookups resume once `..` climbs back out of it). Loops, and
    components that cannot be examined, raise BadPath: they fail closed.
    """
    _check(path, "path")
    if not path.startswith("/"):
        if cwd is None:
            raise BadPath("path is not absolute")
        _check(cwd, "cwd")
        if not cwd.startswith("/"):
            raise BadPath("cwd is not absolute")
        path = cwd + "/" + path
    todo = path.split("/")
    todo.reverse()
    done: list[str] = []
    missing_from: int | None = None  # index in `done` of the first missing component
    links = 0
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            if done:
                done.pop()
            if missing_from is not None and len(done) <= missing_from:
                missing_from = None
            continue
        done.append(name)
        if missing_from is not None:
            continue
        current = "/" + "/".join(done)
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            missing_from = len(done) - 1
            continue
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise BadPath(f"cannot resolve {current}: {reason}") from None
        if not stat.S_ISLNK(info.st_mode):
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise BadPath(f"too many levels of symbolic links at {current}")
        try:
            target = os.readlink(current)
        except OSError as e:
            raise BadPath(f"cannot resolve {current}: {e.strerror}") from None
        done.pop()
        if target.startswith("/"):
            done.clear()
        parts = target.split("/")
        parts.reverse()
        todo.extend(parts)
        if len(todo) > MAX_PATH * (MAX_SYMLINKS + 1):
            raise BadPath(f"symbolic link targets too long at {current}")
    resolved = "/" + "/".join(done)
    _check(resolved, "resolved path")
    return resolved


# --- globs -----------------------------------------------------------------------

# Segment tokens: a literal character is a 1-char str; wildcards are tuples, told apart
# by identity (`*`, `?`) or as ("[", regex) for a bracket expression.
_WILD_STAR = ("*",)
_WILD_ANY = ("?",)

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "blank": " \t", "cntrl": "\x00-\x1f\x7f",
    "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@[-`{-~", "space": " \t\n\r\f\v", "upper": "A-Z", "xdigit": "0-9A-Fa-f",
}


def _cls_char(char: str) -> str:
    return f"\\U{ord(char):08x}"


def _posix_class(body: str) -> str:
    """A POSIX class body such as `0-9A-Za-z` as escaped regex class items."""
    out, i = [], 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            out.append(_cls_char(body[i]) + "-" + _cls_char(body[i + 2]))
            i += 3
        else:
            out.append(_cls_char(body[i]))
            i += 1
    return "".join(out)


def _parse_class(pattern: str, start: int) -> tuple[str, int]:
    """Parse `[...]` at `start`; return the regex for one non-slash character and the end."""
    i, n = start + 1, len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            raise ValueError(f"unterminated [ in path pattern at offset {start}")
        char = pattern[i]
        if char == "]" and not first:
            break
        first = False
        if char == "[" and pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            name = pattern[i + 2:close] if close >= 0 else ""
            if close >= 0 and name.isalpha():
                if name not in _POSIX_CLASSES:
                    raise ValueError(f"unknown character class [:{name}:] in path pattern")
                items.append(_posix_class(_POSIX_CLASSES[name]))
                i = close + 2
                continue
        if char == "\\":
            i += 1
            if i >= n:
                raise ValueError("path pattern ends with a lone backslash")
            char = pattern[i]
        low = char
        i += 1
        if i + 1 < n and pattern[i] == "-" and pattern[i + 1] != "]":
            i += 1
            high = pattern[i]
            if high == "\\":
                i += 1
                if i >= n:
                    raise ValueError("path pattern ends with a lone backslash")
                high = pattern[i]
            i += 1
            if high < low:
                raise ValueError(f"bad range {low}-{high} in path pattern")
            items.append(_cls_char(low) + "-" + _cls_char(high))
        else:
            items.append(_cls_char(low))
    body = "".join(items)
    if negate:
        return f"[^/{body}]", i + 1
    if re.match(f"[{body}]", "/"):  # a class never matches the separator
        return f"(?!/)[{body}]", i + 1
    return f"[{body}]", i + 1


@dataclass(frozen=True, slots=True)
class _Seg:
    """One pattern segment: a glob over one path component, or `**`."""

    regex: str                 # matches one whole component (never a slash)
    literal: str | None        # the component's text when there is no wildcard
    globstar: bool = False     # `**`: any number of components, none included
    star: bool = False         # a lone `*`: exactly one component, any name
    suffix: str | None = None  # `*` then a literal starting with `.`: that literal
    prefix: str | None = None  # a literal then `*`: that literal
    lead: str = ""             # the first character when it is literal


_GLOBSTAR = _Seg(regex="", literal=None, globstar=True)


def _segment(tokens: list[str | tuple[str, ...]]) -> _Seg:
    """Build a segment from tokens: literal 1-char strings or wildcard tuples."""
    if len(tokens) == 2 and tokens[0] is _WILD_STAR and tokens[1] is _WILD_STAR:
        return _GLOBSTAR
    merged: list[str | tuple[str, ...]] = []
    for token in tokens:
        if not (token is _WILD_STAR and merged and merged[-1] is _WILD_STAR):
            merged.append(token)
    parts: list[str] = []
    for token in merged:
        if isinstance(token, str):
            parts.append(re.escape(token))
        elif token is _WILD_STAR:
            parts.append("[^/]*")
        elif token is _WILD_ANY:
            parts.append("[^/]")
        else:
            parts.append(token[1])
    rest = merged[1:]
    literal = "".join(merged) if all(isinstance(t, str) for t in merged) else None  # type: ignore[arg-type]
    suffix = None
    if merged[0] is _WILD_STAR and rest and all(isinstance(t, str) for t in rest):
        text = "".join(rest)  # type: ignore[arg-type]
        suffix = text if text.startswith(".") else None
    prefix = None
    if merged[-1] is _WILD_STAR and len(merged) > 1 and all(isinstance(t, str)
                                                             for t in merged[:-1]):
        prefix = "".join(merged[:-1])  # type: ignore[arg-type]
    lead = merged[0] if isinstance(merged[0], str) else ""
    return _Seg(regex="".join(parts), literal=literal, star=merged == [_WILD_STAR],
                suffix=suffix, prefix=prefix, lead=lead)


def _parse(pattern: str) -> tuple[bool, list[_Seg]]:
    """Split a pattern into segments; fold `.` and literal `x/..`; tidy `**` runs."""
    if not isinstance(pattern, str):
        raise ValueError("path pattern is not a string")
    if not pattern:
        raise ValueError("empty path pattern")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"path pattern longer than {MAX_PATTERN} characters")
    bad = _BAD_CHARS.search(pattern)
    if bad is not None:
        raise ValueError(f"path pattern contains {_bad_char(bad.group())}")
    anchored = pattern.startswith("/")
    raw: list[list[str | tuple[str, ...]]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("path pattern ends with a lone backslash")
            i += 1
            char = pattern[i]
            if char == "/":
                raw.append([])
            else:
                raw[-1].append(char)
            i += 1
        elif char == "/":
            raw.append([])
            i += 1
        elif char == "*":
            raw[-1].append(_WILD_STAR)
            i += 1
        elif char == "?":
            raw[-1].append(_WILD_ANY)
            i += 1
        elif char == "[":
            regex, i = _parse_class(pattern, i)
            raw[-1].append(("[", regex))
        else:
            raw[-1].append(char)
            i += 1
    segs: list[_Seg] = []
    for tokens in raw:
        if not tokens:
            continue
        seg = _segment(tokens)
        if seg.literal == ".":
            continue
        if seg.literal == "..":
            if segs and segs[-1].literal is not None:
                segs.pop()
            elif segs or not anchored:
                raise ValueError("'..' in a path pattern must follow a literal directory")
            continue
        if not (seg.globstar and segs and segs[-1].globstar):
            segs.append(seg)
    if not segs and not anchored:
        raise ValueError(f"path pattern {pattern!r} names no path")
    while segs and segs[-1].globstar:  # `X/**` is X and everything beneath: X itself
        segs.pop()
    if segs and segs[0].globstar:  # a leading `**` is what an unanchored pattern means
        anchored = False
        segs.pop(0)
    return anchored, segs


def _block(segs: Iterable[_Seg]) -> str:
    return "".join(seg.regex + "/" for seg in segs)


def _regex(segs: Sequence[_Seg], min_skip: int | None) -> str:
    """Regex for `segs`, matched at a component start of `path + "/"`, as a prefix.

    With `min_skip` set, the segments may start at any later component, at least
    `min_skip` along. Each run after a `**` sits in an atomic group at its earliest
    place: any later `**` absorbs the gap, so the cost stays linear in the path.
    """
    blocks: list[list[_Seg]] = [[]]
    for seg in segs:
        if seg.globstar:
            blocks.append([])
        else:
            blocks[-1].append(seg)
    head = _block(blocks[0])
    if min_skip is None:
        out = [head]
    else:
        skip = "*?" if min_skip == 0 else f"{{{min_skip},}}?"
        out = [f"(?>(?:[^/]+/){skip}{head})"]
    out.extend(f"(?>(?:[^/]+/)*?{_block(block)})" for block in blocks[1:] if block)
    return "".join(out)


def _subject(path: str) -> str:
    """The text regexes run on: every component followed by `/`; root is `/`."""
    return "/" if path == "/" else path + "/"


@dataclass(frozen=True, slots=True)
class PathGlob:
    """One compiled path pattern. `match` takes a normalised absolute path."""

    pattern: str
    anchored: bool
    _segments: tuple[_Seg, ...]
    _compiled: re.Pattern[str]

    def match(self, path: str) -> bool:
        """True when the pattern matches `path` or one of its ancestors."""
        return self._compiled.match(_subject(path), 1) is not None


def compile_path_glob(pattern: str) -> PathGlob:
    """Compile one pattern; raises ValueError naming what is wrong with it."""
    anchored, segs = _parse(pattern)
    regex = _regex(segs, None if anchored else 0)
    return PathGlob(pattern, anchored, tuple(segs), re.compile(regex))


def is_catch_all_path(pattern: str) -> bool:
    """True for the selectors that match every path: `**` and `/**` (trailing `/` dropped)."""
    return pattern.rstrip("/") in ("**", "/**")


# --- index -----------------------------------------------------------------------

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
            segs = glob._segments
            if glob.anchored:
                count = 0
                while count < len(segs) and segs[count].literal is not None:
                    count += 1
                prefix = "/" + "/".join(s.literal for s in segs[:count])  # type: ignore[misc]
                if count == len(segs):
                    prefix_exact[prefix].append(key)
                else:
                    prefix_wild[prefix].append((_regex(segs[count:], None), 0, key))
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
                    offsets[name][offset].append((_regex(rest, None), lo, key))
                else:
                    loose.append((_regex(rest, lo), 0, key))
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
