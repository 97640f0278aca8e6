"""The decision API over real sockets: decisions are answered only once recorded, credentials
choose the agent, bad lines get an error and the connection goes on, a failed log fails closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.agents import add_agent
from gateway.audit.reader import iter_entries
from gateway.audit.writer import AuditWriter
from gateway.daemon.api import MAX_LINE_BYTES, DecisionApi
from gateway.daemon.client import DecisionClient, GatewayUnreachable
from gateway.errors import GatewayError
from gateway.runtime import Runtime
from tests.support.disks import small_tmpfs
from tests.support.eventloop import run

KEY = b"k" * 32
POLICY = """\
version: 1
default: deny
rules:
  - {action: network, host: allowed.example, effect: allow}
  - {action: network, host: blocked.example, effect: deny, reason: blocked for the test}
  - {action: network, host: coder.example, agents: [coder], effect: allow}
  - {action: file_read, path: "/data/**", effect: allow}
  - {action: shell_exec, command: "python*", effect: allow}
  - {action: shell_exec, command: "rm*", effect: deny}
"""
GOOD = b'{"action": "network", "target": "allowed.example"}'


@dataclass
class Gateway:
    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    writer: AuditWriter
    api: DecisionApi
    log: Path
    token: str

    @property
    def sock(self) -> str:
        assert self.api.unix_path is not None
        return os.fspath(self.api.unix_path)

    def entry(self, seq: int) -> dict[str, object]:
        return next(e for e in iter_entries(self.log) if e["seq"] == seq)

    def decisions(self) -> list[dict[str, object]]:
        return [e for e in iter_entries(self.log) if "verdict" in e]


@pytest.fixture
def start(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Callable[..., Gateway]]:
    """Starts a gateway (policy, agents file with `coder`, writer, API on a Unix socket
    and 127.0.0.1 port 0) and closes it at the end."""
    made: list[Gateway] = []

    def make(*, simulate: bool = False, log_dir: Path = tmp_path) -> Gateway:
        policy, agents = tmp_path / "policy.yaml", tmp_path / "agents.yaml"
        policy.write_text(POLICY)
        token = add_agent(agents, "coder")
        log = log_dir / "audit.jsonl"
        writer = AuditWriter(log, key=KEY)
        writer.start()
        runtime = Runtime(policy, writer, agents_path=agents, simulate=simulate)
        api = DecisionApi(runtime, unix_path=tmp_path / "api.sock", tcp=("127.0.0.1", 0))
        run(loop, api.start())
        made.append(Gateway(loop, runtime, writer, api, log, token))
        return made[-1]

    yield make
    for gw in made:
        run(loop, gw.api.close())
        gw.writer.close()


def exchange(address: str, lines: list[bytes], replies: int | None = None) -> list[dict[str, Any]]:
    """Send `lines` at once on one raw connection and read one reply each."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(address)
        sock.sendall(b"".join(line + b"\n" for line in lines))
        return [orjson.loads(line) for line in read_lines(sock, replies or len(lines))]


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    buffer = b""
    while buffer.count(b"\n") < count:
        data = sock.recv(65536)
        assert data, f"connection closed before {count} replies"
        buffer += data
    return buffer.split(b"\n")[:count]


@pytest.mark.parametrize("action,target,verdict,rule,reason", [
    ("network", "allowed.example", "ALLOW", 0, "allowed by rule 0 {action: network, host: allowed.example, effect: allow}"),
    ("network", "blocked.example", "DENY", 1, "blocked for the test"),
    ("network", "other.example", "DENY", "default", "other.example matches no allow rule; the policy default is deny"),
    ("file_read", "/data/x/../y", "ALLOW", 3, 'allowed by rule 3 {action: file_read, path: "/data/**", effect: allow}'),
    ("shell_exec", "ls", "DENY", "default", "ls matches no allow rule; the policy default is deny"),
    ("network", "", "DENY", "default", "bad input: "),
], ids=["allow", "deny-rule", "deny-default", "file-normalised", "command", "bad-target"])
def test_decisions_are_answered_and_recorded(start: Callable[..., Gateway], action: str, target: str,
                                             verdict: str, rule: object, reason: str) -> None:
    """The reply carries the engine's verdict, rule and reason, and the same decision is in the log under the reply's seq."""
    gw = start()
    with DecisionClient(gw.sock, source="shim") as client:
        reply = client.decide(action, target, details={"pid": 42, "script": "run.sh"})
    assert (reply["action"], reply["verdict"], reply["rule"]) == (action, verdict, rule)
    assert reply["reason"].startswith(reason)
    assert reply["blocks"] is (verdict == "DENY")
    assert reply["agent"] == "anonymous" and reply["mode"] == "enforce"
    entry = gw.entry(reply["seq"])
    assert {k: entry[k] for k in ("source", "agent", "action", "verdict", "rule", "reason", "pid", "script")} == {
        "source": "shim", "agent": "anonymous", "action": action, "verdict": verdict, "rule": rule,
        "reason": reply["reason"], "pid": 42, "script": "run.sh"}


@pytest.mark.parametrize("agent,token,expected,verdict", [
    ("coder", "right", "coder", "ALLOW"),
    ("coder", "wrong", "anonymous", "DENY"),
    ("coder", None, "anonymous", "DENY"),
    (None, "right", "anonymous", "DENY"),
    ("stranger", "right", "anonymous", "DENY"),
], ids=["right-token", "wrong-token", "no-token", "no-name", "unknown-name"])
def test_credentials_choose_the_agent(start: Callable[..., Gateway], agent: str | None,
                                      token: str | None, expected: str, verdict: str) -> None:
    """Only the right token makes a request the named agent's, so only then does the per-agent rule apply."""
    gw = start()
    secret = gw.token if token == "right" else token
    with DecisionClient(gw.sock, agent=agent, token=secret, source="sdk") as client:
        reply = client.decide("network", "coder.example")
    assert (reply["agent"], reply["verdict"]) == (expected, verdict)
    entry = gw.entry(reply["seq"])
    assert (entry["agent"], entry["source"], entry["verdict"]) == (expected, "sdk", verdict)
    assert gw.token not in orjson.dumps(entry).decode()


def test_simulate_mode_denies_without_blocking(start: Callable[..., Gateway]) -> None:
    """In simulate mode a denied request is DENY with blocks false, recorded as simulate."""
    gw = start(simulate=True)
    with DecisionClient(gw.sock) as client:
        reply = client.decide("network", "blocked.example")
    assert (reply["verdict"], reply["blocks"], reply["mode"]) == ("DENY", False, "simulate")
    assert gw.entry(reply["seq"])["mode"] == "simulate"


@pytest.mark.parametrize("line,error", [
    (b"not json", "not JSON"),
    (b"", "not JSON"),
    (b"[1, 2]", "a request is a JSON object"),
    (b'{"action": "network"}', "missing 'target'"),
    (b'{"target": "allowed.example"}', "missing 'action'"),
    (b'{"action": "launch", "target": "x"}', "unknown action 'launch'"),
    (b'{"action": "network", "target": 5}', "'target' must be a string"),
    (b'{"action": "network", "target": "x", "cwd": 5}', "'cwd' must be a string"),
    (b'{"op": "reload"}', "unknown member 'op'"),
    (b'{"action": "network", "target": "blocked.example", "mode": "simulate"}', "unknown member 'mode'"),
    (b'{"action": "network", "target": "blocked.example", "policy": "allow all"}', "unknown member 'policy'"),
    (b'{"action": "network", "target": "x", "source": "proxy"}', "source 'proxy' is the gateway's own"),
    (b'{"action": "network", "target": "x", "source": "gateway"}', "source 'gateway' is the gateway's own"),
    (b'{"action": "network", "target": "x", "source": "root"}', "unknown source 'root'"),
    (b'{"action": "network", "target": "x", "details": [1]}', "'details' must be a JSON object"),
    (b'{"action": "network", "target": "x", "details": {"a": {"b": 1}}}', "details: field 'a': dict is not allowed"),
    (b'{"action": "network", "target": "x", "details": {"a": 1.5}}', "details: field 'a': float is not allowed"),
    (b'{"action": "network", "target": "x", "details": {"seq": 1}}', "details: field 'seq' is set by the writer"),
    (b'{"action": "network", "target": "x", "details": {"verdict": "ALLOW"}}', "detail 'verdict' would override the decision's own field"),
    (b'{"action": "network", "target": "x", "details": {%s}}' % b",".join(b'"d%d": %d' % (i, i) for i in range(17)), "'details' has 17 members; at most 16"),
], ids=["garbage", "empty", "array", "no-target", "no-action", "bad-action", "target-type", "cwd-type",
        "admin-op", "mode", "policy", "as-proxy", "as-gateway", "bad-source", "details-list",
        "details-nested", "details-float", "details-reserved", "details-override", "details-17"])
def test_a_bad_line_gets_an_error_and_the_connection_goes_on(start: Callable[..., Gateway], line: bytes,
                                                             error: str) -> None:
    """A line that is not a request is refused (blocks true, nothing recorded); the next line is answered."""
    gw = start()
    bad, good = exchange(gw.sock, [line, GOOD])
    assert error in bad["error"] and bad["blocks"] is True and "verdict" not in bad
    assert good["verdict"] == "ALLOW" and gw.entry(good["seq"])["source"] == "cli"
    assert [e["seq"] for e in gw.decisions()] == [good["seq"]]


def test_no_request_changes_the_policy(start: Callable[..., Gateway]) -> None:
    """Refused members that sound like control leave the running policy as it was."""
    gw = start()
    sha = gw.runtime.policy_sha256
    exchange(gw.sock, [b'{"op": "reload"}', b'{"action": "network", "target": "x", "mode": "simulate"}'])
    assert gw.runtime.policy_sha256 == sha and gw.runtime.policy.mode.value == "enforce"


def test_pipelined_lines_are_answered_in_order(start: Callable[..., Gateway]) -> None:
    """Lines sent together get one reply each, in order, with increasing seqs."""
    gw = start()
    hosts = ["allowed.example", "blocked.example", "other.example", "allowed.example"]
    replies = exchange(gw.sock, [orjson.dumps({"action": "network", "target": h}) for h in hosts])
    assert [r["host"] for r in replies] == hosts
    seqs = [r["seq"] for r in replies]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_slow_connection_does_not_hold_up_others(start: Callable[..., Gateway]) -> None:
    """While one connection has sent half a line, another is answered; the first is answered when it ends its line."""
    gw = start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(5)
        slow.connect(gw.sock)
        slow.sendall(GOOD[:10])
        assert exchange(gw.sock, [GOOD])[0]["verdict"] == "ALLOW"
        slow.sendall(GOOD[10:] + b"\n")
        assert orjson.loads(read_lines(slow, 1)[0])["verdict"] == "ALLOW"


def test_a_line_at_the_limit_is_answered_and_a_longer_one_closes(start: Callable[..., Gateway]) -> None:
    """A line of exactly 256 KiB is decided; one byte more gets an error and the connection is closed."""
    gw = start()
    head, tail = b'{"action": "network", "target": "', b'"}'
    at_limit = head + b"a" * (MAX_LINE_BYTES - len(head) - len(tail)) + tail
    over = head + b"a" * (MAX_LINE_BYTES - len(head) - len(tail) + 1) + tail
    assert (len(at_limit), len(over)) == (MAX_LINE_BYTES, MAX_LINE_BYTES + 1)
    assert exchange(gw.sock, [at_limit])[0]["reason"].startswith("bad input")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(gw.sock)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(over + b"\n" + GOOD + b"\n")
        received = b""
        while data := sock.recv(65536):
            received += data
    [line] = received.splitlines()
    reply = orjson.loads(line)
    assert reply["blocks"] is True and "line longer than 262144 bytes" in reply["error"]
    assert len(gw.decisions()) == 1


def test_a_closed_audit_log_fails_closed(start: Callable[..., Gateway]) -> None:
    """When the writer is not running, even an allowed request is DENY with blocks true and the reason."""
    gw = start()
    gw.writer.close()
    with DecisionClient(gw.sock) as client:
        reply = client.decide("network", "allowed.example")
    assert reply == {"verdict": "DENY", "blocks": True,
                     "reason": "audit log unavailable: the audit writer is not running",
                     "error": "the audit writer is not running"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "64k") as mount:
        yield mount


def test_a_full_disk_fails_closed(small_disk: Path, start: Callable[..., Gateway]) -> None:
    """When the entry cannot be written (ENOSPC), an allowed request is DENY with blocks true and the reason."""
    gw = start(log_dir=small_disk)
    with DecisionClient(gw.sock) as client:
        assert client.decide("network", "allowed.example")["verdict"] == "ALLOW"
        fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        # The log's last page may still hold a few entries; the first that needs more fails.
        replies = [client.decide("network", "allowed.example") for _ in range(40)]
    first = next((i for i, r in enumerate(replies) if "seq" not in r), None)
    assert first is not None, "the disk never ran out"
    assert all(r["verdict"] == "ALLOW" for r in replies[:first])
    for reply in replies[first:]:
        assert (reply["verdict"], reply["blocks"]) == ("DENY", True)
        assert reply["reason"] == f"audit log unavailable: {reply['error']}"
        assert "No space left on device" in reply["error"]
    assert {r["seq"] for r in replies if "seq" in r} <= {e["seq"] for e in iter_entries(gw.log)}


def test_the_tcp_listener_answers_on_loopback(start: Callable[..., Gateway]) -> None:
    """With port 0 the bound port is reported, and a client reaches it with tcp:HOST:PORT."""
    gw = start()
    assert gw.api.tcp_port
    with DecisionClient(f"tcp:127.0.0.1:{gw.api.tcp_port}", source="fs") as client:
        reply = client.decide("file_read", "/data/a")
    assert reply["verdict"] == "ALLOW" and gw.entry(reply["seq"])["source"] == "fs"


def test_the_socket_is_open_to_all_and_removed_on_close(start: Callable[..., Gateway]) -> None:
    """The Unix socket is mode 0666 from the moment it has its name, and is gone after close()."""
    gw = start()
    mode = os.stat(gw.sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666
    run(gw.loop, gw.api.close())
    assert not os.path.lexists(gw.sock)


@pytest.mark.parametrize("occupant,error", [
    ("stale", None),
    ("live", "is in use"),
    ("file", "exists and is not a socket"),
], ids=["stale-socket", "live-socket", "regular-file"])
def test_what_is_at_the_socket_path(tmp_path: Path, start: Callable[..., Gateway], occupant: str,
                                    error: str | None) -> None:
    """A stale socket file is replaced; a live socket or another file is not touched."""
    gw = start()
    path = tmp_path / "second.sock"
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if occupant == "file":
        path.write_text("keep me")
    else:
        holder.bind(os.fspath(path))
        if occupant == "live":
            holder.listen(1)
    api = DecisionApi(gw.runtime, unix_path=path, tcp=None)
    try:
        if error is None:
            run(gw.loop, api.start())
            assert exchange(os.fspath(path), [GOOD])[0]["verdict"] == "ALLOW"
        else:
            with pytest.raises(GatewayError, match=error):
                run(gw.loop, api.start())
            assert os.path.lexists(path)
            if occupant == "file":
                assert path.read_text() == "keep me"
    finally:
        run(gw.loop, api.close())
        holder.close()


def test_the_client_reconnects_once_after_a_restart(start: Callable[..., Gateway]) -> None:
    """A client whose connection the gateway closed (a restart) asks again on a new connection."""
    gw = start()
    with DecisionClient(gw.sock) as client:
        first = client.decide("network", "allowed.example")
        run(gw.loop, gw.api.close())
        gw.api = DecisionApi(gw.runtime, unix_path=gw.sock, tcp=None)
        run(gw.loop, gw.api.start())
        second = client.decide("network", "allowed.example")
    assert second["verdict"] == "ALLOW" and second["seq"] > first["seq"]


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_the_client_says_when_no_gateway_runs(tmp_path: Path, where: str) -> None:
    """Without a gateway the client raises GatewayUnreachable naming the address."""
    if where == "unix":
        address = os.fspath(tmp_path / "absent.sock")
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            address = f"tcp:127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(GatewayUnreachable, match=f"no gateway is running: cannot connect to {address}"):
        DecisionClient(address).decide("network", "allowed.example")


@pytest.mark.parametrize(("request_", "verdict", "command", "reason"), [
    ({"argv": ["bash", "-c", "python x.py"]}, "ALLOW", "bash -c 'python x.py'", "allowed by rule 4"),
    ({"argv": ["/bin/sh", "-c", "rm -rf d"]}, "DENY", "/bin/sh -c 'rm -rf d'", "rm -rf d: denied by rule 5"),
    ({"argv": ["rm", "-rf", "my dir"]}, "DENY", "rm -rf 'my dir'", "denied by rule 5"),
    ({"argv": ["bash", "run.sh"], "script": "python a.py\n", "script_path": "run.sh"}, "ALLOW", "bash run.sh", "allowed by rule 4"),
    ({"argv": ["bash", "run.sh"]}, "DENY", "bash run.sh", "could not be read where the command runs"),
    ({"argv": ["bash", "-c", "python x.py"], "env": ["HOME", "BASH_ENV"]}, "DENY", "bash -c 'python x.py'", "BASH_ENV is set in the environment"),
    ({"argv": ["bash"]}, "DENY", "bash", "reads its commands from its input"),
])
def test_the_shim_asks_with_argv(start: Callable[..., Gateway], request_: dict[str, Any], verdict: str, command: str, reason: str) -> None:
    """An `argv` request is judged as the line that would start it and recorded as that line."""
    gw = start()
    line = orjson.dumps({"action": "shell_exec", "source": "shim", "cwd": "/w",
                         "details": {"pid": 7}, **request_})
    [reply] = exchange(gw.sock, [line])
    assert reply["verdict"] == verdict and reason in reply["reason"], reply
    assert reply["command"] == command and reply["blocks"] is (verdict == "DENY")
    entry = gw.entry(reply["seq"])
    assert entry["source"] == "shim" and entry["command"] == command and entry["pid"] == 7
    assert entry.get("script") == request_.get("script_path")


@pytest.mark.parametrize(("request_", "error"), [
    ({"action": "shell_exec", "argv": ["ls"], "target": "ls"}, "give 'target' or 'argv', not both"),
    ({"action": "network", "argv": ["ls"]}, "'argv' is for action shell_exec"),
    ({"action": "shell_exec", "argv": []}, "'argv' must be a non-empty list of strings"),
    ({"action": "shell_exec", "argv": ["ls", 3]}, "'argv' must be a non-empty list of strings"),
    ({"action": "shell_exec", "argv": [""]}, "'argv' must name a program"),
    ({"action": "shell_exec", "target": "ls", "script": "x"}, "'script' goes with 'argv'"),
    ({"action": "shell_exec", "argv": ["ls"], "env": "PATH"}, "'env' must be a list"),
])
def test_bad_argv_requests_are_refused(start: Callable[..., Gateway], request_: dict[str, Any], error: str) -> None:
    """Malformed `argv` requests get an error reply that blocks; nothing is recorded."""
    gw = start()
    [reply] = exchange(gw.sock, [orjson.dumps(request_)])
    assert reply == {"error": error, "blocks": True} or error in reply.get("error", ""), reply
    assert reply["blocks"] is True and gw.decisions() == []


def test_a_silent_connection_is_closed_after_the_idle_timeout(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """An agent cannot hold connections open forever: silence past the bound closes it."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    writer = AuditWriter(tmp_path / "audit.jsonl", key=KEY)
    writer.start()
    api = DecisionApi(Runtime(policy, writer), unix_path=tmp_path / "api.sock", tcp=None,
                      idle_timeout=0.3)
    run(loop, api.start())
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(os.fspath(tmp_path / "api.sock"))
            sock.sendall(GOOD + b"\n")
            assert orjson.loads(read_lines(sock, 1)[0])["verdict"] == "ALLOW"
            assert sock.recv(1024) == b""  # closed by the server once silent
    finally:
        run(loop, api.close())
        writer.close()


@pytest.mark.parametrize(("sdk", "verdict", "blocks", "reason"), [
    ("", "DENY", True, "dynamic: the path is built at run time, so it cannot be judged before it runs (sdk.dynamic is deny)"),
    ("sdk: {dynamic: allow}\n", "ALLOW", False, "dynamic: the path is built at run time; sdk.dynamic is allow, so the runtime enforcement judges the real target"),
], ids=["policy-default-deny", "policy-allow"])
def test_a_dynamic_target_is_decided_by_the_policys_sdk_section(
        start: Callable[..., Gateway], tmp_path: Path, sdk: str, verdict: str, blocks: bool,
        reason: str) -> None:
    """An action whose target is only known at run time (`dynamic`): the gateway's own
    policy's sdk.dynamic decides, for the authenticated agent, and the entry says so."""
    gw = start()
    (tmp_path / "policy.yaml").write_text(POLICY + sdk)
    assert gw.runtime.reload("test") is None
    client = DecisionClient(gw.sock, agent="coder", token=gw.token, source="sdk")
    try:
        reply = client.decide("file_read", "ignored", dynamic="the path is built at run time")
    finally:
        client.close()
    assert (reply["verdict"], reply["blocks"], reply["reason"]) == (verdict, blocks, reason)
    entry = gw.entry(reply["seq"])
    assert (entry["source"], entry["agent"], entry["dynamic"], entry["path"]) == (
        "sdk", "coder", True, "")


@pytest.mark.parametrize(("request_", "error"), [
    ({"action": "file_read", "dynamic": ""}, "'dynamic' must say why the target is unknown"),
    ({"action": "file_read", "dynamic": True}, "'dynamic' must say why the target is unknown"),
    ({"action": "file_read", "dynamic": "why", "target": "/etc/passwd"}, "'dynamic' goes without 'target' or 'argv'"),
    ({"action": "shell_exec", "dynamic": "why", "argv": ["ls"]}, "'dynamic' goes without 'target' or 'argv'"),
])
def test_bad_dynamic_requests_are_refused(start: Callable[..., Gateway], request_: dict[str, Any], error: str) -> None:
    """A `dynamic` request must say why and carry no target: an error that blocks,
    nothing recorded."""
    gw = start()
    [reply] = exchange(gw.sock, [orjson.dumps(request_)])
    assert error in reply.get("error", ""), reply
    assert reply["blocks"] is True and gw.decisions() == []
