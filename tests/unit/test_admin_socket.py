"""The admin socket over a real Unix socket: owner-only, status, reload (a bad policy is
rejected whole), stop, and the client's errors when no gateway answers."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit.reader import iter_entries
from gateway.audit.writer import AuditWriter
from gateway.daemon.admin import AdminSocket
from gateway.daemon.client import GatewayUnreachable, admin_call
from gateway.engine import Request
from gateway.policy.model import Action
from gateway.runtime import Runtime
from tests.support.eventloop import run

KEY = b"k" * 32
POLICY = """\
version: 1
default: deny
rules:
  - {action: network, host: allowed.example, effect: allow}
"""
RELAXED = POLICY + "  - {action: network, host: later.example, effect: allow}\n"

@dataclass
class Gateway:
    runtime: Runtime
    admin: AdminSocket
    policy: Path
    log: Path
    stops: list[str]

    @property
    def sock(self) -> str:
        return os.fspath(self.admin.path)

    def verdict(self, host: str) -> str:
        return self.runtime.decide(Request(Action.NETWORK, host)).verdict.value


@pytest.fixture
def start(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Callable[..., Gateway]]:
    """Starts a runtime with an admin socket (optionally without on_stop); closed at the end."""
    made: list[tuple[AdminSocket, AuditWriter]] = []

    def make(*, stoppable: bool = True) -> Gateway:
        policy, log = tmp_path / "policy.yaml", tmp_path / "audit.jsonl"
        policy.write_text(POLICY)
        writer = AuditWriter(log, key=KEY)
        writer.start()
        runtime = Runtime(policy, writer)
        stops: list[str] = []
        admin = AdminSocket(runtime, tmp_path / "admin.sock",
                            on_stop=(lambda: stops.append("stop")) if stoppable else None)
        run(loop, admin.start())
        made.append((admin, writer))
        return Gateway(runtime, admin, policy, log, stops)

    yield make
    for admin, writer in made:
        run(loop, admin.close())
        writer.close()


def test_the_admin_socket_is_owner_only(start: Callable[..., Gateway]) -> None:
    """The admin socket is mode 0600."""
    gw = start()
    mode = os.stat(gw.sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_status_reports_the_running_policy(start: Callable[..., Gateway]) -> None:
    """status returns runtime.status(): the policy's path, hash and mode, and the log's health."""
    gw = start()
    reply = admin_call(gw.sock, "status")
    assert reply["ok"] is True
    policy = reply["status"]["policy"]
    assert (policy["path"], policy["sha256"], policy["mode"], policy["last_error"]) == (
        os.fspath(gw.policy), gw.runtime.policy_sha256, "enforce", None)
    assert reply["status"]["audit"]["ok"] is True


def test_reload_applies_a_rewritten_policy(start: Callable[..., Gateway]) -> None:
    """After the file changes, reload makes the new policy decide, and the log records it."""
    gw = start()
    assert gw.verdict("later.example") == "DENY"
    gw.policy.write_text(RELAXED)
    assert admin_call(gw.sock, "reload") == {"ok": True}
    assert gw.verdict("later.example") == "ALLOW"
    assert admin_call(gw.sock, "status")["status"]["policy"]["reloads"] == 1
    loaded = [e for e in iter_entries(gw.log) if e.get("event") == "loaded"]
    assert [(e["source"], e["reason"]) for e in loaded] == [
        ("gateway", "reload requested on the admin socket")]


def test_an_invalid_policy_is_rejected_and_the_old_one_keeps_deciding(start: Callable[..., Gateway]) -> None:
    """reload of a broken file answers ok false with the error; decisions and status show the old policy stays."""
    gw = start()
    sha = gw.runtime.policy_sha256
    gw.policy.write_text("version: 1\ndefault: maybe\n")
    reply = admin_call(gw.sock, "reload")
    assert reply["ok"] is False and os.fspath(gw.policy) in reply["error"]
    assert gw.verdict("allowed.example") == "ALLOW" and gw.runtime.policy_sha256 == sha
    status = admin_call(gw.sock, "status")["status"]["policy"]
    assert (status["sha256"], status["last_error"], status["reloads"]) == (sha, reply["error"], 0)
    assert [e["event"] for e in iter_entries(gw.log) if e.get("action") == "policy"] == ["rejected"]


@pytest.mark.parametrize("stoppable,reply,stops", [
    (True, {"ok": True}, ["stop"]),
    (False, {"ok": False, "error": "this gateway cannot be stopped from its admin socket"}, []),
], ids=["with-on-stop", "without-on-stop"])
def test_stop_calls_on_stop(start: Callable[..., Gateway], stoppable: bool, reply: dict[str, Any],
                            stops: list[str]) -> None:
    """stop calls on_stop once before it answers; without on_stop it is refused."""
    gw = start(stoppable=stoppable)
    assert admin_call(gw.sock, "stop") == reply
    assert gw.stops == stops


def test_a_bad_request_gets_an_error_and_the_connection_goes_on(start: Callable[..., Gateway]) -> None:
    """Lines that are not ops get ok false with the reason, each in turn, and a good op still works after them."""
    gw = start()
    bad = {
        b"not json": "not JSON",
        b"[]": "a request is a JSON object",
        b"{}": "unknown op None",
        b'{"op": "shutdown"}': "unknown op 'shutdown'",
        b'{"op": "status", "all": true}': "unknown member 'all'",
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(gw.sock)
        sock.sendall(b"".join(line + b"\n" for line in bad) + b'{"op": "status"}\n')
        buffer = b""
        while buffer.count(b"\n") < len(bad) + 1:
            data = sock.recv(65536)
            assert data
            buffer += data
    replies = [orjson.loads(line) for line in buffer.splitlines()]
    for error, reply in zip(bad.values(), replies[:-1], strict=True):
        assert reply["ok"] is False and error in reply["error"]
    assert replies[-1]["ok"] is True and "policy" in replies[-1]["status"]


def test_close_removes_the_admin_socket(start: Callable[..., Gateway], loop: asyncio.AbstractEventLoop) -> None:
    """After close() the socket file is gone and a client is told no gateway runs."""
    gw = start()
    run(loop, gw.admin.close())
    assert not os.path.lexists(gw.sock)
    with pytest.raises(GatewayUnreachable, match="no gateway is running"):
        admin_call(gw.sock, "status")


@pytest.mark.parametrize("occupant,error", [
    ("nothing", "no gateway is running: cannot connect to {path}: No such file or directory"),
    ("stale", "no gateway is running: cannot connect to {path}: Connection refused"),
    ("silent", "the gateway at {path} did not answer within 0.2 s"),
], ids=["missing", "stale-socket", "silent"])
def test_admin_call_says_why_no_gateway_answers(tmp_path: Path, occupant: str, error: str) -> None:
    """A missing or refusing socket is 'no gateway is running'; one that never answers times out."""
    path = tmp_path / "admin.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        if occupant != "nothing":
            holder.bind(os.fspath(path))
        if occupant == "silent":
            holder.listen(1)
        with pytest.raises(GatewayUnreachable) as caught:
            admin_call(path, "status", timeout=0.2)
    assert str(caught.value) == error.format(path=path)
