"""Reading a tool's options as getopt_long does, from words already expanded.

Each wrapper, runner and builtin declares its options (`Options`); `parse` reads
them off its words and stops where the operands start. A word set at run time
where an option may stand, an option the declaration does not know, or a missing
value is cannot-analyse: where the options end decides which command runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.shell.errors import CannotAnalyse
from gateway.shell.words import Word

Found = list[tuple[str, Word | None]]


@dataclass(frozen=True, slots=True)
class Options:
    """A tool's options: short letters and long names, by whether they take a value."""

    value: str = ""
    flags: str = ""
    optional: str = ""  # a value only when attached (`-i{}`, `--replace=R`)
    long_value: frozenset[str] = frozenset()
    long_flags: frozenset[str] = frozenset()
    long_optional: frozenset[str] = frozenset()
    permute: bool = False  # GNU getopt without `+`: options anywhere before `--`
    numeric: bool = False  # `-N` is an option (`nice -10`)


def decisive(word: Word, tool: str, role: str) -> str:
    """The text of a word that may be `role` (an option, an action): where the
    options end decides what runs, so a word set at run time is cannot-analyse."""
    text = word.literal
    if text is None or word.may_split:
        raise CannotAnalyse(f"{tool}: {word.display()} is set at run time where {role} "
                            "may stand")
    return text


def _value(words: Sequence[Word], i: int, attached: str | None, tool: str,
           spelled: str) -> tuple[Word, int]:
    """The value of the option at `words[i]`: attached (`-n5`, `--lines=5`) or the next
    word, which must stay one word. Returns it and the index of the last word read."""
    if attached is not None:
        return Word.of(attached), i
    if i + 1 < len(words):
        word = words[i + 1]
        if word.may_split or word.has_glob:
            raise CannotAnalyse(f"{tool}: {word.display()} may become several words")
        return word, i + 1
    raise CannotAnalyse(f"{tool}: {spelled} needs a value")


def long_option(opts: Options, name: str, tool: str) -> str:
    """The full long option `--name` stands for: exact, or a unique prefix as getopt."""
    known = opts.long_value | opts.long_flags | opts.long_optional
    if name in known:
        return name
    hits = [k for k in known if k.startswith(name)] if name else []
    if len(hits) == 1:
        return hits[0]
    raise CannotAnalyse(f"{tool}: unknown option --{name}")


def parse(opts: Options, words: Sequence[Word], i: int,
          tool: str) -> tuple[Found, list[int], int]:
    """Read options from `words[i:]` as getopt_long does.

    Returns the options found (name, value), the operand indices when options
    permute, and the index where reading stopped.
    """
    found: Found = []
    operands: list[int] = []
    n = len(words)
    while i < n:
        text = decisive(words[i], tool, "an option")
        if text == "--":
            i += 1
            if opts.permute:
                operands.extend(range(i, n))
                i = n
            break
        if text.startswith("--"):
            name, eq, val = text[2:].partition("=")
            full = long_option(opts, name, tool)
            if full in opts.long_value:
                value, i = _value(words, i, val if eq else None, tool, f"--{full}")
                found.append((full, value))
            elif full in opts.long_optional:
                found.append((full, Word.of(val) if eq else None))
            elif eq:
                raise CannotAnalyse(f"{tool}: --{full} takes no value")
            else:
                found.append((full, None))
            i += 1
            continue
        if text.startswith("-") and len(text) > 1:
            if opts.numeric and text[1:].isdigit():
                found.append(("n", Word.of(text[1:])))
                i += 1
                continue
            j = 1
            while j < len(text):
                c = text[j]
                rest = text[j + 1:]
                if c in opts.value:
                    value, i = _value(words, i, rest or None, tool, f"-{c}")
                    found.append((c, value))
                    break
                if c in opts.optional:
                    found.append((c, Word.of(rest) if rest else None))
                    break
                if c in opts.flags:
                    found.append((c, None))
                    j += 1
                    continue
                raise CannotAnalyse(f"{tool}: unknown option -{c}")
            i += 1
            continue
        if not opts.permute:
            break
        operands.append(i)
        i += 1
    return found, operands, i


def option_names(found: Found) -> set[str]:
    """The names of the options found, without their values."""
    return {name for name, _ in found}


def name_in(found: Found, *names: str) -> bool:
    """True when one of `names` is among the options found."""
    return any(k in names for k, _ in found)


def literal(word: Word, what: str) -> str:
    """The word's text; a word set at run time is cannot-analyse, naming `what`."""
    text = word.literal
    if text is None:
        raise CannotAnalyse(f"{what} is set at run time: {word.display()}")
    return text


def joined_code(words: Sequence[Word], what: str) -> str:
    """Literal words joined by spaces, as `eval`, `watch` and `parallel` build code."""
    return " ".join(literal(w, what) for w in words)
