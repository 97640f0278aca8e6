"""The writer's Unix socket: producers in other processes share one linear chain."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from gateway.audit.socket import AuditSocketClient, AuditSocketServer
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditUnavailable, AuditWriter

KEY = b"k" * 32

CHILD = """
import json, sys
from gateway.audit.socket import AuditSocketClient
path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with AuditSocketClient(path) as client:
    seqs = [client.append({"source": "shim", "action": "shell_exec", "command": f"ls {i}",
                           "verdict": "ALLOW", "worker": worker, "n": i}) for i in range(count // 2)]
    seqs += client.append_many([{"source": "fs", "action": "file_write", "path": f"/p/{i}",
                                 "verdict": "DENY", "worker": worker, "n": i}
                                for i in range(count // 2, count)])
print(json.dumps(seqs))
"""


def test_processes_through_the_socket_make_one_linear_chain(tmp_path: Path) -> None:
    """Several processes append at once; every acknowledged seq is distinct, present, and the chain verifies."""
    log, sock = tmp_path / "audit.jsonl", tmp_path / "audit.sock"
    with AuditWriter(log, key=KEY) as writer, AuditSocketServer(writer, sock):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        children = [subprocess.Popen([sys.executable, "-c", CHILD, str(sock), str(w), "300"],
                                     stdout=subprocess.PIPE, text=True) for w in range(4)]
        outputs = [json.loads(c.communicate(timeout=60)[0]) for c in children]
        assert all(c.returncode == 0 for c in children)
    seqs = sorted(s for out in outputs for s in out)
    assert seqs == list(range(1, 1201))
    entries = list(iter_entries(log))
    for worker in range(4):
        assert [e["n"] for e in entries if e.get("worker") == worker] == list(range(300))
    assert verify_log(log, key=KEY).ok


@pytest.mark.parametrize(("line", "reason"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "a record is a JSON object"),
    (b'{"source": "shim", "seq": 1}', "set by the writer"),
    (b'{"source": "attacker"}', "source must be one of"),
], ids=["not_json", "array", "writer_field", "bad_source"])
def test_bad_lines_get_an_error_reply_and_the_connection_goes_on(tmp_path: Path, line: bytes, reason: str) -> None:
    """A refused line is answered with {"error": ...}; the next good line still gets its seq."""
    log, sock_path = tmp_path / "audit.jsonl", tmp_path / "audit.sock"
    with AuditWriter(log, key=KEY) as writer, AuditSocketServer(writer, sock_path), \
            socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(sock_path))
        conn.sendall(line + b'\n{"source": "sdk", "action": "network"}\n')
        data = b""
        while data.count(b"\n") < 2:
            data += conn.recv(4096)
    first, second = (json.loads(x) for x in data.splitlines())
    assert reason in first["error"]
    assert second == {"seq": 1}


def test_the_client_reports_a_refusal_and_a_missing_server(tmp_path: Path) -> None:
    """A refused record and an absent socket both raise AuditUnavailable with the reason."""
    log, sock_path = tmp_path / "audit.jsonl", tmp_path / "audit.sock"
    with AuditWriter(log, key=KEY) as writer, AuditSocketServer(writer, sock_path), \
            AuditSocketClient(sock_path) as client:
        with pytest.raises(AuditUnavailable, match="source must be one of"):
            client.append({"source": "nobody"})
        assert client.append({"source": "sdk", "action": "network"}) == 1
    with pytest.raises(AuditUnavailable, match="audit socket"):
        AuditSocketClient(sock_path).append({"source": "sdk"})
