"""The egress proxy with real clients and real servers on loopback.

One `gateway up` serves the whole module; each upstream is a real server whose records
show what reached it, so a refusal is checked where it matters: the upstream was never
contacted. Each case also finds its decision in the audit log.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.agents import token_sha256
from tests.support.certs import shared_ca
from tests.support.gateway import RunningGateway
from tests.support.upstreams import (
    GitHttpsUpstream,
    HttpsUpstream,
    HttpUpstream,
    RawTcpUpstream,
    WebSocketUpstream,
    plain_proxy_request,
    raw_connect,
    ws_roundtrip,
)

pytestmark = pytest.mark.slow

TOKEN = "analyst-token-0123456789"
NAMES = ("api.test", "web.test", "git.test", "ws.test", "port.test", "denied.test",
         "x.wild.test", "team.test", "raw.test")


class Upstreams:
    def __init__(self) -> None:
        self.http = HttpUpstream().start()
        self.https = HttpsUpstream(NAMES, http2=True).start()
        self.git = GitHttpsUpstream(NAMES).start()
        self.ws = WebSocketUpstream(tls=True, names=NAMES).start()
        self.raw = RawTcpUpstream().start()
        self.all = (self.http, self.https, self.git, self.ws, self.raw)

    def stop(self) -> None:
        for server in self.all:
            server.stop()


def policy_text(up: Upstreams) -> str:
    return f"""version: 1
default: deny
rules:
  - action: network                    # 0: plain HTTP and HTTPS passthrough
    host: "api.test"
    effect: allow
    reason: "API host"
  - action: network                    # 1: decrypted, GET and HEAD only
    host: "web.test"
    methods: [GET, HEAD]
    effect: allow
  - action: network                    # 2
    host: "web.test"
    paths: ["/admin/**"]
    effect: deny
    reason: "no admin pages"
  - action: network                    # 3: clone yes, push no
    host: "git.test"
    effect: allow
  - action: network                    # 4
    host: "git.test"
    methods: [POST]
    paths: ["/*/git-receive-pack"]
    effect: deny
    reason: "pushing is not allowed"
  - action: network                    # 5: websockets on one path
    host: "ws.test"
    paths: ["/chat"]
    effect: allow
  - action: network                    # 6: one port only
    host: "port.test"
    ports: [{up.https.port}]
    effect: allow
  - action: network                    # 7: a wildcard never reaches loopback
    host: "*.wild.test"
    effect: allow
  - action: network                    # 8: one agent only
    host: "team.test"
    agents: [analyst]
    effect: allow
  - action: network                    # 9: an IP literal, one port
    host: "127.0.0.1"
    ports: [{up.http.port}]
    effect: allow
  - action: network                    # 10: raw TCP allowed to this host
    host: "raw.test"
    effect: allow
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    up = Upstreams()
    yield up
    up.stop()
    for server in up.all:
        assert server.errors == [], server.errors


@pytest.fixture(scope="module")
def gateway(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    hosts = "127.0.0.1 " + " ".join(NAMES) + "\n"
    agents = f'version: 1\nagents:\n  - name: analyst\n    token_sha256: "{token_sha256(TOKEN)}"\n'
    gw = RunningGateway(tmp_path_factory.mktemp("gateway"), policy_text(upstreams),
                        hosts=hosts, agents=agents, upstream_ca=shared_ca().ca_path)
    yield gw
    code = gw.stop()
    assert code == 0, gw.read_stderr()
    assert "audit log flushed" in gw.read_stderr()
    verified = gw.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture(autouse=True)
def _fresh_records(upstreams: Upstreams) -> None:
    for server in upstreams.all:
        server.clear()


def _status(result: subprocess.CompletedProcess[str]) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1] or 0)


def _last(gateway: RunningGateway, **match: object) -> dict[str, object]:
    found = gateway.wait_for(lambda e: "verdict" in e and all(e.get(k) == v for k, v in match.items()))
    assert found, f"no audit entry with {match}"
    return found[-1]


# -- allowed traffic ----------------------------------------------------------------------


def test_curl_plain_http_is_decided_forwarded_and_recorded(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """An allowed plain-HTTP request reaches the upstream; decision and completion are logged."""
    result = gateway.curl("-o", "/dev/null",
                          f"http://api.test:{upstreams.http.port}/size/1024?page=2&token=s3cret",
                          write_out="%{size_download} ")
    assert _status(result) == 200 and result.stdout.split()[0] == "1024"
    assert [r.path for r in upstreams.http.requests] == ["/size/1024?page=2&token=s3cret"]
    assert "proxy-authorization" not in upstreams.http.requests[0].headers
    entry = _last(gateway, host="api.test", event="request")
    assert entry["verdict"] == "ALLOW" and entry["rule"] == 0 and entry["reason"] == "API host"
    assert entry["method"] == "GET" and entry["agent"] == "anonymous"
    assert entry["url"] == f"http://api.test:{upstreams.http.port}/size/1024?page=2&token=REDACTED"
    done = gateway.wait_for(lambda e: e.get("event") == "done" and e.get("ref") == entry["seq"])
    assert done and done[0]["status"] == 200 and done[0]["bytes"] == 1024
    assert isinstance(done[0]["duration_ms"], int)


def test_requests_https_passthrough_is_never_decrypted(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """A host without methods/paths rules is tunnelled: the client sees the upstream's own
    certificate, the upstream sees the client's SNI, and the CONNECT is what is logged."""
    response = requests.get(f"https://api.test:{upstreams.https.port}/size/2048",
                            proxies={"https": gateway.proxy_url}, verify=str(shared_ca().ca_path),
                            timeout=10)
    assert response.status_code == 200 and len(response.content) == 2048
    assert [t.sni for t in upstreams.https.tls] == ["api.test"]
    entry = _last(gateway, host="api.test", event="connect", port=upstreams.https.port)
    assert entry["verdict"] == "ALLOW" and entry["client"] == "127.0.0.1"
    assert not gateway.decisions(host="api.test", event="request", port=upstreams.https.port)


def test_requests_intercepted_host_is_checked_request_by_request(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """Methods and paths rules decrypt the host: GET passes, POST and /admin are refused."""
    session = requests.Session()
    # The gateway's certificate, not the upstream's (a request's verify beats the environment).
    options = {"proxies": {"https": gateway.proxy_url}, "verify": str(gateway.ca_cert),
               "timeout": 10}
    base = f"https://web.test:{upstreams.https.port}"
    assert session.get(f"{base}/size/10", **options).status_code == 200
    posted = session.post(f"{base}/items", data=b"x" * 100,
                          headers={"Accept": "application/json"}, **options)
    assert posted.status_code == 403
    body = posted.json()
    assert body["verdict"] == "DENY" and body["rule"] == "default" and "POST" not in body["target"]
    admin = session.get(f"{base}/admin/users", **options)
    assert admin.status_code == 403 and "no admin pages" in admin.text
    assert admin.headers["X-Gateway-Rule"] == "2"
    assert [(r.method, r.path) for r in upstreams.https.requests] == [("GET", "/size/10")]
    assert _last(gateway, host="web.test", method="POST")["verdict"] == "DENY"
    assert _last(gateway, host="web.test", method="GET", verdict="DENY")["rule"] == 2


def test_git_clone_is_allowed_and_push_refused(gateway: RunningGateway, upstreams: Upstreams, tmp_path: Path) -> None:
    """git over HTTPS: fetching works, git-receive-pack is refused before the server sees it."""
    upstreams.git.make_repo("repo.git", {"README": b"hello\n"})
    env = gateway.env() | {"GIT_SSL_CAINFO": str(gateway.ca_cert), "GIT_TERMINAL_PROMPT": "0",
                           "HOME": str(tmp_path)}
    url = upstreams.git.repo_url("repo.git", name="git.test")
    clone = subprocess.run(["git", "clone", "-q", url, str(tmp_path / "work")], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert clone.returncode == 0, clone.stderr
    assert (tmp_path / "work" / "README").read_text() == "hello\n"
    work = ["git", "-C", str(tmp_path / "work")]
    subprocess.run([*work, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q",
                    "--allow-empty", "-m", "x"], env=env, check=True, timeout=30)
    push = subprocess.run([*work, "push", "-q", "origin", "HEAD"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert push.returncode != 0 and "403" in push.stderr
    assert not [r for r in upstreams.git.requests if r.path.endswith("/git-receive-pack")]
    denied = _last(gateway, host="git.test", method="POST", verdict="DENY")
    assert denied["rule"] == 4 and denied["reason"] == "pushing is not allowed"
    assert denied["url"] == f"https://git.test:{upstreams.git.port}/repo.git/git-receive-pack"


def test_http2_through_an_intercepted_tunnel(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """curl --http2 speaks HTTP/2 to the gateway; the request is decided like any other."""
    result = gateway.curl("--http2", "-o", "/dev/null",
                          f"https://web.test:{upstreams.https.port}/size/100",
                          write_out="%{http_version} ")
    assert result.stdout.split()[0] == "2" and _status(result) == 200
    assert _last(gateway, host="web.test", url=f"https://web.test:{upstreams.https.port}/size/100")


def test_websocket_upgrades_are_requests(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """A websocket upgrade is decided on its path; an allowed one echoes both ways."""
    args = (gateway.proxy_host, gateway.proxy_port, "ws.test", upstreams.ws.port)
    assert ws_roundtrip(*args, tls=True, ca_path=gateway.ca_cert, path="/chat") == (101, "hello")
    assert ws_roundtrip(*args, tls=True, ca_path=gateway.ca_cert, path="/other") == (403, None)
    assert [r.path for r in upstreams.ws.requests] == ["/chat"]
    assert _last(gateway, host="ws.test", url=f"https://ws.test:{upstreams.ws.port}/chat")["verdict"] == "ALLOW"
    assert gateway.wait_for(lambda e: e.get("event") == "websocket done" and e.get("host") == "ws.test")


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_denied_host_never_reaches_the_upstream(gateway: RunningGateway, upstreams: Upstreams, scheme: str) -> None:
    """A host no rule allows gets 403, and the server behind its name never sees a connection."""
    server = upstreams.http if scheme == "http" else upstreams.https
    result = gateway.curl(f"{scheme}://denied.test:{server.port}/")
    assert _status(result) == 403 if scheme == "http" else "403" in result.stderr
    assert server.connections == 0
    entry = _last(gateway, host="denied.test")
    assert entry["verdict"] == "DENY" and entry["status"] == 403
    assert entry["reason"] == "denied.test matches no allow rule; the policy default is deny"


def test_denied_port_never_reaches_the_upstream(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """A host allowed on one port is refused on another."""
    assert "200" in gateway.curl("-o", "/dev/null", "--cacert", str(shared_ca().ca_path),
                                 f"https://port.test:{upstreams.https.port}/").stdout
    result = gateway.curl(f"http://port.test:{upstreams.http.port}/")
    assert _status(result) == 403 and upstreams.http.connections == 0
    assert _last(gateway, host="port.test", port=upstreams.http.port)["verdict"] == "DENY"


@pytest.mark.parametrize("spelling", ["127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.1",
                                      "0x7f000001", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"])
def test_ip_literals_in_every_spelling_are_one_address(gateway: RunningGateway, upstreams: Upstreams, spelling: str) -> None:
    """Each spelling of 127.0.0.1 is judged (and dialled) as 127.0.0.1: allowed on the
    port the rule names, refused on another, whatever the spelling."""
    allowed = plain_proxy_request(gateway.proxy_host, gateway.proxy_port,
                                  f"http://{spelling}:{upstreams.http.port}/x")
    assert allowed[0] == 200 and [r.path for r in upstreams.http.requests] == ["/x"]
    assert _last(gateway, host="127.0.0.1", port=upstreams.http.port, event="request")["verdict"] == "ALLOW"
    refused = raw_connect(gateway.proxy_host, gateway.proxy_port,
                          f"{spelling}:{upstreams.raw.port}", sni=None, host_header=None,
                          ca_path=None)
    assert refused.connect_status == 403 and upstreams.raw.connections == 0
    assert _last(gateway, host="127.0.0.1", port=upstreams.raw.port)["reason"] == \
        "127.0.0.1 is loopback; only a rule naming it may allow it"


def test_wildcard_name_resolving_to_loopback_is_refused(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """DNS rebinding: a name a wildcard allows may not resolve to a special address."""
    result = gateway.curl(f"http://x.wild.test:{upstreams.raw.port}/")
    assert _status(result) == 403 and upstreams.raw.connections == 0
    assert "resolves to 127.0.0.1, which is loopback" in result.stdout
    entry = _last(gateway, host="x.wild.test")
    assert entry["verdict"] == "DENY" and "only a rule naming the host exactly" in str(entry["reason"])


@pytest.mark.parametrize(("connect", "sni", "host", "why"), [
    ("api.test", "web.test", "web.test", "CONNECT named api.test but the TLS SNI names web.test"),
    ("web.test", "web.test", "api.test", "CONNECT named web.test but the Host header names api.test"),
    ("web.test", "WEB.test", "denied.test", "the Host header names denied.test"),
    ("web.test", "api.test", "api.test", "the TLS SNI names api.test"),
])
def test_sni_and_host_must_name_the_connect_host(gateway: RunningGateway, upstreams: Upstreams, connect: str, sni: str, host: str, why: str) -> None:
    """Domain fronting: authority, SNI and Host disagreeing gets 421, nothing goes upstream."""
    port = upstreams.https.port
    result = raw_connect(gateway.proxy_host, gateway.proxy_port, f"{connect}:{port}", sni=sni,
                         host_header=f"{host}:{port}", ca_path=gateway.ca_cert, verify=False)
    assert (result.connect_status, result.http_status) == (200, 421)
    assert why in result.body.decode()
    assert upstreams.https.requests == [] and upstreams.https.connections == 0
    entry = _last(gateway, status=421)
    assert entry["verdict"] == "DENY" and why in str(entry["reason"])


def test_plain_request_whose_host_header_differs_is_misdirected(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """An absolute URL for one host with a Host header for another gets 421."""
    status, _, body = plain_proxy_request(gateway.proxy_host, gateway.proxy_port,
                                          f"http://api.test:{upstreams.http.port}/",
                                          host_header="denied.test")
    assert status == 421 and b"Host header names denied.test" in body
    assert upstreams.http.connections == 0


def test_agent_credentials_select_per_agent_rules(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """The right name and token make the agent; none or a wrong token is 'anonymous'."""
    url = f"http://team.test:{upstreams.http.port}/who"
    assert _status(gateway.curl(url, credentials=f"analyst:{TOKEN}")) == 200
    assert _status(gateway.curl(url)) == 403
    assert _status(gateway.curl(url, credentials="analyst:wrong")) == 403
    assert [r.path for r in upstreams.http.requests] == ["/who"]
    assert "proxy-authorization" not in upstreams.http.requests[0].headers
    entries = gateway.decisions(host="team.test")[-3:]
    assert [(e["agent"], e["verdict"]) for e in entries] == [
        ("analyst", "ALLOW"), ("anonymous", "DENY"), ("anonymous", "DENY")]


def test_raw_tcp_flows_only_where_requests_need_not_be_seen(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """A tunnel carrying raw bytes works to an allowed host:port, and is cut where the
    policy must see each request (the host's rules have methods/paths)."""
    import socket

    def tunnel(host: str) -> bytes:
        with socket.create_connection((gateway.proxy_host, gateway.proxy_port), timeout=5) as s:
            s.sendall(f"CONNECT {host}:{upstreams.raw.port} HTTP/1.1\r\n\r\n".encode())
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
            s.sendall(b"\x00\x01raw bytes\r\n")
            try:
                return s.recv(1024)
            except (ConnectionResetError, TimeoutError):
                return b""
    assert tunnel("raw.test") == b"\x00\x01raw bytes\r\n"
    assert tunnel("web.test") == b""
    assert len(upstreams.raw.received) == 1
    assert gateway.wait_for(lambda e: e.get("event") == "tcp" and e.get("host") == "web.test")


def test_status_reports_counts_and_health(gateway: RunningGateway) -> None:
    """`gateway status --json` shows the policy hash, counts and audit health."""
    result = gateway.gateway_command("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["policy"]["mode"] == "enforce" and len(status["policy"]["sha256"]) == 64
    assert status["audit"]["ok"] is True and status["decisions"]["total"] > 0
    assert status["decision_us"]["count"] > 0 and status["agents"] == ["analyst"]


def test_an_absolute_url_inside_a_tunnel_must_name_the_tunnel_host(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """`GET http://other/` sent inside a CONNECT to an allowed host is misdirected (421)."""
    result = raw_connect(gateway.proxy_host, gateway.proxy_port, f"web.test:{upstreams.https.port}",
                         sni="web.test", host_header=f"web.test:{upstreams.https.port}",
                         ca_path=gateway.ca_cert, path=f"http://denied.test:{upstreams.http.port}/x")
    assert (result.connect_status, result.http_status) == (200, 421)
    assert b"but the request names denied.test" in result.body
    assert upstreams.http.connections == 0 and upstreams.https.requests == []


def test_a_tunnel_without_sni_is_decrypted_so_its_host_header_is_checked(gateway: RunningGateway, upstreams: Upstreams) -> None:
    """No SNI to compare: the gateway decrypts, and a Host for another site gets 421."""
    import socket
    import ssl

    with socket.create_connection((gateway.proxy_host, gateway.proxy_port), timeout=5) as raw:
        raw.sendall(f"CONNECT api.test:{upstreams.https.port} HTTP/1.1\r\n\r\n".encode())
        assert raw.recv(1024).startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=str(gateway.ca_cert))
        context.check_hostname = False  # no server_hostname: no SNI is sent
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 421") and upstreams.https.connections == 0
