"""The parts of `gateway run` that can be tried one at a time: the agent's network
namespace, the relays, the root script, the summary."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.fs.plan import MountPlan
from gateway.policy.compiled import compile_policy_text
from gateway.sandbox.relay import Relay, Target
from gateway.sandbox.rootfs import RootSpec, base_entries, root_script, shells_to_cover
from gateway.sandbox.summary import summarise_run

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

POLICY = """version: 1
default: deny
rules:
  - {action: file_read, path: "/usr/games/**", effect: deny, reason: "no games"}
  - {action: file_read, path: "/etc/group", effect: deny}
"""


@needs_root
def test_a_new_network_namespace_has_only_loopback_and_no_route_out() -> None:
    """What the stage sees after unsharing the network: lo alone, up, no route to any
    outside address; the listeners bind there."""
    code = ("from gateway.sandbox import netns\n"
            "netns.loopback_up()\n"
            "listeners = netns.listen(18080)\n"
            "print(netns.interfaces(), netns.routes_outside(), len(listeners))\n")
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split("] ")[0] + "]" == "['lo']"
    assert result.stdout.strip().endswith("[] 2") or result.stdout.strip().endswith("[] 1")


def test_a_relay_joins_its_listeners_to_the_target() -> None:
    """Bytes pass both ways and the half-close is passed on; a target that refuses
    closes the client's connection and is counted."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo_once() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            conn.sendall(data.upper())
    threading.Thread(target=echo_once, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    relay_port = listener.getsockname()[1]

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", relay_port), timeout=5) as s:
            s.sendall(b"hello")
            s.shutdown(socket.SHUT_WR)
            return s.recv(100)

    async def main() -> bytes:
        relay = Relay([listener], Target(host="127.0.0.1", port=port))
        await relay.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, client)
        finally:
            await relay.close()
    try:
        assert asyncio.run(main()) == b"HELLO"
    finally:
        server.close()


@pytest.mark.parametrize(("address", "expected"), [
    ("tcp:127.0.0.1:8081", Target(host="127.0.0.1", port=8081)),
    ("tcp:[::1]:8081", Target(host="::1", port=8081)),
    ("unix:/run/gw/api.sock", Target(path="/run/gw/api.sock")),
    ("/run/gw/api.sock", Target(path="/run/gw/api.sock")),
])
def test_relay_targets_are_parsed(address: str, expected: Target) -> None:
    """The decision API's address forms, as gateway.json and --gateway give them."""
    assert Target.parse(address) == expected


@pytest.mark.parametrize("address", ["tcp:host", "relative/api.sock", "tcp::80"])
def test_bad_relay_targets_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        Target.parse(address)


def test_the_base_leaves_out_what_a_rule_denies_by_name() -> None:
    """Base paths are shown unless a rule (not the default) denies reading them."""
    policy = compile_policy_text(POLICY)
    notes: list[str] = []
    got = base_entries(policy, ["/usr", "/etc/group", "/etc/passwd", "/nonexistent"], None, notes)
    assert got == ["/usr", "/etc/passwd"]
    assert len(notes) == 1 and notes[0].startswith("/etc/group is left out of the base")


def test_shells_are_covered_by_the_file_they_resolve_to(tmp_path: Path) -> None:
    """A link such as sh -> dash is covered by mounting over dash: a mount follows it."""
    (tmp_path / "dash").write_text("")
    os.symlink("dash", tmp_path / "sh")
    (tmp_path / "bash").write_text("")
    assert shells_to_cover([str(tmp_path)]) == [str(tmp_path / "dash"), str(tmp_path / "bash")]


def test_the_root_script_is_valid_sh_with_the_shim_after_the_plan(tmp_path: Path) -> None:
    """The script parses, binds the base before the plan and the shim over each shell
    after it, then makes the root read-only."""
    spec = RootSpec(run_dir="/run/gateway-run-x/agent", shim="/run/gateway-run-x/agent/shim/s",
                    hosts="/run/gateway-run-x/agent/hosts", workdir="/srv/p")
    text = root_script(MountPlan(mounts=(), notes=()), spec, ["/usr", "/bin"],
                       ["/usr/bin/dash"])
    (tmp_path / "root.sh").write_text(text)
    subprocess.run(["sh", "-n", str(tmp_path / "root.sh")], check=True)
    base = text.index("mount --bind /usr ")
    shim = text.index("mount --bind /run/gateway-run-x/agent/shim/s \"$ROOT\"/usr/bin/dash")
    assert base < shim < text.index('mount -o remount,bind,ro,nosuid,nodev "$ROOT"\n')
    assert 'mount --bind /etc/hosts' not in text  # the run's own hosts file, not the host's


def test_the_summary_counts_one_agents_decisions_after_the_start(tmp_path: Path) -> None:
    """Only the run's agent, only entries after the seq the run started at."""
    from gateway.audit.writer import AuditWriter
    log = tmp_path / "audit.jsonl"
    records = [({"source": "shim", "action": "shell_exec", "command": "rm -rf /",
                 "verdict": "DENY", "mode": "enforce", "agent": agent, "rule": "default",
                 "reason": "no"}) for agent in ("other", "coder", "coder")]
    with AuditWriter(log, key=b"k" * 32) as writer:
        seqs = [writer.append(r) for r in records]
    summary = summarise_run(log, seqs[0], "coder", 0)
    assert (summary.decisions.decisions, summary.decisions.denied) == (2, 2)
    assert summarise_run(log, seqs[1], "coder", 0).decisions.decisions == 1
    text = summary.render()
    assert "coder exited with status 0" in text
    assert "2  shell_exec rm -rf /" in text
    assert summary.head is not None and summary.head in text


@pytest.mark.parametrize(("clean", "kept", "dropped"), [
    (False, ["HOME", "OPENAI_API_KEY", "LANG"],
     ["GATEWAY_AUDIT_KEY", "GATEWAY_AUDIT_KEY_FILE", "GATEWAY_STATE_DIR", "LD_PRELOAD",
      "LD_LIBRARY_PATH", "ALL_PROXY", "all_proxy"]),
    (True, ["HOME", "LANG", "LC_CTYPE"], ["OPENAI_API_KEY", "GATEWAY_AUDIT_KEY", "LD_PRELOAD"]),
], ids=["caller-environment", "clean"])
def test_the_agent_environment_keeps_the_gateways_secrets_out(clean: bool, kept: list[str],
                                                               dropped: list[str]) -> None:
    """The agent gets the caller's variables (or only a few, `clean`) but never the
    gateway's own, a loader override or another proxy; the proxy URL carries its
    credentials, quoted; the shim comes first on PATH."""
    from gateway.sandbox.agentenv import agent_environment

    environ = {name: "x" for name in (*kept, *dropped)} | {"HTTP_PROXY": "http://elsewhere:1"}
    env = agent_environment(environ, agent="co der", token="t/k", shim_dir=Path("/run/s"),
                            bundle=Path("/run/b.pem"), gateway_ca=Path("/run/ca.pem"),
                            clean=clean)
    assert all(env[name] == "x" for name in kept)
    assert not set(dropped) & set(env)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://co%20der:t%2Fk@127.0.0.1:8080"
    assert env["NO_PROXY"] == "" and env["SSL_CERT_FILE"] == "/run/b.pem"
    assert env["NODE_EXTRA_CA_CERTS"] == "/run/ca.pem"
    assert env["PATH"].startswith("/run/s:")
    assert (env["GATEWAY_AGENT"], env["GATEWAY_TOKEN"]) == ("co der", "t/k")
