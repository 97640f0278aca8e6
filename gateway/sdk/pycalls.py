"""The calls the Python analysis knows, and the actions each takes: files opened,
read, written or removed, commands run, connections made.

One table from a qualified name (`subprocess.run`, `pathlib.Path.write_text` as a
method of a known path, `requests.post`) to a reader of the call's arguments. A
target that is not a literal the analysis can follow is dynamic, never guessed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.execs import command_line
from gateway.policy.model import Action
from gateway.sdk.pyvalues import UNKNOWN, Number, PathValue, Ref, Scope, Seq, Value, text_of

READ, WRITE, SHELL, NET = (Action.FILE_READ, Action.FILE_WRITE, Action.SHELL_EXEC,
                           Action.NETWORK)


@dataclass(frozen=True, slots=True)
class Act:
    """One action of a call, before it gets a line and the call's text."""

    action: Action
    target: str | None
    why: str | None = None
    method: str | None = None
    cwd: str | None = None


class Args:
    """A call's arguments, evaluated on demand."""

    def __init__(self, scope: Scope, call: ast.Call) -> None:
        self.scope, self.call = scope, call
        self.positional = list(scope.args(call))
        self.starred = any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords)

    def get(self, index: int | None, name: str | None = None) -> Value | None:
        """The argument at `index` or named `name`; None when absent; unknown when a
        `*args`/`**kwargs` might hold it."""
        if index is not None and index < len(self.positional):
            return self.positional[index]
        for keyword in self.call.keywords:
            if name is not None and keyword.arg == name:
                return self.scope.eval(keyword.value)
        return UNKNOWN if self.starred else None

    def rest(self, start: int) -> list[Value]:
        return self.positional[start:] + ([UNKNOWN] if self.starred else [])


Handler = Callable[[str, Args], Iterator[Act]]


def _path(action: Action, value: Value | None, what: str = "the path") -> Act:
    text = text_of(value) if value is not None else None
    if text is None:
        return Act(action, None, f"{what} is built at run time")
    return Act(action, text)


def _open_mode(mode: str | None) -> tuple[Action, ...]:
    if mode is None:
        return (READ, WRITE)  # unknown: both, so neither escapes
    writes = any(c in mode for c in "wax+")
    reads = "r" in mode or "+" in mode or not writes
    return tuple(a for a, on in ((READ, reads), (WRITE, writes)) if on)


def open_call(name: str, args: Args) -> Iterator[Act]:
    """`open(file, mode)` and its relatives; an unknown mode reads and writes."""
    mode = args.get(1, "mode")
    mode_text = "r" if mode is None else text_of(mode)
    if isinstance(args.get(0, "file"), Number):
        return  # a file descriptor: opened elsewhere
    for action in _open_mode(mode_text):
        yield _path(action, args.get(0, "file"))


def os_open(name: str, args: Args) -> Iterator[Act]:
    """`os.open(path, flags)`: flags written as `os.O_*` names joined by `|` are read;
    anything else may write."""
    flags = args.call.args[1] if len(args.call.args) > 1 else None
    modes: str | None = "r"
    if flags is not None:
        nodes = list(ast.walk(flags))
        names = {n.attr for n in nodes if isinstance(n, ast.Attribute)} | {
            n.id for n in nodes if isinstance(n, ast.Name)}
        known = all(isinstance(n, ast.Attribute | ast.Name | ast.BinOp | ast.BitOr | ast.Load)
                    for n in nodes) and all(n.startswith("O_") or n == "os" for n in names)
        writes = bool(names & {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"})
        reads = "O_WRONLY" not in names or "O_RDWR" in names
        modes = ("r" if reads else "") + ("w" if writes else "") if known else None
    for action in _open_mode(modes):
        yield _path(action, args.get(0, "path"))


def one_path(action: Action, index: int = 0, name: str = "path") -> Handler:
    def handler(_: str, args: Args) -> Iterator[Act]:
        yield _path(action, args.get(index, name))
    return handler


def copy_call(name: str, args: Args) -> Iterator[Act]:
    """shutil's copies read the source and write the destination; a move also
    removes the source."""
    source = args.get(0, "src")
    yield _path(WRITE if name.endswith((".move", ".rename", ".renames", ".replace"))
                else READ, source, "the source")
    yield _path(WRITE, args.get(1, "dst"), "the destination")


def link_call(name: str, args: Args) -> Iterator[Act]:
    yield _path(WRITE, args.get(1, "dst"), "the link")


def path_method(action_of: dict[str, tuple[Action, ...]]) -> Callable[[PathValue, str, Args],
                                                                       Iterator[Act]]:
    def handler(path: PathValue, method: str, args: Args) -> Iterator[Act]:
        if method == "open":
            mode = args.get(0, "mode")
            actions = _open_mode("r" if mode is None else text_of(mode))
        else:
            actions = action_of[method]
        for action in actions:
            yield _path(action, path)
        if method in ("rename", "replace"):
            yield _path(WRITE, args.get(0, "target"), "the destination")
    return handler


PATH_METHODS: dict[str, tuple[Action, ...]] = {
    "read_text": (READ,), "read_bytes": (READ,), "iterdir": (READ,), "glob": (READ,),
    "rglob": (READ,), "write_text": (WRITE,), "write_bytes": (WRITE,), "touch": (WRITE,),
    "mkdir": (WRITE,), "unlink": (WRITE,), "rmdir": (WRITE,), "rename": (WRITE,),
    "replace": (WRITE,), "chmod": (WRITE,), "symlink_to": (WRITE,),
    "hardlink_to": (WRITE,), "open": (),
}
path_call = path_method(PATH_METHODS)


# --- commands -------------------------------------------------------------------------


def _argv(value: Value | None) -> list[str] | None:
    if isinstance(value, Seq):
        words = [text_of(v) for v in value.items]
        return None if any(w is None for w in words) or not words else words  # type: ignore[return-value]
    return None


def _command(value: Value | None, shell: bool, executable: Value | None,
             cwd: Value | None) -> Act:
    where = text_of(cwd) if cwd is not None else None
    exe = text_of(executable) if executable is not None else None
    if executable is not None and exe is None:
        return Act(SHELL, None, "the program to run is chosen at run time")
    if shell:
        line = text_of(value) if not isinstance(value, Seq) else (
            text_of(value.items[0]) if value.items else None)
        if line is None:
            return Act(SHELL, None, "the command line is built at run time")
        return Act(SHELL, line if exe is None else command_line([exe, "-c", line]), cwd=where)
    argv = _argv(value) if isinstance(value, Seq) else (
        [text_of(value)] if value is not None and text_of(value) is not None else None)
    if argv is None:
        return Act(SHELL, None, "the command is built at run time")
    if exe is not None:
        argv = [exe, *argv[1:]]
    return Act(SHELL, command_line(argv), cwd=where)


def _truthy(value: Value | None) -> bool | None:
    if value is None:
        return False
    if isinstance(value, Number):
        return bool(value.value)
    return None


def subprocess_call(name: str, args: Args) -> Iterator[Act]:
    """`subprocess.*` and `asyncio.create_subprocess_*`: a list is an argv, a string
    with `shell=True` a shell line; an unknown `shell=` fails closed to the shell."""
    first = args.get(0, "args") if not name.endswith("_exec") else Seq(tuple(args.rest(0)))
    if name.endswith(("getoutput", "getstatusoutput", "_shell")):
        shell: bool | None = True
        first = args.get(0, "cmd")
    else:
        shell_arg = args.call.keywords and next(
            (k.value for k in args.call.keywords if k.arg == "shell"), None)
        shell = False if not shell_arg else (
            shell_arg.value if isinstance(shell_arg, ast.Constant)
            and isinstance(shell_arg.value, bool) else None)
    if shell is None:
        yield Act(SHELL, None, "shell= is decided at run time")
        return
    yield _command(first, shell, args.get(None, "executable"), args.get(None, "cwd"))


def os_system(name: str, args: Args) -> Iterator[Act]:
    yield _command(args.get(0, "command" if name.endswith("system") else "cmd"), True, None,
                   None)


def os_exec(name: str, args: Args) -> Iterator[Act]:
    """`os.exec*`, `os.spawn*`, `os.posix_spawn*`: the program is the path argument,
    its arguments after argv[0] follow, from a list (`v`) or the call (`l`)."""
    kind = name.rsplit(".", 1)[1]
    start = 1 if kind.startswith("spawn") else 0
    program = args.get(start, "path")
    if kind.startswith("posix_spawn") or "v" in kind:
        words = args.get(start + 1, "argv")
        rest = list(words.items) if isinstance(words, Seq) else [UNKNOWN]
    else:
        rest = args.rest(start + 1)
        if "e" in kind.split("l", 1)[-1] and rest:
            rest = rest[:-1]  # the environment
    yield _command(Seq((program or UNKNOWN, *rest[1:])), False, None, None)


# --- network --------------------------------------------------------------------------

HTTP_VERBS = ("get", "post", "put", "patch", "delete", "head", "options")


def http_call(name: str, args: Args) -> Iterator[Act]:
    """`requests`/`httpx`/`aiohttp` verbs and `request(method, url)`."""
    verb = name.rsplit(".", 1)[1]
    if verb in HTTP_VERBS:
        method: str | None = verb.upper()
        url = args.get(0, "url")
    else:
        method_value = args.get(0, "method")
        method = text_of(method_value).upper() if method_value is not None and \
            text_of(method_value) else None
        url = args.get(1, "url")
    target = text_of(url) if url is not None else None
    yield Act(NET, target, None if target else "the URL is built at run time", method=method)


def url_call(name: str, args: Args) -> Iterator[Act]:
    url = args.get(0, "url")
    if isinstance(url, Ref) and url.name == "urllib.request.Request()":
        return  # decided where the Request was made
    target = text_of(url) if url is not None else None
    yield Act(NET, target, None if target else "the URL is built at run time")
    if name.endswith("urlretrieve") and args.get(1, "filename") is not None:
        yield _path(WRITE, args.get(1, "filename"))


def _authority(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return shown if port is None else f"{shown}:{port}"


def host_port(default: int | None) -> Handler:
    """Clients made from a host and a port (`http.client`, `smtplib`, `ftplib`)."""
    def handler(_: str, args: Args) -> Iterator[Act]:
        host, port = args.get(0, "host"), args.get(1, "port")
        text = text_of(host) if host is not None else None
        if text is None or (port is not None and not isinstance(port, Number)):
            yield Act(NET, None, "the host is built at run time")
        elif port is not None and isinstance(port, Number):
            yield Act(NET, _authority(text, port.value))
        else:
            yield Act(NET, text if ":" in text.strip("[]").split("]")[-1]
                      else _authority(text, default))
    return handler


def address_call(index: int, name: str) -> Handler:
    """`socket.create_connection((host, port))`, `sock.connect(...)`, `sendto`."""
    def handler(_: str, args: Args) -> Iterator[Act]:
        address = args.get(index, name)
        if isinstance(address, Seq) and len(address.items) >= 2:
            host, port = text_of(address.items[0]), address.items[1]
            if host is not None and isinstance(port, Number):
                yield Act(NET, _authority(host, port.value))
                return
        yield Act(NET, None, "the address is built at run time")
    return handler


def code_call(name: str, args: Args) -> Iterator[Act]:
    """`exec`/`eval`/`compile` of code that is not a literal written in the call (such
    literals are analysed with the block)."""
    first = args.call.args[0] if args.call.args else None
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        yield Act(SHELL, None, "runs Python code built at run time")


CALLS: dict[str, Handler] = {
    "builtins.open": open_call, "io.open": open_call, "codecs.open": open_call,
    "gzip.open": open_call, "bz2.open": open_call, "lzma.open": open_call,
    "os.open": os_open,
    "os.listdir": one_path(READ), "os.scandir": one_path(READ), "os.walk": one_path(READ, 0, "top"),
    "os.remove": one_path(WRITE), "os.unlink": one_path(WRITE), "os.rmdir": one_path(WRITE),
    "os.removedirs": one_path(WRITE, 0, "name"), "os.mkdir": one_path(WRITE),
    "os.makedirs": one_path(WRITE, 0, "name"), "os.chmod": one_path(WRITE),
    "os.chown": one_path(WRITE), "os.truncate": one_path(WRITE),
    "os.rename": copy_call, "os.renames": copy_call, "os.replace": copy_call,
    "os.symlink": link_call, "os.link": link_call,
    "shutil.copy": copy_call, "shutil.copy2": copy_call, "shutil.copyfile": copy_call,
    "shutil.copytree": copy_call, "shutil.move": copy_call,
    "shutil.rmtree": one_path(WRITE), "shutil.chown": one_path(WRITE),
    "subprocess.run": subprocess_call, "subprocess.call": subprocess_call,
    "subprocess.check_call": subprocess_call, "subprocess.check_output": subprocess_call,
    "subprocess.Popen": subprocess_call, "subprocess.getoutput": subprocess_call,
    "subprocess.getstatusoutput": subprocess_call,
    "asyncio.create_subprocess_exec": subprocess_call,
    "asyncio.create_subprocess_shell": subprocess_call,
    "os.system": os_system, "os.popen": os_system,
    **{f"os.{k}": os_exec for k in (
        "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
        "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp",
        "spawnvpe", "posix_spawn", "posix_spawnp")},
    "pty.spawn": lambda n, a: iter([_command(a.get(0, "argv"), False, None, None)]),
    **{f"{m}.{v}": http_call for m in ("requests", "httpx", "aiohttp.ClientSession()")
       for v in (*HTTP_VERBS, "request")},
    "httpx.stream": http_call, "aiohttp.request": http_call,
    "aiohttp.ClientSession().ws_connect": url_call,
    "urllib.request.urlopen": url_call, "urllib.request.urlretrieve": url_call,
    "urllib.request.Request": url_call,
    "http.client.HTTPConnection": host_port(80), "http.client.HTTPSConnection": host_port(443),
    "smtplib.SMTP": host_port(25), "smtplib.SMTP_SSL": host_port(465),
    "ftplib.FTP": host_port(21), "ftplib.FTP_TLS": host_port(21),
    "socket.create_connection": address_call(0, "address"),
    "socket.socket().connect": address_call(0, "address"),
    "socket.socket().connect_ex": address_call(0, "address"),
    "socket.socket().sendto": address_call(1, "address"),
    "builtins.exec": code_call, "builtins.eval": code_call, "builtins.compile": code_call,
}
# Attributes of something unknown that only pathlib paths have: the receiver, and so
# the path, is built at run time.
PATH_ONLY_METHODS = frozenset({"read_text", "read_bytes", "write_text", "write_bytes"})
CHDIR = frozenset({"os.chdir", "os.fchdir", "contextlib.chdir"})
