"""The decision API: how enforcement points outside the proxy (the shell shim, the
filesystem watcher, the SDK) ask the gateway, possibly from other containers.

JSON lines over a Unix socket and/or TCP: each request line is one JSON object, each
gets one reply line, in order (see docs/decision-api.md). A request can only be
decided and recorded: there is no operation that changes the policy, the mode, the
keys or the log. Every decision is durable in the audit log before it is answered;
when it cannot be recorded the reply is DENY with `blocks: true` (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.format import check_record
from gateway.audit.recovery import AuditUnavailable
from gateway.engine import Request, decide_dynamic, make_request
from gateway.errors import GatewayError, RequestError
from gateway.execs import command_line
from gateway.policy.model import Action
from gateway.runtime import Runtime, durable

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 256 * 1024
MAX_DETAILS = 16
IDLE_TIMEOUT = 300.0  # seconds a decision API connection may stay silent
API_SOCKET_MODE = 0o666
CLIENT_SOURCES = frozenset({"shim", "fs", "sdk", "cli"})
"""Sources a client may name. `proxy` and `gateway` are the gateway's own."""

_MEMBERS = frozenset({"action", "target", "cwd", "method", "agent", "token", "source",
                      "details", "argv", "script", "script_path", "env", "dynamic"})
_EXEC_MEMBERS = ("script", "script_path", "env")
MAX_ENV_NAMES = 4096
_SOURCES = ", ".join(sorted(CLIENT_SOURCES))


# --- requests -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execution:
    """A program about to be executed with `argv`, no shell in between (the shim): the
    text of the script a shell would read, and the names of the variables set."""

    argv: tuple[str, ...]
    script: str | None
    script_path: str | None
    env: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One parsed request line. `request.agent` is unset until credentials are checked;
    with `execution`, `request.target` is the command line that would start it."""

    request: Request
    agent: str | None
    token: str | None
    source: str
    details: dict[str, object] | None
    execution: Execution | None = None
    dynamic: str | None = None  # why the target is only known at run time


def parse_request(line: bytes) -> ApiRequest:
    """The request a line holds; RequestError naming the first problem."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RequestError("not JSON") from None
    if not isinstance(data, dict):
        raise RequestError("a request is a JSON object")
    unknown = sorted(set(data) - _MEMBERS)
    if unknown:
        raise RequestError(f"unknown member {unknown[0]!r} (a request has "
                           f"{', '.join(sorted(_MEMBERS))})")
    cwd, method, agent, token = (_optional_str(data, k)
                                 for k in ("cwd", "method", "agent", "token"))
    execution = _execution(data)
    dynamic = _dynamic(data)
    target = command_line(execution.argv) if execution else data.get("target")
    request = make_request(data.get("action"), "" if dynamic else target, cwd=cwd,
                           method=method)
    source = data.get("source")
    return ApiRequest(request, agent, token, "cli" if source is None else _source(source),
                      _details(data.get("details")), execution, dynamic)


def _dynamic(data: dict[str, Any]) -> str | None:
    """The `dynamic` form: an action whose target is built at run time (the SDK's
    analysis found it), decided by the policy's sdk.dynamic."""
    why = data.get("dynamic")
    if why is None:
        return None
    if not isinstance(why, str) or not why.strip():
        raise RequestError("'dynamic' must say why the target is unknown, as a string")
    if data.get("argv") is not None or data.get("target"):
        raise RequestError("'dynamic' goes without 'target' or 'argv'")
    return why


def _execution(data: dict[str, Any]) -> Execution | None:
    """The `argv` form: a program the shim is about to execute directly."""
    argv = data.get("argv")
    if argv is None:
        extra = [k for k in _EXEC_MEMBERS if data.get(k) is not None]
        if extra:
            raise RequestError(f"{extra[0]!r} goes with 'argv'")
        return None
    if data.get("target") is not None:
        raise RequestError("give 'target' or 'argv', not both")
    if data.get("action") != Action.SHELL_EXEC.value:
        raise RequestError("'argv' is for action shell_exec")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise RequestError("'argv' must be a non-empty list of strings")
    if not argv[0]:
        raise RequestError("'argv' must name a program")
    env = data.get("env") or []
    if not isinstance(env, list) or not all(isinstance(n, str) for n in env) \
            or len(env) > MAX_ENV_NAMES:
        raise RequestError(f"'env' must be a list of at most {MAX_ENV_NAMES} names")
    return Execution(tuple(argv), _optional_str(data, "script"),
                     _optional_str(data, "script_path"), tuple(env))


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"{key!r} must be a string")
    return value


def _source(source: object) -> str:
    if source in CLIENT_SOURCES:
        return str(source)
    if source in ("proxy", "gateway"):
        raise RequestError(f"source {source!r} is the gateway's own; a client is one of "
                           f"{_SOURCES}")
    raise RequestError(f"unknown source {source!r} (one of {_SOURCES})")


def _details(details: object) -> dict[str, object] | None:
    if details is None:
        return None
    if not isinstance(details, dict):
        raise RequestError("'details' must be a JSON object")
    if len(details) > MAX_DETAILS:
        raise RequestError(f"'details' has {len(details)} members; at most {MAX_DETAILS}")
    try:
        check_record(details)
    except ValueError as e:
        raise RequestError(f"details: {e}") from None
    return details or None


# --- the server -----------------------------------------------------------------------


class DecisionApi:
    """Serves decisions on `unix_path` (mode 0666: agents on this host may ask; they can
    only ask) and/or `tcp` (host, port; port 0 picks one, then in `tcp_port`)."""

    def __init__(self, runtime: Runtime, *, unix_path: str | os.PathLike[str] | None,
                 tcp: tuple[str, int] | None, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if unix_path is None and tcp is None:
            raise GatewayError("the decision API needs a Unix socket path or a TCP address")
        self.runtime = runtime
        self.unix_path = Path(unix_path) if unix_path is not None else None
        self.tcp = tcp
        self.tcp_port: int | None = None
        self._lines = LineServer(self.answer, refusal, max_line=MAX_LINE_BYTES,
                                 name="decision API", idle_timeout=idle_timeout)

    async def start(self) -> None:
        """Listen; GatewayError when a socket cannot be created."""
        try:
            if self.unix_path is not None:
                await self._lines.listen_unix(self.unix_path, API_SOCKET_MODE)
            if self.tcp is not None:
                self.tcp_port = await self._lines.listen_tcp(*self.tcp)
        except BaseException:
            await self._lines.close()
            raise

    async def close(self) -> None:
        """Stop listening, drop connections, remove the socket file."""
        await self._lines.close()

    async def answer(self, line: bytes) -> bytes:
        """The reply line (without its newline) for one request line."""
        try:
            asked = parse_request(line)
        except RequestError as e:
            return refusal(str(e))
        runtime = self.runtime
        agent = runtime.agents.authenticate(asked.agent, asked.token)
        details = asked.details
        if asked.dynamic is not None:
            decision = decide_dynamic(runtime.policy, asked.request.action, asked.dynamic,
                                      agent=agent)
            details = {**(details or {}), "dynamic": True}
        elif asked.execution is None:
            decision = runtime.decide(replace(asked.request, agent=agent))
        else:
            run = asked.execution
            decision = runtime.decide_exec(run.argv, cwd=asked.request.cwd, agent=agent,
                                           script=run.script, script_path=run.script_path,
                                           env=run.env)
            if run.script_path is not None:
                details = {**(details or {}), "script": run.script_path}
        try:
            ticket = runtime.record(decision, asked.source, details)
            seq = await durable(ticket)
        except ValueError as e:  # a detail that would override the decision's own field
            return refusal(str(e))
        except AuditUnavailable as e:
            return orjson.dumps(fail_closed(str(e)))
        reply = decision.to_json()
        reply["blocks"] = decision.blocks
        reply["seq"] = seq
        return orjson.dumps(reply)


def fail_closed(why: str) -> dict[str, object]:
    """The reply when a decision could not be recorded: DENY, whatever the engine said."""
    return {"verdict": "DENY", "blocks": True, "reason": f"audit log unavailable: {why}",
            "error": why}


def refusal(message: str) -> bytes:
    """The reply to a line that is not a request: it blocks."""
    return orjson.dumps({"error": message, "blocks": True})


# --- JSON-lines serving, shared with the admin socket ---------------------------------


Answer = Callable[[bytes], Awaitable[bytes]]
Refusal = Callable[[str], bytes]


class LineServer:
    """Listeners that answer each line with `answer(line)`: one reply line per request
    line, in order; lines of one connection one at a time, connections concurrently. A
    line longer than `max_line` bytes gets `refusal(why)` and the connection is closed."""

    def __init__(self, answer: Answer, refusal: Refusal, *, max_line: int, name: str,
                 idle_timeout: float | None = None) -> None:
        self._answer = answer
        self._idle_timeout = idle_timeout
        self._refusal = refusal
        self._max_line = max_line
        self._name = name
        self._servers: list[asyncio.Server] = []
        self._sockets: list[tuple[Path, int]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen_unix(self, path: Path, mode: int) -> None:
        sock = bind_unix(path, mode, self._name)
        self._sockets.append((path, os.stat(path).st_ino))
        self._servers.append(await asyncio.start_unix_server(
            self._serve, sock=sock, limit=self._max_line))

    async def listen_tcp(self, host: str, port: int) -> int:
        """Listen on host:port; the bound port."""
        try:
            server = await asyncio.start_server(self._serve, host, port, limit=self._max_line)
        except OSError as e:
            raise GatewayError(f"{self._name}: cannot listen on {host}:{port}: "
                               f"{e.strerror or e}") from None
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path, inode in self._sockets:
            _unlink_if_ours(path, inode)
        self._sockets.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                last = False
                try:
                    # A client that sends nothing for idle_timeout is let go: the socket
                    # is open to every agent, and an idle connection is not free.
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), self._idle_timeout)
                except TimeoutError:
                    return
                except asyncio.IncompleteReadError as e:  # EOF: answer a final unended line
                    line, last = e.partial, True
                    if not line:
                        return
                except asyncio.LimitOverrunError:
                    writer.write(self._refusal(f"line longer than {self._max_line} bytes; "
                                               "closing the connection") + b"\n")
                    await writer.drain()
                    return
                try:
                    reply = await self._answer(line)
                except Exception as e:  # a bug must not take the connection's replies along
                    log.exception("%s: cannot answer a request", self._name)
                    reply = self._refusal(f"internal error: {type(e).__name__}")
                writer.write(reply + b"\n")
                await writer.drain()
                if last:
                    return
        except OSError:  # the client went away
            return
        except asyncio.CancelledError:
            # close() cancels: end quietly, as Python 3.11's stream server logs a
            # handler task that ends cancelled as an error.
            return
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()


def bind_unix(path: Path, mode: int, name: str) -> socket.socket:
    """A listening Unix socket at `path` with `mode`, set before it appears under its
    name (bound to a hidden temporary name, chmod, renamed into place). A stale socket
    file is replaced; a live socket or any other file at `path` is a GatewayError."""
    _check_replaceable(path, name)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(tmp))
        os.chmod(tmp, mode)
        sock.listen(128)
        os.replace(tmp, path)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise GatewayError(f"{name}: cannot create socket {path}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


def _check_replaceable(path: Path, name: str) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    except OSError as e:
        raise GatewayError(f"{name}: cannot use {path}: {e.strerror or e}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise GatewayError(f"{name}: {path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return  # nobody listens: a stale socket left by a gateway that did not close
    finally:
        probe.close()
    raise GatewayError(f"{name}: {path} is in use (is another gateway running?)")


def _unlink_if_ours(path: Path, inode: int) -> None:
    """Remove the socket file unless something else has taken its name since."""
    with contextlib.suppress(OSError):
        if path.lstat().st_ino == inode:
            path.unlink()
