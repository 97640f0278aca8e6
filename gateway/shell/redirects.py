"""Redirections and here-documents: extra words, bodies, and what feeds a shell's stdin.

bash gives the words after a redirection's target to the command (`rm x >/dev/null
y` removes `y`), which the tree loses; `redirect_extra_words` finds them. A shell
that reads its commands from stdin can be judged only when that stdin is a
here-document or here-string with a literal body; `stdin_script` returns that body.
"""

from __future__ import annotations

from tree_sitter import Node

from gateway.shell.errors import CannotAnalyse
from gateway.shell.tokens import dq_text
from gateway.shell.tree import node_text, parser

# What a here-document redirect node may hold; anything else means the tree misread it.
HEREDOC_PARTS = frozenset({"<<", "<<-", "heredoc_start", "heredoc_body", "heredoc_end",
                           "file_redirect", "|", "&&", "||", ";", "&", "|&"})


REDIRECT_TYPES = frozenset({"file_redirect", "heredoc_redirect", "herestring_redirect"})


class Stdin:
    """What feeds a command's stdin: its own redirections, or the pipe before it."""

    __slots__ = ("piped", "redirects")

    def __init__(self, redirects: list[Node], piped: bool) -> None:
        self.redirects = redirects
        self.piped = piped


def redirect_extra_words(node: Node) -> list[Node]:
    """Words after a redirection's target: bash passes them to the command."""
    if node.type == "heredoc_redirect":
        return []
    dests = node.children_by_field_name("destination")
    if node.type == "herestring_redirect":
        named = [c for c in node.named_children if c.type != "file_descriptor"]
        return named[1:]
    return dests[1:]


def heredoc_quoted(node: Node) -> bool:
    """True when the delimiter is quoted: the body is then literal, not expanded."""
    for c in node.children:
        if c.type == "heredoc_start":
            return any(ch in (c.text or b"") for ch in b"'\"\\")
    return False


def heredoc_text(node: Node, body: Node) -> str:
    """The body's text, with leading tabs removed for `<<-`."""
    body_text = node_text(body)
    if any(c.type == "<<-" for c in node.children):
        body_text = "\n".join(line.lstrip("\t") for line in body_text.split("\n"))
    return body_text


def stdin_script(stdin: Stdin) -> str:
    """The script a shell reads from stdin: only a literal here-document or here-string."""
    source: Node | None = None
    for r in stdin.redirects:
        ops = [c.type for c in r.children if not c.is_named]
        fd = next((node_text(c) for c in r.children if c.type == "file_descriptor"), None)
        here = r.type in ("heredoc_redirect", "herestring_redirect") and fd in (None, "0")
        reads = r.type == "file_redirect" and (
            fd == "0" or (fd is None and bool(ops) and ops[0].startswith("<")))
        if here or reads:
            source = r
    if source is None or source.type == "file_redirect":
        raise CannotAnalyse("a shell reading its commands from stdin, a pipe or a file")
    if source.type == "herestring_redirect":
        words = [c for c in source.named_children if c.type != "file_descriptor"]
        lit = _literal_word(node_text(words[0]) if words else "")
        if lit is None:
            raise CannotAnalyse("a here-string fed to a shell expands at run time")
        return lit + "\n"
    body = next((c for c in source.children if c.type == "heredoc_body"), None)
    script = heredoc_text(source, body) if body is not None else ""
    if not heredoc_quoted(source) and any(ch in script for ch in "$`\\"):
        raise CannotAnalyse("a here-document fed to a shell expands at run time")
    return script


def _literal_word(word: str) -> str | None:
    """The value of a here-string word when it is plain quoted or unquoted text."""
    tree = parser().parse(b": " + word.encode("utf-8"))
    cmd = tree.root_node.named_children[0] if tree.root_node.named_children else None
    if tree.root_node.has_error or cmd is None:
        return None
    args = cmd.children_by_field_name("argument")
    if len(args) != 1:
        return None
    node = args[0]
    if node.type == "raw_string":
        return node_text(node)[1:-1]
    if node.type == "string" and all(c.type in ('"', "string_content") for c in node.children):
        return dq_text(node_text(node)[1:-1])
    if node.type == "word" and not any(ch in node_text(node) for ch in "\\*?[{~$`"):
        return node_text(node)
    return None
