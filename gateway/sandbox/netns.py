"""The agent's network, seen from inside: made by the stage, which brings loopback up,
opens the listeners the relays serve and hands them to `gateway run` (SCM_RIGHTS), and
the self-test's probes, run there before anything of the command.

Standard library only: the stage imports it. Nothing here sends a packet off the
machine: routes are probed with a UDP connect, which sends nothing, and the proxy probe
asks for a documentation address that the gateway refuses before any connection.
"""

from __future__ import annotations

import errno
import fcntl
import json
import socket
import struct

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
# Documentation addresses (RFC 5737, RFC 3849): no route to them may exist.
PROBE_ADDRESSES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))
PROBE_HOST = "192.0.2.1"
TIMEOUT = 10.0


class SelfTestFailed(Exception):
    """Confinement could not be shown: the command must not run."""


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def listen(port: int) -> list[socket.socket]:
    """Listeners on 127.0.0.1:port and, where IPv6 exists, [::1]:port."""
    out = []
    for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 in this kernel
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(128)
        except OSError as e:
            s.close()
            if family == socket.AF_INET6 and e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                continue
            raise
        out.append(s)
    return out


def interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def routes_outside() -> list[str]:
    """Each probe address this namespace has a route to (none is right)."""
    reachable = []
    for address, family in PROBE_ADDRESSES:
        try:
            s = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            continue
        with s:
            try:
                s.connect((address, 53))
            except OSError as e:
                if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL,
                               errno.EAFNOSUPPORT):
                    continue
                raise
            reachable.append(address)
    return reachable


def self_test(proxy_port: int, api_port: int, proxy_auth: str | None,
              probe_proxy: bool) -> list[str]:
    """What passed; SelfTestFailed naming what did not."""
    names = interfaces()
    if names != ["lo"]:
        raise SelfTestFailed(f"the agent's network has interfaces {names}, not only lo")
    routes = routes_outside()
    if routes:
        raise SelfTestFailed(f"the agent's network has a route to {', '.join(routes)}")
    passed = ["only loopback, no route out"]
    try:
        with socket.create_connection(("127.0.0.1", api_port), timeout=TIMEOUT) as s:
            # A request the API refuses as malformed: it answers, and records nothing.
            s.sendall(json.dumps({"selftest": True}).encode() + b"\n")
            reply = _read_until(s, b"\n")
    except OSError as e:
        raise SelfTestFailed(f"the decision API does not answer: {e.strerror or e}") from None
    if b'"error"' not in reply:
        raise SelfTestFailed(f"the decision API gave an unexpected reply: {reply[:200]!r}")
    passed.append("decision API answers")
    if not probe_proxy:
        return passed
    lines = [f"GET http://{PROBE_HOST}/ HTTP/1.1", f"Host: {PROBE_HOST}", "Connection: close"]
    if proxy_auth:
        lines.append(f"Proxy-Authorization: Basic {proxy_auth}")
    try:
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=TIMEOUT) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = _read_until(s, b"\r\n\r\n")
    except OSError as e:
        raise SelfTestFailed(f"the proxy does not answer: {e.strerror or e}") from None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status != 403 or headers.get("x-gateway-verdict") != "DENY":
        raise SelfTestFailed(f"the proxy answered {status or 'nothing'} for a denied host, "
                             "not the gateway's 403")
    passed.append("proxy answers and refuses a denied host")
    return passed


def _read_until(s: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data and len(data) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
