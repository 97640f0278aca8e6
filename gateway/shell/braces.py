"""Brace expansion of a word's tokens, as bash's brace_gobbler and expand_seqterm do.

Only unquoted braces expand; quoted text and holes are opaque. `{a,b}` makes one
word per alternative, `{1..9..2}` and `{a..e}` make sequences, and anything else
stays literal text. The number of words is capped, since `{1..9}{1..9}...` grows fast.
"""

from __future__ import annotations

import re

from gateway.shell.errors import CannotAnalyse
from gateway.shell.tokens import Token, is_active

MAX_BRACE_WORDS = 4096

_SEQ_NUM = re.compile(r"([+-]?\d+)\.\.([+-]?\d+)(?:\.\.([+-]?\d+))?")
_SEQ_CHR = re.compile(r"([A-Za-z])\.\.([A-Za-z])(?:\.\.([+-]?\d+))?")


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
            elif c == "." and level == 0 and i + 1 < n and is_active(toks[i + 1], ".") \
                    and not (i + 2 < n and is_active(toks[i + 2], "}")):
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
        if not is_active(toks[i], "{"):
            continue
        if i and is_active(toks[i - 1], "$"):
            continue
        if i == 0 and n > 1 and is_active(toks[1], "}"):
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
