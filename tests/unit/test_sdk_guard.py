"""`guard`: tool functions, sync and async, are decided on each call's arguments
before they run; a refused call raises a PermissionError the agent can read, and the
function's body never runs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.reader import iter_entries
from gateway.sdk import GatewayPermissionError, LocalDecider, guard

POLICY = """\
version: 1
default: deny
mode: {mode}
rules:
  - {{action: file_read, path: "/data/**", effect: allow}}
  - {{action: network, host: "api.example", effect: allow}}
  - {{action: network, host: "evil.example", effect: deny, reason: known exfiltration host}}
"""


def decider_for(tmp_path: Path, mode: str = "enforce") -> LocalDecider:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(mode=mode))
    return LocalDecider(policy, tmp_path / "audit.jsonl", agent="tools")


@pytest.fixture
def decider(tmp_path: Path) -> Iterator[LocalDecider]:
    made = decider_for(tmp_path)
    yield made
    made.close()


def entries(decider: LocalDecider) -> list[dict[str, Any]]:
    decider.close()
    return [e for e in iter_entries(decider.audit_log) if "verdict" in e]


def test_sync_function_by_parameter_name(decider: LocalDecider) -> None:
    """An allowed call runs; a denied one raises before the body runs."""
    ran: list[str] = []

    @guard("file_read", target="path", decider=decider)
    def read(path: str) -> str:
        ran.append(path)
        return "content"

    assert read("/data/a.csv") == "content"
    with pytest.raises(GatewayPermissionError) as caught:
        read(path="/etc/passwd")
    assert ran == ["/data/a.csv"]
    assert isinstance(caught.value, PermissionError)
    assert str(caught.value) == ("the gateway refused read: file_read '/etc/passwd' is denied: "
                                 "/etc/passwd matches no allow rule; the policy default is deny")
    assert [(e["path"], e["verdict"], e["source"], e["agent"], e["call"])
            for e in entries(decider)] == [("/data/a.csv", "ALLOW", "sdk", "tools", "read"),
                                           ("/etc/passwd", "DENY", "sdk", "tools", "read")]


def test_async_function_with_a_target_callable(decider: LocalDecider) -> None:
    """An async tool is decided before it is awaited; the target comes from a callable
    over the bound arguments (defaults applied)."""
    @guard("network", target=lambda a: f"https://{a['host']}:{a['port']}/", decider=decider)
    async def fetch(host: str, port: int = 443) -> str:
        return f"fetched {host}"

    assert asyncio.run(fetch("api.example")) == "fetched api.example"
    with pytest.raises(GatewayPermissionError, match="known exfiltration host"):
        asyncio.run(fetch("evil.example"))
    assert [e["host"] for e in entries(decider)] == ["api.example", "evil.example"]


BAD_TARGETS = {
    "no such parameter": ("nope", "the function has no parameter 'nope'"),
    "not a string": ("count", "the target is int, not a string"),
    "target function fails": (lambda a: a["missing"], "the target could not be computed (KeyError)"),
}


@pytest.mark.parametrize("target, why", BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
def test_a_target_that_cannot_be_had_refuses(decider: LocalDecider, target: Any,
                                            why: str) -> None:
    """Fail closed: the call is refused and the refusal recorded."""
    @guard("file_read", target=target, decider=decider)
    def tool(path: str, count: int = 1) -> None:
        raise AssertionError("must not run")

    with pytest.raises(GatewayPermissionError, match=re.escape(why)):
        tool("/data/x")
    assert [e["verdict"] for e in entries(decider)] == ["DENY"]


def test_pathlike_targets_are_paths(decider: LocalDecider) -> None:
    @guard("file_read", target="path", decider=decider)
    def read(path: Path) -> str:
        return "ok"

    assert read(Path("/data/x")) == "ok"


def test_simulate_runs_and_records_the_would_deny(tmp_path: Path) -> None:
    """In simulate mode nothing is refused; the log has the would-deny."""
    decider = decider_for(tmp_path, mode="simulate")

    @guard("file_read", target="path", decider=decider)
    def read(path: str) -> str:
        return "read"

    assert read("/etc/passwd") == "read"
    assert [(e["verdict"], e["mode"]) for e in entries(decider)] == [("DENY", "simulate")]


def test_guard_makes_its_decider_from_a_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY.format(mode="enforce"))

    @guard("network", target="url", policy=tmp_path / "policy.yaml",
           audit_log=tmp_path / "audit.jsonl")
    def get(url: str) -> str:
        return "ok"

    with pytest.raises(GatewayPermissionError):
        get("https://other.example/")


def test_autogen_function_tool_sees_the_signature_and_the_refusal(decider: LocalDecider) -> None:
    """A guarded function registered as an AutoGen FunctionTool keeps its schema, and
    the agent gets the refusal's text."""
    tools = pytest.importorskip("autogen_core.tools")
    from autogen_core import CancellationToken

    @guard("file_read", target="path", decider=decider)
    async def read_file(path: str) -> str:
        """Read a file."""
        return "content"

    tool = tools.FunctionTool(read_file, description="Read a file.")
    assert tool.schema["parameters"]["properties"]["path"]["type"] == "string"
    ok = asyncio.run(tool.run_json({"path": "/data/x"}, CancellationToken()))
    assert ok == "content"
    with pytest.raises(GatewayPermissionError, match="/etc/passwd matches no allow rule"):
        asyncio.run(tool.run_json({"path": "/etc/passwd"}, CancellationToken()))
