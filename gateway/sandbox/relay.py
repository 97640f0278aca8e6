"""Byte relays from listeners inside the agent's network namespace to the gateway
outside it: the agent's only way to the proxy and the decision API.

The relay adds nothing and looks at nothing: the proxy authenticates the agent by its
credentials and decides every request as it would for a direct client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from gateway.daemon.client import tcp_address
from gateway.errors import GatewayError

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """Where a relay connects: `tcp:HOST:PORT` or a Unix socket path."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, address: str) -> Target:
        if address.startswith("tcp:"):
            try:
                host, port = tcp_address(address)
            except GatewayError as e:
                raise ValueError(str(e)) from None
            return cls(host=host, port=port)
        path = address.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(f"not an address: {address!r}")
        return cls(path=path)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path, limit=CHUNK)
        return await asyncio.open_connection(self.host, self.port, limit=CHUNK)

    def __str__(self) -> str:
        return self.path if self.path is not None else f"tcp:{self.host}:{self.port}"


class Relay:
    """Serves listening sockets (made elsewhere, e.g. in another namespace) by joining
    each accepted connection to a new connection to `target`."""

    def __init__(self, sockets: list[socket.socket], target: Target) -> None:
        self.sockets = sockets
        self.target = target
        self.connections = 0
        self.failures = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for sock in self.sockets:
            self._servers.append(await asyncio.start_server(self._serve, sock=sock,
                                                            limit=CHUNK))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await self.target.connect()
            except OSError:
                self.failures += 1
                return  # the client sees its connection closed: nothing passes
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file, then pass the half-close on."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        with contextlib.suppress(Exception):
            writer.close()
