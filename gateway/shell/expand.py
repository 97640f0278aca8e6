"""Word building: one word's tokens become the words a program would receive.

After quote removal (`gateway.shell.tokens`), bash applies brace expansion
(`gateway.shell.braces`), then tilde expansion; unquoted `* ? [...]` left over make
the word a glob. `finish` runs these steps in bash's order. A program word must
come out as plain text: anything the shell builds there is cannot-analyse.
"""

from __future__ import annotations

from gateway.shell.assignments import is_name
from gateway.shell.braces import brace_expand
from gateway.shell.errors import CannotAnalyse
from gateway.shell.tokens import Token, is_active
from gateway.shell.words import Glob, Hole, Segment, Word

# --- tilde --------------------------------------------------------------------------

def _tilde_at(toks: list[Token], i: int, home: str, cwd: str | None,
              stops: str) -> list[Token]:
    """Expand a tilde prefix starting at `toks[i]` if it is unquoted; return new tokens."""
    j = i + 1
    while j < len(toks) and not (isinstance(toks[j], tuple) and toks[j][0]  # type: ignore[index]
                                 and toks[j][1] in stops):  # type: ignore[index]
        t = toks[j]
        if not (isinstance(t, tuple) and t[0]):
            return toks
        j += 1
    user = "".join(t[1] for t in toks[i + 1:j])  # type: ignore[index]
    if user == "":
        rep: list[Token] = [(False, home)]
    elif user == "+" and cwd is not None:
        rep = [(False, cwd)]
    else:
        rep = [Hole("~" + user)]
    return toks[:i] + rep + toks[j:]


def tilde_expand(toks: list[Token], home: str, cwd: str | None,
                 assignment: bool) -> tuple[list[Token], bool]:
    """Tilde expansion at the word start, and in assignments after `=` and `:`.

    Returns the tokens and whether the word started with an expanded tilde.
    """
    started = False
    if toks and is_active(toks[0], "~"):
        toks = _tilde_at(toks, 0, home, cwd, "/:" if assignment else "/")
        started = True
    if assignment:
        i = 0
        seen_eq = False
        while i < len(toks):
            t = toks[i]
            if isinstance(t, tuple) and t[0] and (t[1] == ":" or (t[1] == "=" and not seen_eq)):
                seen_eq = seen_eq or t[1] == "="
                if i + 1 < len(toks) and is_active(toks[i + 1], "~"):
                    toks = _tilde_at(toks, i + 1, home, cwd, "/:")
            i += 1
    return toks, started


def _assignment_like(toks: list[Token]) -> bool:
    """True when the word reads `NAME=...` with the name unquoted (bash then expands ~)."""
    name: list[str] = []
    for t in toks:
        if not (isinstance(t, tuple) and t[0]):
            return False
        if t[1] == "=":
            return is_name("".join(name))
        name.append(t[1])
    return False


# --- globs --------------------------------------------------------------------------

def to_word(toks: list[Token], may_split: bool) -> Word:
    """Join tokens into a `Word`: literal runs, `Glob` tokens for unquoted `* ? [...]`."""
    segs: list[Segment] = []
    buf: list[str] = []
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        if isinstance(t, Hole):
            if buf:
                segs.append("".join(buf))
                buf = []
            segs.append(t)
            i += 1
            continue
        is_unquoted, c = t
        if is_unquoted and c in "*?":
            if buf:
                segs.append("".join(buf))
                buf = []
            segs.append(Glob(c))
            i += 1
            continue
        if is_unquoted and c == "[":
            end = _bracket_end(toks, i)
            if end is not None:
                if buf:
                    segs.append("".join(buf))
                    buf = []
                segs.append(Glob("".join(x[1] for x in toks[i:end + 1])))  # type: ignore[index]
                i = end + 1
                continue
        buf.append(c)
        i += 1
    if buf:
        segs.append("".join(buf))
    return Word(tuple(segs), may_split)


def _bracket_end(toks: list[Token], start: int) -> int | None:
    """Index of the `]` that closes a bracket expression opened at `start`, if any."""
    i = start + 1
    if i < len(toks) and isinstance(toks[i], tuple) and toks[i][1] in "!^":  # type: ignore[index]
        i += 1
    if i < len(toks) and is_active(toks[i], "]"):
        i += 1
    while i < len(toks):
        t = toks[i]
        if isinstance(t, Hole):
            return None
        if t[0] and t[1] == "]":
            return i
        if t[1] == "/":
            return None
        i += 1
    return None


# --- all steps ----------------------------------------------------------------------

def finish(toks: list[Token], *, may_split: bool, home: str, cwd: str | None,
           program: bool = False) -> list[Word]:
    """Brace-expand, tilde-expand and glob-mark one word's tokens into final words.

    Unquoted empty results vanish as in bash. For a program word (`program=True`),
    anything the shell builds (brace, tilde, glob, hole) is cannot-analyse.
    """
    expanded = brace_expand(toks) if any(is_active(t, "{") for t in toks) else [toks]
    if program and len(expanded) != 1:
        raise CannotAnalyse("the program name comes from a brace expansion")
    words: list[Word] = []
    if program and expanded[0] != toks:
        raise CannotAnalyse("the program name comes from a brace expansion")
    for ts in expanded:
        ts, tilde = tilde_expand(ts, home, cwd, _assignment_like(ts))
        if program and tilde:
            raise CannotAnalyse("the program name comes from a tilde expansion")
        if not ts:
            continue
        words.append(to_word(ts, may_split))
    if program and words:
        w = words[0]
        if w.has_hole:
            raise CannotAnalyse(f"the program name is set at run time: {w.display()}")
        if w.has_glob:
            raise CannotAnalyse(f"the program name is a glob: {w.display()}")
    return words
