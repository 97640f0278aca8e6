"""The command index: deny and allow patterns bucketed by program, and its entry points.

Patterns are compiled in `cmdpatterns` and the line is folded or turned into a
language in `cmdline`; the public names of both that callers use are re-exported
here, so `gateway.matching.commands` stays the one place to import command
matching from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.matching.cmdline import fold_program, fold_word, line_nodes, literal_line
from gateway.matching.cmdpatterns import (
    SEP,
    AllowPattern,
    DenyPattern,
    Fullmatch,
    compile_allow,
    compile_deny,
    is_catch_all_command,
)
from gateway.matching.nfa import compile_nfa, meets
from gateway.shell.words import Part, Word

__all__ = [
    "CommandIndex",
    "allow_admits",
    "deny_matches",
    "fold_program",
    "fold_word",
    "is_catch_all_command",
]

T = TypeVar("T", DenyPattern, AllowPattern)


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

    def lookup(self, part: Part) -> tuple[Part, str, list[_Group[T]]]:
        """The part made usable, its program's basename, and the groups to try for it."""
        part = _usable(part)
        program = _program(part)
        out = list(self.always)
        n = len(program)
        for length in self.lengths:
            if length > n:
                break
            hit = self.by.get(program[:length])
            if hit:
                out.append(hit)
        return part, program, out


class CommandIndex:
    """Deny and allow command patterns, compiled once and bucketed by program.

    An empty index denies nothing and allows nothing (the engine's default decides).
    """

    def __init__(self, patterns: Sequence[tuple[str, int, bool]]) -> None:
        """`patterns` are (pattern, key, is_deny); raises ValueError naming a bad pattern."""
        denies: list[tuple[str, DenyPattern]] = []
        allows: list[tuple[str, AllowPattern]] = []
        for pattern, key, is_deny in patterns:
            try:
                if is_deny:
                    denies.extend(compile_deny(pattern, key))
                else:
                    allows.append(compile_allow(pattern, key))
            except ValueError as e:
                raise ValueError(f"command pattern {pattern!r}: {e}") from None
        self._denies = _Buckets(denies)
        self._allows = _Buckets(allows)

    def denies(self, part: Part) -> list[int]:
        """Keys of deny patterns that match the part for some run-time value, ascending."""
        part, program, groups = self._denies.lookup(part)
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
        part, program, groups = self._allows.lookup(part)
        if not groups:
            return []
        args = part.words[1:]
        folded = [None if t is None else fold_word(t) for t in map(_literal, args)]
        if None not in folded and SEP not in program and not any(
                SEP in f for f in folded):  # type: ignore[operator]
            line = SEP.join([program, *folded])  # type: ignore[list-item]
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
    _, allow = compile_allow(pattern, 0)
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
    return any(meets(d.nfa, line) for _, d in compile_deny(pattern, 0) for line in lines)
