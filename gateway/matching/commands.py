"""Command patterns: deny rules as text globs over the line, allow rules word by word.

The line of a part is `program-basename arg1 arg2 ...` of its quote-removed words.

- A deny pattern is a text glob over the line (`*` spans anything, blanks and `/`
  included), tried against the line as written and against the line with path-like
  words folded (`.`, `..`, `//`). With holes, unquoted globs or arguments added at
  run time, it denies when SOME run-time value would make it match: the line is
  then a regular language (below) and the pattern's NFA is intersected with it.
- An allow pattern is split into words as a shell would; each word is a glob over
  one folded argument (`*` matches any characters of it, `/` included). Further
  arguments are admitted only after a last word that is a lone `*` (at least one
  argument that surely exists) or a program word ending in `*` (any number).
- The pattern's program word: a deny pattern whose program word has a literal
  directory (`/bin/rm -rf *`) also matches by basename (`rm -rf *`), so it denies
  `rm`, `\\rm` and `/usr/bin/rm` alike (the pattern as written still applies too);
  with a glob in the directory (`*/.ssh/*`) the whole pattern stays a text glob
  over the line. An allow pattern whose program
  word holds a `/` is compared with the program path as written (folded), so
  `/usr/bin/python x.py` never admits `python x.py` found through PATH, nor
  `/tmp/evil/python x.py`; without a `/` it is compared with the basename.

What the line can run as, when it holds unknowns, over-approximates what bash can
run, so a deny errs towards matching:

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.matching.globlang import (
    ALL,
    ANY_TEXT,
    EMPTY_TEXT,
    STAR,
    Alt,
    ListOf,
    Lit,
    Loop,
    Nfa,
    Node,
    OneOf,
    Opt,
    PatItem,
    PatWord,
    Seq,
    Wild,
    compile_nfa,
    glob_regex,
    meets,
    merge_literals,
    nfa_accepts,
    parse_bracket,
    pattern_node,
    split_pattern,
    without,
)
from gateway.shell.words import Glob, Hole, Part, Segment, Word

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
    segs = _merged(word.segments)
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


def _merged(segments: Sequence[Segment]) -> Comp:
    out: list[Segment] = []
    for s in segments:
        if isinstance(s, str):
            if not s:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + s
                continue
        out.append(s)
    return tuple(out)


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
        prefix, segs = segs[0][:end], _merged((segs[0][end:], *segs[1:]))
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



# --- compiled patterns --------------------------------------------------------------

Fullmatch = Callable[[str], "re.Match[str] | None"]
# A leading `./` in an allow word means "relative to here": the folded argument is
# relative, does not climb with `..`, and is not `.` itself.
_HERE_GUARD = r"(?!/|\.\.(?:/|\Z)|\.\Z)"
# Allow pre-filters run over `program NUL arg1 NUL arg2 ...` of literal words.
_SEP = "\x00"
_IN_WORD = "[^\x00]"


def is_catch_all_command(pattern: str) -> bool:
    """A command selector that matches every line: exactly `*`."""
    return pattern == "*"


@dataclass(frozen=True, slots=True)
class _Deny:
    key: int
    source: str
    match: Fullmatch
    nfa: Nfa


def _compile_deny(pattern: str, key: int) -> list[tuple[str, _Deny]]:
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
        out.append((bucket, _Deny(key, source, match, compile_nfa(pattern_node(merged)))))
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
class _Allow:
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


def _compile_allow(pattern: str, key: int) -> tuple[str, _Allow]:
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
    tail = {-1: "", 0: f"(?:{_SEP}{_IN_WORD}*)*", 1: f"(?:{_SEP}{_IN_WORD}*)+"}[further]
    source = "".join([_IN_WORD + "*" if by_path else program.source,
                      *(_SEP + a.source for a in args), tail])
    allow = _Allow(key, by_path, program, args, further, source)
    if by_path:
        last = max(i for i, it in enumerate(prog) if isinstance(it, str) and "/" in it)
        tail = prog[last:]
        return ("" if len(tail) > 1 else tail[0].rsplit("/", 1)[1]), allow  # type: ignore[union-attr]
    return (prog[0] if prog and isinstance(prog[0], str) else ""), allow


# --- the index ----------------------------------------------------------------------

T = TypeVar("T", _Deny, _Allow)


@dataclass(frozen=True, slots=True)
class _Group(Generic[T]):
    """Patterns that share a bucket, with one regex that matches when any of them may."""

    items: tuple[T, ...]
    any_match: Fullmatch


def _group(items: Sequence[T]) -> _Group[T]:
    source = "|".join(f"(?:{it.source})" for it in items)
    return _Group(tuple(items), re.compile(source, re.DOTALL).fullmatch)


class _Buckets(Generic[T]):
    """Patterns by the literal start of their program word; the rest always checked."""

    def __init__(self, entries: Sequence[tuple[str, T]]) -> None:
        by: dict[str, list[T]] = {}
        always: list[T] = []
        for bucket, item in entries:
            (by.setdefault(bucket, []) if bucket else always).append(item)
        self.by = {k: _group(v) for k, v in by.items()}
        self.lengths = tuple(sorted({len(k) for k in by}))
        self.always = (_group(always),) if always else ()

    def groups(self, program: str) -> list[_Group[T]]:
        out = list(self.always)
        n = len(program)
        for length in self.lengths:
            if length > n:
                break
            hit = self.by.get(program[:length])
            if hit:
                out.append(hit)
        return out


class CommandIndex:
    """Deny and allow command patterns, compiled once and bucketed by program.

    An empty index denies nothing and allows nothing (the engine's default decides).
    """

    def __init__(self, patterns: Sequence[tuple[str, int, bool]]) -> None:
        """`patterns` are (pattern, key, is_deny); raises ValueError naming a bad pattern."""
        denies: list[tuple[str, _Deny]] = []
        allows: list[tuple[str, _Allow]] = []
        for pattern, key, is_deny in patterns:
            try:
                if is_deny:
                    denies.extend(_compile_deny(pattern, key))
                else:
                    allows.append(_compile_allow(pattern, key))
            except ValueError as e:
                raise ValueError(f"command pattern {pattern!r}: {e}") from None
        self._denies = _Buckets(denies)
        self._allows = _Buckets(allows)

    def denies(self, part: Part) -> list[int]:
        """Keys of deny patterns that match the part for some run-time value, ascending."""
        part = _usable(part)
        program = _program(part)
        groups = self._denies.groups(program)
        if not groups:
            return []
        texts = [_literal(w) for w in part.words[1:]]
        if not part.runtime_args and None not in texts:
            written, folded = literal_line(program, texts)  # type: ignore[arg-type]
            lines = (written,) if folded == written else (written, folded)
            return sorted({d.key for g in groups
                           if any(g.any_match(line) for line in lines)
                           for d in g.items if any(d.match(line) for line in lines)})
        w_node, f_node = line_nodes(part)
        nfas = [compile_nfa(w_node)]
        if f_node != w_node:
            nfas.append(compile_nfa(f_node))
        return sorted({d.key for g in groups for d in g.items
                       if any(meets(d.nfa, line) for line in nfas)})

    def allows(self, part: Part) -> list[int]:
        """Keys of allow patterns that admit the part whatever its run-time values, ascending."""
        part = _usable(part)
        program = _program(part)
        groups = self._allows.groups(program)
        if not groups:
            return []
        args = part.words[1:]
        folded = [None if t is None else fold_word(t) for t in map(_literal, args)]
        if None not in folded and _SEP not in program and not any(
                _SEP in f for f in folded):  # type: ignore[operator]
            line = _SEP.join([program, *folded])  # type: ignore[list-item]
            groups = [g for g in groups if g.any_match(line)]
        path = part.words[0].literal or ""
        return sorted({a.key for g in groups for a in g.items
                       if a.admits(program, path, args, folded, part.runtime_args)})


def _program(part: Part) -> str:
    """`part.program`, without its generic walk over segments."""
    path = _literal(part.words[0]) or ""
    return path.rsplit("/", 1)[-1] if "/" in path else path


def _literal(word: Word) -> str | None:
    segs = word.segments
    if len(segs) == 1 and type(segs[0]) is str:
        return segs[0]
    return word.literal


def _usable(part: Part) -> Part:
    """A part without words is read as an unknown program: fail closed."""
    if part.words:
        return part
    return Part((Word(()),), part.text, part.see_through, runtime_args=True)


def allow_admits(pattern: str, part: Part) -> bool:
    """Whether one allow pattern admits a part, without buckets or pre-filters (for tests)."""
    _, allow = _compile_allow(pattern, 0)
    part = _usable(part)
    args = part.words[1:]
    folded = [None if w.literal is None else fold_word(w.literal) for w in args]
    return allow.admits(part.program, part.words[0].literal or "", args, folded,
                        part.runtime_args)


def deny_matches(pattern: str, part: Part, general: bool = False) -> bool:
    """Whether one deny pattern matches a part; `general` forces the NFA path (for tests)."""
    if not general:
        return bool(CommandIndex([(pattern, 0, True)]).denies(part))
    w_node, f_node = line_nodes(_usable(part))
    lines = (compile_nfa(w_node), compile_nfa(f_node))
    return any(meets(d.nfa, line) for _, d in _compile_deny(pattern, 0) for line in lines)
