"""Finding substitutions in text the tree does not structure.

tree-sitter leaves some expanding text flat: here-document bodies, `${...}`
operands, backquotes nested in backquotes. Each can run commands, so this scanner
finds the command substitutions, arithmetic and parameter expansions in such text,
quoting-aware, for the walker to parse and judge.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.shell.errors import CannotAnalyse
from gateway.shell.tokens import unescape_backquoted


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """Index just past the quote that closes the one at `i` (single or double)."""
    n = len(text)
    j = i + 1
    while j < n:
        c = text[j]
        if c == "\\" and quote == '"':
            j += 2
            continue
        if c == quote:
            return j + 1
        if quote == '"' and c == "$" and j + 1 < n and text[j + 1] in "({":
            j = _matching(text, j + 1)
            continue
        if quote == '"' and c == "`":
            j = _backquote_end(text, j) + 1
            continue
        j += 1
    raise CannotAnalyse("unterminated quote in a substitution")


def _matching(text: str, i: int) -> int:
    """Index just past the bracket matching the `(` or `{` at `i`, shell quoting aware."""
    opener = text[i]
    closer = ")" if opener == "(" else "}"
    depth = 0
    n = len(text)
    j = i
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c in "'\"" and (opener == "(" or c == '"'):
            j = _skip_quoted(text, j, c)
            continue
        if c == "`":
            j = _backquote_end(text, j) + 1
            continue
        if c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise CannotAnalyse("unterminated substitution")


def _backquote_end(text: str, i: int) -> int:
    """Index of the backquote closing the one at `i`."""
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "`":
            return j
        j += 1
    raise CannotAnalyse("unterminated backquote")


def substitutions(text: str) -> Iterable[tuple[str, str]]:
    """The substitutions in expanding text: `("cmd", code)`, `("arith", expr)` and
    `("param", text)` pairs.

    `text` is read as the body of an unquoted here-document or a `${...}` operand
    is: quotes are ordinary characters, backslash escapes. Nested `${...}` operands
    are searched too.
    """
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "`":
            end = _backquote_end(text, i)
            yield "cmd", unescape_backquoted(text[i + 1:end])
            i = end + 1
            continue
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "(" and i + 2 < n and text[i + 2] == "(":
                end = _matching(text, i + 1)
                yield "arith", text[i + 3:end - 2]
                yield from substitutions(text[i + 3:end - 2])
                i = end
                continue
            if nxt == "(":
                end = _matching(text, i + 1)
                yield "cmd", text[i + 2:end - 1]
                i = end
                continue
            if nxt == "{":
                end = _matching(text, i + 1)
                yield "param", text[i:end]
                yield from substitutions(text[i + 2:end - 1])
                i = end
                continue
            if nxt == "[":
                end = text.find("]", i)
                if end < 0:
                    raise CannotAnalyse("unterminated $[ ]")
                yield "arith", text[i + 2:end]
                i = end + 1
                continue
        i += 1
