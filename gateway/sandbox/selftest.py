"""The self-test a run passes before its command starts: from inside the agent's
network namespace, nothing but loopback is there, no address outside has a route, the
decision API answers, and the proxy answers, refusing a host the policy denies.

Nothing here sends a packet off the machine: routes are probed with a UDP connect
(which sends nothing), and the denied host is an address from a documentation range
that only a rule naming it could allow (the gateway refuses it before any connection).
"""

from __future__ import annotations

import asyncio
import base64
import socket

import orjson

from gateway.engine import Verdict, decide, make_request
from gateway.errors import GatewayError
from gateway.policy.compiled import CompiledPolicy
from gateway.sandbox import netns

PROBE_HOST = "192.0.2.1"  # TEST-NET-1 (RFC 5737)
TIMEOUT = 10.0


class SelfTestFailed(GatewayError):
    """Confinement could not be shown: the command must not run."""


class SelfTest:
    def __init__(self, net: int, proxy_port: int, api_port: int, agent: str,
                 token: str | None, policy: CompiledPolicy, simulate: bool) -> None:
        self.net, self.proxy_port, self.api_port = net, proxy_port, api_port
        self.agent, self.token = agent, token
        self.policy, self.simulate = policy, simulate
        self.passed: list[str] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(None, netns.interfaces, self.net)
        if names != ["lo"]:
            raise SelfTestFailed(f"the agent's network has interfaces {names}, not only lo")
        routes = await loop.run_in_executor(None, netns.routes_outside, self.net)
        if routes:
            raise SelfTestFailed(f"the agent's network has a route to {', '.join(routes)}")
        self.passed.append("only loopback, no route out")
        reply = await loop.run_in_executor(None, self._inside, self._ask_api)
        if b'"error"' not in reply:
            raise SelfTestFailed(f"the decision API gave an unexpected reply: {reply[:200]!r}")
        self.passed.append("decision API answers")
        if self.simulate:
            return  # the probe would be let through: nothing is blocked in simulate mode
        request = make_request("network", f"http://{PROBE_HOST}/", agent=self.agent or None)
        if decide(self.policy, request).verdict is not Verdict.DENY:
            raise SelfTestFailed(f"the policy allows {PROBE_HOST}, the self-test's denied "
                                 "host (a documentation address); remove that rule")
        status, headers = await loop.run_in_executor(None, self._inside, self._probe_proxy)
        if status != 403 or headers.get("x-gateway-verdict") != "DENY":
            raise SelfTestFailed(f"the proxy answered {status} for a denied host, not the "
                                 "gateway's 403")
        self.passed.append("proxy answers and refuses a denied host")

    def _inside(self, fn: object) -> bytes | tuple[int, dict[str, str]]:
        try:
            return netns.run_inside(self.net, fn)  # type: ignore[arg-type]
        except OSError as e:
            raise SelfTestFailed(f"cannot reach the gateway from the agent's network: "
                                 f"{e.strerror or e}") from None

    def _ask_api(self) -> bytes:
        """A request the API refuses as malformed: it answers, and records nothing."""
        with socket.create_connection(("127.0.0.1", self.api_port), timeout=TIMEOUT) as s:
            s.sendall(orjson.dumps({"selftest": True}) + b"\n")
            return _read_until(s, b"\n")

    def _probe_proxy(self) -> tuple[int, dict[str, str]]:
        lines = [f"GET http://{PROBE_HOST}/ HTTP/1.1", f"Host: {PROBE_HOST}",
                 "Connection: close"]
        if self.token:
            auth = base64.b64encode(f"{self.agent}:{self.token}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {auth}")
        with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=TIMEOUT) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = _read_until(s, b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers


def _read_until(s: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data and len(data) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
