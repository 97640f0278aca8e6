"""Blocking clients for the decision API and the admin socket, for other processes
(the shim, the watcher, the SDK, the CLI). Plain sockets, no event loop.

An error talking to the gateway is a GatewayUnreachable: a caller enforcing a policy
must then refuse the action (fail closed).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson

from gateway.errors import GatewayError

READ_BYTES = 64 * 1024


class GatewayUnreachable(GatewayError):
    """No gateway answered: none runs at the address, it refused, closed or timed out."""


class DecisionClient:
    """One connection to the decision API at `address`: a Unix socket path or
    `tcp:HOST:PORT` (`tcp:[::1]:PORT` for IPv6). Not thread-safe: one per thread.

    `agent` and `token` are sent with every request; without them (or with wrong ones)
    the gateway decides for `anonymous`.
    """

    def __init__(self, address: str, *, agent: str | None = None, token: str | None = None,
                 source: str = "cli", timeout: float = 5.0) -> None:
        self.address = address
        self.agent = agent
        self.token = token
        self.source = source
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def decide(self, action: str, target: str, *, cwd: str | None = None,
               method: str | None = None, details: Mapping[str, object] | None = None,
               dynamic: str | None = None) -> dict[str, Any]:
        """Ask and return the reply (a decision, or `{"error": ..., "blocks": true}`).
        With `dynamic` (why the target is only known at run time) `target` is not sent
        and the policy's sdk.dynamic decides. Reconnects once when the gateway closed a
        connection used before."""
        request: dict[str, object] = {"action": action, "source": self.source}
        if dynamic is not None:
            request["dynamic"] = dynamic
        else:
            request["target"] = target
        for key, value in (("cwd", cwd), ("method", method), ("agent", self.agent),
                           ("token", self.token)):
            if value is not None:
                request[key] = value
        if details:
            request["details"] = dict(details)
        try:
            line = orjson.dumps(request) + b"\n"
        except TypeError as e:
            raise ValueError(f"request is not JSON: {e}") from None
        if self._sock is not None:
            try:
                return self._exchange(line)
            except _Closed:
                self.close()  # closed since its last use (a restart): once more, anew
        try:
            return self._exchange(line)
        except _Closed as e:
            self.close()
            raise GatewayUnreachable(f"the gateway at {self.address} closed the connection: "
                                     f"{e}") from None

    def _exchange(self, line: bytes) -> dict[str, Any]:
        sock = self._connect()
        try:
            sock.sendall(line)
            reply = self._read_line()
        except TimeoutError:
            self.close()
            raise GatewayUnreachable(f"the gateway at {self.address} did not answer "
                                     f"within {self.timeout} s") from None
        except ConnectionError as e:
            raise _Closed(e.strerror or str(e)) from None
        except OSError as e:
            self.close()
            raise GatewayUnreachable(f"the gateway at {self.address}: "
                                     f"{e.strerror or e}") from None
        return _parse(reply, self.address)

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = connect(self.address, self.timeout)
            self._buffer = b""
        return self._sock

    def _read_line(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            data = self._sock.recv(READ_BYTES)
            if not data:
                raise _Closed("end of stream before a reply")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buffer = b""

    def __enter__(self) -> DecisionClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Closed(Exception):
    """The gateway closed the connection before replying."""


def admin_call(path: str | os.PathLike[str], op: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send one op to the admin socket at `path` and return its reply."""
    where = os.fspath(path)
    with connect(where, timeout) as sock:
        try:
            sock.sendall(orjson.dumps({"op": op}) + b"\n")
            buffer = b""
            while b"\n" not in buffer:
                data = sock.recv(READ_BYTES)
                if not data:
                    raise GatewayUnreachable(f"the gateway at {where} closed the connection "
                                             "without answering")
                buffer += data
        except TimeoutError:
            raise GatewayUnreachable(f"the gateway at {where} did not answer within "
                                     f"{timeout} s") from None
        except OSError as e:
            raise GatewayUnreachable(f"the gateway at {where}: {e.strerror or e}") from None
    return _parse(buffer.split(b"\n", 1)[0], where)


def connect(address: str, timeout: float) -> socket.socket:
    """A connected socket to a Unix path or `tcp:HOST:PORT`; GatewayUnreachable if none."""
    if address.startswith("tcp:"):
        host, port = tcp_address(address)
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise _unreachable(address, e) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError as e:
        sock.close()
        raise _unreachable(address, e) from None
    return sock


def tcp_address(address: str) -> tuple[str, int]:
    """HOST and PORT of `tcp:HOST:PORT` (`tcp:[IPV6]:PORT`); GatewayError if malformed."""
    host, colon, port = address[len("tcp:"):].rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GatewayError(f"bad gateway address {address!r}: use a socket path or "
                           "tcp:HOST:PORT")
    return host, int(port)


def _unreachable(address: str, e: OSError) -> GatewayUnreachable:
    why = e.strerror or str(e) or type(e).__name__
    if isinstance(e, FileNotFoundError | ConnectionRefusedError):
        return GatewayUnreachable(f"no gateway is running: cannot connect to {address}: {why}")
    if isinstance(e, TimeoutError):
        return GatewayUnreachable(f"cannot connect to the gateway at {address}: timed out")
    return GatewayUnreachable(f"cannot connect to the gateway at {address}: {why}")


def _parse(line: bytes, address: str) -> dict[str, Any]:
    try:
        reply = orjson.loads(line)
    except orjson.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        raise GatewayUnreachable(f"the gateway at {address} sent a garbled reply")
    return reply
