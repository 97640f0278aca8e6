"""The addon on its own, under plain `mitmdump -s addons/egress.py --set policy=FILE`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from tests.support.upstreams import HttpUpstream

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mitmdump(tmp: Path, policy: str | None, *extra: str) -> tuple[subprocess.Popen[str], int]:
    """mitmdump with the addon; `policy` None points it at a file that does not exist."""
    if policy is not None:
        (tmp / "policy.yaml").write_text(policy)
    port = _free_port()
    process = subprocess.Popen(
        [MITMDUMP, "-q", "--listen-host", "127.0.0.1", "-p", str(port),
         "--set", f"confdir={tmp / 'conf'}", "-s", str(ROOT / "addons" / "egress.py"),
         "--set", f"policy={tmp / 'policy.yaml'}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    return process, port


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("mitmdump did not start")


@pytest.fixture
def upstream() -> Iterator[HttpUpstream]:
    with HttpUpstream() as up:
        yield up


def test_mitmdump_with_the_addon_decides_and_records(tmp_path: Path, upstream: HttpUpstream) -> None:
    """Allowed requests pass, others get 403 without reaching the upstream, and both are in
    the keyed audit log in mitmproxy's confdir, which verifies."""
    (tmp_path / "hosts").write_text("127.0.0.1 ok.test no.test\n")
    policy = 'version: 1\ndefault: deny\nrules:\n  - {action: network, host: ok.test, effect: allow}\n'
    process, port = _mitmdump(tmp_path, policy, "--set", f"gateway_hosts={tmp_path / 'hosts'}")
    try:
        _wait_listening(port, process)
        proxy = f"http://127.0.0.1:{port}"

        def curl(url: str) -> str:
            return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x",
                                   proxy, url], capture_output=True, text=True, timeout=15,
                                  check=False).stdout
        assert curl(f"http://ok.test:{upstream.port}/a") == "200"
        assert curl(f"http://no.test:{upstream.port}/b") == "403"
        assert [r.path for r in upstream.requests] == ["/a"]
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "Traceback" not in output
    log = tmp_path / "conf" / "gateway-audit.jsonl"
    decisions = [(e["host"], e["verdict"]) for e in iter_entries(log) if "verdict" in e]
    assert decisions == [("ok.test", "ALLOW"), ("no.test", "DENY")]
    verified = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", str(log),
                               "--key-file", f"{log}.key"], capture_output=True, text=True,
                              timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(("policy", "message"), [
    ("version: 1\ndefault: maybe\n", "policy.yaml:2: default: Input should be 'allow' or 'deny'"),
    (None, "cannot read policy"),
])
def test_mitmdump_refuses_to_start_on_a_bad_policy(tmp_path: Path, policy: str | None, message: str) -> None:
    """A bad or missing policy is one line naming the file (and line), and mitmdump exits."""
    process, _ = _mitmdump(tmp_path, policy)
    output = process.communicate(timeout=30)[0]
    assert process.returncode != 0
    assert message in output and "Traceback" not in output

