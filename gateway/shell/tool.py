"""What an entry of the wrappers table is, and what its handler says the tool runs.

A `Tool` names how a wrapper, runner or shell reads its arguments (`Options`) and a
handler that reads its words. The handler returns `Run`s: the words of another
command, a string of shell code, a script file, or a script read from stdin. The
walker judges each of them as it judges the line itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from gateway.shell.options import Options
from gateway.shell.words import Hole, Segment, Word


class Kind(Enum):
    """How a tool's own line is judged."""

    SHELL = "shell"  # runs shell code; seen through when that code is judged
    WRAPPER = "wrapper"  # adjusts how the next program runs; seen through
    RUNNER = "runner"  # a part of its own; what it runs is judged too


@dataclass(frozen=True, slots=True)
class Run:
    """One thing a tool runs: words of a command, shell code, a script file or stdin."""

    argv: tuple[Word, ...] = ()
    start: int = -1  # index of argv[0] in the tool's words; -1 when built
    code: str | None = None
    script: Word | None = None
    stdin: bool = False
    runtime_args: bool = False
    placeholder: str | None = None  # text the tool fills in at run time (`{}`)


Handler = Callable[["Tool", Sequence[Word], bool], list[Run]]


@dataclass(frozen=True, slots=True)
class Tool:
    """One table entry: the tool's name, kind, options and how it finds what it runs."""

    name: str
    kind: Kind
    options: Options
    handler: Handler
    operands: int = 0  # fixed operands before the command (`timeout DURATION`)
    no_command: str = ""  # short options after which nothing is run (`command -v`)
    no_command_long: frozenset[str] = frozenset()
    doc: str = ""


def fill_placeholder(word: Word, marker: str) -> Word:
    """Replace a run-time placeholder (`{}`) inside a word with a hole."""
    segs: list[Segment] = []
    changed = False
    for s in word.segments:
        if isinstance(s, str) and marker in s:
            pieces = s.split(marker)
            for k, piece in enumerate(pieces):
                if k:
                    segs.append(Hole(marker))
                if piece:
                    segs.append(piece)
            changed = True
        else:
            segs.append(s)
    return Word(tuple(segs), word.may_split) if changed else word
