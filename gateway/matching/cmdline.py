"""The command line as text and as a language: folding, and what it can run as.

The line of a part is `program-basename arg1 arg2 ...` of its quote-removed words.
Path-like words are folded (`.`, `..`, `//`) so that a pattern sees one spelling.
When the line holds unknowns (holes, unquoted globs, arguments added at run time)
it becomes a tree of what it can run as, for an NFA that deny patterns are
intersected with. That tree over-approximates what bash can run, so a deny errs
towards matching:

- a hole stands for any text, `/`, `..` and blanks included; an unquoted word made
  only of holes may also vanish, with the blank before it;
- an unquoted glob word is its own text (no match) or one or more paths, each `*`
  a string without `/`, and no glob token may begin a name with `.`;
- arguments added at run time are any further text.

Folding a word with a hole: the hole may hold `/..` and climb to any ancestor of
what precedes it, so the folded word is any ancestor of the folded prefix followed
by any text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.matching.charsets import ALL, without
from gateway.matching.globlang import merge_literals, parse_bracket
from gateway.matching.nfa import (
    ANY_TEXT,
    EMPTY_TEXT,
    Alt,
    ListOf,
    Lit,
    Loop,
    Node,
    OneOf,
    Opt,
    Seq,
    compile_nfa,
    nfa_accepts,
)
from gateway.shell.words import Glob, Hole, Part, Segment, Word

__all__ = [
    "MAX_FOLD_BRANCHES", "fold_program", "fold_word", "glob_node", "line_nodes", "literal_line",
    "word_nodes",
]

# A word may start with an option or assignment (`--out=`, `NAME=`) and then a URL
# scheme and authority (`https://host`): that much is kept, the rest folded as a path.
_PREFIX = re.compile(r"(?:[^/=]*=)?(?:[A-Za-z][A-Za-z0-9+.-]*://[^/]*)?")
NOT_SLASH = without(ALL, "/")
NOT_SLASH_DOT = without(ALL, "/.")
_REL_TEXT = Alt((EMPTY_TEXT, Seq((OneOf(NOT_SLASH), ANY_TEXT))))
_ANCESTOR_TAIL = Alt((EMPTY_TEXT, Seq((Lit("/"), ANY_TEXT))))
MAX_FOLD_BRANCHES = 64

Comp = tuple[Segment, ...]


# --- folding text -------------------------------------------------------------------


def fold_word(word: str) -> str:
    """Fold `.`, `..` and `//` in a word that holds a `/`; other words are unchanged.

    An option or assignment prefix (`--out=`) and a URL's `scheme://authority` are
    kept and the rest folded as a path: `--out=/tmp/../etc` is `--out=/etc`,
    `https://h/a/../b` is `https://h/b`, `/tmp/x/` is `/tmp/x`, `./x` is `x`.
    """
    if "/" not in word or (
            "//" not in word and "/." not in word and "=./" not in word
            and word[-1] != "/" and not word.startswith("./")):
        return word
    m = _PREFIX.match(word)
    p = m.end() if m else 0
    return word[:p] + _fold_path(word[p:])


def _fold_path(path: str) -> str:
    if not path:
        return path
    absolute = path[0] == "/"
    out: list[str] = []
    for c in path.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not absolute:
                out.append("..")
            continue
        out.append(c)
    body = "/".join(out)
    return "/" + body if absolute else body or "."


def fold_program(path: str) -> str:
    """Fold a program path; one that named a directory keeps a `./` (it is not looked up)."""
    if "/" not in path:
        return path
    folded = _fold_path(path)
    return folded if "/" in folded else "./" + folded


def literal_line(program: str, args: Sequence[str]) -> tuple[str, str]:
    """The line as written and folded, for a part whose words are all literal."""
    written = " ".join([program, *args])
    folded = " ".join([program, *(fold_word(a) for a in args)])
    return written, folded


# --- the line as a language ---------------------------------------------------------


def line_nodes(part: Part) -> tuple[Node, Node]:
    """The line as written and folded, as trees of what it can run as."""
    written: list[Node] = [Lit(part.program)]
    folded: list[Node] = [Lit(part.program)]
    for word in part.words[1:]:
        w, f, vanish = word_nodes(word)
        sw, sf = Seq((Lit(" "), w)), Seq((Lit(" "), f))
        written.append(Opt(sw) if vanish else sw)
        folded.append(Opt(sf) if vanish else sf)
    if part.runtime_args:
        tail = Opt(Seq((Lit(" "), ANY_TEXT)))
        written.append(tail)
        folded.append(tail)
    return Seq(tuple(written)), Seq(tuple(folded))


def word_nodes(word: Word) -> tuple[Node, Node, bool]:
    """One argument as written, as folded, and whether it may vanish."""
    segs = merge_literals(word.segments)
    if not any(not isinstance(s, str) for s in segs):
        text = "".join(segs)  # type: ignore[arg-type]
        return Lit(text), Alt(tuple(_fold_branches(segs, mixed=False))), False
    if word.has_hole:
        k = next(i for i, s in enumerate(segs) if isinstance(s, Hole))
        written: Node = Seq((*_segments_node(segs[:k], mixed=True), ANY_TEXT))
        folded: Node = Alt(tuple(_fold_branches(segs, mixed=True)))
        vanish = word.may_split and all(isinstance(s, Hole) for s in segs)
        return written, folded, vanish
    text = word.display()
    expanded = ListOf(Seq(tuple(_segments_node(segs, mixed=False))), " ")
    written = Alt((Lit(text), expanded))
    branches = ListOf(Alt(tuple(_fold_branches(segs, mixed=False))), " ")
    return written, Alt((Lit(fold_word(text)), branches)), False


def _segments_node(segs: Sequence[Segment], mixed: bool) -> list[Node]:
    """Literal text and globs; `mixed` lets each glob also stand for its own text."""
    out: list[Node] = []
    at_start = True
    for s in segs:
        if isinstance(s, str):
            out.append(Lit(s))
            at_start = s.endswith("/")
        elif isinstance(s, Glob):
            g = glob_node(s, at_start)
            out.append(Alt((Lit(s.text), g)) if mixed else g)
            at_start = False
        else:
            out.append(ANY_TEXT)
            at_start = False
    return out


def glob_node(glob: Glob, at_start: bool) -> Node:
    """What an unquoted glob token matches in one path component.

    At the start of a name no token matches `.`; an unknown token is read as `*`.
    """
    if glob.text == "?":
        return OneOf(NOT_SLASH_DOT if at_start else NOT_SLASH)
    if glob.text.startswith("["):
        try:
            parsed = parse_bracket(glob.text, 0)
        except ValueError:
            parsed = None
        if parsed is not None and parsed[1] == len(glob.text):
            return OneOf(without(parsed[0], "/." if at_start else "/"))
    if at_start:
        return Alt((EMPTY_TEXT, Seq((OneOf(NOT_SLASH_DOT), Loop(NOT_SLASH)))))
    return Loop(NOT_SLASH)


def _components(segs: Comp) -> list[Comp]:
    comps: list[list[Segment]] = [[]]
    for s in segs:
        if isinstance(s, str):
            pieces = s.split("/")
            if pieces[0]:
                comps[-1].append(pieces[0])
            for p in pieces[1:]:
                comps.append([p] if p else [])
        else:
            comps[-1].append(s)
    return [tuple(c) for c in comps]


def _fold_branches(segs: Comp, mixed: bool) -> list[Node]:
    """The folded word as a union of branches (see the module docstring)."""
    has_hole = any(isinstance(s, Hole) for s in segs)
    if not has_hole and not any(isinstance(s, str) and "/" in s for s in segs):
        return [Seq(tuple(_segments_node(segs, mixed)))]
    prefix = ""
    if segs and isinstance(segs[0], str):
        m = _PREFIX.match(segs[0])
        end = m.end() if m else 0
        prefix, segs = segs[0][:end], merge_literals((segs[0][end:], *segs[1:]))
    if not segs:
        return [Lit(prefix)]
    comps = _components(segs)
    absolute = len(comps) > 1 and not comps[0]
    if absolute:
        comps = comps[1:]
    stacks: list[tuple[Comp, ...]] = [()]
    for idx, comp in enumerate(comps):
        if any(isinstance(s, Hole) for s in comp) or len(stacks) > MAX_FOLD_BRANCHES:
            started = absolute or idx > 0 or not isinstance(comp[0], Hole)
            return [Seq((Lit(prefix), n)) for n in _ancestors(stacks, absolute, started, mixed)]
        if not comp or comp == (".",):
            continue
        if comp == ("..",):
            stacks = [_pop(st, absolute) for st in stacks]
        elif all(isinstance(s, str) for s in comp) or not _dotty(comp, mixed):
            stacks = [(*st, comp) for st in stacks]
        else:
            stacks = list(dict.fromkeys(
                b for st in stacks for b in (st, _pop(st, absolute), (*st, comp))))
    return [Seq((Lit(prefix), _path_node(st, absolute, mixed))) for st in stacks]


def _pop(stack: tuple[Comp, ...], absolute: bool) -> tuple[Comp, ...]:
    if stack and stack[-1] != ("..",):
        return stack[:-1]
    return stack if absolute else (*stack, ("..",))


def _dotty(comp: Comp, mixed: bool) -> bool:
    """Whether a glob component could expand to `.` or `..`."""
    nfa = compile_nfa(Seq(tuple(_segments_node(comp, mixed))))
    return nfa_accepts(nfa, ".") or nfa_accepts(nfa, "..")


def _path_node(stack: tuple[Comp, ...], absolute: bool, mixed: bool) -> Node:
    out: list[Node] = []
    for i, comp in enumerate(stack):
        if i or absolute:
            out.append(Lit("/"))
        out.extend(_segments_node(comp, mixed))
    if not stack:
        out.append(Lit("/" if absolute else "."))
    return Seq(tuple(out))


def _ancestors(stacks: list[tuple[Comp, ...]], absolute: bool, started: bool,
               mixed: bool) -> list[Node]:
    """Any ancestor of each stack, then nothing or `/` and any text."""
    out: dict[Node, None] = {}
    for st in stacks:
        for j in range(len(st), 0, -1):
            out[Seq((_path_node(st[:j], absolute, mixed), _ANCESTOR_TAIL))] = None
    if absolute:
        out[Seq((Lit("/"), ANY_TEXT))] = None
    else:
        out[_REL_TEXT if started else ANY_TEXT] = None
    return list(out)
