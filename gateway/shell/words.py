"""What the command analyser hands to the command matcher.

A command line becomes a sequence of `Part`s: each simple command that would run,
with its words after quote removal, brace and tilde expansion. What the shell fills
in at run time cannot be known statically, so a word keeps it as a `Hole`, and an
unquoted glob character stays a `Glob` token; the matcher decides what a pattern
means for those (see docs/policy.md, "How a command pattern matches").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Glob:
    """An unquoted glob token: `*`, `?` or a bracket expression such as `[a-z]`."""

    text: str


@dataclass(frozen=True, slots=True)
class Hole:
    """Text filled in at run time: `$X`, `$(...)`, `~user`, the `{}` of `find -exec`."""

    source: str


Segment = str | Glob | Hole


@dataclass(frozen=True, slots=True)
class Word:
    """One argument as the program would receive it, or a pattern standing for it.

    `segments` alternate between literal text (`str`), `Glob` tokens and `Hole`s.
    `may_split` is true when an unquoted hole may split this word into several
    words, or into none (`$X` unquoted); a quoted hole (`"$X"`) stays one word.
    """

    segments: tuple[Segment, ...]
    may_split: bool = False

    @property
    def literal(self) -> str | None:
        """The word's text when it holds neither globs nor holes, else None."""
        if all(isinstance(s, str) for s in self.segments):
            return "".join(self.segments)  # type: ignore[arg-type]
        return None

    @property
    def has_hole(self) -> bool:
        return any(isinstance(s, Hole) for s in self.segments)

    @property
    def has_glob(self) -> bool:
        return any(isinstance(s, Glob) for s in self.segments)

    def display(self) -> str:
        return "".join(s if isinstance(s, str) else s.text if isinstance(s, Glob) else s.source
                       for s in self.segments)

    @classmethod
    def of(cls, text: str) -> Word:
        return cls((text,)) if text else cls(())


@dataclass(frozen=True, slots=True)
class Part:
    """One simple command that would run.

    `words[0]` is the program as written (the matcher compares its basename); its
    `literal` is never None: a program name built at run time is cannot-analyse.
    `see_through` marks a wrapper or shell whose inner command is judged instead:
    only deny rules apply to its own line. `runtime_args` means more arguments are
    appended at run time (`xargs cmd`, `find -exec cmd {} +`).
    """

    words: tuple[Word, ...]
    text: str
    see_through: bool = False
    runtime_args: bool = False

    @property
    def program(self) -> str:
        name = self.words[0].literal or ""
        return name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Analysis:
    """The parts of a command line, or why it cannot be analysed (then `parts` is empty)."""

    parts: tuple[Part, ...] = ()
    cannot_analyse: str | None = None
