"""`${NAME}` expansion in selectors.

Values come from the policy's `vars`, then the environment; `PROJECT_DIR` defaults
to the working directory and `HOME` to the user's home. An explicit
`--project-dir` beats both. A value is inserted with every selector-special
character escaped, so a directory named `a*b` never widens a rule.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from gateway.matching import ESCAPED_IN_VARIABLES

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class VariableError(ValueError):
    """An undefined, malformed or circular variable reference."""


def base_values(project_dir: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """PROJECT_DIR and HOME as the engine sees them, before the policy's `vars`."""
    home = environ.get("HOME") or os.path.expanduser("~")
    project = project_dir or environ.get("PROJECT_DIR") or os.getcwd()
    return {"HOME": os.path.normpath(home), "PROJECT_DIR": os.path.normpath(project)}


class Variables:
    """Resolves names: the policy's `vars` (themselves expanded), then the environment."""

    def __init__(self, policy_vars: Mapping[str, str], environ: Mapping[str, str],
                 project_dir: str | None) -> None:
        self._raw = dict(policy_vars)
        self._environ = environ
        self._values: dict[str, str] = {}
        base = base_values(project_dir, environ)
        if project_dir is not None:
            self._raw.pop("PROJECT_DIR", None)
            self._values["PROJECT_DIR"] = base["PROJECT_DIR"]
        self._defaults = base

    def value(self, name: str, _stack: tuple[str, ...] = ()) -> str:
        if name in self._values:
            return self._values[name]
        if name in _stack:
            cycle = " -> ".join((*_stack, name))
            raise VariableError(f"variable '{name}' refers to itself: {cycle}")
        if name in self._raw:
            result = _substitute(self._raw[name], lambda n: self.value(n, (*_stack, name)), False)
        elif name in self._environ:
            result = self._environ[name]
        elif name in self._defaults:
            result = self._defaults[name]
        else:
            raise VariableError(f"undefined variable '${{{name}}}'")
        self._values[name] = result
        return result

    def expand(self, selector: str) -> str:
        """The selector with every `${NAME}` replaced by its escaped value."""
        return _substitute(selector, self.value, True)

    def check_all(self) -> None:
        """Resolve every policy variable, so an unused broken one is still reported."""
        for name in self._raw:
            self.value(name)


def _substitute(text: str, lookup: object, escape: bool) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _NAME.match(name):
            raise VariableError(f"bad variable reference '${{{name}}}'")
        value = lookup(name)  # type: ignore[operator]
        return escape_literal(value) if escape else value

    result = _REFERENCE.sub(one, text)
    rest = _REFERENCE.sub("", text)
    if "${" in rest:
        raise VariableError("unterminated '${' in " + repr(text))
    return result


def escape_literal(text: str) -> str:
    """Backslash every character special in some selector syntax."""
    return "".join("\\" + c if c in ESCAPED_IN_VARIABLES else c for c in text)
