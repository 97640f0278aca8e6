"""Compiled selectors: hosts, paths and command patterns, each with an index.

Selectors reach these matchers after `${NAME}` expansion. The expansion puts a
backslash before every character of a variable's value that is special in some
selector syntax (see `ESCAPED_IN_VARIABLES`), so every matcher reads `\\c` as the
literal character `c`: a project directory named `a*b` never widens a rule.
"""

ESCAPED_IN_VARIABLES = frozenset("\\*?[]{}'\" \t$~!")
