"""The one table of wrappers, runners and shells, with the options that take a value.

Each entry says how the tool reads its arguments (after GNU coreutils, util-linux,
sudo, findutils and bash) and what it then runs: another command's words, a string
of shell code, a script file, or a script read from stdin. Where an option the table
does not know decides where the inner command starts, the command is
cannot-analyse: a guess there is how a wrapper hides what it runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from gateway.shell.expand import CannotAnalyse, check_assigned
from gateway.shell.words import Hole, Word


class Kind(Enum):
    """How a tool's own line is judged."""

    SHELL = "shell"  # runs shell code; seen through when that code is judged
    WRAPPER = "wrapper"  # adjusts how the next program runs; seen through
    RUNNER = "runner"  # a part of its own; what it runs is judged too


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


@dataclass(frozen=True, slots=True)
class Run:
    """One thing a tool runs: words of a command, shell code, a script file or stdin."""

    argv: tuple[Word, ...] = ()
    start: int = -1  # index of argv[0] in the tool's words; -1 when built
    code: str | None = None
    script: Word | None = None
    stdin: bool = False
    runtime_args: bool = False
    placeholder: str | None = None


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


def _lf(*names: str) -> frozenset[str]:
    return frozenset(names)


def _fixed(word: Word, tool: str) -> Word:
    if word.may_split or word.has_glob:
        raise CannotAnalyse(f"{tool}: {word.display()} may become several words")
    return word


def _long(opts: Options, name: str, tool: str) -> str:
    known = opts.long_value | opts.long_flags | opts.long_optional
    if name in known:
        return name
    hits = [k for k in known if k.startswith(name)] if name else []
    if len(hits) == 1:
        return hits[0]
    raise CannotAnalyse(f"{tool}: unknown option --{name}")


def parse(opts: Options, words: Sequence[Word], i: int,
          tool: str) -> tuple[list[tuple[str, Word | None]], list[int], int]:
    """Read options from `words[i:]` as getopt_long does.

    Returns the options found (name, value), the operand indices when options
    permute, and the index where reading stopped.
    """
    found: list[tuple[str, Word | None]] = []
    operands: list[int] = []
    n = len(words)
    while i < n:
        w = words[i]
        text = w.literal
        if text is None or w.may_split:
            raise CannotAnalyse(f"{tool}: {w.display()} is set at run time where an "
                                "option may stand")
        if text == "--":
            i += 1
            if opts.permute:
                operands.extend(range(i, n))
                i = n
            break
        if text.startswith("--"):
            name, eq, val = text[2:].partition("=")
            full = _long(opts, name, tool)
            if full in opts.long_value:
                if eq:
                    found.append((full, Word.of(val)))
                elif i + 1 < n:
                    found.append((full, _fixed(words[i + 1], tool)))
                    i += 1
                else:
                    raise CannotAnalyse(f"{tool}: --{full} needs a value")
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
                    if rest:
                        found.append((c, Word.of(rest)))
                    elif i + 1 < n:
                        found.append((c, _fixed(words[i + 1], tool)))
                        i += 1
                    else:
                        raise CannotAnalyse(f"{tool}: -{c} needs a value")
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


def _names(found: list[tuple[str, Word | None]]) -> set[str]:
    return {name for name, _ in found}


def _literal(word: Word, what: str) -> str:
    text = word.literal
    if text is None:
        raise CannotAnalyse(f"{what} is set at run time: {word.display()}")
    return text


# --- handlers -----------------------------------------------------------------------

def _plain(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """Options, `tool.operands` fixed operands, then the command and its arguments."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    names = _names(found)
    if names & set(tool.no_command) or names & tool.no_command_long:
        return []
    i += tool.operands
    if i >= len(words) and runtime:
        raise CannotAnalyse(f"{tool.name}: its command is filled in at run time")
    if tool.name == "chrt" and tool.operands and i - 1 < len(words) \
            and not (words[i - 1].literal or "").isdigit():
        i -= 1  # the priority may be left out for the non-real-time policies
    if i >= len(words):
        if tool.name in _STDIN_SHELL_WHEN_EMPTY:
            return [Run(stdin=True)]
        return []
    return [Run(argv=tuple(words[i:]), start=i, runtime_args=runtime)]


_STDIN_SHELL_WHEN_EMPTY = frozenset({"chroot", "nsenter", "unshare"})

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


def _env(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """env [OPTION]... [-] [NAME=VALUE]... [COMMAND [ARG]...]; -S STRING is split."""
    i = 1
    while True:
        found, _, i = parse(tool.options, words, i, tool.name)
        split = [v for name, v in found if name in ("S", "split-string")]
        if split:
            # The split string stands where -S was: re-read env's line with it in place.
            parts = _split_string(_literal(split[-1] or Word.of(""), "env -S string"))
            rebuilt = [words[0], *parts, *words[i:]]
            return [Run(argv=r.argv, start=-1, code=r.code, stdin=r.stdin,
                        runtime_args=r.runtime_args)
                    for r in _env(tool, rebuilt, runtime)]
        if i < len(words) and words[i].literal == "-":
            i += 1
            continue
        break
    i = _operand_assignments(words, i, "env")
    if i >= len(words):
        if runtime:
            raise CannotAnalyse("env: its command is filled in at run time")
        return []
    return [Run(argv=tuple(words[i:]), start=i, runtime_args=runtime)]


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


def _sudo(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """sudo/doas: options, NAME=VALUE operands (sudo), the command; -s/-i alone: a shell."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    names = _names(found)
    if names & set(tool.no_command) or names & tool.no_command_long:
        return []
    if tool.name == "sudo" and "h" in names and all(v is None for k, v in found if k == "h"):
        return []
    if tool.name == "sudo":
        i = _operand_assignments(words, i, "sudo")
    if i >= len(words) and runtime:
        raise CannotAnalyse(f"{tool.name}: its command is filled in at run time")
    if i >= len(words):
        if names & {"s", "i", "shell", "login"}:
            return [Run(stdin=True)]
        return []
    return [Run(argv=tuple(words[i:]), start=i, runtime_args=runtime)]


def _su(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """su/runuser: -c CODE for the user's shell; runuser -u USER runs a command directly."""
    if runtime:
        raise CannotAnalyse(f"{tool.name}: arguments are filled in at run time")
    rest = [w for w in words[1:]]
    # A lone `-` means --login; getopt would read it as an operand.
    idx = [k + 1 for k, w in enumerate(rest) if w.literal != "-"]
    kept = [words[0], *(words[k] for k in idx)]
    found, operands, _ = parse(tool.options, kept, 1, tool.name)
    opts = dict(found)
    shell = opts.get("s") or opts.get("shell")
    if shell is not None and _literal(shell, f"{tool.name} -s").rsplit("/", 1)[-1] \
            not in SHELL_NAMES:
        raise CannotAnalyse(f"{tool.name}: shell {shell.display()} is not analysed")
    if "u" in opts or "user" in opts:
        argv = tuple(kept[k] for k in operands)
        return [Run(argv=argv)] if argv else []
    code = opts.get("c") or opts.get("command") or opts.get("session-command")
    if code is not None:
        return [Run(code=_literal(code, f"{tool.name} -c string"))]
    extra = [kept[k] for k in operands[1:]]
    if extra:
        return _shell(TOOLS["sh"], [Word.of("sh"), *extra], False)
    return [Run(stdin=True)]


_STDIN_PATHS = frozenset({"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"})


def _shell(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """A POSIX-family shell: -c STRING, a script file, or commands read from stdin."""
    opts = tool.options
    i, n = 1, len(words)
    command = stdin = False
    while i < n:
        w = words[i]
        text = w.literal
        if any(isinstance(s, Hole) and s.source.startswith(("<(", ">(")) for s in w.segments):
            raise CannotAnalyse(f"{tool.name}: a script from a process substitution")
        if text is None or w.may_split:
            raise CannotAnalyse(f"{tool.name}: {w.display()} is set at run time where an "
                                "option may stand")
        if text in ("--", "-"):
            i += 1
            if text == "-" and i >= n:
                stdin = True
            break
        if text.startswith("--") and len(text) > 2:
            name, eq, _ = text[2:].partition("=")
            full = _long(opts, name, tool.name)
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
                        raise CannotAnalyse(f"{tool.name}: -{c} must end its option group")
                    i += 1
                elif c not in opts.flags:
                    raise CannotAnalyse(f"{tool.name}: unknown option {text[0]}{c}")
            i += 1
            continue
        break
    if command:
        if i >= n:
            if runtime:
                raise CannotAnalyse(f"{tool.name} -c: the code is filled in at run time")
            return []
        return [Run(code=_literal(words[i], f"{tool.name} -c string"))]
    if stdin or i >= n:
        if runtime:
            raise CannotAnalyse(f"{tool.name}: the script is filled in at run time")
        return [Run(stdin=True)]
    if words[i].literal in _STDIN_PATHS:
        return [Run(stdin=True)]
    return [Run(script=words[i])]


def _xargs(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """xargs: the command (default echo) gets stdin's items appended, or put at -I's R."""
    if runtime:
        raise CannotAnalyse("xargs: its arguments are filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    repl: str | None = None
    for name, value in found:
        if name == "I" or (name in ("i", "replace")):
            repl = "{}" if value is None else _literal(value, "xargs -I string")
            if not repl:
                raise CannotAnalyse("xargs: empty replacement string")
    if name_in(found, "help", "version", "show-limits"):
        return []
    if i >= len(words):
        return [Run(argv=(Word.of("echo"),), runtime_args=repl is None, placeholder=repl)]
    return [Run(argv=tuple(words[i:]), start=i, runtime_args=repl is None, placeholder=repl)]


def name_in(found: list[tuple[str, Word | None]], *names: str) -> bool:
    """True when one of `names` is among the options found."""
    return any(k in names for k, _ in found)


_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})


def _find(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """find: each -exec/-execdir/-ok/-okdir runs the words up to `;` (or `{} +`)."""
    if runtime:
        raise CannotAnalyse("find: its expression is filled in at run time")
    runs: list[Run] = []
    i, n = 1, len(words)
    while i < n:
        w = words[i]
        text = w.literal
        if text is None or w.may_split:
            raise CannotAnalyse(f"find: {w.display()} is set at run time where an action "
                                "may stand")
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


def _flock(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """flock [OPTIONS] FILE COMMAND [ARGS] | FILE -c STRING | FD."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    if name_in(found, "h", "V", "help", "version") or i + 1 >= len(words):
        return []
    nxt = words[i + 1].literal
    if nxt in ("-c", "--command"):
        if runtime or i + 2 >= len(words):
            raise CannotAnalyse("flock -c: the code is filled in at run time")
        return [Run(code=_literal(words[i + 2], "flock -c string"))]
    return [Run(argv=tuple(words[i + 1:]), start=i + 1, runtime_args=runtime)]


def _joined_code(words: Sequence[Word], what: str) -> str:
    return " ".join(_literal(w, what) for w in words)


def _watch(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """watch: the words are joined and run by `sh -c`, or exec'd with -x."""
    if runtime:
        raise CannotAnalyse("watch: its command is filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    if i >= len(words):
        return []
    if name_in(found, "x", "exec"):
        return [Run(argv=tuple(words[i:]), start=i)]
    return [Run(code=_joined_code(words[i:], "watch command"))]


def _script(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """script [-c COMMAND] [FILE]: the command runs in the user's shell; none: a shell."""
    if runtime:
        raise CannotAnalyse("script: its arguments are filled in at run time")
    found, _, _ = parse(tool.options, words, 1, tool.name)
    if name_in(found, "h", "V", "help", "version"):
        return []
    for name, value in found:
        if name in ("c", "command") and value is not None:
            return [Run(code=_literal(value, "script -c string"))]
    return [Run(stdin=True)]


_PARALLEL_SEPARATORS = frozenset({":::", "::::", ":::+", "::::+"})
_PLACEHOLDER = re.compile(r"\{(?:=.*?=|[0-9]*(?:\.|/|//|/\.|#|%)?)\}")


def _parallel(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
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
    code = _joined_code(words[i:end], "parallel command")
    has_placeholder = False
    if _PLACEHOLDER.search(code):
        has_placeholder = True
        code = _PLACEHOLDER.sub('"${PARALLEL_ARG}"', code)
    return [Run(code=code, runtime_args=not has_placeholder)]


def _busybox(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """busybox APPLET [ARGS]: the applet runs as a command of that name."""
    if len(words) < 2:
        return []
    first = words[1].literal
    if first is None or words[1].may_split:
        raise CannotAnalyse("busybox: the applet is set at run time")
    if first.startswith("-"):
        return []
    return [Run(argv=tuple(words[1:]), start=1, runtime_args=runtime)]


def _eval(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """eval: its words joined by spaces are parsed as shell code; all must be literal."""
    if runtime:
        raise CannotAnalyse("eval: its code is filled in at run time")
    rest = words[1:]
    if rest and rest[0].literal == "--":
        rest = rest[1:]
    if not rest:
        return []
    return [Run(code=_joined_code(rest, "eval argument"))]


def _source(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """source FILE / . FILE: the file is read and judged like -c code."""
    rest = list(words[1:])
    if rest and rest[0].literal == "--":
        rest = rest[1:]
    if not rest:
        return []
    if rest[0].literal in _STDIN_PATHS - {"-"}:
        return [Run(stdin=True)]
    return [Run(script=rest[0])]


def _trap(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """trap [-lp] [[ACTION] SIGNAL...]: ACTION is shell code run on the signal."""
    if runtime:
        raise CannotAnalyse("trap: its arguments are filled in at run time")
    found, _, i = parse(tool.options, words, 1, tool.name)
    rest = words[i:]
    if name_in(found, "l", "p", "P") or len(rest) < 2:
        return []
    action = _literal(rest[0], "trap action")
    if action in ("", "-"):
        return []
    return [Run(code=action)]


def _mapfile(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
    """mapfile/readarray: -C CALLBACK is code run with two more arguments; sets ARRAY."""
    found, _, i = parse(tool.options, words, 1, tool.name)
    names = [_literal(w, "mapfile array name") for w in words[i:]]
    for name in names or ["MAPFILE"]:
        check_assigned(name)
    for name, value in found:
        if name == "C" and value is not None:
            return [Run(code=_literal(value, "mapfile callback"), runtime_args=True)]
    return []


def _other_shell(tool: Tool, words: Sequence[Word], runtime: bool) -> list[Run]:
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


# --- the table ----------------------------------------------------------------------

_SHELL_LONG_VALUE = _lf("rcfile", "init-file")
_SHELL_LONG_FLAGS = _lf("norc", "noprofile", "login", "posix", "restricted", "verbose",
                        "version", "debugger", "dump-strings", "dump-po-strings", "help",
                        "noediting", "pretty-print")
_LETTERS = "abefhklmnprtuvxBCEHPTDIVXY"

_SHELLS = {
    "bash": Options(value="oO", flags=_LETTERS, long_value=_SHELL_LONG_VALUE,
                    long_flags=_SHELL_LONG_FLAGS),
    "rbash": Options(value="oO", flags=_LETTERS, long_value=_SHELL_LONG_VALUE,
                     long_flags=_SHELL_LONG_FLAGS),
    "sh": Options(value="o", flags=_LETTERS),
    "dash": Options(value="o", flags=_LETTERS),
    "ash": Options(value="o", flags=_LETTERS),
    "posh": Options(value="o", flags=_LETTERS),
    "yash": Options(value="o", flags=_LETTERS,
                    long_value=_lf("rcfile", "profile"),
                    long_flags=_lf("noprofile", "norcfile", "posix", "help", "version",
                                   "interactive", "login")),
    "zsh": Options(value="o", flags=_LETTERS + "dfgjqwyzFGJKLMNOQRSUWZ0123456789",
                   long_value=_lf("emulate")),
    "ksh": Options(value="oRT", flags=_LETTERS),
    "mksh": Options(value="oT", flags=_LETTERS),
}

SHELL_NAMES = frozenset(_SHELLS)
OTHER_SHELLS = frozenset({"fish", "csh", "tcsh", "pwsh", "powershell", "nu", "xonsh",
                          "elvish", "rc", "es", "ion", "osh", "oil", "ysh", "nush"})

_COREUTILS = _lf("help", "version")


def _table() -> dict[str, Tool]:
    t: dict[str, Tool] = {}

    def add(tool: Tool) -> None:
        t[tool.name] = tool

    for name, opts in _SHELLS.items():
        add(Tool(name, Kind.SHELL, opts, _shell, doc="-c STRING, FILE, or stdin"))
    for name in OTHER_SHELLS:
        add(Tool(name, Kind.RUNNER, Options(), _other_shell, doc="code given is refused"))
    add(Tool("eval", Kind.SHELL, Options(), _eval, doc="literal words are parsed"))
    add(Tool("source", Kind.SHELL, Options(), _source, doc="FILE read and parsed"))
    add(Tool(".", Kind.SHELL, Options(), _source, doc="FILE read and parsed"))

    add(Tool("env", Kind.WRAPPER, Options(
        value="uCS", flags="i0v",
        long_value=_lf("unset", "chdir", "split-string"),
        long_flags=_lf("ignore-environment", "null", "debug", "list-signal-handling",
                       *_COREUTILS),
        long_optional=_lf("default-signal", "ignore-signal", "block-signal")), _env))
    add(Tool("nice", Kind.WRAPPER, Options(value="n", long_value=_lf("adjustment"),
                                           long_flags=_COREUTILS, numeric=True), _plain))
    add(Tool("nohup", Kind.WRAPPER, Options(long_flags=_COREUTILS), _plain))
    add(Tool("timeout", Kind.WRAPPER, Options(
        value="ks", flags="vfp", long_value=_lf("kill-after", "signal"),
        long_flags=_lf("verbose", "foreground", "preserve-status", *_COREUTILS)),
        _plain, operands=1, no_command_long=_COREUTILS))
    add(Tool("stdbuf", Kind.WRAPPER, Options(
        value="ioe", long_value=_lf("input", "output", "error"), long_flags=_COREUTILS),
        _plain, no_command_long=_COREUTILS))
    add(Tool("time", Kind.WRAPPER, Options(
        value="fo", flags="apqvV", long_value=_lf("format", "output"),
        long_flags=_lf("append", "portability", "verbose", "quiet", *_COREUTILS)), _plain))
    add(Tool("command", Kind.WRAPPER, Options(flags="pvV"), _plain, no_command="vV"))
    add(Tool("builtin", Kind.WRAPPER, Options(), _plain))
    add(Tool("exec", Kind.WRAPPER, Options(value="a", flags="cl"), _plain))
    add(Tool("coproc", Kind.WRAPPER, Options(), _plain))
    add(Tool("ionice", Kind.WRAPPER, Options(
        value="cnpPu", flags="thV", long_value=_lf("class", "classdata", "pid", "pgid", "uid"),
        long_flags=_lf("ignore", *_COREUTILS)), _plain, no_command="pPuhV",
        no_command_long=_lf("pid", "pgid", "uid", *_COREUTILS)))
    add(Tool("chrt", Kind.WRAPPER, Options(
        value="TPD", flags="abdefioRrmpvhV",
        long_value=_lf("sched-runtime", "sched-period", "sched-deadline"),
        long_flags=_lf("all-tasks", "batch", "deadline", "fifo", "idle", "other", "rr",
                       "reset-on-fork", "pid", "max", "verbose", "ext", *_COREUTILS)),
        _plain, operands=1, no_command="pmhV", no_command_long=_lf("pid", "max", *_COREUTILS)))
    add(Tool("taskset", Kind.WRAPPER, Options(
        flags="acphV", long_flags=_lf("all-tasks", "cpu-list", "pid", *_COREUTILS)),
        _plain, operands=1, no_command="phV", no_command_long=_lf("pid", *_COREUTILS)))
    add(Tool("setsid", Kind.WRAPPER, Options(
        flags="cfwhV", long_flags=_lf("ctty", "fork", "wait", *_COREUTILS)),
        _plain, no_command="hV"))

    add(Tool("sudo", Kind.RUNNER, Options(
        value="aCcDgpRrTtUu", flags="ABbEeHiKklNnPSsVv", optional="h",
        long_value=_lf("auth-type", "close-from", "chdir", "group", "host", "prompt",
                       "chroot", "role", "type", "command-timeout", "other-user", "user",
                       "login-class"),
        long_flags=_lf("askpass", "background", "bell", "edit", "set-home", "help", "login",
                       "remove-timestamp", "reset-timestamp", "list", "non-interactive",
                       "preserve-groups", "stdin", "shell", "version", "validate"),
        long_optional=_lf("preserve-env")), _sudo,
        no_command="eKlvV", no_command_long=_lf("edit", "remove-timestamp", "list",
                                                "validate", "version", "help")))
    add(Tool("doas", Kind.RUNNER, Options(value="aCu", flags="Lns"), _sudo,
             no_command="CL"))
    su_opts = dict(value="cgGsw", flags="flmpPhV",
                   long_value=_lf("command", "session-command", "group", "supp-group",
                                  "shell", "whitelist-environment"),
                   long_flags=_lf("fast", "login", "preserve-environment", "pty",
                                  *_COREUTILS), permute=True)
    add(Tool("su", Kind.RUNNER, Options(**su_opts), _su))  # type: ignore[arg-type]
    add(Tool("runuser", Kind.RUNNER, Options(**{  # type: ignore[arg-type]
        **su_opts, "value": "cgGswu",
        "long_value": su_opts["long_value"] | {"user"}}), _su))  # type: ignore[operator]
    add(Tool("chroot", Kind.RUNNER, Options(
        long_value=_lf("userspec", "groups"), long_flags=_lf("skip-chdir", *_COREUTILS)),
        _plain, operands=1, no_command_long=_COREUTILS))
    ns = "muinpCUT"
    add(Tool("nsenter", Kind.RUNNER, Options(
        value="tSGW", flags="ahVecFZ", optional=ns + "rw",
        long_value=_lf("target", "setuid", "setgid", "wdns"),
        long_flags=_lf("all", "preserve-credentials", "env", "no-fork", "follow-context",
                       "join-cgroup", "user-parent", "keep-caps", *_COREUTILS),
        long_optional=_lf("mount", "uts", "ipc", "net", "pid", "cgroup", "user", "time",
                          "root", "wd")), _plain, no_command="hV",
        no_command_long=_COREUTILS))
    add(Tool("unshare", Kind.RUNNER, Options(
        value="RwSGl", flags="fhVrc", optional=ns,
        long_value=_lf("map-user", "map-users", "map-group", "map-groups", "propagation",
                       "setgroups", "setuid", "setgid", "root", "wd", "monotonic",
                       "boottime", "load-interp"),
        long_flags=_lf("fork", "map-root-user", "map-current-user", "map-auto", "keep-caps",
                       *_COREUTILS),
        long_optional=_lf("mount", "uts", "ipc", "net", "pid", "user", "cgroup", "time",
                          "kill-child", "mount-proc")), _plain, no_command="hV",
        no_command_long=_COREUTILS))
    add(Tool("flock", Kind.RUNNER, Options(
        value="wE", flags="sexunoFhV",
        long_value=_lf("timeout", "wait", "conflict-exit-code"),
        long_flags=_lf("shared", "exclusive", "unlock", "nonblock", "nb", "close", "no-fork",
                       "verbose", *_COREUTILS)), _flock))
    add(Tool("xargs", Kind.RUNNER, Options(
        value="aEILnsPd", flags="0oprtx", optional="eil",
        long_value=_lf("arg-file", "delimiter", "max-args", "max-procs", "max-chars",
                       "process-slot-var"),
        long_flags=_lf("null", "open-tty", "interactive", "no-run-if-empty", "verbose",
                       "exit", "show-limits", *_COREUTILS),
        long_optional=_lf("eof", "replace", "max-lines")), _xargs))
    add(Tool("parallel", Kind.RUNNER, Options(
        value="jSaCdEInNLPs", flags="kvuq0rmgXh",
        long_value=_lf("jobs", "sshlogin", "arg-file", "colsep", "delimiter", "eof",
                       "replace", "max-args", "max-replace-args", "max-lines", "max-procs",
                       "results", "tmpdir", "timeout", "joblog", "env", "workdir", "wd",
                       "basefile", "bf", "return", "transferfile", "tf", "sshloginfile",
                       "slf", "halt", "delay", "memfree", "load", "retries", "tagstring",
                       "tag-string", "header", "block", "block-size", "max-chars",
                       "sshdelay", "termseq", "nice", "shebang-wrap-string"),
        long_flags=_lf("keep-order", "verbose", "dry-run", "tag", "ungroup", "line-buffer",
                       "null", "quote", "pipe", "xargs", "eta", "progress", "bar", "group",
                       "no-notice", "will-cite", "no-run-if-empty", "halt-on-error",
                       "linebuffer", "citation", "help", "version", "lb", "keep")), _parallel))
    add(Tool("watch", Kind.RUNNER, Options(
        value="nq", flags="bcCegprtwxhv", optional="d",
        long_value=_lf("interval", "equexit"),
        long_flags=_lf("beep", "color", "no-color", "errexit", "chgexit", "precise",
                       "no-rerun", "no-title", "no-wrap", "no-linewrap", "exec", *_COREUTILS),
        long_optional=_lf("differences")), _watch))
    add(Tool("script", Kind.RUNNER, Options(
        value="BcEIOoTm", flags="aefqVh", optional="t",
        long_value=_lf("log-io", "command", "echo", "log-in", "log-out", "output-limit",
                       "logging-format", "log-timing"),
        long_flags=_lf("append", "return", "flush", "force", "quiet", *_COREUTILS),
        long_optional=_lf("timing"), permute=True), _script))
    add(Tool("find", Kind.RUNNER, Options(), _find))
    add(Tool("busybox", Kind.RUNNER, Options(), _busybox))
    add(Tool("trap", Kind.RUNNER, Options(flags="lpP"), _trap))
    mapfile = Options(value="dnOsuCc", flags="t")
    add(Tool("mapfile", Kind.RUNNER, mapfile, _mapfile))
    add(Tool("readarray", Kind.RUNNER, mapfile, _mapfile))
    return t


TOOLS: Mapping[str, Tool] = MappingProxyType(_table())


def tool_for(program: str) -> Tool | None:
    """The table entry for a program word, by basename."""
    return TOOLS.get(program)
