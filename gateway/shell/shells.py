"""Handlers for the tools that run shell code: shells, `su`, `eval`, `source`, `trap`.

What they run is a string of code, a script file or stdin, never another command's
words. The options of each POSIX-family shell live here too: `su` hands its
operands to `sh`, so its handler reads them with `sh`'s options.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.shell.assignments import check_assigned
from gateway.shell.errors import CannotAnalyse
from gateway.shell.options import (
    Options,
    decisive,
    joined_code,
    literal,
    long_option,
    name_in,
    parse,
)
from gateway.shell.tool import Run, Tool
from gateway.shell.words import Hole, Word

_SHELL_LONG_VALUE = frozenset({"rcfile", "init-file"})
_SHELL_LONG_FLAGS = frozenset({"norc", "noprofile", "login", "posix", "restricted", "verbose",
                               "version", "debugger", "dump-strings", "dump-po-strings",
                               "help", "noediting", "pretty-print"})
_LETTERS = "abefhklmnprtuvxBCEHPTDIVXY"

SHELL_OPTIONS = {
    "bash": Options(value="oO", flags=_LETTERS, long_value=_SHELL_LONG_VALUE,
                    long_flags=_SHELL_LONG_FLAGS),
    "rbash": Options(value="oO", flags=_LETTERS, long_value=_SHELL_LONG_VALUE,
                     long_flags=_SHELL_LONG_FLAGS),
    "sh": Options(value="o", flags=_LETTERS),
    "dash": Options(value="o", flags=_LETTERS),
    "ash": Options(value="o", flags=_LETTERS),
    "posh": Options(value="o", flags=_LETTERS),
    "yash": Options(value="o", flags=_LETTERS,
                    long_value=frozenset({"rcfile", "profile"}),
                    long_flags=frozenset({"noprofile", "norcfile", "posix", "help", "version",
                                          "interactive", "login"})),
    "zsh": Options(value="o", flags=_LETTERS + "dfgjqwyzFGJKLMNOQRSUWZ0123456789",
                   long_value=frozenset({"emulate"})),
    "ksh": Options(value="oRT", flags=_LETTERS),
    "mksh": Options(value="oT", flags=_LETTERS),
}
SHELL_NAMES = frozenset(SHELL_OPTIONS)

# Paths that name the shell's own stdin: a script read from them comes from the pipe.
_STDIN_PATHS = frozenset({"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"})


def shell_run(name: str, args: Sequence[str]) -> Run:
    """What a POSIX-family shell started as `name ARGS...` (no shell in between) runs:
    `code` for -c, a `script` operand, or `stdin`. CannotAnalyse for unknown options."""
    runs = _shell_runs(name, SHELL_OPTIONS[name], [Word.of(name), *map(Word.of, args)], False)
    return runs[0] if runs else Run(code="")


def shell(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """A POSIX-family shell: -c STRING, a script file, or commands read from stdin."""
    return _shell_runs(tool.name, tool.options, words, runtime)


def _shell_runs(name: str, opts: Options, words: Sequence[Word], runtime: bool) -> list[Run]:
    i, n = 1, len(words)
    command = stdin = False
    while i < n:
        w = words[i]
        if any(isinstance(s, Hole) and s.source.startswith(("<(", ">(")) for s in w.segments):
            raise CannotAnalyse(f"{name}: a script from a process substitution")
        text = decisive(w, name, "an option")
        if text in ("--", "-"):
            i += 1
            if text == "-" and i >= n:
                stdin = True
            break
        if text.startswith("--") and len(text) > 2:
            long, eq, _ = text[2:].partition("=")
            full = long_option(opts, long, name)
            i += 2 if full in opts.long_value and not eq else 1
            continue
        if text[0] in "-+" and len(text) > 1:
            for k, c in enumerate(text[1:], 1):
                if c == "c" and text[0] == "-":
                    command = True
                elif c in "si" and text[0] == "-":
                    stdin = stdin or c == "s"
                elif c in opts.value:
                    if k != len(text) - 1:
                        raise CannotAnalyse(f"{name}: -{c} must end its option group")
                    i += 1
                elif c not in opts.flags:
                    raise CannotAnalyse(f"{name}: unknown option {text[0]}{c}")
            i += 1
            continue
        break
    if command:
        if i >= n:
            if runtime:
                raise CannotAnalyse(f"{name} -c: the code is filled in at run time")
            return []
        return [Run(code=literal(words[i], f"{name} -c string"))]
    if stdin or i >= n:
        if runtime:
            raise CannotAnalyse(f"{name}: the script is filled in at run time")
        return [Run(stdin=True)]
    if words[i].literal in _STDIN_PATHS:
        return [Run(stdin=True)]
    return [Run(script=words[i])]


def su(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """su/runuser: -c CODE for the user's shell; runuser -u USER runs a command directly."""
    if runtime:
        raise CannotAnalyse(f"{tool.name}: arguments are filled in at run time")
    rest = [w for w in words[1:]]
    # A lone `-` means --login; getopt would read it as an operand.
    idx = [k + 1 for k, w in enumerate(rest) if w.literal != "-"]
    kept = [words[0], *(words[k] for k in idx)]
    found, operands, _ = parse(tool.options, kept, 1, tool.name)
    opts = dict(found)
    login_shell = opts.get("s") or opts.get("shell")
    if login_shell is not None and literal(login_shell, f"{tool.name} -s").rsplit("/", 1)[-1] \
            not in SHELL_NAMES:
        raise CannotAnalyse(f"{tool.name}: shell {login_shell.display()} is not analysed")
    if "u" in opts or "user" in opts:
        argv = tuple(kept[k] for k in operands)
        return [Run(argv=argv)] if argv else []
    code = opts.get("c") or opts.get("command") or opts.get("session-command")
    if code is not None:
        return [Run(code=literal(code, f"{tool.name} -c string"))]
    extra = [kept[k] for k in operands[1:]]
    if extra:
        return _shell_runs("sh", SHELL_OPTIONS["sh"], [Word.of("sh"), *extra], False)
    return [Run(stdin=True)]


def eval_(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """eval: its words joined by spaces are parsed as shell code; all must be literal."""
    if runtime:
        raise CannotAnalyse("eval: its code is filled in at run time")
    rest = words[1:]
    if rest and rest[0].literal == "--":
        rest = rest[1:]
    if not rest:
        return []
    return [Run(code=joined_code(rest, "eval argument"))]


def source(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """source FILE / . FILE: the file is read and judged like -c code."""
    rest = list(words[1:])
    if rest and rest[0].literal == "--":
        rest = rest[1:]
    if not rest:
        return []
    if rest[0].literal in _STDIN_PATHS - {"-"}:
        return [Run(stdin=True)]
    return [Run(script=rest[0])]


def trap(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """trap [-lp] [[ACTION] SIGNAL...]: ACTION is shell code run on the signal."""
    if runtime:
        raise CannotAnalyse("trap: its arguments are filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    rest = words[i:]
    if name_in(found, "l", "p", "P") or len(rest) < 2:
        return []
    action = literal(rest[0], "trap action")
    if action in ("", "-"):
        return []
    return [Run(code=action)]


def mapfile(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """mapfile/readarray: -C CALLBACK is code run with two more arguments; sets ARRAY."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    names = [literal(w, "mapfile array name") for w in words[i:]]
    for name in names or ["MAPFILE"]:
        check_assigned(name)
    for name, value in found:
        if name == "C" and value is not None:
            return [Run(code=literal(value, "mapfile callback"), runtime_args=True)]
    return []


def other_shell(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """Shells outside the POSIX family: code given to them is not analysed."""
    for w in words[1:]:
        text = w.literal
        if text is None:
            raise CannotAnalyse(f"{tool.name}: {w.display()} is set at run time")
        low = text.lower()
        if low.startswith("--") and ("command" in low or low.startswith("--init")):
            raise CannotAnalyse(f"{tool.name}: its code is not analysed")
        if low.startswith("-") and not low.startswith("--") and (
                "c" in low or low.startswith(("-e", "-i"))):
            raise CannotAnalyse(f"{tool.name}: its code is not analysed")
    return []
