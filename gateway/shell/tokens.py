"""Quote removal: the text of a word read into tokens, as bash reads it.

A token is `(True, c)` for one unquoted character (brace, tilde and glob syntax
apply to it), `(False, text)` for quoted text, or a `Hole` for what the shell fills
in at run time. Here are the rules for each kind of quoting: unquoted backslashes,
double quotes, backquotes and `$'...'`.
"""

from __future__ import annotations

from gateway.shell.words import Hole

Token = tuple[bool, str] | Hole


def is_active(tok: Token, ch: str) -> bool:
    """True when `tok` is the unquoted character `ch` (so the shell may act on it)."""
    return isinstance(tok, tuple) and tok[0] and tok[1] == ch


def active(text: str) -> list[Token]:
    """Unquoted text, with backslash escapes removed (an escaped character is quoted)."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 < n:
                out.append((False, text[i + 1]))
            i += 2
            continue
        out.append((True, c))
        i += 1
    return out


def _unbackslash(text: str, escapable: frozenset[str]) -> str:
    """Drop the backslash before a character of `escapable`; backslash-newline goes whole."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in escapable:
            if text[i + 1] != "\n":
                out.append(text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


_DQ_ESCAPABLE = frozenset('$`"\\\n')
_BQ_ESCAPABLE = frozenset("$`\\")


def dq_text(text: str) -> str:
    """Literal text inside double quotes: only `\\$ \\` \\" \\\\` lose their backslash."""
    return _unbackslash(text, _DQ_ESCAPABLE)


def unescape_backquoted(body: str) -> str:
    """The command inside backquotes: `\\$`, `` \\` `` and `\\\\` lose their backslash."""
    return _unbackslash(body, _BQ_ESCAPABLE)


_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n",
                "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def ansi_c(body: str) -> str:
    """The value of `$'...'` (its body without the quotes), as bash decodes it."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        i += 2
        if e in _ANSI_SIMPLE:
            out.append(_ANSI_SIMPLE[e])
        elif e in "01234567":
            j = i
            while j < n and j < i + 2 and body[j] in "01234567":
                j += 1
            out.append(chr(int(e + body[i:j], 8) & 0xFF))
            i = j
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            j = i
            while j < n and j < i + width and body[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i:
                out.append("\\" + e)
            else:
                code = int(body[i:j], 16)
                out.append(chr(code) if code < 0x110000 else "\ufffd")
                i = j
        elif e == "c" and i < n:
            out.append(chr(ord(body[i]) & 0x1F))
            i += 1
        else:
            out.append("\\" + e)
    text = "".join(out)
    return text.split("\0", 1)[0]
