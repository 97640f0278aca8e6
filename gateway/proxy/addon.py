"""EgressGuard: the mitmproxy addon that asks the policy before any byte goes upstream.

Every CONNECT and every request it can see is decided by the engine and recorded in
the audit log before it goes on; the upstream is dialled only at the address the
gateway resolved and checked itself. One identity per request: the CONNECT
authority, the TLS SNI and the Host header must name the same host (421 otherwise).
TLS is decrypted only where the policy needs to see requests (`methods`/`paths`
rules, or `proxy.intercept: all`); elsewhere the tunnel passes through untouched.

Embedded in `gateway up`, it shares the daemon's Runtime; under
`mitmdump -s addons/egress.py --set policy=FILE` it builds its own from its options.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from mitmproxy import ctx, http, tcp, tls, udp
from mitmproxy.connection import Client
from mitmproxy.proxy import server_hooks

from gateway.agents import ANONYMOUS
from gateway.audit.keys import writer_key
from gateway.audit.recovery import AuditUnavailable
from gateway.audit.writer import AuditWriter
from gateway.egress import authority, check_addresses, intercepts
from gateway.engine import Decision, Verdict
from gateway.errors import GatewayError
from gateway.matching.hosts import BadTarget, parse_network_target
from gateway.policy.model import Action, Mode
from gateway.proxy.replies import redact_url, refusal
from gateway.proxy.resolver import ResolveError, Resolver, load_hosts_file
from gateway.runtime import Runtime, durable

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
_PENDING = "gateway.decided"  # flow.metadata: the decision of a request let through
_OPTIONS = ("policy", "gateway_agents", "gateway_audit_log", "gateway_audit_key",
            "gateway_hosts", "gateway_simulate", "gateway_project_dir")


@dataclass(slots=True)
class ClientState:
    """What the gateway knows about one client connection."""

    agent: str = ANONYMOUS
    tunnel: tuple[str, int] | None = None  # the CONNECT authority, canonical
    intercept: bool = False
    fronted: str | None = None  # why the TLS SNI disagreed with the CONNECT
    raw_refused: bool = False  # raw TCP where requests must be seen
    seq: int | None = None  # the CONNECT decision's audit entry
    started: float = field(default_factory=time.monotonic)
    pins: dict[tuple[str, int], IPAddress] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdicted:
    """A decision with what the proxy does about it: the HTTP status of a refusal
    (None: let it through, to the address now pinned for it) and why."""

    decision: Decision
    status: int | None
    reason: str


class EgressGuard:
    def __init__(self, runtime: Runtime | None = None, resolver: Resolver | None = None) -> None:
        self._embedded = runtime is not None
        self.runtime = runtime
        self.resolver = resolver or Resolver()
        self.clients: dict[str, ClientState] = {}

    # -- options ----------------------------------------------------------------------

    def load(self, loader: object) -> None:
        add = loader.add_option  # type: ignore[attr-defined]
        add("policy", str, "",
            "Gateway policy file (YAML). Every CONNECT and request is decided by it before "
            "anything goes upstream; without a policy every connection is refused.")
        add("gateway_agents", str, "",
            "Agents file: names and token hashes. A client presenting NAME:TOKEN as proxy "
            "credentials is that agent; anyone else is agent 'anonymous'.")
        add("gateway_audit_log", str, "",
            "Audit log for every decision (default: gateway-audit.jsonl in confdir). A "
            "decision that cannot be recorded is refused.")
        add("gateway_audit_key", str, "",
            "HMAC key file for the audit log (default: $GATEWAY_AUDIT_KEY_FILE, "
            "$GATEWAY_AUDIT_KEY, else LOG.key, created with mode 0600).")
        add("gateway_hosts", str, "",
            "Hosts file (/etc/hosts syntax) consulted before DNS: pins names to addresses.")
        add("gateway_simulate", bool, False,
            "Simulate: block nothing, record every would-deny with mode 'simulate'.")
        add("gateway_project_dir", str, "",
            "Project directory for ${PROJECT_DIR} in the policy (default: the environment, "
            "then the working directory).")

    def configure(self, updated: set[str]) -> None:
        if self._embedded or not updated & set(_OPTIONS):
            return
        opts = ctx.options
        try:
            if "gateway_hosts" in updated:
                self.resolver = Resolver(load_hosts_file(opts.gateway_hosts)
                                         if opts.gateway_hosts else {})
            if opts.policy:
                self._start_runtime()
        except (GatewayError, AuditUnavailable, OSError) as e:
            # Logged, not raised: mitmproxy shows a script's exceptions as tracebacks.
            # Logged at startup, mitmdump exits; later, the running policy stays.
            log.error("gateway: %s (%s)", e, "every connection is refused"
                      if self.runtime is None else "the running policy stays")

    def _start_runtime(self) -> None:
        """Under mitmdump: open the audit log (once per path) and load the policy."""
        opts = ctx.options
        log_path = Path(opts.gateway_audit_log or
                        Path(opts.confdir).expanduser() / "gateway-audit.jsonl")
        writer = self.runtime.writer if self.runtime is not None else None
        fresh = None
        if writer is None or writer.path != log_path:
            key = writer_key(log_path, opts.gateway_audit_key or None, os.environ)
            writer = fresh = AuditWriter(log_path, key=key)
            writer.start()
        try:
            runtime = Runtime(opts.policy, writer, agents_path=opts.gateway_agents or None,
                              project_dir=opts.gateway_project_dir or None,
                              simulate=opts.gateway_simulate)
        except GatewayError:
            if fresh is not None:
                fresh.close()
            raise
        old, self.runtime = self.runtime, runtime
        if old is not None and old.writer is not writer:
            old.writer.close()

    def running(self) -> None:
        if ctx.options.connection_strategy != "lazy":
            # Eager connections dial the upstream before a request has been decided.
            ctx.options.update(connection_strategy="lazy")

    def done(self) -> None:
        if not self._embedded and self.runtime is not None:
            self.runtime.writer.close()

    # -- connections --------------------------------------------------------------------

    def client_state(self, client: Client) -> ClientState:
        state = self.clients.get(client.id)
        if state is None:
            state = self.clients[client.id] = ClientState()
        return state

    def client_disconnected(self, client: Client) -> None:
        state = self.clients.pop(client.id, None)
        if state is None or state.seq is None or self.runtime is None or state.tunnel is None:
            return
        host, port = state.tunnel
        self.runtime.note({"source": "proxy", "agent": state.agent, "action": "network",
                           "event": "done", "ref": state.seq, "host": host, "port": port,
                           "duration_ms": _ms_since(state.started)}, deferred=True)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        state = self.client_state(flow.client_conn)
        state.agent = self._agent(flow.request)
        host, port = _canonical(flow.request.host, flow.request.port)
        verdicted = await self._judge(state, host, port)
        seq = await self._record(flow, verdicted, "connect")
        if verdicted.status is not None or seq is None:
            return
        state.tunnel, state.seq = (host, port), seq
        assert self.runtime is not None  # a missing runtime refuses with 503
        state.intercept = intercepts(self.runtime.policy, host, port, state.agent)

    async def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        state = self.clients.get(data.context.client.id)
        if state is None or state.tunnel is None:
            return
        host = state.tunnel[0]
        sni = data.client_hello.sni
        if sni is not None and _canonical_host(sni) != host:
            # Decrypt so the request can be answered with 421; pinned clients just fail.
            state.fronted = f"CONNECT named {host} but the TLS SNI names {sni}"
            data.ignore_connection = False
            return
        # Without an SNI the server picks the site by the Host header inside TLS, which
        # only decryption lets the gateway check against the CONNECT.
        data.ignore_connection = not state.intercept and (sni is not None or _is_ip(host))

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        state = self.client_state(flow.client_conn)
        request = flow.request
        if state.tunnel is None:
            state.agent = self._agent(request)
            host, port = _canonical(request.host, request.port)
        else:
            host, port = state.tunnel
        request.headers.pop("Proxy-Authorization", None)
        url = f"{request.scheme}://{authority(host, port)}{request.path}"
        fronted = state.fronted or _misdirected(state, request, host, port)
        verdicted = await self._judge(state, host, port, scheme=request.scheme,
                                      path=request.path, method=request.method,
                                      fronted=fronted)
        seq = await self._record(flow, verdicted, "request", url=url, method=request.method)
        if seq is not None and verdicted.status is None:
            flow.metadata[_PENDING] = {"ref": seq, "agent": state.agent,
                                       "host": verdicted.decision.target, "port": port,
                                       "method": request.method, "url": redact_url(url)}

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            # An Alt-Svc offer would send the client to QUIC, around the proxy.
            flow.response.headers.pop("Alt-Svc", None)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:  # an upgraded connection is done at websocket_end
            self._request_done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._request_done(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        messages = flow.websocket.messages if flow.websocket else []
        self._request_done(flow, event="websocket done",
                           sent=sum(len(m.content) for m in messages))

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Dial the address that was checked, never a fresh lookup of the name."""
        server = data.server
        if server.address is None:
            return
        state = self.clients.get(data.client.id)
        host, port = _canonical(str(server.address[0]), server.address[1])
        pinned = state.pins.get((host, port)) if state is not None else None
        if state is not None and state.raw_refused:
            server.error = "gateway: raw TCP refused where each request must be seen"
            return
        if pinned is None:
            server.error = f"gateway: no checked address for {authority(host, port)}"
            return
        if server.sni is None and not _is_ip(host):
            server.sni = host
        server.address = (str(pinned), port)

    async def tcp_start(self, flow: tcp.TCPFlow) -> None:
        state = self.clients.get(flow.client_conn.id)
        if state is None or not state.intercept or state.tunnel is None or self.runtime is None:
            return
        host, port = state.tunnel
        # The policy needs to see requests here, and raw bytes are not requests.
        decision = Decision(Action.NETWORK, host, Verdict.DENY,
                            "raw TCP to a host whose rules need each request seen",
                            self.runtime.policy.mode, port=port, agent=state.agent)
        state.raw_refused = decision.blocks  # server_connect then refuses to dial
        try:
            await durable(self.runtime.record(decision, "proxy", {"event": "tcp"}))
        except AuditUnavailable:
            state.raw_refused = True  # unrecorded means refused, in simulate mode too

    def udp_start(self, flow: udp.UDPFlow) -> None:
        flow.kill()  # QUIC and other UDP: never proxied

    # -- deciding ------------------------------------------------------------------------

    def _agent(self, request: http.Request) -> str:
        if self.runtime is None:
            return ANONYMOUS
        return self.runtime.agents.from_proxy_authorization(
            request.headers.get("Proxy-Authorization"))

    async def _judge(self, state: ClientState, host: str, port: int, *,
                     scheme: str | None = None, path: str | None = None,
                     method: str | None = None, fronted: str | None = None) -> Verdicted:
        """Decide a connection or request to `host` (canonical) and `port`, and pin the
        checked address it may be dialled at."""
        runtime = self.runtime
        if runtime is None:
            decision = Decision(Action.NETWORK, host, Verdict.DENY,
                                "the gateway has no policy", Mode.ENFORCE, port=port)
            return Verdicted(decision, 503, decision.reason)
        key = (host, port)
        decision = runtime.decide_network(host, port, state.agent, scheme=scheme, path=path,
                                          method=method)
        if fronted is not None and decision.verdict is Verdict.ALLOW:
            decision = Decision(Action.NETWORK, decision.target, Verdict.DENY,
                                f"one identity per request: {fronted}", decision.mode,
                                port=decision.port, agent=state.agent)
            return Verdicted(decision, 421 if decision.blocks else None, decision.reason)
        if decision.blocks:
            return Verdicted(decision, 403, decision.reason)
        address = state.pins.get(key)
        if address is None:
            try:
                addresses = await self._resolve(key[0])
            except ResolveError as e:
                return Verdicted(decision, 502, str(e))
            decision = check_addresses(runtime.policy, decision, addresses)
            if decision.blocks:
                return Verdicted(decision, 403, decision.reason)
            address = addresses[0]
            state.pins[key] = address
        return Verdicted(decision, None, decision.reason)

    async def _resolve(self, host: str) -> list[IPAddress]:
        target = parse_network_target(host if ":" not in host else f"[{host}]")
        if target.ip is not None:
            return [target.ip]
        return await self.resolver.resolve(target.host)

    async def _record(self, flow: http.HTTPFlow, verdicted: Verdicted, event: str, *,
                      url: str | None = None, method: str | None = None) -> int | None:
        """Record the decision durably, then answer a refusal; None when refused. An
        entry that cannot be written refuses the request (503): fail closed."""
        details: dict[str, object] = {"event": event,
                                      "client": str(flow.client_conn.peername[0])}
        if method is not None:
            details["method"] = method
        if url is not None:
            details["url"] = redact_url(url)
        if verdicted.status is not None:
            details["status"] = verdicted.status
            if verdicted.status == 502:
                details["error"] = verdicted.reason
        accept = flow.request.headers.get("Accept")
        try:
            if self.runtime is None:
                raise AuditUnavailable("the gateway has no policy")
            seq = await durable(self.runtime.record(verdicted.decision, "proxy", details))
        except AuditUnavailable as e:
            log.error("gateway: refusing %s: audit log unavailable: %s",
                      verdicted.decision.target, e)
            flow.response = refusal(503, verdicted.decision,
                                    f"audit log unavailable: {e}", accept)
            return None
        if verdicted.status is not None:
            flow.response = refusal(verdicted.status, verdicted.decision, verdicted.reason,
                                    accept)
            return None
        return seq

    def _request_done(self, flow: http.HTTPFlow, event: str = "done",
                      sent: int | None = None) -> None:
        """The completion entry of a request that was let through: status, size, time."""
        decided = flow.metadata.pop(_PENDING, None)
        if decided is None or self.runtime is None:
            return
        response = flow.response
        end = response.timestamp_end if response and response.timestamp_end else time.time()
        record: dict[str, object] = {
            "source": "proxy", "action": "network", "event": event, **decided,
            "duration_ms": int((end - flow.request.timestamp_start) * 1000),
            "bytes": sent if sent is not None else _body_bytes(flow),
        }
        if response is not None:
            record["status"] = response.status_code
        if flow.error is not None:
            record["error"] = str(flow.error.msg)[:512]
            record.setdefault("status", 502)  # what the client was answered
        self.runtime.note(record, deferred=True)


def _body_bytes(flow: http.HTTPFlow) -> int:
    total = 0
    for message in (flow.request, flow.response):
        if message is None:
            continue
        if message.raw_content is not None:
            total += len(message.raw_content)
        else:
            length = message.headers.get("Content-Length", "")
            total += int(length) if length.isdigit() else 0
    return total


def _misdirected(state: ClientState, request: http.Request, expected: str,
                 port: int) -> str | None:
    """Why the request names another host than its connection (`expected`, canonical):
    in a tunnel, an absolute-form URL (servers must prefer it to Host); anywhere, the
    Host header (or HTTP/2 :authority)."""
    where = "CONNECT" if state.tunnel else "the request URL"
    named = [("the Host header", request.host_header)]
    if state.tunnel is not None and request.authority:
        named.append(("the request", request.authority))
    for what, text in named:
        if text is None:
            continue
        try:
            target = parse_network_target(text)
        except BadTarget:
            return f"{what} names {text!r}, which is not a host"
        if target.host != expected:
            return f"{where} named {expected} but {what} names {text}"
        if target.port is not None and target.port != port:
            return f"{what} names port {target.port}, the connection port {port}"
    return None


def _canonical(host: str, port: int) -> tuple[str, int]:
    return _canonical_host(host), port


def _canonical_host(host: str) -> str:
    text = host.strip("[]")
    try:
        return parse_network_target(f"[{text}]" if ":" in text else text).host
    except BadTarget:
        return host.lower()


def _is_ip(host: str) -> bool:
    try:
        return parse_network_target(f"[{host}]" if ":" in host else host).ip is not None
    except BadTarget:
        return False


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)

