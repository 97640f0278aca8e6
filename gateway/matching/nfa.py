"""Regular expressions as trees, and epsilon-free NFAs built from them.

A command pattern and a command line with run-time unknowns (holes, globs,
arguments appended at run time) each describe a set of strings. A deny pattern
applies when the two sets meet, so both become NFAs whose transitions carry
character sets, and a search over pairs of states decides whether the
intersection is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.matching.charsets import ALL, CharSet, intersects

__all__ = [
    "ANY_TEXT", "EMPTY_TEXT", "Alt", "ListOf", "Lit", "Loop", "Nfa", "Node", "OneOf", "Opt",
    "Seq", "compile_nfa", "meets", "nfa_accepts",
]

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
