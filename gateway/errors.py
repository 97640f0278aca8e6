"""Error types: one base with a user-facing message, a subclass per kind.

The CLI catches `GatewayError` once and maps it to an exit code; anything else
escaping is a bug.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error whose message is meant for the user, on one line."""


class PolicyError(GatewayError):
    """A policy file that cannot be loaded: names the file and, where known, the line."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.location() + message)

    def location(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "


class RequestError(GatewayError):
    """A request that is not a request at all (unknown action, missing target)."""
