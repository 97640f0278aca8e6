"""Handlers for the tools that run another command's words: wrappers and runners.

Each reads its own options, then finds where the inner command starts: after fixed
operands (`timeout 5`), after `NAME=VALUE` operands (`env`, `sudo`), between
`-exec` and `;` (`find`), or in words joined into shell code (`watch`, `parallel`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.shell.assignments import check_assigned
from gateway.shell.errors import CannotAnalyse
from gateway.shell.options import (
    Found,
    decisive,
    joined_code,
    literal,
    name_in,
    option_names,
    parse,
)
from gateway.shell.tool import Run, Tool
from gateway.shell.words import Word

# Tools that start a shell reading stdin when no command is given.
_STDIN_SHELL_WHEN_EMPTY = frozenset({"chroot", "nsenter", "unshare"})


def _runs_nothing(tool: Tool, found: Found) -> bool:
    """True when an option found means the tool runs no command (`command -v`, --help)."""
    names = option_names(found)
    return bool(names & set(tool.no_command) or names & tool.no_command_long)


def _command_at(tool: Tool, words: Sequence[Word], i: int, runtime: bool,
                stdin_when_empty: bool = False) -> list[Run]:
    """The command that starts at `words[i]`; with none, a shell on stdin or nothing."""
    if i >= len(words):
        if runtime:
            raise CannotAnalyse(f"{tool.name}: its command is filled in at run time")
        return [Run(stdin=True)] if stdin_when_empty else []
    return [Run(argv=tuple(words[i:]), start=i, runtime_args=runtime)]


def plain(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """Options, `tool.operands` fixed operands, then the command and its arguments."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    if _runs_nothing(tool, found):
        return []
    i += tool.operands
    if i >= len(words) and runtime:
        raise CannotAnalyse(f"{tool.name}: its command is filled in at run time")
    if tool.name == "chrt" and tool.operands and i - 1 < len(words) \
            and not (words[i - 1].literal or "").isdigit():
        i -= 1  # the priority may be left out for the non-real-time policies
    return _command_at(tool, words, i, runtime, tool.name in _STDIN_SHELL_WHEN_EMPTY)


_SPLIT = re.compile(r"""\s*(?:'([^']*)'|"([^"\\$]*)"|([^\s'"\\$#]+))""")


def _split_string(text: str) -> list[Word]:
    """env -S: split on blanks with '...' and "..." quoting; anything subtler refused."""
    out: list[Word] = []
    pos = 0
    cur: list[str] | None = None
    while pos < len(text):
        if text[pos].isspace():
            if cur is not None:
                out.append(Word.of("".join(cur)))
                cur = None
            pos += 1
            continue
        m = _SPLIT.match(text, pos)
        if not m or m.end() == pos:
            raise CannotAnalyse("env -S: escapes, variables and comments are not analysed")
        cur = (cur or []) + [m.group(1) or m.group(2) or m.group(3) or ""]
        pos = m.end()
    if cur is not None:
        out.append(Word.of("".join(cur)))
    return out


def env(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """env [OPTION]... [-] [NAME=VALUE]... [COMMAND [ARG]...]; -S STRING is split."""
    i = 1
    while True:
        found, _, i = parse(tool.options, words, i, tool.name)
        split = [v for name, v in found if name in ("S", "split-string")]
        if split:
            # The split string stands where -S was: re-read env's line with it in place.
            parts = _split_string(literal(split[-1] or Word.of(""), "env -S string"))
            rebuilt = [words[0], *parts, *words[i:]]
            return [Run(argv=r.argv, start=-1, code=r.code, stdin=r.stdin,
                        runtime_args=r.runtime_args)
                    for r in env(tool, rebuilt, runtime)]
        if i < len(words) and words[i].literal == "-":
            i += 1
            continue
        break
    i = _operand_assignments(words, i, "env")
    return _command_at(tool, words, i, runtime)


def _operand_assignments(words: Sequence[Word], i: int, tool: str) -> int:
    """Skip `NAME=VALUE` operands (any word with `=` in its literal head), checking names."""
    while i < len(words):
        head = words[i].segments[0] if words[i].segments else ""
        if not isinstance(head, str) or "=" not in head:
            if words[i].has_hole or words[i].has_glob:
                raise CannotAnalyse(f"{tool}: {words[i].display()} may be an assignment")
            return i
        check_assigned(head.split("=", 1)[0])
        i += 1
    return i


def sudo(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """sudo/doas: options, NAME=VALUE operands (sudo), the command; -s/-i alone: a shell."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    if _runs_nothing(tool, found):
        return []
    names = option_names(found)
    if tool.name == "sudo" and "h" in names and all(v is None for k, v in found if k == "h"):
        return []
    if tool.name == "sudo":
        i = _operand_assignments(words, i, "sudo")
    return _command_at(tool, words, i, runtime,
                       bool(names & {"s", "i", "shell", "login"}))


def xargs(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """xargs: the command (default echo) gets stdin's items appended, or put at -I's R."""
    if runtime:
        raise CannotAnalyse("xargs: its arguments are filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    repl: str | None = None
    for name, value in found:
        if name == "I" or (name in ("i", "replace")):
            repl = "{}" if value is None else literal(value, "xargs -I string")
            if not repl:
                raise CannotAnalyse("xargs: empty replacement string")
    if name_in(found, "help", "version", "show-limits"):
        return []
    if i >= len(words):
        return [Run(argv=(Word.of("echo"),), runtime_args=repl is None, placeholder=repl)]
    return [Run(argv=tuple(words[i:]), start=i, runtime_args=repl is None, placeholder=repl)]


_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


def find(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """find: each -exec/-execdir/-ok/-okdir runs the words up to `;` (or `{} +`)."""
    if runtime:
        raise CannotAnalyse("find: its expression is filled in at run time")
    runs: list[Run] = []
    i, n = 1, len(words)
    while i < n:
        text = decisive(words[i], "find", "an action")
        i += 1
        if text not in _EXEC:
            continue
        start = i
        while i < n:
            t = words[i].literal
            if t == ";" or (t == "+" and i > start and words[i - 1].literal == "{}"):
                break
            i += 1
        end = i
        many = i < n and words[i].literal == "+"
        argv = tuple(words[start:end - 1 if many else end])
        if argv:
            runs.append(Run(argv=argv, start=start, runtime_args=many, placeholder="{}"))
        i += 1
    return runs


def flock(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """flock [OPTIONS] FILE COMMAND [ARGS] | FILE -c STRING | FD."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    if name_in(found, "h", "V", "help", "version") or i + 1 >= len(words):
        return []
    nxt = words[i + 1].literal
    if nxt in ("-c", "--command"):
        if runtime or i + 2 >= len(words):
            raise CannotAnalyse("flock -c: the code is filled in at run time")
        return [Run(code=literal(words[i + 2], "flock -c string"))]
    return _command_at(tool, words, i + 1, runtime)


def watch(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """watch: the words are joined and run by `sh -c`, or exec'd with -x."""
    if runtime:
        raise CannotAnalyse("watch: its command is filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    if i >= len(words):
        return []
    if name_in(found, "x", "exec"):
        return _command_at(tool, words, i, False)
    return [Run(code=joined_code(words[i:], "watch command"))]


def script(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """script [-c COMMAND] [FILE]: the command runs in the user's shell; none: a shell."""
    if runtime:
        raise CannotAnalyse("script: its arguments are filled in at run time")
    found, _, _ = parse(tool.options, words, 1, tool.name)
    if name_in(found, "h", "V", "help", "version"):
        return []
    for name, value in found:
        if name in ("c", "command") and value is not None:
            return [Run(code=literal(value, "script -c string"))]
    return [Run(stdin=True)]


_PARALLEL_SEPARATORS = frozenset({":::", "::::", ":::+", "::::+"})
_PLACEHOLDER = re.compile(r"\{(?:=.*?=|[0-9]*(?:\.|/|//|/\.|#|%)?)\}")


def parallel(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """GNU parallel: the command words are joined and run by a shell with the inputs."""
    if runtime:
        raise CannotAnalyse("parallel: its arguments are filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    end = i
    while end < len(words) and words[end].literal not in _PARALLEL_SEPARATORS:
        end += 1
    if end == i:
        if name_in(found, "help", "version", "h"):
            return []
        raise CannotAnalyse("parallel: the commands come from its inputs")
    code = joined_code(words[i:end], "parallel command")
    has_placeholder = False
    if _PLACEHOLDER.search(code):
        has_placeholder = True
        code = _PLACEHOLDER.sub('"${PARALLEL_ARG}"', code)
    return [Run(code=code, runtime_args=not has_placeholder)]


def busybox(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """busybox APPLET [ARGS]: the applet runs as a command of that name."""
    if len(words) < 2:
        return []
    first = words[1].literal
    if first is None or words[1].may_split:
        raise CannotAnalyse("busybox: the applet is set at run time")
    if first.startswith("-"):
        return []
    return _command_at(tool, words, 1, runtime)
