"""A running gateway's life: policy reloads under load, rejected reloads, SIGHUP, the
admin calls, simulate mode, a clean stop, its sockets, and refusing to start.

Each test runs its own `gateway up` (they change its policy or stop it); traffic goes
through it to a real HTTP server on loopback, and every claim is checked against the
audit log as well as what the client saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.daemon.client import DecisionClient
from tests.support.gateway import RunningGateway
from tests.support.upstreams import HttpUpstream, plain_proxy_request

pytestmark = pytest.mark.slow

HOSTS = "127.0.0.1 a.test b.test c.test\n"
ADMIN_RELOAD = "reload requested on the admin socket"

# Version A allows a.test and denies b.test; version B the reverse, with its rules at
# other indexes. (version, host) -> (verdict, rule): a decision made from parts of both
# versions shows up as a reason from one with a verdict or rule of the other.
EXPECTED = {("A", "a"): ("ALLOW", 0), ("A", "b"): ("DENY", 1),
            ("B", "b"): ("ALLOW", 1), ("B", "a"): ("DENY", 2)}
REASON = re.compile(r"version ([AB]) (allows|denies) ([abc])\.test")


def versioned_policy(version: str, generation: int = 0) -> str:
    """Version A or B of the test policy; `generation` makes each write's text unique."""
    header = f"# generation {generation}\nversion: 1\ndefault: deny\nrules:\n"
    if version == "A":
        rules = [("a", "allow", "allows"), ("b", "deny", "denies")]
    else:
        rules = [("c", "allow", "allows"), ("b", "allow", "allows"), ("a", "deny", "denies")]
    return header + "".join(
        f'  - action: network\n    host: "{host}.test"\n    effect: {effect}\n'
        f'    reason: "version {version} {verb} {host}.test"\n' for host, effect, verb in rules)


INVALID_POLICY = ('version: 1\ndefault: deny\nrules:\n  - action: network\n'
                  '    host: "a.test"\n    effect: perhaps\n')
"""Rejected at line 6: an effect is allow or deny."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def replace_like_an_editor(path: Path, text: str) -> None:
    """Write a temporary file beside `path` and rename it over `path`."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_unseen(gateway: RunningGateway, text: str) -> None:
    """Rewrite the policy in place through a hard link in another directory: the
    watcher watches the policy's directory, so only SIGHUP or `gateway reload` loads it."""
    link = gateway.dir / "elsewhere" / "policy-link.yaml"
    if not link.exists():
        link.parent.mkdir()
        os.link(gateway.policy_path, link)
    with open(link, "r+") as f:
        f.write(text)
        f.truncate()


def status_of(gateway: RunningGateway) -> tuple[int, dict[str, Any]]:
    result = gateway.gateway_command("status", "--json")
    return result.returncode, json.loads(result.stdout)


def policy_events(gateway: RunningGateway, event: str, count: int = 1,
                  timeout: float = 5.0) -> list[dict[str, object]]:
    return gateway.wait_for(lambda e: e.get("action") == "policy" and e.get("event") == event,
                            count=count, timeout=timeout)


def get(gateway: RunningGateway, url: str) -> tuple[int, dict[str, str], bytes]:
    return plain_proxy_request(gateway.proxy_host, gateway.proxy_port, url)


def decision_for(gateway: RunningGateway, url: str) -> dict[str, object]:
    found = gateway.wait_for(lambda e: "verdict" in e and e.get("url") == url)
    assert found, f"no audit entry for {url}"
    return found[-1]


@pytest.fixture(scope="module")
def upstream() -> Iterator[HttpUpstream]:
    with HttpUpstream() as server:
        yield server
        assert server.errors == [], server.errors


@pytest.fixture
def launch(upstream: HttpUpstream, tmp_path: Path) -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways for one test; each must stop cleanly with a log that verifies."""
    upstream.clear()
    started: list[RunningGateway] = []

    def start(policy: str, **options: Any) -> RunningGateway:
        gateway = RunningGateway(tmp_path / f"gateway{len(started)}", policy, hosts=HOSTS,
                                 **options)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        code = gateway.stop()
        assert code == 0, gateway.read_stderr()
        assert "audit log flushed" in gateway.read_stderr()
        verified = gateway.verify()
        assert verified.returncode == 0, verified.stdout + verified.stderr


# -- reloading ------------------------------------------------------------------------


def test_policy_replaced_while_requests_flow(launch: Callable[..., RunningGateway], upstream: HttpUpstream) -> None:
    """Ten editor-style rewrites between A and B under a steady stream of requests:
    every request is decided by one whole version, and answered 200 or 403 to match."""
    gateway = launch(versioned_policy("A"))
    clients, per_client, rewrites = 4, 100, 10
    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(per_client):
            url = f"http://{'ab'[i % 2]}.test:{upstream.port}/c{n}/r{i}"
            try:
                answer = get(gateway, url)
            except OSError as e:
                with lock:
                    failures.append(f"{url}: {type(e).__name__}: {e}")
            else:
                with lock:
                    answers[url] = answer
            time.sleep(0.03)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    written = []
    for generation in range(1, rewrites + 1):
        time.sleep(0.4)
        text = versioned_policy("AB"[generation % 2], generation)
        replace_like_an_editor(gateway.policy_path, text)
        written.append(text)
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert len(answers) == clients * per_client
    decided = {e["url"]: e for e in gateway.entries() if e.get("event") == "request"}
    seen = set()
    for url, (status, headers, body) in answers.items():
        assert status in (200, 403), (url, status, body)
        entry = decided[url]
        reason = str(entry["reason"])
        match = REASON.fullmatch(reason)
        assert match, f"{url}: the reason names no single version: {reason!r}"
        version, _, host = match.groups()
        assert url.startswith(f"http://{host}.test:"), f"{url} decided by a rule for {host}.test"
        assert (entry["verdict"], entry["rule"]) == EXPECTED[(version, host)], (url, entry)
        assert status == (200 if entry["verdict"] == "ALLOW" else 403), (url, status, entry)
        if status == 403:
            assert f"({reason})" in body.decode()
            assert headers["x-gateway-reason"] == reason
            assert headers["x-gateway-rule"] == str(entry["rule"])
        seen.add((version, host))
    assert seen == set(EXPECTED)  # both versions decided requests for both hosts

    deadline = time.monotonic() + 5
    while (health := status_of(gateway)[1])["policy"]["sha256"] != sha256(written[-1]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health["policy"]["sha256"] == sha256(written[-1])
    assert health["policy"]["reloads"] > 0 and health["policy"]["last_error"] is None
    # The last write must be loaded; an earlier one may be merged with the next.
    assert gateway.wait_for(lambda e: e.get("event") == "loaded"
                            and e.get("sha256") == sha256(written[-1]))
    loaded = policy_events(gateway, "loaded")
    assert len(loaded) >= 2 and loaded[-1]["sha256"] == sha256(written[-1])
    assert {e["sha256"] for e in loaded} <= {sha256(text) for text in written}
    assert not policy_events(gateway, "rejected", timeout=0)


def test_invalid_policy_is_rejected_and_the_old_one_keeps_deciding(launch: Callable[..., RunningGateway], upstream: HttpUpstream) -> None:
    """A policy that does not load is rejected whole: the running one still decides,
    status names FILE:LINE and exits 1, until the file is fixed."""
    gateway = launch(versioned_policy("A"))
    replace_like_an_editor(gateway.policy_path, INVALID_POLICY)
    rejected = policy_events(gateway, "rejected")
    assert rejected, gateway.read_stderr()
    where = f"{gateway.policy_path}:6: "
    assert str(rejected[0]["reason"]).startswith(f"policy file changed: {where}")
    assert "policy change rejected, the running policy stays" in gateway.read_stderr()

    url = f"http://b.test:{upstream.port}/after-rejection"
    status, _, body = get(gateway, url)
    assert status == 403 and b"version A denies b.test" in body
    assert decision_for(gateway, url)["reason"] == "version A denies b.test"
    code, health = status_of(gateway)
    assert code == 1
    assert health["policy"]["last_error"].startswith(where)
    assert health["policy"]["sha256"] == sha256(versioned_policy("A"))

    fixed = versioned_policy("B", 1)
    replace_like_an_editor(gateway.policy_path, fixed)
    assert policy_events(gateway, "loaded")
    code, health = status_of(gateway)
    assert code == 0 and health["policy"]["last_error"] is None
    assert health["policy"]["sha256"] == sha256(fixed)
    assert get(gateway, f"http://b.test:{upstream.port}/fixed")[0] == 200


def test_sighup_reloads_a_change_the_watcher_cannot_see(launch: Callable[..., RunningGateway], upstream: HttpUpstream) -> None:
    """A change the watcher misses is loaded on SIGHUP, audited with reason SIGHUP."""
    gateway = launch(versioned_policy("A"))
    write_unseen(gateway, versioned_policy("B"))
    time.sleep(0.6)  # well past the watcher's settling time
    assert get(gateway, f"http://a.test:{upstream.port}/before")[0] == 200
    assert not policy_events(gateway, "loaded", timeout=0)

    gateway.signal(signal.SIGHUP)
    loaded = policy_events(gateway, "loaded")
    assert loaded and loaded[0]["reason"] == "SIGHUP"
    assert loaded[0]["changed"] is True and loaded[0]["sha256"] == sha256(versioned_policy("B"))
    status, _, body = get(gateway, f"http://a.test:{upstream.port}/after")
    assert status == 403 and b"version B denies a.test" in body
    assert "policy reloaded (SIGHUP)" in gateway.read_stderr()


def test_gateway_reload_loads_or_reports_the_rejection(launch: Callable[..., RunningGateway], upstream: HttpUpstream) -> None:
    """`gateway reload` loads a changed policy (exit 0); an invalid one is rejected with
    FILE:LINE (exit 1) and the loaded one stays."""
    gateway = launch(versioned_policy("A"))
    write_unseen(gateway, versioned_policy("B"))
    result = gateway.gateway_command("reload")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gateway: policy reloaded"
    loaded = policy_events(gateway, "loaded")
    assert loaded and loaded[0]["reason"] == ADMIN_RELOAD
    assert loaded[0]["sha256"] == sha256(versioned_policy("B"))
    assert get(gateway, f"http://b.test:{upstream.port}/")[0] == 200

    write_unseen(gateway, INVALID_POLICY)
    result = gateway.gateway_command("reload")
    assert result.returncode == 1
    assert result.stderr.startswith("gateway: reload rejected, the running policy stays: "
                                    f"{gateway.policy_path}:6: ")
    rejected = policy_events(gateway, "rejected")
    assert rejected and str(rejected[0]["reason"]).startswith(f"{ADMIN_RELOAD}: ")
    assert get(gateway, f"http://b.test:{upstream.port}/")[0] == 200
    code, health = status_of(gateway)
    assert code == 1 and health["policy"]["sha256"] == sha256(versioned_policy("B"))


# -- simulate mode ----------------------------------------------------------------------


def test_simulate_lets_a_denied_request_through_and_reports_it(launch: Callable[..., RunningGateway], upstream: HttpUpstream, tmp_path: Path) -> None:
    """In simulate mode a denied request reaches the upstream, is logged as a would-deny,
    and `gateway report` suggests a policy that allows it."""
    gateway = launch(versioned_policy("A"), simulate=True)
    url = f"http://c.test:{upstream.port}/data"
    assert get(gateway, url)[0] == 200
    assert [(r.method, r.path, r.headers["host"]) for r in upstream.requests] == [
        ("GET", "/data", f"c.test:{upstream.port}")]
    entry = decision_for(gateway, url)
    assert (entry["verdict"], entry["mode"], entry["rule"]) == ("DENY", "simulate", "default")
    assert "status" not in entry
    code, health = status_of(gateway)
    assert code == 0 and health["policy"]["mode"] == "simulate"
    assert health["decisions"]["would_deny"] == 1

    report = subprocess.run([sys.executable, "-m", "gateway", "report", str(gateway.audit_log),
                             "--policy", str(gateway.policy_path), "--format", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["totals"]["would_deny"] == 1
    assert [t["target"] for group in summary["would_deny"] for t in group["targets"]] == [
        f"c.test:{upstream.port} GET {url}"]
    suggested = tmp_path / "suggested.yaml"
    suggested.write_text(summary["suggestion"]["policy"])
    asked = "".join(json.dumps({"action": "network", "target": target, "method": "GET",
                                "agent": "anonymous"}) + "\n"
                    for target in (url, f"http://c.test:{upstream.port}/other"))
    judged = subprocess.run([sys.executable, "-m", "gateway", "eval", "--policy", str(suggested),
                             "--batch", "-"], input=asked, capture_output=True, text=True,
                            timeout=60, check=False)
    assert judged.returncode == 0, judged.stderr
    assert [json.loads(line)["verdict"] for line in judged.stdout.splitlines()] == [
        "ALLOW", "DENY"]


# -- stopping ---------------------------------------------------------------------------


def test_sigterm_stops_cleanly_and_loses_nothing(launch: Callable[..., RunningGateway], upstream: HttpUpstream) -> None:
    """SIGTERM while requests flow: exit 0, the log flushed and verified, and every
    request that was answered has its decision and completion in the log."""
    gateway = launch(versioned_policy("A"))
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            url = f"http://a.test:{upstream.port}/last/{i}"
            try:
                if get(gateway, url)[0] == 200:
                    answered.append(url)
            except OSError:
                return  # the gateway has stopped listening
            i += 1

    thread = threading.Thread(target=client)
    thread.start()
    while len(answered) < 20 and thread.is_alive():
        time.sleep(0.01)
    gateway.signal(signal.SIGTERM)
    try:
        code = gateway.process.wait(15)
    finally:
        stop.set()
        thread.join(15)
    assert code == 0, gateway.read_stderr()
    assert "gateway: stopped; audit log flushed" in gateway.read_stderr()
    assert "Traceback" not in gateway.read_stderr()
    verified = gateway.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr

    entries = gateway.entries()
    decided = {e["url"]: e for e in entries if e.get("event") == "request"}
    done = {e["ref"]: e for e in entries if e.get("event") == "done"}
    assert len(answered) >= 20
    for url in answered:
        assert decided[url]["verdict"] == "ALLOW", url
        assert done[decided[url]["seq"]]["status"] == 200, url
    assert not (gateway.state / "admin.sock").exists()
    assert not (gateway.state / "api.sock").exists()


# -- sockets and the decision API -------------------------------------------------------


def test_sockets_modes_and_the_decision_api_over_tcp(launch: Callable[..., RunningGateway]) -> None:
    """The admin socket is owner-only, the decision API socket open to all; over TCP
    the API decides a command and records it in the same log, under the caller's source."""
    gateway = launch(versioned_policy("A") + '  - action: shell_exec\n    command: "ls*"\n'
                     '    effect: allow\n    reason: "listing is fine"\n')
    for name, mode in (("admin.sock", 0o600), ("api.sock", 0o666)):
        info = os.stat(gateway.state / name)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == mode, name
    assert gateway.api_tcp is not None
    host, port = gateway.api_tcp
    for source, command, verdict in (("cli", "ls -la", "ALLOW"), ("shim", "rm -rf /", "DENY")):
        with DecisionClient(f"tcp:{host}:{port}", source=source) as client:
            reply = client.decide("shell_exec", command)
        assert reply["verdict"] == verdict and reply["blocks"] is (verdict == "DENY")
        found = gateway.wait_for(lambda e, seq=reply["seq"]: e.get("seq") == seq)
        assert found, reply
        entry = found[0]
        assert (entry["source"], entry["action"], entry["command"], entry["verdict"]) == \
            (source, "shell_exec", command, verdict)
        assert entry["reason"] == reply["reason"]
    code, health = status_of(gateway)
    assert code == 0 and health["decisions"]["by_source"] == {"cli": 1, "shim": 1}


# -- refusing to start ------------------------------------------------------------------


def gateway_up(tmp_path: Path, policy: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return subprocess.run([sys.executable, "-m", "gateway", "up", "--policy", str(path),
                           "--state-dir", str(tmp_path / "state"), *args],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(("policy", "line", "why"), [
    pytest.param(INVALID_POLICY, 6, "rules.0.effect: Input should be 'allow' or 'deny'",
                 id="bad-value"),
    pytest.param("version: 1\ndefault: deny\nrules:\n  - action: network\n    host: [a.test\n",
                 6, "invalid YAML", id="bad-yaml"),
    pytest.param("version: 1\ndefault: deny\nrules:\n  - action: network\n    host: a.test\n"
                 "    host: b.test\n    effect: allow\n", 6, "duplicate key 'host'",
                 id="duplicate-key"),
])
def test_up_with_a_bad_policy_exits_2_with_one_line(tmp_path: Path, policy: str, line: int, why: str) -> None:
    """A policy that does not load stops `gateway up` with exit 2 and one line naming
    FILE:LINE, no traceback."""
    result = gateway_up(tmp_path, policy, "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"gateway: {tmp_path / 'policy.yaml'}:{line}: ")
    assert why in result.stderr


@pytest.mark.parametrize("option", ["--listen", "--api-listen"])
def test_up_on_a_port_in_use_fails_with_a_clear_message(tmp_path: Path, option: str) -> None:
    """A proxy or API port already taken stops `gateway up` with an error on stderr that
    names the address, no traceback, and no environment lines for an agent."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        args = ["--listen", "127.0.0.1:0", option, address] if option == "--api-listen" \
            else ["--listen", address]
        result = gateway_up(tmp_path, versioned_policy("A"), *args)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert address in result.stderr and "address already in use" in result.stderr.lower()
    assert "HTTP_PROXY=" not in result.stdout
    assert "--mode" not in output  # mitmproxy's own hint names an option gateway lacks
