"""Python source -> the actions it would take, found with the `ast` module: files
read and written, commands run, connections made, each with its target as written or
marked dynamic when the code builds it at run time.

Pure: the code is parsed, never imported or run. Literal code passed to `exec`,
`eval` or `compile` is analysed with the block. Relative paths stay relative (the
decider resolves them against the executor's working directory), unless the code
changes directory (`os.chdir`), which makes them dynamic.
"""

from __future__ import annotations

import ast
import contextlib
import re

from gateway.policy.model import Action
from gateway.sdk.found import BlockAnalysis, Found
from gateway.sdk.pycalls import (
    CALLS,
    CHDIR,
    PATH_METHODS,
    PATH_ONLY_METHODS,
    Act,
    Args,
    path_call,
)
from gateway.sdk.pyvalues import UNRESOLVED, Method, PathValue, Ref, Scope

MAX_CALL_TEXT = 120
MAX_CODE_LITERALS = 64  # literal code strings analysed per block (exec("exec('...')"))
_CODE_CALLS = frozenset({"exec", "eval", "compile"})
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")  # lines as the parser counts them


def analyse_python(source: str, language: str = "python") -> BlockAnalysis:
    """Every action found in `source`, in the order written; a block that does not
    parse (or is too deep to) is a `problem`, never an exception."""
    try:
        units = _units(source)
        scope = Scope(ast.Module(body=[s for tree, _, _ in units for s in tree.body],
                                 type_ignores=[]))
        found: list[Found] = []
        chdir = False
        for tree, text, offset in units:
            lines = [line.encode() for line in _LINE.findall(text)]
            calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                           key=lambda n: (n.lineno, n.col_offset))
            for call in calls:
                acts, changes_dir = _acts(scope, call)
                chdir = chdir or changes_dir
                found += [_found(a, call, lines, offset) for a in acts]
    except SyntaxError as e:
        where = f"line {e.lineno}: " if e.lineno else ""
        return BlockAnalysis(language, problem=f"cannot analyse: {where}{e.msg}")
    except (ValueError, RecursionError, MemoryError) as e:
        return BlockAnalysis(language, problem=f"cannot analyse: {_why(e)}")
    if chdir:
        found = [_unanchored(f) for f in found]
    return BlockAnalysis(language, tuple(found), tuple(scope.imports))


def _units(source: str) -> list[tuple[ast.Module, str, int]]:
    """The block's tree, then each literal code string it runs, with its line offset."""
    units = [(ast.parse(source), source, 0)]
    i = 0
    while i < len(units) and len(units) < MAX_CODE_LITERALS:
        tree, _, offset = units[i]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in _CODE_CALLS and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                code = node.args[0].value
                with contextlib.suppress(SyntaxError):  # it fails when run, doing nothing
                    units.append((ast.parse(code), code, offset + node.lineno - 1))
        i += 1
    return units


def _acts(scope: Scope, call: ast.Call) -> tuple[list[Act], bool]:
    """The actions of one call, and whether it changes the working directory."""
    func = scope.eval(call.func)
    if isinstance(func, Ref):
        if UNRESOLVED in func.name:
            return [Act(Action.SHELL_EXEC, None, "calls a function chosen at run time")], False
        if func.name in CHDIR:
            return [], True
        handler = CALLS.get(func.name)
        return (list(handler(func.name, Args(scope, call))) if handler else []), False
    if isinstance(func, Method):
        if isinstance(func.receiver, PathValue) and func.name in PATH_METHODS:
            return list(path_call(func.receiver, func.name, Args(scope, call))), False
        if func.name in PATH_ONLY_METHODS:
            action = Action.FILE_READ if func.name.startswith("read") else Action.FILE_WRITE
            return [Act(action, None, "the path is built at run time")], False
    return [], False


def _found(act: Act, call: ast.Call, lines: list[bytes], offset: int) -> Found:
    text = re.sub(r"\s+", " ", _segment(lines, call)).strip()
    if len(text) > MAX_CALL_TEXT:
        text = text[:MAX_CALL_TEXT - 3] + "..."
    return Found(act.action, act.target, call.lineno + offset, text, method=act.method,
                 cwd=act.cwd, why=act.why)


def _segment(lines: list[bytes], node: ast.expr) -> str:
    """The node as written, at most its first five lines (`ast.get_source_segment`
    splits the whole source again on every call: quadratic in a long block)."""
    first = node.lineno - 1
    end_line = (node.end_lineno or node.lineno) - 1
    last = min(end_line, first + 4)
    end = node.end_col_offset if last == end_line and node.end_col_offset is not None \
        else len(lines[last])
    if first == last:
        chunk = lines[first][node.col_offset:end]
    else:
        chunk = b"".join([lines[first][node.col_offset:], *lines[first + 1:last],
                          lines[last][:end]])
    return chunk.decode("utf-8", "replace")


def _unanchored(found: Found) -> Found:
    """After `os.chdir`, a relative path is relative to a directory chosen at run time."""
    relative = found.target is not None and not found.target.startswith(("/", "~"))
    if found.action in (Action.FILE_READ, Action.FILE_WRITE) and relative:
        return Found(found.action, None, found.line, found.call, found.method, found.cwd,
                     "the path is relative to a directory the code changes to")
    return found


def _why(e: BaseException) -> str:
    if isinstance(e, RecursionError | MemoryError):
        return "the code is nested too deeply"
    return str(e) or type(e).__name__
