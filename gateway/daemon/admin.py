"""The admin socket: status, reload and stop for the gateway's owner.

A Unix socket with mode 0600, separate from the decision API: agents never get it.
Same framing as the decision API, JSON lines: `{"op": "status" | "reload" | "stop"}`,
each answered by one line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.daemon.api import LineServer
from gateway.runtime import Runtime

log = logging.getLogger(__name__)

ADMIN_SOCKET_MODE = 0o600
MAX_LINE_BYTES = 64 * 1024
RELOAD_WHY = "reload requested on the admin socket"
OPS = ("status", "reload", "stop")


class AdminSocket:
    """Serves the admin ops on `path`. `on_stop` is called (on the event loop) for
    `stop`; it should only ask the daemon to stop, not wait for it."""

    def __init__(self, runtime: Runtime, path: str | os.PathLike[str], *,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.path = Path(path)
        self.on_stop = on_stop
        self._lines = LineServer(self.answer, _refusal, max_line=MAX_LINE_BYTES,
                                 name="admin socket")

    async def start(self) -> None:
        """Listen; GatewayError when the socket cannot be created."""
        await self._lines.listen_unix(self.path, ADMIN_SOCKET_MODE)

    async def close(self) -> None:
        """Stop listening, drop connections, remove the socket file."""
        await self._lines.close()

    async def answer(self, line: bytes) -> bytes:
        """The reply line (without its newline) for one request line."""
        return orjson.dumps(await self._run(line))

    async def _run(self, line: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            return _error("not JSON")
        if not isinstance(data, dict):
            return _error("a request is a JSON object")
        unknown = sorted(set(data) - {"op"})
        if unknown:
            return _error(f"unknown member {unknown[0]!r} (a request is {{\"op\": ...}})")
        op = data.get("op")
        if op not in OPS:
            return _error(f"unknown op {op!r} (one of: {', '.join(OPS)})")
        try:
            return await self._do(op)
        except Exception as e:  # a failing op is the admin's answer, not a dropped line
            log.exception("admin socket: %s failed", op)
            return _error(f"{op} failed: {type(e).__name__}: {e}")

    async def _do(self, op: str) -> dict[str, Any]:
        if op == "status":
            return {"ok": True, "status": self.runtime.status()}
        if op == "reload":
            problem = await asyncio.to_thread(self.runtime.reload, RELOAD_WHY)
            return {"ok": True} if problem is None else _error(problem)
        if self.on_stop is None:
            return _error("this gateway cannot be stopped from its admin socket")
        self.on_stop()
        return {"ok": True}


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _refusal(message: str) -> bytes:
    return orjson.dumps(_error(message))
