"""Proxy throughput and latency: direct, bare mitmdump and the gateway, in one run.

Run: python benchmarks/bench_proxy.py [--requests 1000] [--concurrency 8] [--quick]
                                     [--kinds http,intercept,paths,passthrough]

Three kinds of traffic, each measured three ways against the same local upstreams
(a 1 KiB body, one new connection per request, `Connection: close`, loopback only):

- plain HTTP: an absolute-form GET through the proxy;
- HTTPS intercepted: CONNECT, TLS to the proxy's generated certificate, GET;
- HTTPS passthrough: CONNECT, TLS straight to the upstream through the tunnel, GET.

Routes: direct (client to upstream), bare `mitmdump -q` with no addon, and
`gateway up` with a one-rule policy for the upstream's name. For each kind the rows
come from the same run: every route is warmed up, then sequential requests are
measured in interleaved rounds (the route order rotates each round) so that drift in
machine load falls on all routes alike; then the concurrent phase (N client processes
sharing the same total) runs in interleaved rounds the same way. Prints one markdown
table per kind, then the gateway's own decision latency as `gateway status` reports it
after each phase.

The upstreams run in their own processes (threaded `http.server`, TLS with a
throwaway CA), the client is a raw socket + ssl loop, and everything lives in a
temporary directory that is removed at the end. Any failed request (a status other
than 200, a short body, a timeout) stops the run with an error naming the route.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.metadata
import ipaddress
import itertools
import json
import multiprocessing
import os
import platform
import queue
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from procs import stop, tail

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
NAME = "bench.test"
BODY = b"x" * 1024
TIMEOUT = 5.0  # every socket operation
START_TIMEOUT = 30.0  # a proxy to start listening
PHASE_TIMEOUT = 300.0  # one concurrent phase
MAX_RESPONSE = 1 << 20
DECISION_TARGET_US = 50.0
_REQUEST_NUMBERS = itertools.count()
MP = multiprocessing.get_context("fork")

KINDS = {
    "http": "plain HTTP",
    "intercept": "HTTPS intercepted",
    "paths": "HTTPS intercepted, path rules",
    "passthrough": "HTTPS passthrough",
}
DECRYPTED = ("intercept", "paths")
ROUTES = ("direct", "mitmdump", "gateway")


class RouteFailure(Exception):
    """A request that did not come back as 200 with the 1 KiB body."""


# -- certificates ---------------------------------------------------------------------


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf for NAME and 127.0.0.1: (ca.pem, leaf.pem, leaf-key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench_proxy CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "leaf.pem", directory / "leaf-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# -- upstreams ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        ok = host == NAME  # every route must name the upstream alike
        body = BODY if ok else f"upstream: Host {host!r}, expected {NAME!r}\n".encode()
        self.send_response(200 if ok else 421)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: socket.socket,  # type: ignore[override]
                       client_address: object) -> None:
        request.settimeout(TIMEOUT)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.tls.wrap_socket(request, server_side=True)  # in the worker thread
        except OSError:
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()


def _serve_upstream(cert: Path | None, key: Path | None, pipe: Connection) -> None:
    server = _Upstream((LOOPBACK, 0), _Handler)
    if cert is not None and key is not None:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(cert, key)
    pipe.send(server.server_address[1])
    server.serve_forever(poll_interval=0.5)


def start_upstream(stack: contextlib.ExitStack, cert: Path | None = None,
                   key: Path | None = None) -> int:
    """Serve BODY over HTTP (or HTTPS with cert/key) in a process of its own; the port."""
    ours, theirs = MP.Pipe()
    process = MP.Process(target=_serve_upstream, args=(cert, key, theirs), daemon=True)
    process.start()
    stack.callback(_stop_process, process)
    if not ours.poll(START_TIMEOUT):
        raise RouteFailure("upstream server did not start")
    return int(ours.recv())


def _stop_process(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.terminate()
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join(5)


# -- the client -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """How one route reaches the upstream for one kind of traffic."""

    kind: str
    port: int  # the upstream's
    proxy: tuple[str, int] | None  # None: straight to the upstream
    authority: str  # what the absolute URL or the CONNECT line names
    cafile: str | None  # trust for the TLS the client speaks (None for plain HTTP)


@functools.cache
def _client_context(cafile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _read_head(sock: socket.socket, buf: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and whatever followed the head."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RouteFailure("connection closed before the response head"
                               + (f" (got {buf[:120]!r})" if buf else ""))
        buf += chunk
        if len(buf) > MAX_RESPONSE:
            raise RouteFailure("response head too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise RouteFailure(f"not an HTTP response: {lines[0][:120]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    status, headers, body = _read_head(sock)
    return status, _read_body(sock, headers, body)


def _read_body(sock: socket.socket, headers: dict[str, str], body: bytes) -> bytes:
    length = int(headers["content-length"]) if "content-length" in headers else None
    while length is None or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except ssl.SSLEOFError:
            chunk = b""
        if not chunk:
            if length is None:
                break
            raise RouteFailure(f"connection closed after {len(body)} of {length} body bytes")
        body += chunk
        if len(body) > MAX_RESPONSE:
            raise RouteFailure("response body too long")
    return body


def fetch(target: Target) -> None:
    """One GET on a new connection, the whole response read; RouteFailure otherwise."""
    try:
        _fetch(target)
    except RouteFailure:
        raise
    except ssl.SSLError as e:
        raise RouteFailure(f"TLS: {e}") from None
    except TimeoutError:
        raise RouteFailure(f"no answer within {TIMEOUT:g} s") from None
    except OSError as e:
        raise RouteFailure(f"socket: {e}") from None


def _fetch(target: Target) -> None:
    address = target.proxy or (LOOPBACK, target.port)
    sock = socket.create_connection(address, timeout=TIMEOUT)
    try:
        # A path of its own per request: no request-level decision can be a repeat.
        path = f"/r/{os.getpid()}-{next(_REQUEST_NUMBERS)}"
        if target.kind == "http":
            if target.proxy is not None:
                path = f"http://{target.authority}{path}"
        else:
            if target.proxy is not None:
                sock.sendall(f"CONNECT {target.authority} HTTP/1.1\r\n"
                             f"Host: {target.authority}\r\n\r\n".encode())
                status, headers, rest = _read_head(sock)
                if status != 200:
                    body = _read_body(sock, headers, rest)
                    raise RouteFailure(f"CONNECT answered {status}: {body[:300]!r}")
                if rest:
                    raise RouteFailure(f"bytes after the CONNECT answer: {rest[:60]!r}")
            assert target.cafile is not None
            sock = _client_context(target.cafile).wrap_socket(sock, server_hostname=NAME)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}:{target.port}\r\n"
                     "User-Agent: bench_proxy\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                     .encode())
        status, body = _read_response(sock)
    finally:
        sock.close()
    if status != 200:
        raise RouteFailure(f"HTTP {status}: {body[:300]!r}")
    if body != BODY:
        raise RouteFailure(f"body of {len(body)} bytes, expected the {len(BODY)}-byte body")


def sequential(target: Target, count: int) -> tuple[list[float], float]:
    """Per-request latencies (seconds) and the loop's wall time."""
    latencies = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        fetch(target)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - start


def _worker(target: Target, count: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(START_TIMEOUT)
        for _ in range(count):
            fetch(target)
    except Exception as e:
        results.put(str(e) or type(e).__name__)
    else:
        results.put(None)


def concurrent(target: Target, total: int, workers: int) -> tuple[int, float]:
    """Requests done and wall time for `workers` client processes sharing `total`."""
    workers = min(workers, total)
    shares = [total // workers + (i < total % workers) for i in range(workers)]
    barrier, results = MP.Barrier(workers + 1), MP.Queue()
    processes = [MP.Process(target=_worker, args=(target, n, barrier, results), daemon=True)
                 for n in shares]
    for p in processes:
        p.start()
    try:
        barrier.wait(START_TIMEOUT)
        start = time.perf_counter()
        deadline = start + PHASE_TIMEOUT
        for _ in processes:
            try:
                error = results.get(timeout=max(0.1, deadline - time.perf_counter()))
            except queue.Empty:
                raise RouteFailure(f"concurrent phase took over {PHASE_TIMEOUT:g} s") from None
            if error is not None:
                raise RouteFailure(error)
        elapsed = time.perf_counter() - start
    finally:
        for p in processes:
            _stop_process(p)
    return total, elapsed


# -- the proxies ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    ca_cert: str = ""
    exit_codes: list[int] = field(default_factory=list)

    def stop(self) -> None:
        self.exit_codes.append(stop(self.process))

    def failed(self, what: str) -> RouteFailure:
        return RouteFailure(f"{self.name} {what}; its output ends:\n{tail(self.log)}")


def _spawn(name: str, argv: list[str], log: Path) -> Proxy:
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
    return Proxy(name, process, log)


def _wait_until(proxy: Proxy, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if proxy.process.poll() is not None:
            raise proxy.failed(f"exited with status {proxy.process.returncode} at start")
        if time.monotonic() > deadline:
            raise proxy.failed(f"not ready within {START_TIMEOUT:g} s")
        time.sleep(0.05)


def _mitmdump_path() -> str:
    beside = Path(sys.executable).parent / "mitmdump"
    return os.fspath(beside) if beside.exists() else "mitmdump"


def start_mitmdump(work: Path, kind: str, upstream_ca: Path) -> Proxy:
    confdir = work / "mitmdump"
    confdir.mkdir()
    port = _free_port()
    argv = [_mitmdump_path(), "-q", "--listen-host", LOOPBACK, "-p", str(port),
            "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    if kind == "passthrough":
        argv += ["--ignore-hosts", ".*"]
    proxy = _spawn("mitmdump", argv, work / "mitmdump.log")
    proxy.port, proxy.ca_cert = port, os.fspath(confdir / "mitmproxy-ca-cert.pem")

    def listening() -> bool:
        try:
            socket.create_connection((LOOPBACK, port), timeout=TIMEOUT).close()
        except OSError:
            return False
        return Path(proxy.ca_cert).exists()

    _wait_until(proxy, listening)
    return proxy


def gateway_policy(kind: str, port: int) -> str:
    """One exact-name rule for the upstream; `methods` makes the gateway decrypt, and
    `paths` makes it decide every request on its own URL."""
    constraints = {"intercept": "    methods: [GET]\n",
                   "paths": '    methods: [GET]\n    paths: ["/r/**"]\n'}.get(kind, "")
    return ("version: 1\ndefault: deny\nrules:\n  - action: network\n"
            f'    host: "{NAME}"\n    ports: [{port}]\n{constraints}    effect: allow\n')


def start_gateway(work: Path, kind: str, port: int, upstream_ca: Path) -> Proxy:
    state = work / "gateway"
    policy, hosts = work / "policy.yaml", work / "hosts"
    policy.write_text(gateway_policy(kind, port))
    hosts.write_text(f"{LOOPBACK} {NAME}\n")
    argv = [sys.executable, "-m", "gateway", "up", "--policy", os.fspath(policy),
            "--listen", f"{LOOPBACK}:0", "--state-dir", os.fspath(state),
            "--hosts-file", os.fspath(hosts), "--upstream-ca", os.fspath(upstream_ca)]
    proxy = _spawn("gateway", argv, work / "gateway.log")
    info_path = state / "gateway.json"
    _wait_until(proxy, info_path.exists)
    info = json.loads(info_path.read_text())
    host, _, port_text = str(info["proxy"]).removeprefix("http://").rpartition(":")
    if host != LOOPBACK:
        raise proxy.failed(f"listens on {info['proxy']}, not on {LOOPBACK}")
    proxy.port, proxy.ca_cert = int(port_text), str(info["ca_cert"])
    return proxy


def gateway_status(work: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "status", "--state-dir", os.fspath(work / "gateway"),
         "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    try:
        status = json.loads(result.stdout)
    except ValueError:
        raise RouteFailure(f"`gateway status` exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[:500]}") from None
    status["_exit"] = result.returncode
    return status


# -- measuring ------------------------------------------------------------------------


@dataclass
class Cell:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    concurrent_done: int = 0
    concurrent_wall: float = 0.0

    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def concurrent_rate(self) -> float:
        return self.concurrent_done / self.concurrent_wall if self.concurrent_wall else 0.0

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


@dataclass(frozen=True)
class Settings:
    requests: int
    concurrency: int
    warmup: int
    rounds: int


@contextlib.contextmanager
def named(route: str, kind: str) -> Iterator[None]:
    try:
        yield
    except RouteFailure as e:
        raise RouteFailure(f"route {route}, {KINDS[kind]}: {e}") from None


def _rounds(settings: Settings, routes: list[str]) -> Iterator[tuple[str, int]]:
    """(route, requests) in interleaved rounds, the route order rotating each round."""
    for r in range(settings.rounds):
        count = settings.requests // settings.rounds + (r < settings.requests % settings.rounds)
        shift = r % len(routes)
        for route in routes[shift:] + routes[:shift]:
            if count:
                yield route, count


def measure_sequential(kind: str, targets: dict[str, Target], settings: Settings,
                       cells: dict[str, Cell]) -> None:
    for route, target in targets.items():
        with named(route, kind):
            sequential(target, settings.warmup)
    for route, count in _rounds(settings, list(targets)):
        with named(route, kind):
            latencies, wall = sequential(targets[route], count)
        cells[route].latencies += latencies
        cells[route].wall += wall


def measure_concurrent(kind: str, targets: dict[str, Target], settings: Settings,
                       cells: dict[str, Cell]) -> None:
    for route, count in _rounds(settings, list(targets)):
        with named(route, kind):
            done, wall = concurrent(targets[route], count, settings.concurrency)
        cells[route].concurrent_done += done
        cells[route].concurrent_wall += wall


def run_kind(kind: str, work: Path, ports: dict[str, int], upstream_ca: Path,
             settings: Settings) -> tuple[dict[str, Cell], list[dict[str, object]]]:
    port = ports["http" if kind == "http" else "https"]
    with contextlib.ExitStack() as stack:
        mitm = start_mitmdump(work, kind, upstream_ca)
        stack.callback(mitm.stop)
        gateway = start_gateway(work, kind, port, upstream_ca)
        stack.callback(gateway.stop)
        tls = kind != "http"
        ca = os.fspath(upstream_ca)
        targets = {
            "direct": Target(kind, port, None, f"{LOOPBACK}:{port}", ca if tls else None),
            "mitmdump": Target(kind, port, (LOOPBACK, mitm.port), f"{LOOPBACK}:{port}",
                               (mitm.ca_cert if kind in DECRYPTED else ca) if tls else None),
            "gateway": Target(kind, port, (LOOPBACK, gateway.port), f"{NAME}:{port}",
                              (gateway.ca_cert if kind in DECRYPTED else ca) if tls else None),
        }
        cells = {route: Cell() for route in targets}
        measure_sequential(kind, targets, settings, cells)
        statuses = [gateway_status(work)]
        measure_concurrent(kind, targets, settings, cells)
        statuses.append(gateway_status(work))
        gateway.stop()
        if gateway.exit_codes[-1] != 0:
            raise gateway.failed(f"exited with status {gateway.exit_codes[-1]} "
                                 "on SIGTERM")
    return cells, statuses


# -- reporting ------------------------------------------------------------------------


def print_header(settings: Settings) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Machine: {cores} cores ({platform.system()} {platform.machine()}), "
          f"Python {platform.python_version()}, "
          f"mitmproxy {importlib.metadata.version('mitmproxy')}; load average {load} at start.")
    print(f"Per kind and route: {settings.warmup} warm-up requests, then "
          f"{settings.requests:,} sequential requests in {settings.rounds} interleaved rounds "
          f"and {settings.requests:,} at concurrency {settings.concurrency} (client processes); "
          f"one new connection per request, `Connection: close`, 1 KiB body, loopback only.")
    print()


def print_kind(kind: str, cells: dict[str, Cell], concurrency: int) -> None:
    direct, mitm = cells["direct"], cells["mitmdump"]
    print(f"### {KINDS[kind]}")
    print()
    print(f"| route | req/s | p50 ms | p99 ms | added p50 ms vs direct "
          f"| req/s at concurrency {concurrency} | % of mitmdump req/s (sequential / concurrent) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for route, cell in cells.items():
        added = "—" if route == "direct" else f"{cell.ms(0.5) - direct.ms(0.5):+.2f}"
        share = "—" if route == "direct" else (
            f"{100 * cell.rate() / mitm.rate():.0f}% / "
            f"{100 * cell.concurrent_rate() / mitm.concurrent_rate():.0f}%")
        print(f"| {route} | {cell.rate():,.0f} | {cell.ms(0.5):.2f} | {cell.ms(0.99):.2f} "
              f"| {added} | {cell.concurrent_rate():,.0f} | {share} |")
    print()
    print(NOTES[kind])
    print(flush=True)


NOTES = {
    "http": (f"direct: `GET /` to 127.0.0.1, `Host: {NAME}:PORT`. mitmdump: "
             f"`GET http://127.0.0.1:PORT/`, `Host: {NAME}:PORT`. gateway: "
             f"`GET http://{NAME}:PORT/`, same Host; the gateway resolves {NAME} to "
             "127.0.0.1 from its hosts file and allows it with a `ports` rule."),
    "intercept": (f"direct: TLS to 127.0.0.1 with SNI {NAME}. mitmdump: `CONNECT "
                  f"127.0.0.1:PORT`, TLS with SNI {NAME} to mitmdump's generated certificate, "
                  f"mitmdump verifies the upstream with the bench CA. gateway: `CONNECT "
                  f"{NAME}:PORT`, same TLS; its rule has `methods: [GET]`, so it decrypts. "
                  f"Every inner request has `Host: {NAME}:PORT`."),
    "paths": ("As HTTPS intercepted, but the gateway's rule also has `paths: [\"/r/**\"]`, "
              "so each request is decided on its own URL (every path is new): the costliest "
              "decision the proxy makes."),
    "passthrough": (f"direct: TLS to 127.0.0.1 with SNI {NAME}. mitmdump "
                    f"(`--ignore-hosts '.*'`): `CONNECT 127.0.0.1:PORT`. gateway: `CONNECT "
                    f"{NAME}:PORT` with a plain allow rule (`host` + `ports`), so it does not "
                    f"decrypt. Through the tunnel the client speaks TLS with SNI {NAME} to the "
                    "upstream and verifies it with the bench CA."),
}


def print_decisions(statuses: dict[str, list[dict[str, object]]]) -> None:
    print("### Gateway decision latency (`gateway status`, inside the proxy)")
    print()
    print(f"| kind | after | decisions | from cache | wall p50 µs | wall p99 µs | wall max µs "
          f"| CPU p50 µs | CPU p99 µs | CPU p99 <= {DECISION_TARGET_US:g} µs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    phases = ("warm-up + sequential", "+ concurrent")
    unhealthy = set()
    for kind, snapshots in statuses.items():
        for phase, status in zip(phases, snapshots, strict=True):
            if status.get("_exit"):
                unhealthy.add(kind)
            wall = status.get("decision_us") or {}
            cpu = status.get("decision_cpu_us") or {}
            cache = status.get("decision_cache") or {}
            assert isinstance(wall, dict) and isinstance(cpu, dict) and isinstance(cache, dict)
            if not wall.get("count") or not cpu.get("count"):
                print(f"| {KINDS[kind]} | {phase} | 0 | — | — | — | — | — | — | no samples |")
                continue
            met = "met" if float(cpu["p99"]) <= DECISION_TARGET_US else "MISSED"
            hits = int(cache.get("hits", 0))
            total = hits + int(cache.get("misses", 0))
            share = f"{hits / total:.0%}" if total else "—"
            print(f"| {KINDS[kind]} | {phase} | {wall['count']:,} | {share} | {wall['p50']} "
                  f"| {wall['p99']} | {wall['max']} | {cpu['p50']} | {cpu['p99']} | {met} |")
    print()
    print("Each row covers every decision since the gateway started (CONNECTs and requests; "
          "one per plain HTTP or passthrough request, two per intercepted one): the first "
          "after the sequential phase, the second after the concurrent one too. Every request "
          "asks a path of its own (`/r/N`): where the host's rules have `paths`, no request "
          "decision can come from the gateway's decision cache; elsewhere a request is "
          "decided as its connection (host:port, and the method where rules constrain "
          "methods), which repeats and does. Wall time "
          "includes moments the OS gave the core to the client, the upstream or the audit "
          "writer (2 cores, 3 busy processes); CPU time is the gateway thread's own, the "
          "decision's cost.")
    if unhealthy:
        print(f"`gateway status` reported an unhealthy gateway for: "
              f"{', '.join(KINDS[k] for k in sorted(unhealthy))}.")
    print(flush=True)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Settings, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int,
                        help="sequential requests per route and kind, also the concurrent "
                             "total (default 1000; --quick: 120)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="client processes in the concurrent phase (default 8)")
    parser.add_argument("--warmup", type=int, help="warm-up requests per route (default 50; "
                                                   "--quick: 10)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 4; --quick: 2)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="which kinds to run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        parser.error(f"--kinds: choose from {', '.join(KINDS)}")
    settings = Settings(
        requests=args.requests or (120 if args.quick else 1000),
        concurrency=args.concurrency,
        warmup=args.warmup if args.warmup is not None else (10 if args.quick else 50),
        rounds=args.rounds or (2 if args.quick else 4))
    if min(settings.requests, settings.concurrency, settings.rounds) < 1:
        parser.error("--requests, --concurrency and --rounds must be at least 1")
    return settings, kinds


def main(argv: list[str] | None = None) -> int:
    settings, kinds = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear down on SIGTERM too
    started = time.perf_counter()
    print_header(settings)
    statuses: dict[str, list[dict[str, object]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp, \
                contextlib.ExitStack() as stack:
            work = Path(tmp)
            ca, cert, key = make_pki(work)
            ports = {"http": start_upstream(stack), "https": start_upstream(stack, cert, key)}
            for kind in kinds:
                kind_dir = work / kind
                kind_dir.mkdir()
                cells, statuses[kind] = run_kind(kind, kind_dir, ports, ca, settings)
                print_kind(kind, cells, settings.concurrency)
            print_decisions(statuses)
    except RouteFailure as e:
        print(f"bench_proxy: FAILED: {e}", file=sys.stderr)
        return 1
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Done in {time.perf_counter() - started:.0f} s; load average {load} at the end.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
