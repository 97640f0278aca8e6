"""Real upstream servers on loopback, and small clients that reach them through an HTTP proxy.

Every server runs in threads inside the test process, binds an address in 127.0.0.0/8 on an
ephemeral port and is a context manager (`with HttpUpstream() as up: ... up.port`). Each keeps
a thread-safe record of what reached it, so a test can assert effects, including "the upstream
was never contacted" (`up.connections == 0`):

- `requests`: one `Recorded(method, path, headers, body)` per HTTP request (header names
  lowercased; over HTTP/2 the pseudo-headers such as ":authority" are included);
- `connections`: TCP connections accepted;
- `tls`: one `TlsRecord(sni, alpn)` per completed TLS handshake; `handshake_failures` holds
  the error text of handshakes that did not complete;
- `errors`: tracebacks of unexpected exceptions in server threads (a healthy run has none).

HTTP routes (HttpUpstream, HttpsUpstream): `GET|HEAD /size/N` answers N bytes (`size_body(N)`);
`/status/CODE` answers CODE (200-599) with the echo body; any other method and path answers 200
with the JSON echo {"method", "path", "host", "body_len", "http_version"}.

The clients never look names up: an IP literal must be in 127.0.0.0/8 and any name is dialled
at 127.0.0.1, so names from a test certificate can be used for SNI and Host. Every socket
operation has a 5 s timeout, so a broken proxy fails a test instead of hanging it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import generate_accept_token

from tests.support.certs import TestCA, shared_ca

TIMEOUT = 5.0
"""Seconds allowed for any single socket operation of a client (and a server TLS handshake)."""
IDLE_TIMEOUT = 30.0
"""Seconds a server keeps an idle keep-alive connection before dropping it."""
DEFAULT_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1")
"""Names in a TLS server's certificate when the test does not choose them."""


class Recorded(NamedTuple):
    """One request as the upstream received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class TlsRecord(NamedTuple):
    """One completed TLS handshake: the SNI the client sent (None if none) and the ALPN result."""

    sni: str | None
    alpn: str | None


class RawResult(NamedTuple):
    """What `raw_connect` saw: the CONNECT status, the inner HTTP status (None if no HTTP
    response came back through the tunnel) and a body (the inner response's, or the CONNECT
    response's when the tunnel was refused)."""

    connect_status: int
    http_status: int | None
    body: bytes


class _Reply(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]
    length: int


# --------------------------------------------------------------------------- helpers

_BLOCK = bytes(range(256)) * 256  # 64 KiB


def size_body(n: int) -> bytes:
    """The exact body `GET /size/N` answers."""
    return (_BLOCK * (n // len(_BLOCK) + 1))[:n]


def _size_chunks(n: int) -> Iterator[bytes]:
    while n > 0:
        chunk = _BLOCK[: min(n, len(_BLOCK))]
        n -= len(chunk)
        yield chunk


def _headers_dict(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lowercased names; repeated headers joined with ", "."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _loopback(host: str) -> str:
    """The address to dial for `host`: an IP literal must be in 127.0.0.0/8; names map to
    127.0.0.1 and are never looked up."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    if ip.version != 4 or not ip.is_loopback:
        raise ValueError(f"{host} is outside 127.0.0.0/8; test traffic stays on loopback")
    return str(ip)


def _dial(host: str, port: int) -> socket.socket:
    return socket.create_connection((_loopback(host), port), timeout=TIMEOUT)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reply(status: int, body: bytes, content_type: str) -> _Reply:
    if status in (204, 304):
        return _Reply(status, [], (), 0)
    return _Reply(status, [("content-type", content_type)], (body,), len(body))


def _echo_json(rec: Recorded, http_version: str) -> bytes:
    return json.dumps({
        "method": rec.method,
        "path": rec.path,
        "host": rec.headers.get("host", rec.headers.get(":authority")),
        "body_len": len(rec.body),
        "http_version": http_version,
    }).encode()


_SIZE = re.compile(r"/size/(\d+)")
_STATUS = re.compile(r"/status/(\d{3})")


def _echo_app(rec: Recorded, http_version: str) -> _Reply:
    path = rec.path.split("?", 1)[0]
    size = _SIZE.fullmatch(path)
    if size and rec.method in ("GET", "HEAD"):
        n = int(size.group(1))
        return _Reply(200, [("content-type", "application/octet-stream")], _size_chunks(n), n)
    status = 200
    if code := _STATUS.fullmatch(path):
        status = int(code.group(1)) if 200 <= int(code.group(1)) <= 599 else 400
    return _reply(status, _echo_json(rec, http_version), "application/json")


def git_env(**extra: str) -> dict[str, str]:
    """An environment for running `git` in tests: no proxy variables, no user or system
    config, no prompts, a fixed identity; `extra` (e.g. GIT_SSL_CAINFO) is added on top."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith("GIT_")}
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.test",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.test",
    })
    env.update(extra)
    return env


class _Assembler:
    """Joins WebSocket frames into whole messages (text or binary)."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._binary: list[bytes] = []

    def feed(self, event: Message) -> str | bytes | None:
        """The complete message once `event` finishes one, else None."""
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                text, self._text = "".join(self._text), []
                return text
        elif isinstance(event, BytesMessage):
            self._binary.append(bytes(event.data))
            if event.message_finished:
                binary, self._binary = b"".join(self._binary), []
                return binary
        return None


def _ws_message(message: str | bytes) -> Message:
    return TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)


# --------------------------------------------------------------------------- servers

class _Server:
    """Accept loop, per-connection threads, optional TLS, and the records every upstream keeps."""

    def __init__(self, *, host: str, tls: bool, names: Sequence[str], ca: TestCA | None,
                 alpn: Sequence[str] | None) -> None:
        if _loopback(host) != host:
            raise ValueError(f"bind address must be an IPv4 literal in 127.0.0.0/8, not {host!r}")
        self.host = host
        self.port = 0
        self.names = tuple(names)
        self.ca: TestCA | None = (ca or shared_ca()) if tls else None
        self._ssl: ssl.SSLContext | None = None
        if self.ca is not None:
            self._ssl = self.ca.server_context(self.names)
            if alpn:
                self._ssl.set_alpn_protocols(list(alpn))
            self._ssl.sni_callback = self._on_sni
        self._local = threading.local()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._tls: list[TlsRecord] = []
        self._failures: list[str] = []
        self._errors: list[str] = []
        self._connections = 0
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    # lifecycle
    def start(self) -> Self:
        """Bind host:0 and start accepting; `port` is then the bound port."""
        listener = socket.create_server((self.host, 0), backlog=128)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{type(self).__name__}:{self.port}")
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections and wait for their threads."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes accept() at once on Linux
                self._listener.shutdown(socket.SHUT_RDWR)
        if self._acceptor is not None:
            self._acceptor.join(TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            socks, threads = list(self._open), list(self._threads)
        for sock in socks:
            # The plain-socket shutdown wakes a blocked reader, even under TLS.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        for thread in threads:
            thread.join(TIMEOUT)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # records
    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def tls(self) -> list[TlsRecord]:
        with self._lock:
            return list(self._tls)

    @property
    def handshake_failures(self) -> list[str]:
        with self._lock:
            return list(self._failures)

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Forget everything recorded so far (open connections stay open)."""
        with self._lock:
            self._requests.clear()
            self._tls.clear()
            self._failures.clear()
            self._errors.clear()
            self._connections = 0

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self._requests.append(rec)

    # connection handling
    def _on_sni(self, _sslobj: object, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        self._local.sni = server_name

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._connection_main, args=(sock,), daemon=True,
                                      name=f"{type(self).__name__}:{self.port}:conn")
            with self._lock:
                self._connections += 1
                self._open.add(sock)
                self._threads.add(thread)
            thread.start()

    def _connection_main(self, sock: socket.socket) -> None:
        conn = sock
        try:
            conn.settimeout(IDLE_TIMEOUT)
            alpn = None
            if self._ssl is not None:
                self._local.sni = None
                conn = self._ssl.wrap_socket(sock, server_side=True,
                                             do_handshake_on_connect=False)
                with self._lock:
                    self._open.discard(sock)
                    self._open.add(conn)
                conn.settimeout(TIMEOUT)
                try:
                    conn.do_handshake()
                except OSError as exc:
                    with self._lock:
                        self._failures.append(str(exc))
                    return
                alpn = conn.selected_alpn_protocol()
                with self._lock:
                    self._tls.append(TlsRecord(self._local.sni, alpn))
                conn.settimeout(IDLE_TIMEOUT)
            self._serve(conn, alpn)
        except (OSError, h11.ProtocolError, h2.exceptions.ProtocolError):
            pass  # the peer went away or misbehaved: not a server fault
        except Exception:
            with self._lock:
                self._errors.append(traceback.format_exc())
        finally:
            conn.close()
            with self._lock:
                self._open.discard(conn)
                self._threads.discard(threading.current_thread())

    def _serve(self, sock: socket.socket, alpn: str | None) -> None:
        raise NotImplementedError


class _HttpServer(_Server):
    """HTTP/1.1 (h11) on every connection, HTTP/2 (h2) when ALPN chose "h2"."""

    def _app(self, rec: Recorded, http_version: str) -> _Reply:
        return _echo_app(rec, http_version)

    def _upgrade(self, sock: socket.socket, conn: h11.Connection, rec: Recorded) -> bool:
        """Take over the connection after `rec` (True) or answer it normally (False)."""
        return False

    def _serve(self, sock: socket.socket, alpn: str | None) -> None:
        if alpn == "h2":
            self._serve_h2(sock)
        else:
            self._serve_h11(sock)

    # HTTP/1.1
    def _serve_h11(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request, body = self._read_h11(sock, conn)
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    sock.sendall(conn.send(h11.Response(
                        status_code=400, headers=[("content-length", "0"),
                                                  ("connection", "close")])))
                return
            if request is None:
                return
            rec = Recorded(request.method.decode("ascii"), request.target.decode("latin-1"),
                           _headers_dict((n.decode("latin-1"), v.decode("latin-1"))
                                         for n, v in request.headers), body)
            self._record(rec)
            if self._upgrade(sock, conn, rec):
                return
            self._send_h11(sock, conn, rec.method, self._app(rec, "HTTP/1.1"))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    @staticmethod
    def _read_h11(sock: socket.socket, conn: h11.Connection) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Request):
                request = event
                if conn.they_are_waiting_for_100_continue:
                    sock.sendall(conn.send(h11.InformationalResponse(status_code=100,
                                                                     headers=[])))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed, or PAUSED after a protocol switch we did not accept
                return None, b""

    @staticmethod
    def _send_h11(sock: socket.socket, conn: h11.Connection, method: str, reply: _Reply) -> None:
        headers = list(reply.headers)
        if reply.status not in (204, 304):
            headers.append(("content-length", str(reply.length)))
        sock.sendall(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        if method != "HEAD":
            for chunk in reply.body:
                if chunk:
                    sock.sendall(conn.send(h11.Data(data=chunk)))
        sock.sendall(conn.send(h11.EndOfMessage()))

    # HTTP/2
    def _serve_h2(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        incoming: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        pending: dict[int, tuple[Iterator[bytes], memoryview]] = {}
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    incoming[event.stream_id] = (list(event.headers), bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    if event.stream_id in incoming:
                        incoming[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    entry = incoming.pop(event.stream_id, None)
                    if entry is not None:
                        self._respond_h2(conn, event.stream_id, entry[0], bytes(entry[1]),
                                         pending)
                elif isinstance(event, h2.events.StreamReset):
                    incoming.pop(event.stream_id, None)
                    pending.pop(event.stream_id, None)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            self._flush_h2(sock, conn, pending)
            sock.sendall(conn.data_to_send())

    def _respond_h2(self, conn: h2.connection.H2Connection, stream_id: int,
                    raw_headers: list[tuple[str, str]], body: bytes,
                    pending: dict[int, tuple[Iterator[bytes], memoryview]]) -> None:
        headers = _headers_dict(raw_headers)
        rec = Recorded(headers.get(":method", ""), headers.get(":path", ""), headers, body)
        self._record(rec)
        reply = self._app(rec, "HTTP/2")
        out = [(":status", str(reply.status)), *((n.lower(), v) for n, v in reply.headers)]
        if reply.status not in (204, 304):
            out.append(("content-length", str(reply.length)))
        if rec.method == "HEAD" or reply.length == 0:
            conn.send_headers(stream_id, out, end_stream=True)
        else:
            conn.send_headers(stream_id, out)
            pending[stream_id] = (iter(reply.body), memoryview(b""))

    @staticmethod
    def _flush_h2(sock: socket.socket, conn: h2.connection.H2Connection,
                  pending: dict[int, tuple[Iterator[bytes], memoryview]]) -> None:
        """Send queued response bodies as far as the flow-control windows allow."""
        for stream_id in list(pending):
            chunks, buf = pending[stream_id]
            try:
                while True:
                    if not buf:
                        chunk = next(chunks, None)
                        if chunk is None:
                            conn.end_stream(stream_id)
                            del pending[stream_id]
                            break
                        buf = memoryview(chunk)
                        continue
                    window = conn.local_flow_control_window(stream_id)
                    if window <= 0:
                        pending[stream_id] = (chunks, buf)
                        break
                    n = min(window, conn.max_outbound_frame_size, len(buf))
                    conn.send_data(stream_id, buf[:n].tobytes())
                    buf = buf[n:]
                    sock.sendall(conn.data_to_send())
            except h2.exceptions.StreamClosedError:
                pending.pop(stream_id, None)


class HttpUpstream(_HttpServer):
    """Plain HTTP/1.1 with keep-alive, serving the routes in the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host, tls=False, names=(), ca=None, alpn=None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class HttpsUpstream(_HttpServer):
    """The HttpUpstream routes over TLS with a TestCA leaf for `names`; with `http2=True` it
    offers ALPN h2 (and http/1.1) and speaks HTTP/2 to clients that choose it."""

    def __init__(self, names: Sequence[str] = DEFAULT_NAMES, *, http2: bool = False,
                 host: str = "127.0.0.1", ca: TestCA | None = None) -> None:
        super().__init__(host=host, tls=True, names=names, ca=ca,
                         alpn=("h2", "http/1.1") if http2 else ("http/1.1",))
        self.http2 = http2

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


class WebSocketUpstream(_HttpServer):
    """WebSocket echo (text and binary) behind an HTTP/1.1 upgrade, over TCP or, with
    `tls=True`, TLS. Upgrade requests land in `requests`; received messages in `messages`;
    a request that is not a WebSocket upgrade gets 426."""

    def __init__(self, *, tls: bool = False, names: Sequence[str] = DEFAULT_NAMES,
                 host: str = "127.0.0.1", ca: TestCA | None = None) -> None:
        super().__init__(host=host, tls=tls, names=names, ca=ca, alpn=("http/1.1",))
        self._messages: list[str | bytes] = []

    @property
    def messages(self) -> list[str | bytes]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self._messages.clear()

    def _app(self, rec: Recorded, http_version: str) -> _Reply:
        return _reply(426, b"websocket upgrade required\n", "text/plain")

    def _upgrade(self, sock: socket.socket, conn: h11.Connection, rec: Recorded) -> bool:
        headers = rec.headers
        key = headers.get("sec-websocket-key")
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if (rec.method != "GET" or headers.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in tokens or not key
                or headers.get("sec-websocket-version") != "13"):
            return False
        sock.sendall(conn.send(h11.InformationalResponse(status_code=101, headers=[
            ("upgrade", "websocket"), ("connection", "Upgrade"),
            ("sec-websocket-accept", generate_accept_token(key.encode("latin-1")))])))
        data, _ = conn.trailing_data
        self._echo(sock, data)
        return True

    def _echo(self, sock: socket.socket, data: bytes) -> None:
        ws = WsConnection(ConnectionType.SERVER)
        if data:
            ws.receive_data(data)
        assembler = _Assembler()
        while True:
            for event in ws.events():
                if isinstance(event, Message):
                    message = assembler.feed(event)
                    if message is None:
                        continue
                    with self._lock:
                        self._messages.append(message)
                    sock.sendall(ws.send(_ws_message(message)))
                elif isinstance(event, Ping):
                    sock.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    sock.sendall(ws.send(event.response()))
                    return
            data = sock.recv(65536)
            if not data:
                return
            ws.receive_data(data)

    @property
    def url(self) -> str:
        return f"{'wss' if self.ca else 'ws'}://{self.host}:{self.port}"


class GitHttpsUpstream(_HttpServer):
    """A smart-HTTP git server over TLS: each request runs `git http-backend` as CGI against
    bare repositories made by `make_repo`. Push is allowed (http.receivepack is true, and
    REMOTE_USER is `remote_user`). gzip and chunked request bodies are decoded before the
    backend sees them; `requests` records the bodies as they arrived on the wire."""

    def __init__(self, names: Sequence[str] = DEFAULT_NAMES, *, http2: bool = False,
                 host: str = "127.0.0.1", ca: TestCA | None = None,
                 remote_user: str = "tester") -> None:
        super().__init__(host=host, tls=True, names=names, ca=ca,
                         alpn=("h2", "http/1.1") if http2 else ("http/1.1",))
        self.remote_user = remote_user
        self._tmp = Path(tempfile.mkdtemp(prefix="gateway-git-"))
        self.root = self._tmp / "repos"
        self.root.mkdir()
        exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                   check=True, timeout=TIMEOUT).stdout.strip()
        self._backend = Path(exec_path) / "git-http-backend"

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def repo_url(self, repo: str = "repo.git", name: str | None = None) -> str:
        """https URL of `repo`, naming the server `name` (default: its IP address)."""
        return f"https://{name or self.host}:{self.port}/{repo}"

    def make_repo(self, name: str = "repo.git",
                  files: Mapping[str, bytes] | None = None) -> Path:
        """A bare repo `name` on branch main with one commit holding `files` (top-level only)."""
        files = files if files is not None else {"README.md": b"hello from the test upstream\n"}
        path = self.root / name
        env = git_env()

        def git(*args: str, data: bytes = b"") -> str:
            return subprocess.run(["git", *args], cwd=path, env=env, input=data,
                                  capture_output=True, check=True,
                                  timeout=30).stdout.decode().strip()

        path.mkdir(parents=True)
        git("init", "--quiet", "--bare", "--initial-branch=main", ".")
        git("config", "http.receivepack", "true")
        entries = []
        for file_name, content in sorted(files.items()):
            if "/" in file_name or not file_name:
                raise ValueError(f"make_repo takes top-level file names only: {file_name!r}")
            blob = git("hash-object", "-w", "--stdin", data=content)
            entries.append(f"100644 blob {blob}\t{file_name}\n")
        tree = git("mktree", data="".join(entries).encode())
        commit = git("commit-tree", tree, "-m", "initial commit")
        git("update-ref", "refs/heads/main", commit)
        return path

    def _app(self, rec: Recorded, http_version: str) -> _Reply:
        path, _, query = rec.path.partition("?")
        body = rec.body
        encoding = rec.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            body = gzip.decompress(body)
        elif encoding:
            return _reply(415, f"unsupported content-encoding {encoding}\n".encode(),
                          "text/plain")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._tmp),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": rec.method,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": rec.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.remote_user,
            "REMOTE_ADDR": "127.0.0.1",
        }
        if "git-protocol" in rec.headers:
            env["GIT_PROTOCOL"] = rec.headers["git-protocol"]
        result = subprocess.run([str(self._backend)], input=body, env=env,
                                capture_output=True, timeout=60, check=False)
        if result.returncode != 0 and not result.stdout:
            return _reply(500, result.stderr, "text/plain")
        return _parse_cgi(result.stdout)


def _parse_cgi(out: bytes) -> _Reply:
    """A CGI response: header lines (with an optional Status), a blank line, the body."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := out.find(sep)) >= 0]
    if not ends:
        return _reply(502, b"CGI response without a header block\n", "text/plain")
    index, sep_len = min(ends)
    head, body = out[:index], out[index + sep_len:]
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        elif name.strip().lower() != "content-length":
            headers.append((name.strip().lower(), value.strip()))
    if status in (204, 304):
        return _Reply(status, headers, (), 0)
    return _Reply(status, headers, (body,), len(body))


class RawTcpUpstream(_Server):
    """A TCP echo server (optionally TLS, no ALPN). `banner` is sent first on each connection,
    like a server-speaks-first protocol; `received` holds the bytes of each connection."""

    def __init__(self, *, host: str = "127.0.0.1", banner: bytes = b"", tls: bool = False,
                 names: Sequence[str] = DEFAULT_NAMES, ca: TestCA | None = None) -> None:
        super().__init__(host=host, tls=tls, names=names, ca=ca, alpn=None)
        self.banner = banner
        self._received: list[bytearray] = []

    @property
    def received(self) -> list[bytes]:
        with self._lock:
            return [bytes(b) for b in self._received]

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self._received.clear()

    def _serve(self, sock: socket.socket, alpn: str | None) -> None:
        buf = bytearray()
        with self._lock:
            self._received.append(buf)
        if self.banner:
            sock.sendall(self.banner)
        while data := sock.recv(65536):
            with self._lock:
                buf.extend(data)
            sock.sendall(data)


# --------------------------------------------------------------------------- clients

class _Reader:
    """Buffered reads from a socket for a small HTTP/1.1 response parser."""

    def __init__(self, sock: socket.socket, data: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def until(self, sep: bytes) -> bytes:
        while (index := self.buf.find(sep)) < 0:
            if not self._fill():
                raise ConnectionError(f"connection closed while waiting for {sep!r}")
        out = bytes(self.buf[:index])
        del self.buf[: index + len(sep)]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self) -> bytes:
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _read_response(reader: _Reader, method: str) -> tuple[int, dict[str, str], bytes]:
    """Status, lowercased headers and body of one response; 1xx interim responses skipped."""
    while True:
        head = reader.until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP response: {status_line!r}")
        status = int(parts[1])
        if not (100 <= status < 200 and status != 101):
            break
    headers = _headers_dict((name.strip(), value.strip())
                            for name, _, value in (line.partition(":") for line in lines))
    if (method == "CONNECT" and 200 <= status < 300) or method == "HEAD" \
            or status in (101, 204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while size := int(reader.until(b"\r\n").split(b";")[0].strip(), 16):
            body += reader.exactly(size)
            reader.until(b"\r\n")
        while reader.until(b"\r\n"):  # trailers
            pass
        return status, headers, bytes(body)
    if "content-length" in headers:
        return status, headers, reader.exactly(int(headers["content-length"]))
    return status, headers, reader.rest()


def _request_head(method: str, target: str, host: str,
                  headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
                  body: bytes, proxy_auth: tuple[str, str] | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    lines += [f"{name}: {value}" for name, value in pairs]
    if proxy_auth is not None:
        token = base64.b64encode(f"{proxy_auth[0]}:{proxy_auth[1]}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    if method != "CONNECT":
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _connect(proxy_host: str, proxy_port: int, authority: str,
             proxy_auth: tuple[str, str] | None) -> tuple[socket.socket, _Reader, int, bytes]:
    """Open a CONNECT tunnel: (socket, reader holding any early bytes, status, body).
    Raises ConnectionError if the proxy closes without answering."""
    sock = _dial(proxy_host, proxy_port)
    try:
        sock.sendall(_request_head("CONNECT", authority, authority, None, b"", proxy_auth))
        reader = _Reader(sock)
        status, _, body = _read_response(reader, "CONNECT")
    except BaseException:
        sock.close()
        raise
    return sock, reader, status, body


def _wrap_tls(sock: socket.socket, sni: str, ca_path: str | os.PathLike[str] | None,
              verify: bool) -> ssl.SSLSocket:
    if verify:
        ctx = ssl.create_default_context(cafile=None if ca_path is None else str(ca_path))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(sock, server_hostname=sni)


def ws_roundtrip(proxy_host: str | None, proxy_port: int | None, target_host: str,
                 target_port: int, *, tls: bool, ca_path: str | os.PathLike[str] | None,
                 path: str = "/", proxy_auth: tuple[str, str] | None = None,
                 message: str | bytes = "hello",
                 verify: bool = True) -> tuple[int, str | bytes | None]:
    """One WebSocket echo through an HTTP proxy (or straight to the target when proxy_host is
    None): CONNECT, TLS with SNI=target_host when `tls`, upgrade on `path`, send `message`.

    Returns (101, echoed message) on success, (CONNECT status, None) when the proxy refuses
    the tunnel, and (upgrade status, None) when the upgrade is refused.
    """
    authority = _authority(target_host, target_port)
    if proxy_host is None:
        sock: socket.socket = _dial(target_host, target_port)
        early = b""
    else:
        if proxy_port is None:
            raise ValueError("proxy_port is required with proxy_host")
        sock, reader, status, _ = _connect(proxy_host, proxy_port, authority, proxy_auth)
        if status != 200:
            sock.close()
            return status, None
        early = bytes(reader.buf)
    try:
        if tls:
            sock = _wrap_tls(sock, target_host, ca_path, verify)
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(ws.send(Request(host=authority, target=path)))
        if early and not tls:
            ws.receive_data(early)
        accepted = False
        assembler = _Assembler()
        while True:
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    return event.status_code, None
                if isinstance(event, AcceptConnection):
                    accepted = True
                    sock.sendall(ws.send(_ws_message(message)))
                elif isinstance(event, Message):
                    echoed = assembler.feed(event)
                    if echoed is not None:
                        sock.sendall(ws.send(CloseConnection(code=1000)))
                        return 101, echoed
                elif isinstance(event, CloseConnection):
                    return 101, None
            data = sock.recv(65536)
            if not data:
                if not accepted:
                    raise ConnectionError("connection closed before the upgrade was answered")
                return 101, None
            ws.receive_data(data)
    finally:
        sock.close()


def raw_connect(proxy_host: str, proxy_port: int, authority: str, *, sni: str | None,
                host_header: str | None, ca_path: str | os.PathLike[str] | None,
                proxy_auth: tuple[str, str] | None = None, method: str = "GET",
                path: str = "/", verify: bool = True,
                headers: Mapping[str, str] | None = None, body: bytes = b"") -> RawResult:
    """CONNECT `authority`, then (TLS with `sni` unless it is None) one HTTP/1.1 request for
    `path` with Host `host_header` (None: the authority). The three are independent, for
    domain-fronting cases; `verify=False` accepts any certificate so SNI mismatches can be sent.

    A refused tunnel gives (status, None, CONNECT body). A tunnel that is cut, or a TLS
    handshake the proxy aborts, gives (200, None, b""). A certificate that fails verification
    raises ssl.SSLCertVerificationError; a timeout raises TimeoutError.
    """
    sock, reader, status, connect_body = _connect(proxy_host, proxy_port, authority,
                                                  proxy_auth)
    try:
        if status != 200:
            return RawResult(status, None, connect_body)
        if sni is not None:
            try:
                sock = _wrap_tls(sock, sni, ca_path, verify)
            except ssl.SSLCertVerificationError:
                raise
            except (ssl.SSLError, ConnectionError):
                return RawResult(status, None, b"")
            reader = _Reader(sock)
        host = host_header if host_header is not None else authority
        try:
            sock.sendall(_request_head(method, path, host, headers, body, None) + body)
            http_status, _, response_body = _read_response(reader, method)
        except (ssl.SSLError, ConnectionError):
            return RawResult(status, None, b"")
        return RawResult(status, http_status, response_body)
    finally:
        sock.close()


def plain_proxy_request(proxy_host: str, proxy_port: int, absolute_url: str, *,
                        host_header: str | None = None, method: str = "GET",
                        headers: Mapping[str, str] | None = None, body: bytes = b"",
                        proxy_auth: tuple[str, str] | None = None,
                        ) -> tuple[int, dict[str, str], bytes]:
    """One absolute-form HTTP/1.1 request to a proxy: (status, lowercased headers, body).
    Host is `host_header`, or the URL's host[:port] when None."""
    host = host_header if host_header is not None else urllib.parse.urlsplit(absolute_url).netloc
    with _dial(proxy_host, proxy_port) as sock:
        sock.sendall(_request_head(method, absolute_url, host, headers, body, proxy_auth) + body)
        return _read_response(_Reader(sock), method)
