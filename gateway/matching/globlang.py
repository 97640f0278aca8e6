"""Glob languages: pattern words, character sets, and small NFAs to intersect them.

A command pattern and a command line with run-time unknowns (holes, globs, arguments
appended at run time) each describe a set of strings. A deny pattern applies when
the two sets meet, so both become NFAs whose transitions carry character sets and
a product search decides whether the intersection is empty. Character sets are
sorted tuples of disjoint inclusive code-point ranges, so their intersection is
decided exactly by one merge pass.

Patterns are read as a shell reads words: blanks separate words, quotes make glob
characters literal, and `\\c` is the literal `c` everywhere, inside quotes too, as
`${NAME}` expansion relies on (see `gateway.matching`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_CHAR = 0x10FFFF
CharSet = tuple[tuple[int, int], ...]
ALL: CharSet = ((0, MAX_CHAR),)

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


# --- character sets ---------------------------------------------------------------


def char_set(ranges: Iterable[tuple[int, int]]) -> CharSet:
    """Normalise ranges into sorted, disjoint, non-adjacent ones; inverted ranges are empty."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def chars(text: str) -> CharSet:
    """The set of the characters in `text`."""
    return char_set((ord(c), ord(c)) for c in text)


def complement(cs: CharSet) -> CharSet:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in cs:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CHAR:
        out.append((nxt, MAX_CHAR))
    return tuple(out)


def intersection(a: CharSet, b: CharSet) -> CharSet:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def without(cs: CharSet, text: str) -> CharSet:
    return intersection(cs, complement(chars(text)))


def intersects(a: CharSet, b: CharSet) -> bool:
    """Whether two sets share a character: one merge pass over their ranges."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


def contains(cs: CharSet, c: str) -> bool:
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in cs)


def class_regex(cs: CharSet) -> str:
    """A Python regex class for the set (`(?!)` for the empty set)."""
    if not cs:
        return "(?!)"
    body = "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in cs)
    return f"[{body}]"


# --- pattern words ----------------------------------------------------------------


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


def merge_literals(items: Iterable[PatItem]) -> PatWord:
    """Join adjacent literal runs and drop empty ones."""
    out: list[PatItem] = []
    for it in items:
        if isinstance(it, str):
            if not it:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + it
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


# --- regular expressions as trees, and NFAs ----------------------------------------


@dataclass(frozen=True, slots=True)
class Lit:
    text: str


@dataclass(frozen=True, slots=True)
class OneOf:
    """One character of a set."""

    chars: CharSet


@dataclass(frozen=True, slots=True)
class Loop:
    """Zero or more characters of a set."""

    chars: CharSet


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    """One or more of `item`, separated by `sep`."""

    item: Node
    sep: str


@dataclass(frozen=True, slots=True)
class Opt:
    item: Node


Node = Lit | OneOf | Loop | Seq | Alt | ListOf | Opt
ANY_TEXT = Loop(ALL)
EMPTY_TEXT = Lit("")


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


@dataclass(frozen=True, slots=True)
class Nfa:
    """An epsilon-free NFA: per state, its (set, target) moves and whether it accepts."""

    start: int
    moves: tuple[tuple[tuple[CharSet, int], ...], ...]
    accepting: tuple[bool, ...]


class _Builder:
    """Thompson construction; no fragment ever loops back to its entry state."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[CharSet, int]]] = []
        self.eps: list[list[int]] = []

    def new(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def add(self, node: Node, s: int) -> int:
        if isinstance(node, Lit):
            for c in node.text:
                t = self.new()
                self.edges[s].append((((ord(c), ord(c)),), t))
                s = t
            return s
        if isinstance(node, OneOf):
            t = self.new()
            self.edges[s].append((node.chars, t))
            return t
        if isinstance(node, Loop):
            t = self.new()
            self.eps[s].append(t)
            self.edges[t].append((node.chars, t))
            return t
        if isinstance(node, Seq):
            for it in node.items:
                s = self.add(it, s)
            return s
        if isinstance(node, Alt):
            end = self.new()
            for opt in node.options:
                a = self.new()
                self.eps[s].append(a)
                self.eps[self.add(opt, a)].append(end)
            return end
        if isinstance(node, ListOf):
            a = self.new()
            self.eps[s].append(a)
            end = self.add(node.item, a)
            self.eps[self.add(Lit(node.sep), end)].append(a)
            return end
        a = self.new()
        self.eps[s].append(a)
        end = self.new()
        self.eps[self.add(node.item, a)].append(end)
        self.eps[s].append(end)
        return end

    def finish(self, start: int, end: int) -> Nfa:
        moves: list[tuple[tuple[CharSet, int], ...]] = []
        accepting: list[bool] = []
        for s in range(len(self.edges)):
            closure = {s}
            todo = [s]
            while todo:
                for t in self.eps[todo.pop()]:
                    if t not in closure:
                        closure.add(t)
                        todo.append(t)
            ms = dict.fromkeys(m for c in sorted(closure) for m in self.edges[c])
            moves.append(tuple(ms))
            accepting.append(end in closure)
        return Nfa(start, tuple(moves), tuple(accepting))


def compile_nfa(node: Node) -> Nfa:
    b = _Builder()
    start = b.new()
    end = b.add(node, start)
    return b.finish(start, end)


def nfa_accepts(nfa: Nfa, text: str) -> bool:
    states = {nfa.start}
    for c in text:
        o = ord(c)
        states = {t for s in states for cs, t in nfa.moves[s]
                  if any(lo <= o <= hi for lo, hi in cs)}
        if not states:
            return False
    return any(nfa.accepting[s] for s in states)


def meets(a: Nfa, b: Nfa) -> bool:
    """Whether some string is accepted by both: a search over pairs of states."""
    seen = {(a.start, b.start)}
    todo = [(a.start, b.start)]
    while todo:
        p, q = todo.pop()
        if a.accepting[p] and b.accepting[q]:
            return True
        bm = b.moves[q]
        for cs1, p2 in a.moves[p]:
            for cs2, q2 in bm:
                pair = (p2, q2)
                if pair not in seen and intersects(cs1, cs2):
                    seen.add(pair)
                    todo.append(pair)
    return False
