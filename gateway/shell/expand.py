"""Word building as bash does it: quote removal, brace and tilde expansion, globs, holes.

A word is first read into tokens: `(True, c)` for one unquoted character (brace,
tilde and glob syntax apply to it), `(False, text)` for quoted text, and `Hole`s for
what the shell fills in at run time. Brace expansion turns one token list into
several; each then becomes a `Word`. Also here: the scanner that finds command
substitutions in text the tree does not structure (here-document bodies, `${...}`
operands, backquotes), and the table of variables whose assignment runs code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.shell.words import Glob, Hole, Segment, Word

Token = tuple[bool, str] | Hole

MAX_BRACE_WORDS = 4096

# Variables whose value the shell, the dynamic loader or a child shell runs as code.
_DANGEROUS_EXACT = frozenset(
    {"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND"})
_DANGEROUS_PREFIXES = ("LD_", "BASH_FUNC_")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_LIKE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEQ_NUM = re.compile(r"([+-]?\d+)\.\.([+-]?\d+)(?:\.\.([+-]?\d+))?")
_SEQ_CHR = re.compile(r"([A-Za-z])\.\.([A-Za-z])(?:\.\.([+-]?\d+))?")


class CannotAnalyse(ValueError):
    """The line cannot be judged statically; the message says why."""


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
    for ident in _IDENT.findall(text):
        if is_dangerous_name(ident):
            raise CannotAnalyse(f"arithmetic on {ident} can run code")


def assigned_name(word: Word) -> str | None:
    """The variable an operand such as `NAME=value` or `NAME[i]+=v` sets, if it is one."""
    head = word.segments[0] if word.segments else ""
    if not isinstance(head, str):
        return None
    m = _ASSIGN_LIKE.match(head)
    return m.group(1) if m else None


# --- tokens -------------------------------------------------------------------------

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


_DQ_ESCAPABLE = frozenset('$`"\\\n')


def dq_text(text: str) -> str:
    """Literal text inside double quotes: only `\\$ \\` \\" \\\\` lose their backslash."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in _DQ_ESCAPABLE:
            if text[i + 1] != "\n":
                out.append(text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


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


# --- brace expansion ----------------------------------------------------------------

def _is(tok: Token, ch: str) -> bool:
    return isinstance(tok, tuple) and tok[0] and tok[1] == ch


def _close_brace(toks: list[Token], start: int) -> tuple[int, list[int]] | None:
    """Index of the `}` closing the brace at `start`, with the commas at its level.

    As bash's brace_gobbler: a `}` closes only once a comma or `..` has been seen at
    level 0; nested braces count levels.
    """
    level = 0
    commas: list[int] = []
    seq = False
    i = start + 1
    n = len(toks)
    while i < n:
        t = toks[i]
        if isinstance(t, tuple) and t[0]:
            c = t[1]
            if c == "}" and level == 0 and (commas or seq):
                return i, commas
            if c == "{":
                level += 1
            elif c == "}" and level:
                level -= 1
            elif c == "," and level == 0:
                commas.append(i)
            elif c == "." and level == 0 and i + 1 < n and _is(toks[i + 1], ".") \
                    and not (i + 2 < n and _is(toks[i + 2], "}")):
                seq = True
        i += 1
    return None


def _sequence(body: list[Token]) -> list[list[Token]] | None:
    """`{1..9..2}`, `{a..e}`: the words a valid sequence expression makes, else None."""
    if not all(isinstance(t, tuple) and t[0] for t in body):
        return None
    text = "".join(t[1] for t in body)  # type: ignore[index]
    m = _SEQ_NUM.fullmatch(text)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        step = abs(int(m.group(3) or 1)) or 1
        if abs(b - a) // step + 1 > MAX_BRACE_WORDS:
            raise CannotAnalyse("brace expansion makes too many words")
        width = 0
        for s in (m.group(1), m.group(2)):
            digits = s.lstrip("+-")
            if len(digits) > 1 and digits[0] == "0":
                width = max(len(m.group(1)), len(m.group(2)))
        rng = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
        words = []
        for v in rng:
            s = str(v)
            if width:
                s = ("-" + str(-v).zfill(width - 1)) if v < 0 else s.zfill(width)
            words.append([(True, ch) for ch in s])
        return words  # type: ignore[return-value]
    m = _SEQ_CHR.fullmatch(text)
    if m:
        a, b = ord(m.group(1)), ord(m.group(2))
        step = abs(int(m.group(3) or 1)) or 1
        rng = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
        return [[(True, chr(v))] for v in rng]
    return None


def brace_expand(toks: list[Token]) -> list[list[Token]]:
    """Bash brace expansion over unquoted tokens; quoted text and holes are opaque."""
    out = _brace(toks)
    if len(out) > MAX_BRACE_WORDS:
        raise CannotAnalyse("brace expansion makes too many words")
    return out


def _brace(toks: list[Token]) -> list[list[Token]]:
    n = len(toks)
    for i in range(n):
        if not _is(toks[i], "{"):
            continue
        if i and _is(toks[i - 1], "$"):
            continue
        if i == 0 and n > 1 and _is(toks[1], "}"):
            continue  # bash ignores `{}` opening a word
        found = _close_brace(toks, i)
        if found is None:
            continue
        j, commas = found
        pre, post = toks[:i], toks[j + 1:]
        if commas:
            bounds = [i, *commas, j]
            alts = [toks[bounds[k] + 1:bounds[k + 1]] for k in range(len(bounds) - 1)]
        else:
            seq = _sequence(toks[i + 1:j])
            if seq is None:
                return [toks[:j + 1] + rest for rest in _brace(post)]
            alts = seq
        posts = _brace(post)
        result: list[list[Token]] = []
        for alt in alts:
            for mid in _brace(alt) if commas else [alt]:
                for p in posts:
                    result.append(pre + mid + p)
                    if len(result) > MAX_BRACE_WORDS:
                        raise CannotAnalyse("brace expansion makes too many words")
        return result
    return [toks]


# --- tilde, globs, words ------------------------------------------------------------

def _tilde_at(toks: list[Token], i: int, home: str, cwd: str | None,
              stops: str) -> list[Token]:
    """Expand a tilde prefix starting at `toks[i]` if it is unquoted; return new tokens."""
    j = i + 1
    while j < len(toks) and not (isinstance(toks[j], tuple) and toks[j][0]  # type: ignore[index]
                                 and toks[j][1] in stops):  # type: ignore[index]
        t = toks[j]
        if not (isinstance(t, tuple) and t[0]):
            return toks
        j += 1
    user = "".join(t[1] for t in toks[i + 1:j])  # type: ignore[index]
    if user == "":
        rep: list[Token] = [(False, home)]
    elif user == "+" and cwd is not None:
        rep = [(False, cwd)]
    else:
        rep = [Hole("~" + user)]
    return toks[:i] + rep + toks[j:]


def tilde_expand(toks: list[Token], home: str, cwd: str | None,
                 assignment: bool) -> tuple[list[Token], bool]:
    """Tilde expansion at the word start, and in assignments after `=` and `:`.

    Returns the tokens and whether the word started with an expanded tilde.
    """
    started = False
    if toks and _is(toks[0], "~"):
        toks = _tilde_at(toks, 0, home, cwd, "/:" if assignment else "/")
        started = True
    if assignment:
        i = 0
        seen_eq = False
        while i < len(toks):
            t = toks[i]
            if isinstance(t, tuple) and t[0] and (t[1] == ":" or (t[1] == "=" and not seen_eq)):
                seen_eq = seen_eq or t[1] == "="
                if i + 1 < len(toks) and _is(toks[i + 1], "~"):
                    toks = _tilde_at(toks, i + 1, home, cwd, "/:")
            i += 1
    return toks, started


def _assignment_like(toks: list[Token]) -> bool:
    """True when the word reads `NAME=...` with the name unquoted (bash then expands ~)."""
    name: list[str] = []
    for t in toks:
        if not (isinstance(t, tuple) and t[0]):
            return False
        if t[1] == "=":
            return is_name("".join(name))
        name.append(t[1])
    return False


def to_word(toks: list[Token], may_split: bool) -> Word:
    """Join tokens into a `Word`: literal runs, `Glob` tokens for unquoted `* ? [...]`."""
    segs: list[Segment] = []
    buf: list[str] = []
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        if isinstance(t, Hole):
            if buf:
                segs.append("".join(buf))
                buf = []
            segs.append(t)
            i += 1
            continue
        is_active, c = t
        if is_active and c in "*?":
            if buf:
                segs.append("".join(buf))
                buf = []
            segs.append(Glob(c))
            i += 1
            continue
        if is_active and c == "[":
            end = _bracket_end(toks, i)
            if end is not None:
                if buf:
                    segs.append("".join(buf))
                    buf = []
                segs.append(Glob("".join(x[1] for x in toks[i:end + 1])))  # type: ignore[index]
                i = end + 1
                continue
        buf.append(c)
        i += 1
    if buf:
        segs.append("".join(buf))
    return Word(tuple(segs), may_split)


def _bracket_end(toks: list[Token], start: int) -> int | None:
    """Index of the `]` that closes a bracket expression opened at `start`, if any."""
    i = start + 1
    if i < len(toks) and isinstance(toks[i], tuple) and toks[i][1] in "!^":  # type: ignore[index]
        i += 1
    if i < len(toks) and _is(toks[i], "]"):
        i += 1
    while i < len(toks):
        t = toks[i]
        if isinstance(t, Hole):
            return None
        if t[0] and t[1] == "]":
            return i
        if t[1] == "/":
            return None
        i += 1
    return None


def finish(toks: list[Token], *, may_split: bool, home: str, cwd: str | None,
           program: bool = False) -> list[Word]:
    """Brace-expand, tilde-expand and glob-mark one word's tokens into final words.

    Unquoted empty results vanish as in bash. For a program word (`program=True`),
    anything the shell builds (brace, tilde, glob, hole) is cannot-analyse.
    """
    expanded = brace_expand(toks) if any(_is(t, "{") for t in toks) else [toks]
    if program and len(expanded) != 1:
        raise CannotAnalyse("the program name comes from a brace expansion")
    words: list[Word] = []
    if program and expanded[0] != toks:
        raise CannotAnalyse("the program name comes from a brace expansion")
    for ts in expanded:
        ts, tilde = tilde_expand(ts, home, cwd, _assignment_like(ts))
        if program and tilde:
            raise CannotAnalyse("the program name comes from a tilde expansion")
        if not ts:
            continue
        words.append(to_word(ts, may_split))
    if program and words:
        w = words[0]
        if w.has_hole:
            raise CannotAnalyse(f"the program name is set at run time: {w.display()}")
        if w.has_glob:
            raise CannotAnalyse(f"the program name is a glob: {w.display()}")
    return words


# --- command substitutions in plain text --------------------------------------------

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


def unescape_backquoted(body: str) -> str:
    """The command inside backquotes: `\\$`, `` \\` `` and `\\\\` lose their backslash."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n and body[i + 1] in "$`\\":
            out.append(body[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def substitutions(text: str) -> Iterable[tuple[str, str]]:
    """The substitutions in expanding text: `("cmd", code)` and `("arith", expr)` pairs.

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


_PARAM_ASSIGN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?:?=")
_PARAM_PROMPT = re.compile(r"@P\}$")


def check_parameter(text: str) -> None:
    """Refuse `${PS4:=...}`-style assignments and `${x@P}` (prompt expansion runs code)."""
    m = _PARAM_ASSIGN.match(text)
    if m:
        check_assigned(m.group(1))
    if _PARAM_PROMPT.search(text):
        raise CannotAnalyse("prompt expansion ${...@P} can run code")
