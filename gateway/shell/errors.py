"""The one error of command analysis.

Every parser and handler of this package raises `CannotAnalyse` for a line that
cannot be judged statically; `analyse` turns it into a cannot-analyse verdict, so
the engine denies. It is a `ValueError`, as pure parsers here raise.
"""

from __future__ import annotations


class CannotAnalyse(ValueError):
    """The line cannot be judged statically; the message says why."""
