"""The tree-sitter side: the one parser, node text, and which nodes are statements.

Building the bash language is the slow part of parsing, so there is one parser per
process. `Ctx` carries the source a tree was parsed from: node text is read from
it by byte offsets, since repairs may have changed the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

# Nodes whose named children are statements, walked in order.
BLOCKS = frozenset({"program", "list", "compound_statement", "subshell", "do_group",
                    "if_statement", "elif_clause", "else_clause", "while_statement",
                    "negated_command", "pipeline"})

_WORDLIKE = frozenset({"word", "number", "string", "raw_string", "ansi_c_string",
                       "translated_string", "concatenation", "simple_expansion", "expansion",
                       "command_substitution", "process_substitution", "arithmetic_expansion",
                       "brace_expression", "test_operator", "variable_name", "regex",
                       "extglob_pattern"})


@lru_cache(maxsize=1)
def parser() -> Parser:
    """One parser per process: building the language is the slow part."""
    return Parser(Language(tree_sitter_bash.language()))


def node_text(node: Node) -> str:
    """A node's source text; bytes that are not UTF-8 survive as surrogate escapes."""
    return (node.text or b"").decode("utf-8", "surrogateescape")


class Ctx:
    """The source being walked and how deep in nested code it sits."""

    __slots__ = ("depth", "runtime", "src")

    def __init__(self, src: bytes, depth: int, runtime: bool) -> None:
        self.src = src
        self.depth = depth
        self.runtime = runtime


def is_statement(node: Node) -> bool:
    """True for a node that runs something (a command, a compound, an assignment)."""
    return node.type in BLOCKS or node.type in (
        "command", "redirected_statement", "for_statement", "c_style_for_statement",
        "case_statement", "function_definition", "test_command", "declaration_command",
        "unset_command", "variable_assignment", "variable_assignments")


def leaves(node: Node) -> Iterator[Node]:
    """The word nodes and operator tokens under `node`, in source order."""
    for c in node.children:
        if not c.is_named or c.type in _WORDLIKE:
            yield c
        else:
            yield from leaves(c)
