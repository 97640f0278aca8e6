"""Character sets as sorted tuples of disjoint inclusive code-point ranges.

The NFAs that decide whether a deny pattern can meet a command line carry these on
their transitions; in this form the intersection of two sets is decided exactly by
one merge pass.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ALL", "MAX_CHAR", "CharSet", "char_set", "chars", "class_regex", "complement",
    "intersection", "intersects", "without",
]

MAX_CHAR = 0x10FFFF
CharSet = tuple[tuple[int, int], ...]
ALL: CharSet = ((0, MAX_CHAR),)


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
    """Every character not in `cs`."""
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
    """The characters in both sets: one merge pass over their ranges."""
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
    """`cs` less the characters of `text`."""
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


def class_regex(cs: CharSet) -> str:
    """A Python regex class for the set (`(?!)` for the empty set)."""
    if not cs:
        return "(?!)"
    body = "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in cs)
    return f"[{body}]"
