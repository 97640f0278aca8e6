"""Keep non-ASCII characters away from the parser.

tree-sitter-bash's scanner passes code points to C's ctype functions, which are
defined for bytes only: a character above U+00FF reads outside their tables, so the
parse may be wrong and, for high planes, the process crashes. bash itself treats
every non-ASCII character as an ordinary word character, so each one is replaced by
an ASCII marker made of word characters before parsing and put back in the parts
afterwards. A marker carries a random nonce per analysis, so no input can forge one.
"""

from __future__ import annotations

import re
import secrets

from gateway.shell.expand import CannotAnalyse
from gateway.shell.words import Glob, Hole, Part, Segment, Word


class AsciiMask:
    """Masks and unmasks the non-ASCII characters of one analysis."""

    def __init__(self) -> None:
        self._nonce: str | None = None
        self._marker: re.Pattern[str] | None = None

    def mask(self, text: str) -> str:
        if text.isascii():
            return text
        if self._nonce is None:
            self._nonce = secrets.token_hex(4)
            self._marker = re.compile(rf"\+q{self._nonce}([0-9a-f]{{6}})\+")
        out = []
        for ch in text:
            code = ord(ch)
            if code < 0x80:
                out.append(ch)
            elif 0xD800 <= code < 0xE000:
                raise CannotAnalyse("the command is not valid UTF-8")
            else:
                out.append(f"+q{self._nonce}{code:06x}+")
        return "".join(out)

    def unmask(self, text: str) -> str:
        if self._marker is None:
            return text
        return self._marker.sub(lambda m: chr(int(m.group(1), 16)), text)

    def unmask_parts(self, parts: list[Part]) -> tuple[Part, ...]:
        if self._marker is None:
            return tuple(parts)
        return tuple(Part(tuple(self._word(w) for w in p.words), self.unmask(p.text),
                          see_through=p.see_through, runtime_args=p.runtime_args)
                     for p in parts)

    def _word(self, word: Word) -> Word:
        return Word(tuple(self._segment(s) for s in word.segments), word.may_split)

    def _segment(self, segment: Segment) -> Segment:
        if isinstance(segment, str):
            return self.unmask(segment)
        if isinstance(segment, Glob):
            return Glob(self.unmask(segment.text))
        return Hole(self.unmask(segment.source))
