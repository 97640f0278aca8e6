"""Command pattern words: split a pattern as a shell would, keeping its glob tokens.

Patterns are read as a shell reads words: blanks separate words, quotes make glob
characters literal, and `\\c` is the literal `c` everywhere, inside quotes too, as
`${NAME}` expansion relies on (see `gateway.matching`). A word becomes a regex
(`glob_regex`) for the fast paths, or a tree (`pattern_node`) for an NFA where the
line holds run-time unknowns; character sets and NFAs live in `charsets` and `nfa`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway.matching.charsets import ALL, CharSet, char_set, class_regex, complement
from gateway.matching.nfa import ANY_TEXT, Lit, Node, OneOf, Seq

__all__ = [
    "QUESTION",
    "STAR",
    "PatItem",
    "PatWord",
    "Wild",
    "glob_regex",
    "merge_literals",
    "parse_bracket",
    "pattern_node",
    "split_pattern",
]

_BLANKS = frozenset(" \t\n\r\f\v")
_POSIX_CLASSES: dict[str, CharSet] = {
    "alpha": ((65, 90), (97, 122)),
    "digit": ((48, 57),),
    "alnum": ((48, 57), (65, 90), (97, 122)),
    "upper": ((65, 90),),
    "lower": ((97, 122),),
    "space": ((9, 13), (32, 32)),
    "blank": ((9, 9), (32, 32)),
    "punct": ((33, 47), (58, 64), (91, 96), (123, 126)),
    "print": ((32, 126),),
    "graph": ((33, 126),),
    "cntrl": ((0, 31), (127, 127)),
    "xdigit": ((48, 57), (65, 70), (97, 102)),
    "word": ((48, 57), (65, 90), (95, 95), (97, 122)),
}


@dataclass(frozen=True, slots=True)
class Wild:
    """An unquoted glob token of a pattern: `*`, `?` or a bracket expression."""

    text: str
    chars: CharSet = ALL

    @property
    def is_star(self) -> bool:
        return self.text == "*"


STAR = Wild("*")
QUESTION = Wild("?")
PatItem = str | Wild
PatWord = tuple[PatItem, ...]
_Token = TypeVar("_Token")


def parse_bracket(text: str, start: int) -> tuple[CharSet, int] | None:
    """Read the bracket expression opening at `text[start]`.

    Returns its set and the index after the closing `]`, or None when there is no
    closing `]` (the `[` is then a literal, as in the shell). `!` or `^` first
    negates; `]` first is a member; `a-z` ranges; `[:name:]` POSIX classes (ASCII);
    `\\c` is the member `c`. Raises ValueError for an unknown class name and for
    equivalence classes and collating symbols, which are not supported.
    """
    n = len(text)
    j = start + 1
    negate = j < n and text[j] in "!^"
    if negate:
        j += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while True:
        if j >= n:
            return None
        c = text[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if c == "[" and j + 1 < n and text[j + 1] in ":=.":
            kind = text[j + 1]
            end = text.find(kind + "]", j + 2)
            if end < 0:
                return None
            if kind != ":":
                raise ValueError(f"bracket expression {text[start:end + 2]!r}: [= =] and [. .] "
                                 "are not supported")
            name = text[j + 2:end]
            if name not in _POSIX_CLASSES:
                raise ValueError(f"unknown character class [:{name}:]")
            ranges.extend(_POSIX_CLASSES[name])
            j = end + 2
            continue
        lo, j = _member(text, j)
        if lo is None:
            return None
        if j + 1 < n and text[j] == "-" and text[j + 1] != "]":
            hi, j = _member(text, j + 1)
            if hi is None:
                return None
            ranges.append((ord(lo), ord(hi)))
        else:
            ranges.append((ord(lo), ord(lo)))
    cs = char_set(ranges)
    return (complement(cs) if negate else cs), j


def _member(text: str, j: int) -> tuple[str | None, int]:
    if text[j] == "\\":
        if j + 1 >= len(text):
            return None, j + 1
        return text[j + 1], j + 2
    return text[j], j + 1


def split_pattern(pattern: str) -> tuple[PatWord, ...]:
    """Split a command pattern into words as a shell would, keeping glob tokens.

    Each word is a tuple of literal runs (`str`) and `Wild` tokens; a quoted empty
    string is an empty word. Raises ValueError for an empty pattern, an unterminated
    quote, a trailing backslash or a NUL byte.
    """
    if "\x00" in pattern:
        raise ValueError("pattern contains a NUL byte")
    words: list[PatWord] = []
    items: list[PatItem] = []
    lit: list[str] = []
    in_word = False
    quote = ""
    i, n = 0, len(pattern)

    def flush() -> None:
        if lit:
            items.append("".join(lit))
            lit.clear()

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"pattern {pattern!r} ends with a lone backslash")
            lit.append(pattern[i + 1])
            in_word = True
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                lit.append(c)
            i += 1
            continue
        if c in _BLANKS:
            if in_word:
                flush()
                words.append(tuple(items))
                items = []
                in_word = False
            i += 1
            continue
        in_word = True
        if c in "'\"":
            quote = c
            i += 1
            continue
        if c in "*?":
            flush()
            items.append(STAR if c == "*" else QUESTION)
            i += 1
            continue
        if c == "[":
            parsed = parse_bracket(pattern, i)
            if parsed is not None:
                flush()
                items.append(Wild(pattern[i:parsed[1]], parsed[0]))
                i = parsed[1]
                continue
        lit.append(c)
        i += 1
    if quote:
        raise ValueError(f"pattern {pattern!r} has an unterminated {quote} quote")
    if in_word:
        flush()
        words.append(tuple(items))
    if not words:
        raise ValueError("empty command pattern")
    return tuple(words)


def merge_literals(items: Iterable[str | _Token]) -> tuple[str | _Token, ...]:
    """Join adjacent literal runs and drop empty ones.

    Serves pattern words (`str` and `Wild`) and command words (`str`, `Glob`, `Hole`).
    """
    out: list[str | _Token] = []
    for it in items:
        if isinstance(it, str):
            if not it:
                continue
            last = out[-1] if out else None
            if isinstance(last, str):
                out[-1] = last + it
                continue
        out.append(it)
    return tuple(out)


def glob_regex(items: Sequence[PatItem], dot: str = ".") -> str:
    """Regex source that fullmatches what the glob matches, `*` spanning any characters.

    `dot` is the regex for "any character" (`.` under re.DOTALL by default).

    Between stars every chunk has a fixed length, so its leftmost occurrence is
    always a best choice: each middle chunk sits in an atomic group that never
    backtracks, which keeps matching linear in the text for any number of stars.
    """
    chunks: list[list[PatItem]] = [[]]
    for it in items:
        if isinstance(it, Wild) and it.is_star:
            chunks.append([])
        else:
            chunks[-1].append(it)
    parts = [_chunk_regex(chunks[0], dot)]
    if len(chunks) > 1:
        parts += [f"(?>{dot}*?{_chunk_regex(c, dot)})" for c in chunks[1:-1]]
        parts.append(f"{dot}*{_chunk_regex(chunks[-1], dot)}")
    return "".join(parts)


def _chunk_regex(chunk: Sequence[PatItem], dot: str) -> str:
    out = []
    for it in chunk:
        if isinstance(it, str):
            out.append(re.escape(it))
        elif it.text == "?":
            out.append(dot)
        else:
            out.append(class_regex(it.chars))
    return "".join(out)


def pattern_node(items: Sequence[PatItem]) -> Node:
    """The text glob as a tree: `*` any text, `?` any one character."""
    out: list[Node] = []
    for it in items:
        if isinstance(it, str):
            out.append(Lit(it))
        elif it.is_star:
            out.append(ANY_TEXT)
        else:
            out.append(OneOf(it.chars))
    return Seq(tuple(out))
