"""Command patterns compiled once: deny rules as text globs, allow rules word by word.

- A deny pattern is a text glob over the line (`*` spans anything, blanks and `/`
  included), tried against the line as written and against the line with path-like
  words folded (`.`, `..`, `//`). With holes, unquoted globs or arguments added at
  run time, it denies when SOME run-time value would make it match: the line is
  then a regular language (see `cmdline`) and the pattern's NFA is intersected
  with it.
- An allow pattern is split into words as a shell would; each word is a glob over
  one folded argument (`*` matches any characters of it, `/` included). Further
  arguments are admitted only after a last word that is a lone `*` (at least one
  argument that surely exists) or a program word ending in `*` (any number).
- The pattern's program word: a deny pattern whose program word has a literal
  directory (`/bin/rm -rf *`) also matches by basename (`rm -rf *`), so it denies
  `rm`, `\\rm` and `/usr/bin/rm` alike (the pattern as written still applies too);
  with a glob in the directory (`*/.ssh/*`) the whole pattern stays a text glob
  over the line. An allow pattern whose program word holds a `/` is compared with
  the program path as written (folded), so `/usr/bin/python x.py` never admits
  `python x.py` found through PATH, nor `/tmp/evil/python x.py`; without a `/` it
  is compared with the basename.

Each compiled pattern carries a `source`: a regex that admits at least what the
pattern admits, which the index combines per bucket to reject misses in one call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.matching.cmdline import fold_program, fold_word
from gateway.matching.globlang import (
    STAR,
    PatItem,
    PatWord,
    Wild,
    glob_regex,
    merge_literals,
    pattern_node,
    split_pattern,
)
from gateway.matching.nfa import Nfa, compile_nfa
from gateway.shell.words import Glob, Hole, Segment, Word

__all__ = [
    "SEP", "AllowPattern", "DenyPattern", "Fullmatch", "compile_allow", "compile_deny",
    "is_catch_all_command",
]

Fullmatch = Callable[[str], "re.Match[str] | None"]
# A leading `./` in an allow word means "relative to here": the folded argument is
# relative, does not climb with `..`, and is not `.` itself.
_HERE_GUARD = r"(?!/|\.\.(?:/|\Z)|\.\Z)"
# Allow pre-filters run over `program NUL arg1 NUL arg2 ...` of literal words.
SEP = "\x00"
_IN_WORD = "[^\x00]"


def is_catch_all_command(pattern: str) -> bool:
    """A command selector that matches every line: exactly `*`."""
    return pattern == "*"


@dataclass(frozen=True, slots=True)
class DenyPattern:
    """One form of a deny pattern: a regex over a literal line, an NFA for the rest."""

    key: int
    source: str
    match: Fullmatch
    nfa: Nfa


def compile_deny(pattern: str, key: int) -> list[tuple[str, DenyPattern]]:
    """The deny pattern's forms, each with its bucket: the literal start of its line."""
    words = split_pattern(pattern)
    forms = [words]
    program = _deny_program(words[0])
    if program != words[0]:
        forms.append((program, *words[1:]))
    out = []
    for form in forms:
        items: list[PatItem] = []
        for i, w in enumerate(form):
            if i:
                items.append(" ")
            items.extend(w)
        merged = merge_literals(items)
        bucket = merged[0].split(" ", 1)[0] if merged and isinstance(merged[0], str) else ""
        source = glob_regex(merged)
        match = re.compile(source, re.DOTALL).fullmatch
        out.append((bucket, DenyPattern(key, source, match, compile_nfa(pattern_node(merged)))))
    return out


def _deny_program(word: PatWord) -> PatWord:
    """The program word by basename when its directory is literal; else unchanged."""
    last = max((i for i, it in enumerate(word) if isinstance(it, str) and "/" in it), default=-1)
    if last < 0 or any(isinstance(it, Wild) for it in word[:last]):
        return word
    tail = word[last].rsplit("/", 1)[1]  # type: ignore[union-attr]
    return merge_literals((tail, *word[last + 1:]))


@dataclass(frozen=True, slots=True)
class _ArgMatch:
    """One allow word: a literal, a glob over the folded argument, or a lone `*`."""

    literal: str | None
    match: Fullmatch | None
    shape: tuple[tuple[bool, str], ...]
    source: str  # its pre-filter regex, over one word without NUL

    def admits(self, word: Word, folded: str | None) -> bool:
        if self.literal is None and self.match is None:  # a lone `*`
            return not word.may_split
        if folded is not None:
            return folded == self.literal if self.match is None else (
                self.match(folded) is not None)
        return not word.has_hole and self.shape == _shape(word.segments)


def _shape(items: Sequence[PatItem | Segment]) -> tuple[tuple[bool, str], ...]:
    """A word's literal runs and glob tokens, to compare a glob argument with a pattern word."""
    out: list[tuple[bool, str]] = []
    for it in items:
        if isinstance(it, str):
            if it and out and not out[-1][0]:
                out[-1] = (False, out[-1][1] + it)
            elif it:
                out.append((False, it))
        elif isinstance(it, Glob | Wild):
            out.append((True, it.text))
        else:
            out.append((True, "\x00hole"))
    return tuple(out)


def _arg_match(word: PatWord, fold: Callable[[str], str], here_guard: bool) -> _ArgMatch:
    if all(isinstance(it, str) for it in word):
        literal = fold("".join(word))  # type: ignore[arg-type]
        return _ArgMatch(literal, None, (), re.escape(literal))
    if word == (STAR,):
        return _ArgMatch(None, None, (), _IN_WORD + "*")
    items = list(word)
    guard = ""
    if here_guard and isinstance(items[0], str) and items[0].startswith("./"):
        while isinstance(items[0], str) and items[0].startswith("./"):
            items[0] = items[0][2:].lstrip("/")
        guard = _HERE_GUARD
    merged = merge_literals(items)
    match = re.compile(guard + glob_regex(merged), re.DOTALL).fullmatch
    return _ArgMatch(None, match, _shape(word), glob_regex(merged, _IN_WORD))


@dataclass(frozen=True, slots=True)
class AllowPattern:
    """An allow pattern word by word: the program word, fixed arguments, what may follow."""

    key: int
    by_path: bool
    program: _ArgMatch
    fixed: tuple[_ArgMatch, ...]
    further: int  # -1: none; 0: any number; 1: at least one that surely exists
    source: str  # pre-filter over the NUL-joined line: admits at least what this admits

    def admits(self, program: str, path: str, args: Sequence[Word],
               folded: Sequence[str | None], runtime_args: bool) -> bool:
        if self.by_path:
            program = fold_program(path)
            if "/" not in program:
                return False
        if not self.program.admits(_PROGRAM_WORD, program):
            return False
        k = len(self.fixed)
        if len(args) < k:
            return False
        for m, w, f in zip(self.fixed, args, folded, strict=False):
            if not m.admits(w, f):
                return False
        if self.further < 0:
            return len(args) == k and not runtime_args
        if self.further == 0:
            return True
        return any(not _may_vanish(w) for w in args[k:])


_PROGRAM_WORD = Word(())


def _may_vanish(word: Word) -> bool:
    """An unquoted word of holes only may expand to no word at all."""
    return word.may_split and all(isinstance(s, Hole) or s == "" for s in word.segments)


def compile_allow(pattern: str, key: int) -> tuple[str, AllowPattern]:
    """The allow pattern and its bucket: the literal start of the program's basename."""
    words = split_pattern(pattern)
    prog = words[0]
    by_path = any(isinstance(it, str) and "/" in it for it in prog)
    program = _arg_match(prog, fold_program if by_path else str, here_guard=False)
    if len(words) > 1 and words[-1] == (STAR,):
        fixed, further = words[1:-1], 1
    elif len(words) == 1 and prog and prog[-1] == STAR:
        fixed, further = (), 0
    else:
        fixed, further = words[1:], -1
    args = tuple(_arg_match(w, fold_word, here_guard=True) for w in fixed)
    tail = {-1: "", 0: f"(?:{SEP}{_IN_WORD}*)*", 1: f"(?:{SEP}{_IN_WORD}*)+"}[further]
    source = "".join([_IN_WORD + "*" if by_path else program.source,
                      *(SEP + a.source for a in args), tail])
    allow = AllowPattern(key, by_path, program, args, further, source)
    if by_path:
        last = max(i for i, it in enumerate(prog) if isinstance(it, str) and "/" in it)
        tail = prog[last:]
        return ("" if len(tail) > 1 else tail[0].rsplit("/", 1)[1]), allow  # type: ignore[union-attr]
    return (prog[0] if prog and isinstance(prog[0], str) else ""), allow
