"""Word nodes of the tree become `Word`s: the arguments a program would receive.

Adjacent nodes form one word, as in bash (`a"b"$c` is one argument). Each node is
read into tokens (`gateway.shell.tokens`), the holes it holds are walked for the
commands they run, and `gateway.shell.expand.finish` makes the final words. A word
node whose text shows the tree misread it (a space, an unparsed substitution) is
cannot-analyse rather than a guess.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from gateway.shell.assignments import DECLARATIONS
from gateway.shell.errors import CannotAnalyse
from gateway.shell.expand import finish
from gateway.shell.tokens import Token, active, ansi_c, dq_text
from gateway.shell.tree import Ctx, node_text
from gateway.shell.words import Hole, Word

# A word with nothing for the shell to expand or remove: the fast path.
_PLAIN = re.compile(r"[A-Za-z0-9_./:,+%@=-]+")
_ESCAPED = re.compile(r"\\.", re.DOTALL)


class WordReader:
    """Builds words from word nodes; the walker supplies `expansions`, `home` and `cwd`.

    A base class of the walker: the holes in a word may run commands, which only the
    walker can judge, and a word is read on the hot path of every command.
    """

    home: str
    cwd: str | None

    def expansions(self, node: Node, ctx: Ctx) -> None:
        """Walk every substitution under `node` (the walker's)."""
        raise NotImplementedError

    def tokens(self, node: Node, ctx: Ctx, out: list[Token], quoted: bool) -> bool:
        """Append the tokens of one word node; True when an unquoted hole may split it."""
        t = node.type
        if t in ("word", "number", "brace_expression", "$", "variable_name", "unset",
                 "test_operator", "regex", "extglob_pattern") or t in DECLARATIONS \
                or not node.is_named:
            text = node_text(node)
            bare = _ESCAPED.sub("", text)
            if "`" in bare or "$(" in bare or any(c in bare for c in " \t\n"):
                raise CannotAnalyse(f"a word the parser misread: {text!r}")
            out.extend(active(text))
            return False
        if t == "raw_string":
            out.append((False, node_text(node)[1:-1]))
            return False
        if t == "ansi_c_string":
            out.append((False, ansi_c(node_text(node)[2:-1])))
            return False
        if t == "translated_string":
            inner = [c for c in node.children if c.type == "string"]
            if len(inner) != 1:
                raise CannotAnalyse("unsupported $\"...\" string")
            return self.string_tokens(inner[0], ctx, out)
        if t == "string":
            return self.string_tokens(node, ctx, out)
        if t == "concatenation":
            split = False
            pos = node.start_byte
            for c in node.children:
                if c.start_byte != pos:
                    raise CannotAnalyse("a word the parser split unexpectedly")
                split = self.tokens(c, ctx, out, quoted) or split
                pos = c.end_byte
            return split
        if t in ("simple_expansion", "expansion", "command_substitution",
                 "process_substitution", "arithmetic_expansion"):
            out.append(Hole(node_text(node)))
            self.expansions(node, ctx)
            return not quoted and t != "process_substitution"
        raise CannotAnalyse(f"unsupported word syntax: {t}")

    def string_tokens(self, node: Node, ctx: Ctx, out: list[Token]) -> bool:
        """A double-quoted string: literal runs and holes; `"$@"` may still split."""
        src = ctx.src
        start = node.start_byte + 1
        end = node.end_byte - 1
        pos = start
        split = False
        before = len(out)
        for c in node.children:
            if c.type == '"' or c.end_byte <= start or c.start_byte >= end:
                continue
            if c.start_byte > pos:
                out.append((False, dq_text(src[pos:c.start_byte].decode("utf-8", "replace"))))
            if c.type == "string_content":
                out.append((False, dq_text(node_text(c))))
            else:
                text = node_text(c)
                out.append(Hole(text))
                self.expansions(c, ctx)
                if text == "$@" or "[@]" in text or (text.startswith("${!") and
                                                     text.endswith("@}")):
                    split = True
            pos = c.end_byte
        if end > pos:
            out.append((False, dq_text(src[pos:end].decode("utf-8", "replace"))))
        if len(out) == before:
            out.append((False, ""))
        return split

    def words(self, nodes: list[Node], ctx: Ctx,
              program: bool) -> tuple[list[Word], list[tuple[int, int]]]:
        """Build words from argument nodes; adjacent nodes form one word, as in bash."""
        words: list[Word] = []
        spans: list[tuple[int, int]] = []
        groups: list[list[Node]] = []
        for n in nodes:
            if groups and groups[-1][-1].end_byte == n.start_byte:
                groups[-1].append(n)
            else:
                groups.append([n])
        for k, group in enumerate(groups):
            if len(group) == 1 and group[0].type == "word":
                plain = node_text(group[0])
                if _PLAIN.fullmatch(plain):  # nothing for the shell to expand or remove
                    words.append(Word((plain,)))
                    spans.append((group[0].start_byte, group[0].end_byte))
                    continue
            toks: list[Token] = []
            split = False
            for idx, n in enumerate(group):
                if n.type == "$" and idx + 1 < len(group) and group[idx + 1].type == "string":
                    continue  # $"..." is a translated string
                if n.type == "variable_assignment":
                    split = self.assignment_tokens(n, ctx, toks) or split
                else:
                    split = self.tokens(n, ctx, toks, False) or split
            made = finish(toks, may_split=split, home=self.home, cwd=self.cwd,
                          program=program and k == 0)
            words.extend(made)
            spans.extend([(group[0].start_byte, group[-1].end_byte)] * len(made))
            if program and k == 0 and not made:
                raise CannotAnalyse("the program name is empty at run time")
        return words, spans

    def assignment_tokens(self, node: Node, ctx: Ctx, out: list[Token]) -> bool:
        """An assignment read as a word (`env A=1`, `1A=2`): name, `=`, then the value."""
        split = False
        for c in node.children:
            if c.type in ("variable_name", "=", "+="):
                out.extend(active(node_text(c)))
            elif c.type in ("subscript", "array"):
                out.extend(active(node_text(c)))
                self.expansions(c, ctx)
            else:
                split = self.tokens(c, ctx, out, False) or split
        return split
