"""The walker: every simple command a parsed line would run, as `Part`s.

It walks statements, pipelines and compound commands, the redirections and
expansions in them, and every command substitution, process substitution and
parameter expansion, wherever it stands. For each simple command it records a part,
then looks through wrappers, runners and shells (`gateway.shell.wrappers`) at what
that command runs, parsing `-c` strings, `eval` words and scripts as code again.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from tree_sitter import Node

from gateway.shell.asciimask import AsciiMask
from gateway.shell.assignments import (
    DECLARATIONS,
    check_arithmetic,
    check_assigned,
    check_builtin,
    check_parameter,
    is_name,
)
from gateway.shell.errors import CannotAnalyse
from gateway.shell.parsing import parse_code
from gateway.shell.redirects import (
    HEREDOC_PARTS,
    REDIRECT_TYPES,
    Stdin,
    heredoc_quoted,
    heredoc_text,
    redirect_extra_words,
    stdin_script,
)
from gateway.shell.substitutions import substitutions
from gateway.shell.tokens import unescape_backquoted
from gateway.shell.tool import Kind, Run, fill_placeholder
from gateway.shell.tree import BLOCKS, Ctx, is_statement, leaves, node_text
from gateway.shell.wordnodes import WordReader
from gateway.shell.words import Hole, Part, Word
from gateway.shell.wrappers import TOOLS

MAX_NESTING = 16  # nested `sh -c`, `$(...)`, eval, scripts
MAX_TREE_DEPTH = 400
MAX_PARTS = 10_000

ReadScript = Callable[[str], str | None]

# Reserved words that a tree-sitter command name must never be: seeing one means the
# tree misread a compound command (`time { ...; }`, `! if ...`).
_RESERVED = frozenset({"{", "}", "if", "then", "elif", "else", "fi", "do", "done", "while",
                       "until", "for", "case", "esac", "select", "function", "in", "!",
                       "[[", "]]"})
# A wrapper named by a path outside these is not seen through: it may be anything.
_TRUSTED_DIRS = ("/bin/", "/usr/bin/", "/usr/local/bin/", "/sbin/", "/usr/sbin/",
                 "/usr/local/sbin/")
_SKIP = frozenset({"comment", "file_descriptor"})


class Walker(WordReader):
    """Collects parts while walking one line and everything it runs."""

    def __init__(self, home: str, cwd: str | None, read_script: ReadScript | None,
                 mask: AsciiMask) -> None:
        self.mask = mask
        self.home = home
        self.cwd = cwd
        self.read_script = read_script
        self.parts: list[Part] = []
        self.level = 0

    # --- code ---------------------------------------------------------------------

    def code(self, text: str, depth: int, runtime: bool) -> None:
        """Parse shell code and walk it; `runtime`: arguments are appended at run time."""
        if depth > MAX_NESTING:
            raise CannotAnalyse("commands nested too deeply")
        src, root = parse_code(text, self.mask)
        self.stmt(root, Ctx(src, depth, runtime), False)

    # --- statements ---------------------------------------------------------------

    def stmt(self, node: Node, ctx: Ctx, piped: bool) -> None:
        """Walk one statement; `piped`: its stdin is the pipe before it."""
        self.level += 1
        if self.level > MAX_TREE_DEPTH:
            raise CannotAnalyse("the line is nested too deeply")
        try:
            self.statement(node, ctx, piped)
        finally:
            self.level -= 1

    def statement(self, node: Node, ctx: Ctx, piped: bool) -> None:
        """Dispatch on the node type; an unknown type is refused, never skipped."""
        t = node.type
        if t == "command":
            self.command(node, ctx, [], [], piped)
        elif t == "redirected_statement":
            self.redirected(node, ctx, piped)
        elif t == "pipeline":
            first = True
            for c in node.named_children:
                self.stmt(c, ctx, piped if first else True)
                first = False
        elif t == "compound_statement" and node.children and node.children[0].type == "((":
            self.arithmetic(node, ctx)
        elif t in BLOCKS:
            for c in node.named_children:
                self.stmt(c, ctx, piped)
        elif t in ("variable_assignment", "variable_assignments"):
            for a in ([node] if t == "variable_assignment" else node.named_children):
                self.assignment(a, ctx)
        elif t in ("declaration_command", "unset_command"):
            self.builtin_node(node, ctx)
        elif t == "for_statement":
            for c in node.named_children:
                if c.type == "variable_name":
                    check_assigned(node_text(c))
                elif c.type == "do_group":
                    self.stmt(c, ctx, piped)
                else:
                    self.expansions(c, ctx)
        elif t == "c_style_for_statement":
            for c in node.named_children:
                if c.type == "do_group" or c.type == "compound_statement":
                    self.stmt(c, ctx, piped)
                else:
                    self.arithmetic(c, ctx)
        elif t in ("case_statement", "case_item"):
            for c in node.named_children:
                if c.type == "case_item" or is_statement(c):
                    self.stmt(c, ctx, piped)
                else:
                    self.expansions(c, ctx)
        elif t == "function_definition":
            for c in node.named_children:
                if c.type != "word":
                    self.stmt(c, ctx, False)
        elif t == "test_command" and node.children and node.children[0].type == "[":
            nodes = list(leaves(node))  # `[ ... ]` is the `[` builtin, a part
            words, spans = self.words(nodes, ctx, True)
            self.emit(words, spans, ctx, node_text(node), node.start_byte, ctx.runtime,
                      Stdin([], piped))
        elif t == "test_command":
            self.expansions(node, ctx)
        elif t in _SKIP:
            return
        elif t in REDIRECT_TYPES:
            self.redirect(node, ctx)
        else:
            raise CannotAnalyse(f"unsupported syntax: {t}")

    def redirected(self, node: Node, ctx: Ctx, piped: bool) -> None:
        """A statement with redirections, and the commands a here-document carries."""
        body = node.child_by_field_name("body")
        redirects: list[Node] = []
        extra: list[Node] = []
        hanging: list[tuple[Node, bool]] = []
        for c in node.children:
            if c.type in REDIRECT_TYPES:
                redirects.append(c)
                extra.extend(redirect_extra_words(c))
                if c.type == "heredoc_redirect":
                    pipe = False
                    for h in c.children:
                        if h.type == "|":
                            pipe = True
                        elif is_statement(h):
                            hanging.append((h, pipe or h.type == "pipeline"))
        if body is None:
            raise CannotAnalyse("a redirection without a command")
        # The tree may hang a redirection on a whole list (`a || b 2>x c`); bash gives
        # it, and the words after it, to the last command only.
        while body.type in ("list", "pipeline") and body.named_children:
            members = body.named_children
            pipe = body.type == "pipeline"
            for k, member in enumerate(members[:-1]):
                self.stmt(member, ctx, piped or (pipe and k > 0))
            piped = piped or pipe
            body = members[-1]
        if body.type == "command":
            self.command(body, ctx, extra, redirects, piped)
        else:
            if extra:
                raise CannotAnalyse("words after a redirection of a compound command")
            self.stmt(body, ctx, piped)
            for r in redirects:
                self.redirect(r, ctx)
        for h, pipe in hanging:
            if h.type == "pipeline" and h.children and h.children[0].type == "|":
                for c in h.named_children:
                    self.stmt(c, ctx, True)
            else:
                self.stmt(h, ctx, pipe)

    def redirect(self, node: Node, ctx: Ctx) -> None:
        """Walk the expansions of a redirection's target or here-document body."""
        if node.type == "heredoc_redirect":
            for c in node.children:
                if c.type not in HEREDOC_PARTS and not is_statement(c):
                    raise CannotAnalyse("a here-document the parser misread")
            quoted = heredoc_quoted(node)
            for c in node.children:
                if c.type == "heredoc_body" and not quoted:
                    self.scan(heredoc_text(node, c), ctx)
            return
        for c in node.named_children:
            if c.type != "file_descriptor":
                self.expansions(c, ctx)

    def arithmetic(self, node: Node, ctx: Ctx) -> None:
        """`(( ))` and the like: may assign a variable that runs code."""
        check_arithmetic(node_text(node))
        self.expansions(node, ctx)

    def assignment(self, node: Node, ctx: Ctx) -> None:
        """`NAME=value`: not a part, but the name is checked and the value walked."""
        name = node.child_by_field_name("name")
        if name is not None:
            check_assigned(node_text(name))
        for c in node.named_children:
            if c.type == "subscript" or (c is not name and c.type != "variable_name"):
                self.expansions(c, ctx)

    # --- expansions outside argument lists ----------------------------------------

    def expansions(self, node: Node, ctx: Ctx) -> None:
        """Walk every substitution and parameter expansion under `node`."""
        stack = [node]
        while stack:
            n = stack.pop()
            t = n.type
            if t == "command_substitution":
                self.substitution(n, ctx)
            elif t == "process_substitution":
                for c in n.named_children:
                    self.stmt(c, ctx, False)
            elif t in ("expansion", "arithmetic_expansion"):
                text = node_text(n)
                if t == "expansion":
                    check_parameter(text)
                else:
                    check_arithmetic(text)
                self.scan(text, ctx)
            elif t in ("word", "string_content", "extglob_pattern", "regex"):
                text = node_text(n)
                if "`" in text or "$(" in text or "${" in text:
                    self.scan(text, ctx)
            elif t in ("binary_expression", "unary_expression", "ternary_expression",
                       "postfix_expression", "parenthesized_expression") \
                    and n.parent is not None and n.parent.type in (
                        "compound_statement", "arithmetic_expansion", "subscript",
                        "c_style_for_statement"):
                check_arithmetic(node_text(n))
                stack.extend(n.children)
            else:
                stack.extend(n.children)

    def substitution(self, node: Node, ctx: Ctx) -> None:
        """`$(...)` is walked as parsed; backquotes are parsed again (the tree reads
        nested ones as text)."""
        text = node_text(node)
        if text.startswith("`"):
            self.code(unescape_backquoted(text[1:-1]), ctx.depth + 1, False)
            return
        for c in node.named_children:
            self.stmt(c, ctx, False)

    def scan(self, text: str, ctx: Ctx) -> None:
        """Walk the substitutions in text the tree left unstructured."""
        for kind, inner in substitutions(text):
            if kind == "cmd":
                self.code(inner, ctx.depth + 1, False)
            elif kind == "arith":
                check_arithmetic(inner)
            else:
                check_parameter(inner)

    # --- simple commands ----------------------------------------------------------

    def command(self, node: Node, ctx: Ctx, extra: list[Node], outer: list[Node],
                piped: bool) -> None:
        """A simple command: its assignments and redirections, then its words as a part.

        `extra` are words the tree hung on an outer redirection; `outer` are the
        redirections of an enclosing `redirected_statement`.
        """
        name: Node | None = None
        args: list[Node] = list(extra)
        redirects: list[Node] = []
        assigns: list[Node] = []
        for i, c in enumerate(node.children):
            field = node.field_name_for_child(i)
            t = c.type
            if field == "name":
                name = c.named_children[0] if c.named_children else c
            elif t == "variable_assignment" and name is None and not args:
                if is_name(node_text(c.child_by_field_name("name") or c).split("[", 1)[0]):
                    assigns.append(c)
                else:
                    args.append(c)  # `1A=2 cmd`: bash runs `1A=2` as the program
            elif t in REDIRECT_TYPES:
                redirects.append(c)
                args.extend(redirect_extra_words(c))
            elif is_statement(c):
                self.stmt(c, ctx, False)
            elif t == "comment":
                continue
            else:
                args.append(c)
        for a in assigns:
            self.assignment(a, ctx)
        for r in redirects + outer:
            self.redirect(r, ctx)
        nodes = sorted(([name] if name is not None else []) + args, key=lambda n: n.start_byte)
        if not nodes:
            return
        if nodes[0].type == "word" and node_text(nodes[0]) in _RESERVED:
            raise CannotAnalyse(f"keyword {node_text(nodes[0])!r} read as a command")
        words, spans = self.words(nodes, ctx, True)
        text = ctx.src[node.start_byte:max(node.end_byte, spans[-1][1])]
        self.emit(words, spans, ctx, text.decode("utf-8", "replace"), node.start_byte,
                  ctx.runtime, Stdin(redirects + outer, piped))

    def builtin_node(self, node: Node, ctx: Ctx) -> None:
        """declare/export/local/readonly/typeset/unset, parsed by the tree as syntax."""
        nodes = [c for c in node.children if c.is_named or c.type in DECLARATIONS
                 or c.type == "unset"]
        words, spans = self.words(nodes, ctx, True)
        self.emit(words, spans, ctx, node_text(node), node.start_byte, ctx.runtime,
                  Stdin([], False))

    def emit(self, words: list[Word], spans: list[tuple[int, int]], ctx: Ctx, text: str,
             base: int, runtime: bool, stdin: Stdin) -> None:
        """Record one part, then whatever it runs (wrappers, runners, shells)."""
        if len(self.parts) >= MAX_PARTS:
            raise CannotAnalyse("too many commands")
        program = words[0].literal or ""
        name = program.rsplit("/", 1)[-1]
        check_builtin(name, words)
        tool = TOOLS.get(name)
        if tool is None:
            self.parts.append(Part(tuple(words), text, runtime_args=runtime))
            return
        runs = tool.handler(tool, words, runtime)
        trusted = "/" not in program or program.startswith(_TRUSTED_DIRS)
        judged = any(r.argv or r.code is not None or r.stdin
                     or (r.script is not None and self.read_script is not None)
                     for r in runs)
        see = tool.kind is not Kind.RUNNER and trusted and judged
        self.parts.append(Part(tuple(words), text, see_through=see, runtime_args=runtime))
        for run in runs:
            self.run(run, words, spans, ctx, stdin)

    def run(self, run: Run, words: list[Word], spans: list[tuple[int, int]], ctx: Ctx,
            stdin: Stdin) -> None:
        """Judge one thing a wrapper, runner or shell runs, as a part or as code."""
        if run.argv:
            argv = list(run.argv)
            if run.placeholder:
                argv = [fill_placeholder(w, run.placeholder) for w in argv]
            first = argv[0]
            if first.literal is None or first.may_split:
                raise CannotAnalyse(f"the program name is set at run time: {first.display()}")
            if run.start >= 0:
                sub_spans = spans[run.start:run.start + len(argv)]
                a, b = sub_spans[0][0], sub_spans[-1][1]
                text = ctx.src[a:b].decode("utf-8", "replace")
            else:
                sub_spans = [(0, 0)] * len(argv)
                text = " ".join(w.display() for w in argv)
            self.emit(argv, sub_spans, ctx, text, 0, run.runtime_args, stdin)
        elif run.code is not None:
            self.code(run.code, ctx.depth + 1, run.runtime_args)
        elif run.script is not None:
            self.script(run.script, ctx)
        elif run.stdin:
            self.code(stdin_script(stdin), ctx.depth + 1, False)

    def script(self, word: Word, ctx: Ctx) -> None:
        """A script file run by a shell or `source`: read and judged when a reader is
        given, else the line is judged as itself."""
        if any(isinstance(s, Hole) and s.source.startswith(("<(", ">(")) for s in word.segments):
            raise CannotAnalyse("a script read from a process substitution")
        if self.read_script is None:
            return
        path = word.literal
        if path is None:
            raise CannotAnalyse(f"the script path is set at run time: {word.display()}")
        if self.cwd is not None and not path.startswith("/"):
            path = posixpath.join(self.cwd, path)
        try:
            text = self.read_script(path)
        except (OSError, ValueError):
            text = None
        if text is None:
            raise CannotAnalyse(f"the script {path} cannot be read")
        self.code(text, ctx.depth + 1, False)
