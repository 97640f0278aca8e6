"""What a Python expression is known to be before the code runs: a string, a path, a
module or function of a watched library, a list; or unknown.

The analysis is flow-insensitive: a name bound once (an import, a module constant,
`p = Path("out")`) has that binding's value everywhere; a name bound several times
to different values, or by a loop, a parameter or an augmented assignment, is
unknown. Unknown never widens anything: a target that depends on it is `dynamic`.
Pure: nothing here runs, imports or reads anything.
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

# Modules whose use the analysis looks for; importing one of them is noted.
WATCHED_MODULES = frozenset({
    "os", "subprocess", "shutil", "pathlib", "io", "codecs", "gzip", "bz2", "lzma",
    "requests", "httpx", "urllib", "aiohttp", "http", "socket", "asyncio", "pty",
    "smtplib", "ftplib", "importlib", "ctypes", "contextlib",
})
# Builtins the analysis follows when the code does not rebind them.
BUILTINS = frozenset({"open", "exec", "eval", "compile", "__import__", "getattr", "str"})
# What `from MODULE import *` brings in, for the names the analysis knows.
STAR_EXPORTS = {
    "os": ("system", "popen", "remove", "unlink", "rmdir", "removedirs", "mkdir",
           "makedirs", "rename", "renames", "replace", "chmod", "chown", "truncate",
           "symlink", "link", "listdir", "scandir", "walk", "chdir", "open", "execv",
           "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
           "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp",
           "spawnvpe", "posix_spawn", "posix_spawnp", "getcwd"),
    "subprocess": ("run", "call", "check_call", "check_output", "Popen", "getoutput",
                   "getstatusoutput"),
    "shutil": ("copy", "copy2", "copyfile", "copytree", "move", "rmtree", "copyfileobj"),
    "pathlib": ("Path", "PurePath", "PosixPath", "PurePosixPath"),
    "socket": ("create_connection", "socket"),
    "requests": ("get", "post", "put", "patch", "delete", "head", "options", "request",
                 "Session"),
    "httpx": ("get", "post", "put", "patch", "delete", "head", "options", "request",
              "stream", "Client", "AsyncClient"),
    "urllib.request": ("urlopen", "urlretrieve", "Request"),
    "http.client": ("HTTPConnection", "HTTPSConnection"),
}
# Calls whose result is an object whose methods act like the named module's.
OBJECT_OF = {
    "requests.Session": "requests", "requests.session": "requests",
    "httpx.Client": "httpx", "httpx.AsyncClient": "httpx",
    "aiohttp.ClientSession": "aiohttp.ClientSession()",
    "socket.socket": "socket.socket()",
    "urllib.request.Request": "urllib.request.Request()",
}
PATH_TYPES = frozenset({"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath",
                        "pathlib.PurePosixPath"})
UNRESOLVED = "?"  # in a Ref's name: chosen at run time (getattr, __import__ of a variable)


@dataclass(frozen=True, slots=True)
class Ref:
    """A module, function, class or object of a watched library, by qualified name."""

    name: str


@dataclass(frozen=True, slots=True)
class Text:
    value: str


@dataclass(frozen=True, slots=True)
class Number:
    value: int


@dataclass(frozen=True, slots=True)
class PathValue:
    """A pathlib path; `value` None when it is built at run time."""

    value: str | None


@dataclass(frozen=True, slots=True)
class Seq:
    """A list or tuple display; None items are unknown."""

    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Method:
    """An attribute of something that is not a watched module: `p.write_text`."""

    receiver: Value
    name: str


@dataclass(frozen=True, slots=True)
class Unknown:
    pass


Value = Ref | Text | Number | PathValue | Seq | Method | Unknown
UNKNOWN = Unknown()
_Binding = ast.expr | Ref | None
# Nodes that bind their `name` to something unknown: definitions, handlers, patterns.
_NAMED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler,
          ast.MatchAs, ast.MatchStar)  # None: bound to something the analysis cannot know


def text_of(value: Value) -> str | None:
    """The string a value stands for where a path or command is expected, if known."""
    if isinstance(value, Text):
        return value.value
    if isinstance(value, PathValue):
        return value.value
    return None


class Scope:
    """The names of one module and what each is known to be."""

    def __init__(self, tree: ast.AST) -> None:
        self._bindings: dict[str, list[_Binding]] = {}
        self._memo: dict[str, Value] = {}
        self._busy: set[str] = set()
        self.imports: list[str] = []
        self._collect(tree)

    def _bind(self, name: str, binding: _Binding) -> None:
        self._bindings.setdefault(name, []).append(binding)

    def _collect(self, tree: ast.AST) -> None:
        handled: set[int] = set()
        for node in ast.walk(tree):
            for name, binding in _bindings_of(node, self.imports):
                self._bind(name, binding)
            for target in _assigned_names(node):
                handled.add(id(target))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) \
                    and id(node) not in handled:
                self._bind(node.id, None)
            elif isinstance(node, ast.arg):
                self._bind(node.arg, None)
            elif isinstance(node, _NAMED) and node.name:
                self._bind(node.name, None)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                self._bind(node.rest, None)
            elif isinstance(node, ast.Global | ast.Nonlocal):
                for name in node.names:
                    self._bind(name, None)

    def lookup(self, name: str) -> Value:
        if name in self._memo:
            return self._memo[name]
        bindings = self._bindings.get(name)
        if bindings is None:
            return Ref(f"builtins.{name}") if name in BUILTINS else UNKNOWN
        if name in self._busy:
            return UNKNOWN
        self._busy.add(name)
        try:
            values = {self._value(b) for b in bindings}
        finally:
            self._busy.discard(name)
        value = values.pop() if len(values) == 1 else UNKNOWN
        self._memo[name] = value
        return value

    def _value(self, binding: _Binding) -> Value:
        if binding is None:
            return UNKNOWN
        if isinstance(binding, Ref):
            return binding
        return self.eval(binding)

    def eval(self, node: ast.expr) -> Value:
        """What `node` is known to be."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return Text(node.value)
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                return Number(node.value)
            return UNKNOWN
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            base = self.eval(node.value)
            if isinstance(base, Ref):
                return Ref(f"{base.name}.{node.attr}")
            if isinstance(base, PathValue) and node.attr == "parent":
                return PathValue(None if base.value is None else posixpath.dirname(base.value))
            return Method(base, node.attr)
        if isinstance(node, ast.JoinedStr):
            return self._fstring(node)
        if isinstance(node, ast.BinOp):
            return _binop(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.List | ast.Tuple):
            return Seq(tuple(UNKNOWN if isinstance(e, ast.Starred) else self.eval(e)
                             for e in node.elts))
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.NamedExpr):
            return self.eval(node.value)
        if isinstance(node, ast.Await):
            return self.eval(node.value)
        return UNKNOWN

    def _fstring(self, node: ast.JoinedStr) -> Value:
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                out.append(part.value)
                continue
            if not isinstance(part, ast.FormattedValue) or part.format_spec is not None \
                    or part.conversion not in (-1, ord("s")):
                return UNKNOWN
            text = text_of(self.eval(part.value))
            if text is None:
                return UNKNOWN
            out.append(text)
        return Text("".join(out))

    def args(self, call: ast.Call) -> Iterator[Value]:
        for arg in call.args:
            yield UNKNOWN if isinstance(arg, ast.Starred) else self.eval(arg)

    def _call(self, call: ast.Call) -> Value:
        func = self.eval(call.func)
        if isinstance(func, Method):
            return _path_method(func, list(self.args(call)))
        if not isinstance(func, Ref):
            return UNKNOWN
        name = func.name
        args = list(self.args(call))
        texts = [text_of(a) for a in args]
        if name in PATH_TYPES:
            if any(t is None for t in texts) or call.keywords:
                return PathValue(None)
            return PathValue(posixpath.join(*texts) if texts else ".")  # type: ignore[arg-type]
        if name in ("pathlib.Path.home", "pathlib.PosixPath.home"):
            return PathValue("~")
        if name in ("pathlib.Path.cwd", "pathlib.PosixPath.cwd", "os.getcwd"):
            return PathValue(".") if name != "os.getcwd" else Text(".")
        if name == "os.path.join":
            known = [t for t in texts if t is not None]
            return Text(posixpath.join(*known)) if known and len(known) == len(texts) \
                else UNKNOWN
        if name in ("os.path.abspath", "os.path.normpath", "os.path.expanduser",
                    "os.fspath", "builtins.str") and len(texts) == 1 and texts[0] is not None:
            return Text(texts[0])
        if name in ("builtins.__import__", "importlib.import_module"):
            module = texts[0] if texts else None
            return Ref(module if module else UNRESOLVED)
        if name == "builtins.getattr" and len(args) >= 2 and isinstance(args[0], Ref):
            return Ref(f"{args[0].name}.{texts[1] if texts[1] is not None else UNRESOLVED}")
        if name in OBJECT_OF:
            return Ref(OBJECT_OF[name])
        return UNKNOWN


def _binop(op: ast.operator, left: Value, right: Value) -> Value:
    if isinstance(op, ast.Add):
        if isinstance(left, Text) and isinstance(right, Text):
            return Text(left.value + right.value)
        if isinstance(left, Seq) and isinstance(right, Seq):
            return Seq(left.items + right.items)
    if isinstance(op, ast.Div) and isinstance(left, PathValue):
        tail = text_of(right)
        if left.value is None or tail is None:
            return PathValue(None)
        return PathValue(posixpath.join(left.value, tail))
    return UNKNOWN


def _path_method(method: Method, args: list[Value]) -> Value:
    """The path a pathlib method returns, for the methods that return one."""
    path = method.receiver
    if not isinstance(path, PathValue):
        return UNKNOWN
    if method.name in ("resolve", "absolute", "expanduser"):
        return path
    if method.name == "joinpath":
        texts = [text_of(a) for a in args]
        if path.value is None or any(t is None for t in texts):
            return PathValue(None)
        return PathValue(posixpath.join(path.value, *texts))  # type: ignore[arg-type]
    if method.name in ("with_name", "with_suffix", "with_stem"):
        return PathValue(None)
    return UNKNOWN


def _bindings_of(node: ast.AST, imports: list[str]) -> Iterator[tuple[str, _Binding]]:
    """The names `node` binds to something the analysis can follow."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            _note(alias.name, imports)
            if alias.asname:
                yield alias.asname, Ref(alias.name)
            else:
                first = alias.name.split(".")[0]
                yield first, Ref(first)
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            for alias in node.names:
                yield alias.asname or alias.name, None
            return
        _note(module, imports)
        for alias in node.names:
            if alias.name == "*":
                for name in STAR_EXPORTS.get(module, ()):
                    yield name, Ref(f"{module}.{name}")
            else:
                yield alias.asname or alias.name, Ref(f"{module}.{alias.name}")
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                yield target.id, node.value
    elif isinstance(node, ast.AnnAssign | ast.NamedExpr):
        if isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target.id, node.value
    elif isinstance(node, ast.With | ast.AsyncWith):
        for item in node.items:
            if isinstance(item.optional_vars, ast.Name):
                yield item.optional_vars.id, item.context_expr


def _assigned_names(node: ast.AST) -> Iterator[ast.Name]:
    """The Name nodes `_bindings_of` already bound for `node`."""
    if isinstance(node, ast.Assign):
        yield from (t for t in node.targets if isinstance(t, ast.Name))
    elif isinstance(node, ast.AnnAssign | ast.NamedExpr):
        if isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target
    elif isinstance(node, ast.With | ast.AsyncWith):
        yield from (i.optional_vars for i in node.items if isinstance(i.optional_vars, ast.Name))


def _note(module: str, imports: list[str]) -> None:
    if module.split(".")[0] in WATCHED_MODULES and module not in imports:
        imports.append(module)
