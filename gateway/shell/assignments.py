"""Assignments that run code: the variables, and every way a line may set one.

bash, the dynamic loader and child shells run the values of some variables as code
(`PS4='$(rm -rf ~)'; set -x` runs `rm`; `LD_PRELOAD` loads a library). A line that
assigns one cannot be judged by its commands, so any way of setting one is
cannot-analyse: a plain assignment, `export`/`declare` and friends, `read`,
`printf -v`, `getopts`, `let`, arithmetic and `${NAME:=...}`.
"""

from __future__ import annotations

import re

from gateway.shell.errors import CannotAnalyse
from gateway.shell.options import Options, parse
from gateway.shell.words import Word

# Variables whose value the shell, the dynamic loader or a child shell runs as code.
_DANGEROUS_EXACT = frozenset(
    {"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND"})
_DANGEROUS_PREFIXES = ("LD_", "BASH_FUNC_")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_LIKE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=")
_PARAM_ASSIGN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?:?=")
_PARAM_PROMPT = re.compile(r"@P\}$")

# Builtins whose operands are assignments or variable names.
DECLARATIONS = frozenset({"export", "declare", "typeset", "readonly", "local"})
_READ_OPTS = Options(value="adinNptu", flags="ers")
_PRINTF_OPTS = Options(value="v")


def is_dangerous_name(name: str) -> bool:
    """True for a variable whose assignment makes bash or the loader run code."""
    return name in _DANGEROUS_EXACT or name.startswith(_DANGEROUS_PREFIXES)


def is_name(text: str) -> bool:
    """True for a valid shell variable name."""
    return _NAME.fullmatch(text) is not None


def check_assigned(name: str) -> None:
    """Refuse the assignment of a variable that runs code (`PS4`, `LD_PRELOAD`, ...)."""
    base = name.split("[", 1)[0]
    if is_dangerous_name(base):
        raise CannotAnalyse(f"assignment of {base} can run code")


def check_arithmetic(text: str) -> None:
    """Refuse arithmetic that names a variable which runs code (it may assign it)."""
    for ident in _NAME.findall(text):
        if is_dangerous_name(ident):
            raise CannotAnalyse(f"arithmetic on {ident} can run code")


def assigned_name(word: Word) -> str | None:
    """The variable an operand such as `NAME=value` or `NAME[i]+=v` sets, if it is one."""
    head = word.segments[0] if word.segments else ""
    if not isinstance(head, str):
        return None
    m = _ASSIGN_LIKE.match(head)
    return m.group(1) if m else None


def check_parameter(text: str) -> None:
    """Refuse `${PS4:=...}`-style assignments and `${x@P}` (prompt expansion runs code)."""
    m = _PARAM_ASSIGN.match(text)
    if m:
        check_assigned(m.group(1))
    if _PARAM_PROMPT.search(text):
        raise CannotAnalyse("prompt expansion ${...@P} can run code")


def check_builtin(name: str, words: list[Word]) -> None:
    """Refuse builtins that set a variable which runs code (`export PS4=...`)."""
    if name in DECLARATIONS:
        _check_declaration(name, words)
    elif name == "read":
        found, _, i = parse(_READ_OPTS, words, 1, "read")
        for opt, value in found:
            if opt == "a" and value is not None:
                check_assigned(value.literal or "")
        for w in words[i:]:
            check_assigned(w.literal if w.literal is not None else _refuse(w, "read"))
    elif name == "printf":
        if len(words) > 1 and (words[1].literal or "").startswith("-v"):
            found, _, _ = parse(_PRINTF_OPTS, words[:3], 1, "printf")
            for _opt, value in found:
                check_assigned(value.literal if value and value.literal is not None
                               else _refuse(value or words[1], "printf -v"))
    elif name == "getopts":
        if len(words) > 2:
            check_assigned(words[2].literal if words[2].literal is not None
                           else _refuse(words[2], "getopts"))
    elif name == "let":
        for w in words[1:]:
            check_arithmetic(w.display())


def _check_declaration(name: str, words: list[Word]) -> None:
    """export/declare/typeset/readonly/local: each operand names a variable it sets;
    with `-n` the operand is a reference, and its target is checked too."""
    nameref = False
    for w in words[1:]:
        lit = w.literal
        if lit and lit[0] in "-+" and "=" not in lit:
            nameref = nameref or "n" in lit[1:]
            continue
        var = assigned_name(w)
        if var is None:
            if lit is None or not is_name(lit.split("[", 1)[0]):
                raise CannotAnalyse(f"{name}: the variable name is set at run time: "
                                    f"{w.display()}")
            var = lit
        check_assigned(var)
        if nameref and lit is not None and "=" not in lit:
            raise CannotAnalyse(f"{name} -n: a reference whose target is set later")
        if nameref and lit is not None and "=" in lit:
            check_assigned(lit.split("=", 1)[1])
        elif nameref and "=" in w.display():
            raise CannotAnalyse(f"{name} -n: the referenced name is set at run time")


def _refuse(word: Word, what: str) -> str:
    raise CannotAnalyse(f"{what}: the variable name is set at run time: {word.display()}")
