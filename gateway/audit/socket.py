"""The writer's local socket, for producers in other processes (shim, watcher, SDK).

A Unix stream socket speaking JSON lines: each request line is one record (a JSON
object); each gets one reply line, in order, once it is durable: `{"seq": N}`, or
`{"error": "..."}` when it was refused or could not be written. A client may send
many lines before reading replies; the server commits what arrived together as one
batch. The socket is created with mode 0600 (or 0660 for a configured group) before
it appears under its name, so no other user can connect in between.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import orjson

from gateway.audit.format import MAX_RECORD_BYTES
from gateway.audit.recovery import AuditUnavailable
from gateway.audit.writer import AuditWriter, Ticket

READ_BYTES = 256 * 1024
ACK_TIMEOUT = 30.0


class AuditSocketServer:
    """Accepts connections on `socket_path` and feeds their records to `writer`."""

    def __init__(self, writer: AuditWriter, socket_path: str | os.PathLike[str], *,
                 group: int | None = None) -> None:
        self._writer = writer
        self.path = Path(socket_path)
        self._group = group
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Bind (privately, then renamed into place) and start accepting."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(tmp))
            os.chmod(tmp, 0o600 if self._group is None else 0o660)
            if self._group is not None:
                os.chown(tmp, -1, self._group)
            sock.listen(128)
            os.replace(tmp, self.path)
        except OSError:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="audit-socket", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, drop connections, remove the socket file."""
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with self._lock:
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def __enter__(self) -> AuditSocketServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="audit-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                data = conn.recv(READ_BYTES)
                if not data:
                    return
                buffer += data
                if b"\n" not in data:
                    if len(buffer) > MAX_RECORD_BYTES:
                        conn.sendall(_error("record too long") + b"\n")
                        return
                    continue
                *lines, buffer = buffer.split(b"\n")
                pending = [self._submit(line) for line in lines]
                conn.sendall(b"\n".join(_reply(p) for p in pending) + b"\n")
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _submit(self, line: bytes) -> Ticket | bytes:
        if len(line) > MAX_RECORD_BYTES:
            return _error("record too long")
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return _error("not JSON")
        if not isinstance(record, dict):
            return _error("a record is a JSON object")
        try:
            return self._writer.submit(record)
        except (ValueError, AuditUnavailable) as e:
            return _error(str(e))


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _reply(pending: Ticket | bytes) -> bytes:
    if isinstance(pending, bytes):
        return pending
    try:
        return b'{"seq":%d}' % pending.result(ACK_TIMEOUT)
    except AuditUnavailable as e:
        return _error(str(e))


class AuditSocketClient:
    """One connection to the writer's socket; `append` returns the durable seq."""

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = ACK_TIMEOUT) -> None:
        self._path = os.fspath(socket_path)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self._path)
            except OSError as e:
                sock.close()
                raise AuditUnavailable(f"audit socket {self._path}: {e.strerror or e}") \
                    from None
            self._sock = sock
        return self._sock

    def append(self, record: Mapping[str, object]) -> int:
        """Send one record and wait for its durable seq; AuditUnavailable otherwise."""
        return self.append_many([record])[0]

    def append_many(self, records: list[Mapping[str, object]]) -> list[int]:
        """Send records in one write; their seqs in order, once all are durable."""
        sock = self._connect()
        try:
            payload = b"".join(orjson.dumps(dict(r)) + b"\n" for r in records)
        except TypeError as e:
            raise ValueError(f"record is not JSON: {e}") from None
        try:
            sock.sendall(payload)
            replies = [self._reply() for _ in records]
        except OSError as e:
            self.close()
            raise AuditUnavailable(f"audit socket {self._path}: {e.strerror or e}") from None
        seqs = []
        for reply in replies:
            if isinstance(reply, dict) and type(reply.get("seq")) is int:
                seqs.append(int(reply["seq"]))
                continue
            message = reply.get("error") if isinstance(reply, dict) else None
            raise AuditUnavailable(f"audit writer refused the record: {message or reply!r}")
        return seqs

    def _reply(self) -> object:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            data = self._sock.recv(65536)
            if not data:
                self.close()
                raise AuditUnavailable(f"audit socket {self._path}: closed by the writer")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            self.close()
            raise AuditUnavailable(f"audit socket {self._path}: garbled reply") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buffer = b""

    def __enter__(self) -> AuditSocketClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
