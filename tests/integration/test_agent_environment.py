"""The environment `gateway up` and `gateway env` give an agent: with those variables
alone, a client verifies both a host the proxy decrypts (the gateway's CA) and one it
passes through untouched (the system's CAs, here the test CA standing for them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.certs import shared_ca
from tests.support.gateway import RunningGateway
from tests.support.upstreams import HttpsUpstream

pytestmark = pytest.mark.slow

POLICY = """version: 1
default: deny
rules:
  - {action: network, host: "pass.test", effect: allow}
  - {action: network, host: "open.test", methods: [GET], effect: allow}
"""


def test_the_agent_environment_verifies_decrypted_and_passed_through_hosts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA variables name the bundle (gateway CA + system CAs), NODE_EXTRA_CA_CERTS the
    gateway's CA alone; curl with nothing but `gateway env`'s lines gets 200 from both."""
    ca = shared_ca()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_path))  # the gateway's "system" CAs
    with HttpsUpstream(("pass.test", "open.test"), ca=ca) as upstream:
        gateway = RunningGateway(tmp_path / "gw", POLICY, upstream_ca=ca.ca_path,
                                 hosts="127.0.0.1 pass.test\n127.0.0.1 open.test\n")
        try:
            lines = subprocess.run(
                [sys.executable, "-m", "gateway", "env", "--state-dir", str(gateway.state)],
                capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
            env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
            bundle = Path(env["SSL_CERT_FILE"])
            assert bundle.name == "ca-bundle.pem"
            for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "GIT_SSL_CAINFO"):
                assert env[name] == str(bundle)
            assert env["NODE_EXTRA_CA_CERTS"] == str(gateway.ca_cert)
            assert bundle.read_bytes().startswith(gateway.ca_cert.read_bytes().rstrip(b"\n"))
            assert ca.ca_path.read_bytes() in bundle.read_bytes()
            port = upstream.address[1]
            clean = env | {"PATH": "/usr/bin:/bin"}
            for host in ("pass.test", "open.test"):
                result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                         "--max-time", "10", f"https://{host}:{port}/"],
                                        env=clean, capture_output=True, text=True, timeout=30,
                                        check=False)
                assert result.stdout == "200", (host, result.stderr)
            # Each reached its upstream: the first through an untouched tunnel (the client
            # verified the upstream's own certificate), the second decrypted and re-sent.
            assert [t.sni for t in upstream.tls] == ["pass.test", "open.test"]
            assert len(upstream.requests) == 2
        finally:
            assert gateway.stop() == 0
