"""The loopback upstream servers and proxy-side clients work, proven with real clients
(curl, requests, git) talking to them directly and through a minimal forwarder."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import requests
from cryptography import x509

from tests.support.certs import TestCA, shared_ca
from tests.support.upstreams import (
    GitHttpsUpstream,
    HttpsUpstream,
    HttpUpstream,
    RawResult,
    RawTcpUpstream,
    TlsRecord,
    WebSocketUpstream,
    git_env,
    plain_proxy_request,
    raw_connect,
    size_body,
    ws_roundtrip,
)

CA = shared_ca()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """curl with no config file, no proxy and a 5 s limit."""
    return subprocess.run(["curl", "-q", "--silent", "--show-error", "--noproxy", "*",
                           "--max-time", "5", *args],
                          capture_output=True, timeout=15, check=False)


def run_git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """Run git, failing the test with its stderr when it fails."""
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def session() -> requests.Session:
    """A requests session that ignores proxy environment variables."""
    s = requests.Session()
    s.trust_env = False
    return s


# --------------------------------------------------------------------------- certificates

def test_ca_issues_leaves_with_the_requested_sans() -> None:
    """A leaf lists exactly the DNS names and IPs asked for, chains to the CA, and is cached."""
    ca = TestCA()
    try:
        cert_path, key_path = ca.issue(["api.test", "127.0.0.2"])
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["api.test"]
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.2"]
        cert.verify_directly_issued_by(ca.cert)
        assert key_path.stat().st_mode & 0o077 == 0
        assert ca.issue(["api.test", "127.0.0.2"]) == (cert_path, key_path)
    finally:
        ca.cleanup()
    assert not ca.directory.exists()


def test_shared_ca_is_made_once() -> None:
    """shared_ca() returns the same CA every time in one process."""
    assert shared_ca() is CA
    assert CA.ca_path.is_file()


def test_servers_refuse_non_loopback_bind_addresses() -> None:
    """A server only binds IPv4 literals inside 127.0.0.0/8."""
    for host in ("0.0.0.0", "localhost", "::1", "10.0.0.1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
            HttpUpstream(host=host)


# --------------------------------------------------------------------------- HTTP(S) routes

ROUTES = [
    # id, method, path, request body, expected status, expected body (None: the JSON echo)
    pytest.param("GET", "/size/1000", b"", 200, size_body(1000), id="size"),
    pytest.param("GET", "/size/0", b"", 200, b"", id="size-zero"),
    pytest.param("POST", "/anything?q=1", b"x" * 10, 200, None, id="echo-post"),
    pytest.param("PUT", "/status/418", b"abc", 418, None, id="status-418"),
    pytest.param("DELETE", "/status/204", b"", 204, b"", id="status-204"),
]

MODES = [
    # id, server factory, curl flags, http_version in the echo, ALPN recorded
    pytest.param(lambda: HttpUpstream(), ["--http1.1"], "HTTP/1.1", None, id="http"),
    pytest.param(lambda: HttpsUpstream(["api.test"]), ["--http1.1"], "HTTP/1.1", "http/1.1",
                 id="https"),
    pytest.param(lambda: HttpsUpstream(["api.test"], http2=True), ["--http2"], "HTTP/2", "h2",
                 id="h2"),
    pytest.param(lambda: HttpsUpstream(["api.test"], http2=True, host="127.0.0.2"),
                 ["--http2"], "HTTP/2", "h2", id="h2-on-127.0.0.2"),
]


@pytest.mark.parametrize(("factory", "flags", "version", "alpn"), MODES)
@pytest.mark.parametrize(("method", "path", "body", "status", "expected"), ROUTES)
def test_curl_gets_each_route(tmp_path: Path, factory, flags: list[str], version: str,
                              alpn: str | None, method: str, path: str, body: bytes,
                              status: int, expected: bytes | None) -> None:
    """curl gets the right status and body, and the server records request, SNI and ALPN."""
    with factory() as up:
        tls = alpn is not None
        name = "api.test" if tls else up.host
        tls_args = ["--cacert", str(CA.ca_path), "--resolve", f"api.test:{up.port}:{up.host}"]
        out = tmp_path / "body"
        data_args = ["--data-binary", f"@{tmp_path / 'req'}"] if body else []
        (tmp_path / "req").write_bytes(body)
        result = curl(*flags, *(tls_args if tls else []), "-X", method, *data_args,
                      "-o", str(out), "-w", "%{http_code}",
                      f"{'https' if tls else 'http'}://{name}:{up.port}{path}")
        assert result.returncode == 0, result.stderr
        assert int(result.stdout) == status
        if expected is None:
            assert json.loads(out.read_bytes()) == {
                "method": method, "path": path, "host": f"{name}:{up.port}",
                "body_len": len(body), "http_version": version}
        else:
            assert (out.read_bytes() if out.exists() else b"") == expected
        [rec] = up.requests
        assert (rec.method, rec.path, rec.body) == (method, path, body)
        assert rec.headers.get("host", rec.headers.get(":authority")) == f"{name}:{up.port}"
        assert up.connections == 1
        assert up.tls == ([TlsRecord("api.test", alpn)] if tls else [])
        assert up.errors == []


def test_h2_streams_a_large_body_within_flow_control(tmp_path: Path) -> None:
    """A 5 MB body over HTTP/2 arrives intact (the server honours window updates)."""
    with HttpsUpstream(["big.test"], http2=True) as up:
        out = tmp_path / "body"
        result = curl("--http2", "--cacert", str(CA.ca_path),
                      "--resolve", f"big.test:{up.port}:127.0.0.1", "-o", str(out),
                      f"https://big.test:{up.port}/size/5000000")
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == size_body(5_000_000)
        assert up.tls == [TlsRecord("big.test", "h2")]
        assert up.requests[0].headers[":authority"] == f"big.test:{up.port}"
        assert up.errors == []


def test_h2_server_still_speaks_http1_to_clients_without_h2() -> None:
    """An h2-capable server falls back to HTTP/1.1 when the client offers only http/1.1."""
    with HttpsUpstream(["api.test"], http2=True) as up:
        result = curl("--http1.1", "--cacert", str(CA.ca_path),
                      "--resolve", f"api.test:{up.port}:127.0.0.1",
                      f"https://api.test:{up.port}/x")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["http_version"] == "HTTP/1.1"
        assert up.tls == [TlsRecord("api.test", "http/1.1")]


def test_requests_gets_size_1024_over_https_with_keep_alive() -> None:
    """requests fetches /size/1024 twice over one TLS connection; an IP target sends no SNI."""
    with HttpsUpstream() as up, session() as s:
        for _ in range(2):
            response = s.get(f"https://127.0.0.1:{up.port}/size/1024", verify=str(CA.ca_path),
                             timeout=5)
            assert response.status_code == 200
            assert response.content == size_body(1024)
        assert up.connections == 1
        assert [r.path for r in up.requests] == ["/size/1024", "/size/1024"]
        assert up.tls == [TlsRecord(None, "http/1.1")]


def test_http_keep_alive_and_head() -> None:
    """Plain HTTP keeps the connection open across requests; HEAD gets headers only."""
    with HttpUpstream() as up, session() as s:
        head = s.head(f"{up.url}/size/2048", timeout=5)
        assert head.headers["content-length"] == "2048"
        assert head.content == b""
        posted = s.post(f"{up.url}/p", data=b"z" * 5000, timeout=5).json()
        assert posted["body_len"] == 5000
        assert up.connections == 1
        assert [(r.method, r.path) for r in up.requests] == [("HEAD", "/size/2048"),
                                                             ("POST", "/p")]


def test_chunked_and_expect_continue_request_bodies(tmp_path: Path) -> None:
    """A chunked upload and an `Expect: 100-continue` upload are both received whole."""
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(300_000))
    with HttpUpstream() as up:
        for extra in (["-H", "Transfer-Encoding: chunked"], ["-H", "Expect: 100-continue"]):
            result = curl("--http1.1", *extra, "--data-binary", f"@{payload}",
                          f"{up.url}/upload")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["body_len"] == 300_000
        assert [r.body for r in up.requests] == [payload.read_bytes()] * 2
        assert up.requests[0].headers["transfer-encoding"] == "chunked"


def test_tls_handshake_failure_is_recorded() -> None:
    """A client that rejects the certificate leaves a handshake failure, not a request."""
    other_ca = TestCA()
    with HttpsUpstream(["api.test"]) as up:
        result = curl("--cacert", str(other_ca.ca_path), "--resolve",
                      f"api.test:{up.port}:127.0.0.1", f"https://api.test:{up.port}/")
        other_ca.cleanup()
        assert result.returncode != 0
        assert up.requests == []
        assert up.connections == 1
        assert len(up.handshake_failures) == 1


# --------------------------------------------------------------------------- WebSocket and TCP

@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("message", ["hello", "é" * 70_000, b"\x00\xffbinary"],
                         ids=["text", "large-text", "binary"])
def test_websocket_echo_direct(tls: bool, message: str | bytes) -> None:
    """ws_roundtrip with no proxy gets its message echoed; the upgrade request is recorded."""
    with WebSocketUpstream(tls=tls, names=["ws.test"]) as up:
        status, echoed = ws_roundtrip(None, None, "ws.test", up.port, tls=tls,
                                      ca_path=CA.ca_path, path="/chat?room=1", message=message)
        assert (status, echoed) == (101, message)
        [rec] = up.requests
        assert (rec.method, rec.path) == ("GET", "/chat?room=1")
        assert rec.headers["upgrade"].lower() == "websocket"
        assert rec.headers["host"] == f"ws.test:{up.port}"
        assert up.messages == [message]
        assert up.tls == ([TlsRecord("ws.test", "http/1.1")] if tls else [])
        assert up.errors == []


def test_websocket_server_answers_plain_requests_with_426() -> None:
    """A request without an upgrade gets 426 from the WebSocket server."""
    with WebSocketUpstream() as up, session() as s:
        assert s.get(f"http://127.0.0.1:{up.port}/", timeout=5).status_code == 426


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_raw_tcp_echo_with_banner(tls: bool) -> None:
    """The TCP server sends its banner, echoes bytes and records them per connection."""
    with RawTcpUpstream(banner=b"220 ready\r\n", tls=tls, names=["raw.test"]) as up:
        sock: socket.socket = socket.create_connection(up.address, timeout=5)
        if tls:
            sock = CA.client_context().wrap_socket(sock, server_hostname="raw.test")
        with sock:
            assert sock.recv(100) == b"220 ready\r\n"
            sock.sendall(b"ping\x00")
            assert sock.recv(100) == b"ping\x00"
        assert up.received == [b"ping\x00"]
        assert up.tls == ([TlsRecord("raw.test", None)] if tls else [])


def test_malformed_request_gets_400_and_no_record() -> None:
    """Bytes that are not HTTP get a 400 and a closed connection; nothing is recorded."""
    with HttpUpstream() as up, socket.create_connection(up.address, timeout=5) as sock:
        sock.sendall(b"garbage\r\n\r\n")
        response = b""
        while chunk := sock.recv(4096):
            response += chunk
        assert response.startswith(b"HTTP/1.1 400")
        assert up.requests == []
        assert up.errors == []


def test_stop_closes_idle_keep_alive_connections() -> None:
    """stop() returns promptly even with a client holding a connection open."""
    up = HttpUpstream().start()
    sock = socket.create_connection(up.address, timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response = b""
    while not response.endswith(b"}"):
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 200")
    up.stop()
    assert sock.recv(4096) == b""  # closed by the server, not a 5 s timeout
    sock.close()


# --------------------------------------------------------------------------- git smart HTTP

@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2"])
def test_git_clone_and_push(tmp_path: Path, http2: bool) -> None:
    """Real git clones over HTTPS (SNI git.test) and pushes a commit the bare repo then holds."""
    with GitHttpsUpstream(["git.test"], http2=http2) as up:
        bare = up.make_repo("repo.git")
        env = git_env(GIT_SSL_CAINFO=str(CA.ca_path))
        resolve = ["-c", f"http.curloptResolve=git.test:{up.port}:127.0.0.1"]
        run_git(*resolve, "clone", "--quiet", up.repo_url("repo.git", "git.test"), "work",
                cwd=tmp_path, env=env)
        work = tmp_path / "work"
        assert (work / "README.md").read_bytes() == b"hello from the test upstream\n"
        (work / "new.txt").write_text("pushed\n")
        run_git("add", "new.txt", cwd=work, env=env)
        run_git("commit", "--quiet", "-m", "second commit", cwd=work, env=env)
        run_git(*resolve, "push", "--quiet", "origin", "main", cwd=work, env=env)
        assert run_git("log", "-1", "--format=%s", "main", cwd=bare, env=env) \
            == "second commit\n"
        paths = [(r.method, r.path) for r in up.requests]
        assert ("GET", "/repo.git/info/refs?service=git-upload-pack") in paths
        assert ("POST", "/repo.git/git-receive-pack") in paths
        alpn = "h2" if http2 else "http/1.1"
        assert up.tls and set(up.tls) == {TlsRecord("git.test", alpn)}
        assert up.errors == []


def test_git_chunked_push(tmp_path: Path) -> None:
    """A push larger than http.postBuffer arrives chunked and is still accepted."""
    with GitHttpsUpstream() as up:
        bare = up.make_repo("big.git")
        env = git_env(GIT_SSL_CAINFO=str(CA.ca_path))
        run_git("clone", "--quiet", up.repo_url("big.git"), "work", cwd=tmp_path, env=env)
        work = tmp_path / "work"
        (work / "blob.bin").write_bytes(os.urandom(200_000))
        run_git("add", "blob.bin", cwd=work, env=env)
        run_git("commit", "--quiet", "-m", "big", cwd=work, env=env)
        run_git("-c", "http.postBuffer=65536", "push", "--quiet", "origin", "main",
                cwd=work, env=env)
        assert run_git("log", "-1", "--format=%s", "main", cwd=bare, env=env) == "big\n"
        chunked = [r for r in up.requests
                   if r.headers.get("transfer-encoding") == "chunked"]
        assert chunked and chunked[0].path == "/big.git/git-receive-pack"


def test_git_gzip_upload_pack_request() -> None:
    """A gzip-encoded upload-pack request is inflated for the backend, which answers a pack."""
    with GitHttpsUpstream() as up, session() as s:
        bare = up.make_repo("repo.git")
        head = run_git("rev-parse", "main", cwd=bare, env=git_env()).strip()

        def pkt(line: str) -> bytes:
            return f"{len(line) + 4:04x}{line}".encode()

        body = pkt(f"want {head}\n") + b"0000" + pkt("done\n")
        compressed = gzip.compress(body, mtime=0)  # one value: gzip stamps the time
        response = s.post(f"{up.repo_url('repo.git')}/git-upload-pack", data=compressed,
                          headers={"Content-Type": "application/x-git-upload-pack-request",
                                   "Content-Encoding": "gzip"},
                          verify=str(CA.ca_path), timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-git-upload-pack-result"
        assert response.content.startswith(b"0008NAK\n")
        assert b"PACK" in response.content
        posted = [r.body for r in up.requests if r.path.endswith("/git-upload-pack")]
        assert posted == [compressed]


# --------------------------------------------------------------------------- proxy clients

class Forwarder:
    """A minimal HTTP proxy for proving the clients: CONNECT tunnels and absolute-form
    requests, every target dialled at 127.0.0.1; Basic auth when `auth` is set (else 407);
    403 for any host in `deny`."""

    def __init__(self, auth: tuple[str, str] | None = None,
                 deny: frozenset[str] = frozenset({"blocked.test"})) -> None:
        self.auth = auth
        self.deny = deny
        self.request_lines: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Forwarder:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client, contextlib.ExitStack() as stack:
            client.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = client.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            self.request_lines.append(request_line)
            method, target, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines)}
            if self.auth is not None and headers.get("proxy-authorization") != \
                    "Basic " + base64.b64encode(":".join(self.auth).encode()).decode():
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Proxy-Authenticate: Basic\r\nContent-Length: 4\r\n\r\nauth")
                return
            url = urllib.parse.urlsplit(target if method != "CONNECT" else f"//{target}")
            if url.hostname in self.deny:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied")
                return
            try:
                upstream = stack.enter_context(
                    socket.create_connection(("127.0.0.1", url.port or 80), timeout=5))
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\n"
                               b"unreachable")
                return
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                kept = [line for line in lines if not line.lower().startswith("proxy-")]
                origin = url.path + (f"?{url.query}" if url.query else "")
                upstream.sendall(f"{method} {origin or '/'} HTTP/1.1\r\n".encode()
                                 + "\r\n".join(kept).encode("latin-1") + b"\r\n\r\n")
            upstream.sendall(rest)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join(5)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until EOF, then half-close dst."""
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    with Forwarder(auth=("agent", "s3cret")) as fwd:
        yield fwd


AUTH = ("agent", "s3cret")


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_ws_roundtrip_through_proxy(forwarder: Forwarder, tls: bool) -> None:
    """ws_roundtrip tunnels with CONNECT (and auth) and gets the echo; no auth gives 407."""
    with WebSocketUpstream(tls=tls, names=["ws.test"]) as up:
        assert ws_roundtrip("127.0.0.1", forwarder.port, "ws.test", up.port, tls=tls,
                            ca_path=CA.ca_path, proxy_auth=AUTH) == (101, "hello")
        assert ws_roundtrip("127.0.0.1", forwarder.port, "ws.test", up.port, tls=tls,
                            ca_path=CA.ca_path) == (407, None)
        assert forwarder.request_lines == [f"CONNECT ws.test:{up.port} HTTP/1.1"] * 2
        assert up.connections == 1
        assert up.tls == ([TlsRecord("ws.test", "http/1.1")] if tls else [])


def test_ws_roundtrip_reports_a_refused_upgrade(forwarder: Forwarder) -> None:
    """An upstream that answers the upgrade with a plain response gives that status."""
    with HttpUpstream() as up:
        assert ws_roundtrip("127.0.0.1", forwarder.port, "plain.test", up.port, tls=False,
                            ca_path=None, proxy_auth=AUTH) == (200, None)


FRONTING = [
    # id, sni, Host header, verify, expected SNI at the upstream, expected Host at the upstream
    pytest.param("front.test", "back.test", True, "front.test", "back.test", id="sni-vs-host"),
    pytest.param("front.test", None, True, "front.test", "connect.test:{port}", id="host-default"),
    pytest.param("other.test", "front.test", False, "other.test", "front.test",
                 id="sni-not-in-cert-unverified"),
]


@pytest.mark.parametrize(("sni", "host_header", "verify", "seen_sni", "seen_host"), FRONTING)
def test_raw_connect_sets_authority_sni_and_host_independently(
        forwarder: Forwarder, sni: str, host_header: str | None, verify: bool, seen_sni: str,
        seen_host: str) -> None:
    """CONNECT authority, TLS SNI and Host header each reach the upstream as given."""
    with HttpsUpstream(["front.test", "back.test"]) as up:
        result = raw_connect("127.0.0.1", forwarder.port, f"connect.test:{up.port}", sni=sni,
                             host_header=host_header, ca_path=CA.ca_path, proxy_auth=AUTH,
                             method="POST", path="/fronted", body=b"data", verify=verify)
        assert (result.connect_status, result.http_status) == (200, 200)
        host = seen_host.format(port=up.port)
        assert json.loads(result.body) == {"method": "POST", "path": "/fronted", "host": host,
                                           "body_len": 4, "http_version": "HTTP/1.1"}
        assert forwarder.request_lines == [f"CONNECT connect.test:{up.port} HTTP/1.1"]
        assert up.tls == [TlsRecord(seen_sni, "http/1.1")]


def test_raw_connect_plain_http_inside_tunnel(forwarder: Forwarder) -> None:
    """sni=None sends plain HTTP through the tunnel."""
    with HttpUpstream() as up:
        result = raw_connect("127.0.0.1", forwarder.port, f"tunnel.test:{up.port}", sni=None,
                             host_header="inner.test", ca_path=None, proxy_auth=AUTH,
                             path="/size/10")
        assert result == RawResult(200, 200, size_body(10))
        assert up.requests[0].headers["host"] == "inner.test"


def test_raw_connect_verification_failure_raises(forwarder: Forwarder) -> None:
    """With verify=True an SNI the certificate does not cover raises, and no request is sent."""
    with HttpsUpstream(["front.test"]) as up:
        with pytest.raises(ssl.SSLCertVerificationError):
            raw_connect("127.0.0.1", forwarder.port, f"front.test:{up.port}", sni="evil.test",
                        host_header=None, ca_path=CA.ca_path, proxy_auth=AUTH)
        assert up.requests == []


@pytest.mark.parametrize(("authority", "auth", "expected"), [
    pytest.param("blocked.test:443", AUTH, RawResult(403, None, b"denied"), id="denied"),
    pytest.param("any.test:443", None, RawResult(407, None, b"auth"), id="no-credentials"),
])
def test_raw_connect_refused_tunnel(forwarder: Forwarder, authority: str,
                                    auth: tuple[str, str] | None, expected: RawResult) -> None:
    """A refused CONNECT returns its status and body and no inner status."""
    assert raw_connect("127.0.0.1", forwarder.port, authority, sni="any.test", host_header=None,
                       ca_path=CA.ca_path, proxy_auth=auth) == expected


def test_raw_connect_without_an_http_answer() -> None:
    """A proxy that cannot reach the target gives its status; a tunnel to something that
    is not TLS gives (200, None, b"")."""
    with RawTcpUpstream() as up, Forwarder() as fwd:
        up_port = up.port
        up.stop()  # nothing listens any more, so the forwarder's dial fails
        assert raw_connect("127.0.0.1", fwd.port, f"gone.test:{up_port}", sni=None,
                           host_header=None, ca_path=None) == RawResult(502, None, b"unreachable")
    with RawTcpUpstream(banner=b"not http\r\n\r\n") as up, Forwarder() as fwd:
        result = raw_connect("127.0.0.1", fwd.port, f"raw.test:{up.port}", sni="raw.test",
                             host_header=None, ca_path=CA.ca_path)
        assert result == RawResult(200, None, b"")


PLAIN = [
    # id, path, host header, method, body, expected echo host
    pytest.param("/echo?x=1", None, "GET", b"", "plain.test:{port}", id="url-host"),
    pytest.param("/echo", "override.test", "GET", b"", "override.test", id="host-override"),
    pytest.param("/upload", None, "POST", b"0123456789", "plain.test:{port}", id="post-body"),
]


@pytest.mark.parametrize(("path", "host_header", "method", "body", "echo_host"), PLAIN)
def test_plain_proxy_request(forwarder: Forwarder, path: str, host_header: str | None,
                             method: str, body: bytes, echo_host: str) -> None:
    """An absolute-form request reaches the upstream with the Host header chosen."""
    with HttpUpstream() as up:
        url = f"http://plain.test:{up.port}{path}"
        status, headers, got = plain_proxy_request(
            "127.0.0.1", forwarder.port, url, host_header=host_header, method=method,
            headers={"X-Test": "1"}, body=body, proxy_auth=AUTH)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert json.loads(got) == {"method": method, "path": path,
                                   "host": echo_host.format(port=up.port),
                                   "body_len": len(body), "http_version": "HTTP/1.1"}
        assert forwarder.request_lines == [f"{method} {url} HTTP/1.1"]
        assert up.requests[0].headers["x-test"] == "1"
        assert "proxy-authorization" not in up.requests[0].headers


def test_plain_proxy_request_large_body_and_407(forwarder: Forwarder) -> None:
    """A large /size body arrives whole; without credentials the proxy's 407 comes back."""
    with HttpUpstream() as up:
        url = f"http://plain.test:{up.port}/size/3000000"
        status, _, body = plain_proxy_request("127.0.0.1", forwarder.port, url, proxy_auth=AUTH)
        assert (status, body == size_body(3_000_000)) == (200, True)
        status, headers, body = plain_proxy_request("127.0.0.1", forwarder.port, url)
        assert (status, headers["proxy-authenticate"], body) == (407, "Basic", b"auth")
        assert up.connections == 1


def test_clients_refuse_non_loopback_targets() -> None:
    """The clients never dial outside 127.0.0.0/8."""
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        plain_proxy_request("192.0.2.1", 8080, "http://x.test/")
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        ws_roundtrip(None, None, "192.0.2.1", 80, tls=False, ca_path=None)
