"""Command analysis: a shell line becomes every simple command that would run.

tree-sitter-bash gives the structure; this walker turns it into `Part`s, looking
through wrappers, runners and shells (`gateway.shell.wrappers`) and into every
command substitution, process substitution and parameter expansion. Where the tree
reads a line differently from bash (the traps in docs/policy.md), the line is
repaired and parsed again, or refused. Anything that cannot be judged statically is
an `Analysis` with `cannot_analyse` set; this module never raises.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from functools import lru_cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from gateway.shell.asciimask import AsciiMask
from gateway.shell.expand import (
    CannotAnalyse,
    Token,
    active,
    ansi_c,
    assigned_name,
    check_arithmetic,
    check_assigned,
    check_parameter,
    dq_text,
    finish,
    is_name,
    substitutions,
    unescape_backquoted,
)
from gateway.shell.words import Analysis, Hole, Part, Word
from gateway.shell.wrappers import TOOLS, Kind, Options, Run, parse

MAX_INPUT = 64 * 1024
MAX_NESTING = 16  # nested `sh -c`, `$(...)`, eval, scripts
MAX_TREE_DEPTH = 400
MAX_PARTS = 10_000

ReadScript = Callable[[str], str | None]

# Reserved words that a tree-sitter command name must never be: seeing one means the
# tree misread a compound command (`time { ...; }`, `! if ...`).
_RESERVED = frozenset({"{", "}", "if", "then", "elif", "else", "fi", "do", "done", "while",
                       "until", "for", "case", "esac", "select", "function", "in", "!",
                       "[[", "]]"})
_COMPOUND_START = frozenset({"{", "if", "while", "until", "for", "case", "select", "[[",
                             "function", "!", "(("})
_TRUSTED_DIRS = ("/bin/", "/usr/bin/", "/usr/local/bin/", "/sbin/", "/usr/sbin/",
                 "/usr/local/sbin/")
_DECLARATIONS = frozenset({"export", "declare", "typeset", "readonly", "local"})
_READ_OPTS = Options(value="adinNptu", flags="ers")
_PRINTF_OPTS = Options(value="v")
_BLOCKS = frozenset({"program", "list", "compound_statement", "subshell", "do_group",
                     "if_statement", "elif_clause", "else_clause", "while_statement",
                     "negated_command", "pipeline"})
_SKIP = frozenset({"comment", "file_descriptor"})
_HEREDOC_PARTS = frozenset({"<<", "<<-", "heredoc_start", "heredoc_body", "heredoc_end",
                            "file_redirect", "|", "&&", "||", ";", "&", "|&"})
_PLAIN = re.compile(r"[A-Za-z0-9_./:,+%@=-]+")
_REPAIR_HINTS = (b"time", b"!", b"coproc")
_ESCAPED = re.compile(r"\\.", re.DOTALL)


@lru_cache(maxsize=1)
def _parser() -> Parser:
    """One parser per process: building the language is the slow part."""
    return Parser(Language(tree_sitter_bash.language()))


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
        walker = _Walker(home, cwd, read_script, mask)
        walker.code(command, 0, False)
        return Analysis(parts=mask.unmask_parts(walker.parts))
    except CannotAnalyse as exc:
        return Analysis(cannot_analyse=f"cannot analyse: {mask.unmask(str(exc))}")
    except RecursionError:
        return Analysis(cannot_analyse="cannot analyse: nested too deeply")
    except Exception as exc:  # fail closed on anything unforeseen
        return Analysis(cannot_analyse=f"cannot analyse: internal error ({type(exc).__name__})")


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
        if t == "heredoc_redirect" and _heredoc_quoted(node):
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


def _heredoc_quoted(node: Node) -> bool:
    for c in node.children:
        if c.type == "heredoc_start":
            return any(ch in (c.text or b"") for ch in b"'\"\\")
    return False


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "surrogateescape")


class _Stdin:
    """What feeds a command's stdin: its own redirections, or the pipe before it."""

    __slots__ = ("piped", "redirects")

    def __init__(self, redirects: list[Node], piped: bool) -> None:
        self.redirects = redirects
        self.piped = piped


class _Walker:
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
        src = _encode(text)
        if not text.isascii():
            src = self.mask.mask(text).encode("ascii")
        parser = _parser()
        tree = parser.parse(src)
        if b"\\\n" in src:
            src = _join_continuations(tree.root_node, src)
            tree = parser.parse(src)
        for _ in range(4 if any(h in src for h in _REPAIR_HINTS) else 0):
            fixed = _keyword_repairs(tree.root_node, src)
            if fixed is None:
                break
            src = fixed
            tree = parser.parse(src)
        root = tree.root_node
        if root.has_error:
            raise CannotAnalyse("the line does not parse")
        self.stmt(root, _Ctx(src, depth, runtime), False)

    # --- statements ---------------------------------------------------------------

    def stmt(self, node: Node, ctx: _Ctx, piped: bool) -> None:
        self.level += 1
        if self.level > MAX_TREE_DEPTH:
            raise CannotAnalyse("the line is nested too deeply")
        try:
            self.statement(node, ctx, piped)
        finally:
            self.level -= 1

    def statement(self, node: Node, ctx: _Ctx, piped: bool) -> None:
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
        elif t in _BLOCKS:
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
                    check_assigned(_text(c))
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
                if c.type == "case_item" or _is_statement(c):
                    self.stmt(c, ctx, piped)
                else:
                    self.expansions(c, ctx)
        elif t == "function_definition":
            for c in node.named_children:
                if c.type != "word":
                    self.stmt(c, ctx, False)
        elif t == "test_command" and node.children and node.children[0].type == "[":
            leaves = list(_leaves(node))  # `[ ... ]` is the `[` builtin, a part
            words, spans = self.words(leaves, ctx, True)
            self.emit(words, spans, ctx, _text(node), node.start_byte, ctx.runtime,
                      _Stdin([], piped))
        elif t == "test_command":
            self.expansions(node, ctx)
        elif t in _SKIP:
            return
        elif t in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            self.redirect(node, ctx)
        else:
            raise CannotAnalyse(f"unsupported syntax: {t}")

    def redirected(self, node: Node, ctx: _Ctx, piped: bool) -> None:
        body = node.child_by_field_name("body")
        redirects: list[Node] = []
        extra: list[Node] = []
        hanging: list[tuple[Node, bool]] = []
        for c in node.children:
            if c.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                redirects.append(c)
                extra.extend(_redirect_extra_words(c))
                if c.type == "heredoc_redirect":
                    pipe = False
                    for h in c.children:
                        if h.type == "|":
                            pipe = True
                        elif _is_statement(h):
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

    def redirect(self, node: Node, ctx: _Ctx) -> None:
        """Walk the expansions of a redirection's target or here-document body."""
        if node.type == "heredoc_redirect":
            for c in node.children:
                if c.type not in _HEREDOC_PARTS and not _is_statement(c):
                    raise CannotAnalyse("a here-document the parser misread")
            quoted = _heredoc_quoted(node)
            for c in node.children:
                if c.type == "heredoc_body" and not quoted:
                    self.scan(_heredoc_text(node, c), ctx)
            return
        for c in node.named_children:
            if c.type != "file_descriptor":
                self.expansions(c, ctx)

    def arithmetic(self, node: Node, ctx: _Ctx) -> None:
        check_arithmetic(_text(node))
        self.expansions(node, ctx)

    def assignment(self, node: Node, ctx: _Ctx) -> None:
        name = node.child_by_field_name("name")
        if name is not None:
            check_assigned(_text(name))
        for c in node.named_children:
            if c.type == "subscript" or (c is not name and c.type != "variable_name"):
                self.expansions(c, ctx)

    # --- expansions outside argument lists ----------------------------------------

    def expansions(self, node: Node, ctx: _Ctx) -> None:
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
                text = _text(n)
                if t == "expansion":
                    check_parameter(text)
                else:
                    check_arithmetic(text)
                self.scan(text, ctx)
            elif t in ("word", "string_content", "extglob_pattern", "regex"):
                text = _text(n)
                if "`" in text or "$(" in text or "${" in text:
                    self.scan(text, ctx)
            elif t in ("binary_expression", "unary_expression", "ternary_expression",
                       "postfix_expression", "parenthesized_expression") \
                    and n.parent is not None and n.parent.type in (
                        "compound_statement", "arithmetic_expansion", "subscript",
                        "c_style_for_statement"):
                check_arithmetic(_text(n))
                stack.extend(n.children)
            else:
                stack.extend(n.children)

    def substitution(self, node: Node, ctx: _Ctx) -> None:
        text = _text(node)
        if text.startswith("`"):
            self.code(unescape_backquoted(text[1:-1]), ctx.depth + 1, False)
            return
        for c in node.named_children:
            self.stmt(c, ctx, False)

    def scan(self, text: str, ctx: _Ctx) -> None:
        """Walk the substitutions in text the tree left unstructured."""
        for kind, inner in substitutions(text):
            if kind == "cmd":
                self.code(inner, ctx.depth + 1, False)
            elif kind == "arith":
                check_arithmetic(inner)
            else:
                check_parameter(inner)

    # --- words --------------------------------------------------------------------

    def tokens(self, node: Node, ctx: _Ctx, out: list[Token], quoted: bool) -> bool:
        """Append the tokens of one word node; True when an unquoted hole may split it."""
        t = node.type
        if t in ("word", "number", "brace_expression", "$", "variable_name", "unset",
                 "test_operator", "regex", "extglob_pattern") or t in _DECLARATIONS \
                or not node.is_named:
            text = _text(node)
            bare = _ESCAPED.sub("", text)
            if "`" in bare or "$(" in bare or any(c in bare for c in " \t\n"):
                raise CannotAnalyse(f"a word the parser misread: {text!r}")
            out.extend(active(text))
            return False
        if t == "raw_string":
            out.append((False, _text(node)[1:-1]))
            return False
        if t == "ansi_c_string":
            out.append((False, ansi_c(_text(node)[2:-1])))
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
            out.append(Hole(_text(node)))
            self.expansions(node, ctx)
            return not quoted and t != "process_substitution"
        raise CannotAnalyse(f"unsupported word syntax: {t}")

    def string_tokens(self, node: Node, ctx: _Ctx, out: list[Token]) -> bool:
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
                out.append((False, dq_text(_text(c))))
            else:
                text = _text(c)
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

    def words(self, nodes: list[Node], ctx: _Ctx,
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
                plain = _text(group[0])
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

    def assignment_tokens(self, node: Node, ctx: _Ctx, out: list[Token]) -> bool:
        split = False
        for c in node.children:
            if c.type in ("variable_name", "=", "+="):
                out.extend(active(_text(c)))
            elif c.type in ("subscript", "array"):
                out.extend(active(_text(c)))
                self.expansions(c, ctx)
            else:
                split = self.tokens(c, ctx, out, False) or split
        return split

    # --- simple commands ----------------------------------------------------------

    def command(self, node: Node, ctx: _Ctx, extra: list[Node], outer: list[Node],
                piped: bool) -> None:
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
                if is_name(_text(c.child_by_field_name("name") or c).split("[", 1)[0]):
                    assigns.append(c)
                else:
                    args.append(c)  # `1A=2 cmd`: bash runs `1A=2` as the program
            elif t in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                redirects.append(c)
                args.extend(_redirect_extra_words(c))
            elif _is_statement(c):
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
        if nodes[0].type == "word" and _text(nodes[0]) in _RESERVED:
            raise CannotAnalyse(f"keyword {_text(nodes[0])!r} read as a command")
        words, spans = self.words(nodes, ctx, True)
        text = ctx.src[node.start_byte:max(node.end_byte, spans[-1][1])]
        self.emit(words, spans, ctx, text.decode("utf-8", "replace"), node.start_byte,
                  ctx.runtime, _Stdin(redirects + outer, piped))

    def builtin_node(self, node: Node, ctx: _Ctx) -> None:
        """declare/export/local/readonly/typeset/unset, parsed by the tree as syntax."""
        nodes = [c for c in node.children if c.is_named or c.type in _DECLARATIONS
                 or c.type == "unset"]
        words, spans = self.words(nodes, ctx, True)
        self.emit(words, spans, ctx, _text(node), node.start_byte, ctx.runtime,
                  _Stdin([], False))

    def emit(self, words: list[Word], spans: list[tuple[int, int]], ctx: _Ctx, text: str,
             base: int, runtime: bool, stdin: _Stdin) -> None:
        """Record one part, then whatever it runs (wrappers, runners, shells)."""
        if len(self.parts) >= MAX_PARTS:
            raise CannotAnalyse("too many commands")
        program = words[0].literal or ""
        name = program.rsplit("/", 1)[-1]
        _check_builtin(name, words)
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

    def run(self, run: Run, words: list[Word], spans: list[tuple[int, int]], ctx: _Ctx,
            stdin: _Stdin) -> None:
        if run.argv:
            argv = list(run.argv)
            if run.placeholder:
                argv = [_placeholder(w, run.placeholder) for w in argv]
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
            self.code(_stdin_script(stdin, ctx), ctx.depth + 1, False)

    def script(self, word: Word, ctx: _Ctx) -> None:
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


class _Ctx:
    """The source being walked and how deep in nested code it sits."""

    __slots__ = ("depth", "runtime", "src")

    def __init__(self, src: bytes, depth: int, runtime: bool) -> None:
        self.src = src
        self.depth = depth
        self.runtime = runtime


def _is_statement(node: Node) -> bool:
    return node.type in _BLOCKS or node.type in (
        "command", "redirected_statement", "for_statement", "c_style_for_statement",
        "case_statement", "function_definition", "test_command", "declaration_command",
        "unset_command", "variable_assignment", "variable_assignments")


_WORDLIKE = frozenset({"word", "number", "string", "raw_string", "ansi_c_string",
                       "translated_string", "concatenation", "simple_expansion", "expansion",
                       "command_substitution", "process_substitution", "arithmetic_expansion",
                       "brace_expression", "test_operator", "variable_name", "regex",
                       "extglob_pattern"})


def _leaves(node: Node) -> Iterator[Node]:
    """The word nodes and operator tokens under `node`, in source order."""
    for c in node.children:
        if not c.is_named or c.type in _WORDLIKE:
            yield c
        else:
            yield from _leaves(c)


def _redirect_extra_words(node: Node) -> list[Node]:
    """Words after a redirection's target: bash passes them to the command."""
    if node.type == "heredoc_redirect":
        return []
    dests = node.children_by_field_name("destination")
    if node.type == "herestring_redirect":
        named = [c for c in node.named_children if c.type != "file_descriptor"]
        return named[1:]
    return dests[1:]


def _heredoc_text(node: Node, body: Node) -> str:
    text = _text(body)
    if any(c.type == "<<-" for c in node.children):
        text = "\n".join(line.lstrip("\t") for line in text.split("\n"))
    return text


def _stdin_script(stdin: _Stdin, ctx: _Ctx) -> str:
    """The script a shell reads from stdin: only a literal here-document or here-string."""
    source: Node | None = None
    for r in stdin.redirects:
        ops = [c.type for c in r.children if not c.is_named]
        fd = next((_text(c) for c in r.children if c.type == "file_descriptor"), None)
        here = r.type in ("heredoc_redirect", "herestring_redirect") and fd in (None, "0")
        reads = r.type == "file_redirect" and (
            fd == "0" or (fd is None and bool(ops) and ops[0].startswith("<")))
        if here or reads:
            source = r
    if source is None or source.type == "file_redirect":
        raise CannotAnalyse("a shell reading its commands from stdin, a pipe or a file")
    if source.type == "herestring_redirect":
        words = [c for c in source.named_children if c.type != "file_descriptor"]
        text = _text(words[0]) if words else ""
        lit = _literal_word(text)
        if lit is None:
            raise CannotAnalyse("a here-string fed to a shell expands at run time")
        return lit + "\n"
    body = next((c for c in source.children if c.type == "heredoc_body"), None)
    text = _heredoc_text(source, body) if body is not None else ""
    if not _heredoc_quoted(source) and any(ch in text for ch in "$`\\"):
        raise CannotAnalyse("a here-document fed to a shell expands at run time")
    return text


def _literal_word(text: str) -> str | None:
    """The value of a here-string word when it is plain quoted or unquoted text."""
    tree = _parser().parse(b": " + text.encode("utf-8"))
    cmd = tree.root_node.named_children[0] if tree.root_node.named_children else None
    if tree.root_node.has_error or cmd is None:
        return None
    args = cmd.children_by_field_name("argument")
    if len(args) != 1:
        return None
    node = args[0]
    if node.type == "raw_string":
        return _text(node)[1:-1]
    if node.type == "string" and all(c.type in ('"', "string_content") for c in node.children):
        return dq_text(_text(node)[1:-1])
    if node.type == "word" and not any(ch in _text(node) for ch in "\\*?[{~$`"):
        return _text(node)
    return None


def _placeholder(word: Word, marker: str) -> Word:
    """Replace a run-time placeholder (`{}`) inside a word with a hole."""
    segs: list[str | Hole] = []
    changed = False
    for s in word.segments:
        if isinstance(s, str) and marker in s:
            pieces = s.split(marker)
            for k, piece in enumerate(pieces):
                if k:
                    segs.append(Hole(marker))
                if piece:
                    segs.append(piece)
            changed = True
        else:
            segs.append(s)  # type: ignore[arg-type]
    return Word(tuple(segs), word.may_split) if changed else word


def _check_builtin(name: str, words: list[Word]) -> None:
    """Refuse builtins that set a variable which runs code (`export PS4=...`)."""
    if name in _DECLARATIONS:
        nameref = False
        for w in words[1:]:
            lit = w.literal
            if lit and lit[0] in "-+" and "=" not in lit:
                nameref = nameref or "n" in lit[1:]
                continue
            var = assigned_name(w)
            if var is None:
                if lit is None or not is_name(lit.split("[", 1)[0]):
                    raise CannotAnalyse(f"{name}: the variable name is set at run time: "
                                        f"{w.display()}")
                var = lit
            check_assigned(var)
            if nameref and lit is not None and "=" not in lit:
                raise CannotAnalyse(f"{name} -n: a reference whose target is set later")
            if nameref and lit is not None and "=" in lit:
                check_assigned(lit.split("=", 1)[1])
            elif nameref and "=" in w.display():
                raise CannotAnalyse(f"{name} -n: the referenced name is set at run time")
    elif name == "read":
        found, _, i = parse(_READ_OPTS, words, 1, "read")
        for opt, value in found:
            if opt == "a" and value is not None:
                check_assigned(value.literal or "")
        for w in words[i:]:
            check_assigned(w.literal if w.literal is not None else _refuse(w, "read"))
    elif name == "printf":
        if len(words) > 1 and (words[1].literal or "").startswith("-v"):
            found, _, _ = parse(_PRINTF_OPTS, words[:3], 1, "printf")
            for _opt, value in found:
                check_assigned(value.literal if value and value.literal is not None
                               else _refuse(value or words[1], "printf -v"))
    elif name == "getopts":
        if len(words) > 2:
            check_assigned(words[2].literal if words[2].literal is not None
                           else _refuse(words[2], "getopts"))
    elif name == "let":
        for w in words[1:]:
            check_arithmetic(w.display())


def _refuse(word: Word, what: str) -> str:
    raise CannotAnalyse(f"{what}: the variable name is set at run time: {word.display()}")
