"""What the SDK's analysis finds in a code block: one action the code would take.

Pure data, shared by the Python analysis, the block analysis and the deciders.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.policy.model import Action


@dataclass(frozen=True, slots=True)
class Found:
    """One action found in a block.

    `target` is the host or URL, path or command line as the code states it; None when
    it is built at run time (`dynamic`), and `why` then says what could not be
    resolved. `line` is the block's line (from 1), `call` the call as written, `method`
    an HTTP method where the call names one, `cwd` a working directory the call sets.
    """

    action: Action
    target: str | None
    line: int
    call: str
    method: str | None = None
    cwd: str | None = None
    why: str | None = None

    @property
    def dynamic(self) -> bool:
        return self.target is None


@dataclass(frozen=True, slots=True)
class BlockAnalysis:
    """A block's actions, the watched modules it imports, and why it cannot be
    analysed at all (`problem`: an unknown language, a syntax error), if so."""

    language: str
    found: tuple[Found, ...] = ()
    imports: tuple[str, ...] = ()
    problem: str | None = None
