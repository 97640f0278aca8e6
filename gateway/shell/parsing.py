"""Parsing a line so that the tree reads it as bash does.

tree-sitter-bash reads some lines differently from bash without marking an error
(the parser's traps in docs/policy.md). Two are repaired here before the walk:
backslash-newline is removed first, as bash does, and `time`, `!` and `coproc`
prefixes that the tree reads as commands are blanked. The others are handled
where they show: words after a redirection (`gateway.shell.redirects`), backquotes
read as text (`gateway.shell.substitutions`), and misread keywords (the walker).
"""

from __future__ import annotations

from tree_sitter import Node

from gateway.shell.asciimask import AsciiMask
from gateway.shell.errors import CannotAnalyse
from gateway.shell.redirects import heredoc_quoted
from gateway.shell.tree import parser

MAX_INPUT = 64 * 1024

# Words that open a compound command; `time`, `!` or `coproc` before one is a prefix.
_COMPOUND_START = frozenset({"{", "if", "while", "until", "for", "case", "select", "[[",
                             "function", "!", "(("})
_REPAIR_HINTS = (b"time", b"!", b"coproc")


def parse_code(text: str, mask: AsciiMask) -> tuple[bytes, Node]:
    """The source as parsed and the root of its tree, repaired; an error if it does not parse.

    Non-ASCII characters are masked first (see `gateway.shell.asciimask`).
    """
    src = _encode(text)
    if not text.isascii():
        src = mask.mask(text).encode("ascii")
    p = parser()
    tree = p.parse(src)
    if b"\\\n" in src:
        src = _join_continuations(tree.root_node, src)
        tree = p.parse(src)
    for _ in range(4 if any(h in src for h in _REPAIR_HINTS) else 0):
        fixed = _keyword_repairs(tree.root_node, src)
        if fixed is None:
            break
        src = fixed
        tree = p.parse(src)
    root = tree.root_node
    if root.has_error:
        raise CannotAnalyse("the line does not parse")
    return src, root


def _encode(text: str) -> bytes:
    try:
        src = text.encode("utf-8")
    except UnicodeEncodeError:
        raise CannotAnalyse("the command is not valid UTF-8") from None
    if b"\0" in src:
        raise CannotAnalyse("the command holds a NUL byte")
    if len(src) > MAX_INPUT:
        raise CannotAnalyse(f"the command is longer than {MAX_INPUT} bytes")
    return src


def _join_continuations(root: Node, src: bytes) -> bytes:
    """Remove backslash-newline as bash does: not in single quotes, $'...', comments
    or the bodies of quoted here-documents."""
    keep: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        t = node.type
        if t in ("raw_string", "ansi_c_string", "comment"):
            keep.append((node.start_byte, node.end_byte))
            continue
        if t == "heredoc_redirect" and heredoc_quoted(node):
            for c in node.children:
                if c.type == "heredoc_body":
                    keep.append((c.start_byte, c.end_byte))
        stack.extend(node.children)
    keep.sort()
    out = bytearray()
    i, n, k = 0, len(src), 0
    while i < n:
        while k < len(keep) and keep[k][1] <= i:
            k += 1
        if k < len(keep) and keep[k][0] <= i:
            out += src[i:keep[k][1]]
            i = keep[k][1]
            continue
        b = src[i]
        if b == 0x5C:  # backslash
            if src[i + 1:i + 2] == b"\n":
                i += 2
                continue
            out += src[i:i + 2]
            i += 2
            continue
        out.append(b)
        i += 1
    return bytes(out)


def _keyword_repairs(root: Node, src: bytes) -> bytes | None:
    """Blank `time`, `!` and `coproc` prefixes that tree-sitter reads as commands.

    `time { a; }` and `! if a; then b; fi` come out as commands named `{` or `if`;
    the prefix only times or negates, so the line is judged without it.
    """
    spans: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.type != "command":
            continue
        name = node.child_by_field_name("name")
        if name is None:
            continue
        text = name.text.decode("utf-8", "replace") if name.text else ""
        parent = node.parent
        if text in _COMPOUND_START and parent is not None and parent.type == "negated_command":
            bang = parent.children[0]
            spans.append((bang.start_byte, bang.end_byte))
        if text in ("time", "coproc"):
            args = [c for c in node.children if c.start_byte >= name.end_byte]
            for k, arg in enumerate(args[:3]):
                a = arg.text.decode("utf-8", "replace") if arg.text else ""
                a = a.split()[0] if a.split() else a
                if a in _COMPOUND_START:
                    spans.append((node.start_byte, arg.start_byte))
                    break
                if text == "time" and a not in ("-p", "--"):
                    break
                if text == "coproc" and k > 0:
                    break
    if not spans:
        return None
    buf = bytearray(src)
    for a, b in spans:
        buf[a:b] = b" " * (b - a)
    return bytes(buf)
