"""Path globs: gitignore-like patterns compiled to one linear-time regex each.

`*` and `?` stay within one segment, `**` spans segments, `[...]` classes, `\\c` is
a literal `c` (docs/policy.md, "Paths"). A pattern without a leading `/` matches
at any depth, and a pattern that matches a directory matches everything beneath
it. Matching is case-sensitive and byte-exact: no Unicode normalisation, as on
Linux. The segments stay available, so `PathIndex` can file a pattern by its
literal parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.matching.pathnames import check_text

__all__ = ["MAX_PATTERN", "GlobSegment", "PathGlob", "compile_path_glob", "is_catch_all_path",
           "segments_regex"]

MAX_PATTERN = 16384
"""Longest pattern accepted: variables double their length by escaping."""


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
class GlobSegment:
    """One pattern segment: a glob over one path component, or `**`."""

    regex: str                 # matches one whole component (never a slash)
    literal: str | None        # the component's text when there is no wildcard
    globstar: bool = False     # `**`: any number of components, none included
    star: bool = False         # a lone `*`: exactly one component, any name
    suffix: str | None = None  # `*` then a literal starting with `.`: that literal
    prefix: str | None = None  # a literal then `*`: that literal
    lead: str = ""             # the first character when it is literal


_GLOBSTAR = GlobSegment(regex="", literal=None, globstar=True)


def _segment(tokens: list[str | tuple[str, ...]]) -> GlobSegment:
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
    return GlobSegment(regex="".join(parts), literal=literal, star=merged == [_WILD_STAR],
                suffix=suffix, prefix=prefix, lead=lead)


def _parse(pattern: str) -> tuple[bool, list[GlobSegment]]:
    """Split a pattern into segments; fold `.` and literal `x/..`; tidy `**` runs."""
    check_text(pattern, "path pattern", max_chars=MAX_PATTERN)
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
    segs: list[GlobSegment] = []
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


def _block(segs: Iterable[GlobSegment]) -> str:
    return "".join(seg.regex + "/" for seg in segs)


def segments_regex(segs: Sequence[GlobSegment], min_skip: int | None) -> str:
    """Regex for `segs`, matched at a component start of `path + "/"`, as a prefix.

    With `min_skip` set, the segments may start at any later component, at least
    `min_skip` along. Each run after a `**` sits in an atomic group at its earliest
    place: any later `**` absorbs the gap, so the cost stays linear in the path.
    """
    blocks: list[list[GlobSegment]] = [[]]
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
    segments: tuple[GlobSegment, ...]
    _compiled: re.Pattern[str]

    def match(self, path: str) -> bool:
        """True when the pattern matches `path` or one of its ancestors."""
        return self._compiled.match(_subject(path), 1) is not None


def compile_path_glob(pattern: str) -> PathGlob:
    """Compile one pattern; raises ValueError naming what is wrong with it."""
    anchored, segs = _parse(pattern)
    regex = segments_regex(segs, None if anchored else 0)
    return PathGlob(pattern, anchored, tuple(segs), re.compile(regex))


def is_catch_all_path(pattern: str) -> bool:
    """True for the selectors that match every path: `**` and `/**` (trailing `/` dropped)."""
    return pattern.rstrip("/") in ("**", "/**")

