"""When the audit log cannot be written, the proxy lets nothing through unrecorded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.disks import small_tmpfs
from tests.support.gateway import RunningGateway
from tests.support.upstreams import HttpUpstream, plain_proxy_request

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]

POLICY = "version: 1\ndefault: deny\nrules:\n  - {action: network, host: ok.test, effect: allow}\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "256k") as mount:
        yield mount


def test_a_full_audit_disk_refuses_every_request_with_503(tmp_path: Path, small_disk: Path) -> None:
    """Once an entry cannot be written, requests get 503 and never reach the upstream;
    status says the log failed (exit 1), and so does the gateway's exit status."""
    with HttpUpstream() as upstream:
        gateway = RunningGateway(tmp_path / "gw", POLICY, hosts="127.0.0.1 ok.test\n",
                                 extra=["--audit-log", str(small_disk / "audit.jsonl")])
        try:
            statuses = []
            for n in range(2000):
                status, _, body = plain_proxy_request(
                    gateway.proxy_host, gateway.proxy_port, f"http://ok.test:{upstream.port}/{n}")
                statuses.append(status)
                if status != 200:
                    break
            assert statuses[0] == 200 and statuses[-1] == 503, statuses[-3:]
            assert b"audit log unavailable" in body
            reached = len(upstream.requests)
            for n in range(3):  # and stays refused
                status, _, _ = plain_proxy_request(gateway.proxy_host, gateway.proxy_port,
                                                   f"http://ok.test:{upstream.port}/again{n}")
                assert status == 503
            assert len(upstream.requests) == reached == statuses.count(200)
            status_run = gateway.gateway_command("status", "--json")
            assert status_run.returncode == 1
            assert json.loads(status_run.stdout)["audit"]["ok"] is False
        finally:
            code = gateway.stop()
        assert code == 1 and "audit log failed" in gateway.read_stderr()
