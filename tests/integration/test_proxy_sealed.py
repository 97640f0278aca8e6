"""Special addresses through a gateway sealed in a network namespace of its own.

The policy allows everything by wildcard and by default, which never reaches a special
address: cloud metadata in every spelling, and names that resolve to private
addresses, are refused unless a rule names them exactly. The gateway and its clients
run in a namespace that has only loopback, so even a wrong answer could not send a
packet anywhere.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.gateway import RunningGateway, have_namespaces

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_namespaces(),
                       reason="needs root with unshare, ip and nsenter for a sealed namespace"),
]

POLICY = """version: 1
default: allow
rules:
  - action: network
    host: "*"
    effect: allow
    reason: "any host"
  - action: network
    host: "internal.test"
    effect: allow
    reason: "the internal service"
"""
HOSTS = "10.0.0.1 other.test\n10.0.0.2 internal.test\n"

METADATA_V4 = ("169.254.169.254 is link-local (cloud metadata); only a rule naming it may "
               "allow it")
METADATA_V6 = "fd00:ec2::254 is unique local (cloud metadata); only a rule naming it may allow it"
METADATA_NAME = ("metadata.google.internal is link-local (cloud metadata); only a rule naming "
                 "it may allow it")
METADATA = [  # (the host as written in the URL, the host the gateway judges, the reason)
    pytest.param("169.254.169.254", "169.254.169.254", METADATA_V4, id="dotted"),
    pytest.param("0xa9fea9fe", "169.254.169.254", METADATA_V4, id="hex"),
    pytest.param("2852039166", "169.254.169.254", METADATA_V4, id="decimal"),
    pytest.param("[::ffff:169.254.169.254]", "169.254.169.254", METADATA_V4, id="v4-mapped"),
    pytest.param("[fd00:ec2::254]", "fd00:ec2::254", METADATA_V6, id="aws-v6"),
    pytest.param("metadata.google.internal", "metadata.google.internal", METADATA_NAME,
                 id="gcp-name"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gw = RunningGateway(tmp_path_factory.mktemp("sealed"), POLICY, hosts=HOSTS, sealed=True)
    yield gw
    code = gw.stop()
    assert code == 0, gw.read_stderr()
    assert "audit log flushed" in gw.read_stderr()
    verified = gw.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _status(result: subprocess.CompletedProcess[str]) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1] or 0)


def _decision(gateway: RunningGateway, before: int, **match: object) -> dict[str, object]:
    """The one decision logged after seq `before` whose members equal `match`."""
    found = gateway.wait_for(lambda e: "verdict" in e and int(str(e["seq"])) > before
                             and all(e.get(k) == v for k, v in match.items()))
    assert len(found) == 1, f"expected one audit entry with {match}, found {found}"
    return found[0]


def _last_seq(gateway: RunningGateway) -> int:
    return max(int(str(e["seq"])) for e in gateway.entries())


@pytest.mark.parametrize(("written", "host", "reason"), METADATA)
def test_metadata_over_plain_http_is_refused_in_every_spelling(gateway: RunningGateway, written: str, host: str, reason: str) -> None:
    """Each spelling of a metadata endpoint gets 403 naming the range, logged under the
    canonical host, although `*` and the default allow everything else."""
    before = _last_seq(gateway)
    result = gateway.curl(f"http://{written}/latest/meta-data/")
    assert _status(result) == 403
    assert f"({reason})" in result.stdout
    entry = _decision(gateway, before, event="request")
    assert (entry["verdict"], entry["host"], entry["port"]) == ("DENY", host, 80)
    assert (entry["reason"], entry["rule"], entry["status"]) == (reason, "default", 403)


@pytest.mark.parametrize(("written", "host", "reason"), METADATA)
def test_metadata_over_connect_is_refused_in_every_spelling(gateway: RunningGateway, written: str, host: str, reason: str) -> None:
    """The CONNECT for an https URL to a metadata endpoint is refused with 403."""
    before = _last_seq(gateway)
    result = gateway.curl(f"https://{written}/latest/meta-data/", write_out="%{http_connect}")
    assert result.stdout.split("\n")[0] == "403"
    assert "CONNECT tunnel failed, response 403" in result.stderr
    entry = _decision(gateway, before, event="connect")
    assert (entry["verdict"], entry["host"], entry["port"]) == ("DENY", host, 443)
    assert (entry["reason"], entry["rule"], entry["status"]) == (reason, "default", 403)


def test_name_allowed_by_wildcard_resolving_to_private_address_is_refused(gateway: RunningGateway) -> None:
    """A name only the wildcard allows may not resolve to a private address."""
    before = _last_seq(gateway)
    result = gateway.curl("http://other.test/")
    reason = ("other.test resolves to 10.0.0.1, which is private (RFC 1918); only a rule "
              "naming the host exactly, or that address, may allow it")
    assert _status(result) == 403 and f"({reason})" in result.stdout
    entry = _decision(gateway, before, event="request")
    assert (entry["verdict"], entry["host"], entry["reason"]) == ("DENY", "other.test", reason)
    assert entry["status"] == 403


def test_name_with_an_exact_rule_may_resolve_to_a_private_address(gateway: RunningGateway) -> None:
    """An exact rule lets a name resolve to 10.0.0.2: the policy allows it, and the
    sealed namespace, having no route there, answers 502."""
    before = _last_seq(gateway)
    result = gateway.curl("http://internal.test/")
    assert _status(result) == 502
    entry = _decision(gateway, before, event="request")
    assert (entry["verdict"], entry["host"], entry["port"]) == ("ALLOW", "internal.test", 80)
    assert (entry["reason"], entry["rule"]) == ("the internal service", 1)
    assert "status" not in entry
    done = gateway.wait_for(lambda e: e.get("event") == "done" and e.get("ref") == entry["seq"])
    assert done, "no completion entry for the allowed request"
    assert "Network is unreachable" in str(done[0]["error"])
