"""Command analysis: a shell line becomes every simple command that would run.

tree-sitter-bash gives the structure (`gateway.shell.parsing`, repaired where it
reads a line differently from bash); the walker (`gateway.shell.walker`) turns it
into `Part`s, looking through wrappers, runners and shells (`gateway.shell.wrappers`)
and into every substitution. Words are built as bash builds them
(`gateway.shell.wordnodes`, `gateway.shell.expand`). Anything that cannot be judged
statically is an `Analysis` with `cannot_analyse` set; this module never raises.
"""

from __future__ import annotations

from gateway.shell.asciimask import AsciiMask
from gateway.shell.errors import CannotAnalyse
from gateway.shell.parsing import MAX_INPUT
from gateway.shell.walker import ReadScript, Walker
from gateway.shell.words import Analysis

__all__ = ["MAX_INPUT", "ReadScript", "analyse"]


def analyse(command: str, *, home: str, cwd: str | None = None,
            read_script: ReadScript | None = None) -> Analysis:
    """Every simple command `command` would run, or why it cannot be analysed.

    `home` expands `~`; `cwd` resolves relative script paths and `~+`. With
    `read_script`, scripts run by `sh FILE` or `source FILE` are read and judged.
    """
    mask = AsciiMask()
    try:
        if not isinstance(command, str) or not command.strip():
            raise CannotAnalyse("empty command")
        walker = Walker(home, cwd, read_script, mask)
        walker.code(command, 0, False)
        return Analysis(parts=mask.unmask_parts(walker.parts))
    except CannotAnalyse as exc:
        return Analysis(cannot_analyse=f"cannot analyse: {mask.unmask(str(exc))}")
    except RecursionError:
        return Analysis(cannot_analyse="cannot analyse: nested too deeply")
    except Exception as exc:  # fail closed on anything unforeseen
        return Analysis(cannot_analyse=f"cannot analyse: internal error ({type(exc).__name__})")
