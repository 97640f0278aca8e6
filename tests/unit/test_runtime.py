"""Runtime: the live policy that every enforcement point of one process shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.writer import AuditWriter
from gateway.egress import authority
from gateway.engine import Request, Verdict, decide
from gateway.localfs import LocalFileSystem
from gateway.policy.model import Action
from gateway.runtime import CACHED_DECISIONS, Runtime

POLICY = "version: 1\ndefault: deny\nrules:\n  - {action: network, host: a.example, effect: allow}\n"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    with AuditWriter(tmp_path / "audit.jsonl", key=b"k" * 32) as writer:
        yield Runtime(tmp_path / "policy.yaml", writer)


def test_a_repeated_request_is_answered_from_the_cache(runtime: Runtime) -> None:
    """The same request twice: one engine decision, one cache hit, the same answer."""
    request = Request(Action.NETWORK, "a.example:443", agent="anonymous")
    first, second = runtime.decide(request), runtime.decide(request)
    assert first is second and first.verdict is Verdict.ALLOW
    assert (runtime.cache_hits, runtime.cache_misses) == (1, 1)
    assert runtime.status()["decision_cache"] == {"hits": 1, "misses": 1}


def test_a_reload_starts_a_new_cache(runtime: Runtime) -> None:
    """A cached decision never outlives the policy version that made it."""
    request = Request(Action.NETWORK, "a.example:443")
    assert runtime.decide(request).verdict is Verdict.ALLOW
    runtime.policy_path.write_text(POLICY.replace("effect: allow", "effect: deny"))
    assert runtime.reload("test") is None
    assert runtime.decide(request).verdict is Verdict.DENY


def test_decisions_that_read_the_filesystem_are_not_cached(runtime: Runtime, tmp_path: Path) -> None:
    """With a filesystem at hand a decision depends on the disk, so it is made each time."""
    request = Request(Action.FILE_READ, str(tmp_path / "x"))
    runtime.decide(request, LocalFileSystem())
    runtime.decide(request, LocalFileSystem())
    assert runtime.cache_hits == 0 and runtime.cache_misses == 2


def test_the_cache_is_bounded(runtime: Runtime) -> None:
    """A stream of distinct requests never holds more than CACHED_DECISIONS decisions."""
    for n in range(CACHED_DECISIONS + 10):
        runtime.decide(Request(Action.NETWORK, f"h{n}.example:443"))
    assert len(runtime._loaded.decisions) <= CACHED_DECISIONS


def test_decision_time_is_sampled_in_wall_and_cpu_time(runtime: Runtime) -> None:
    """status() reports percentiles of both clocks over the recent decisions."""
    for _ in range(5):
        runtime.decide(Request(Action.NETWORK, "a.example:443"))
    status = runtime.status()
    assert status["decision_us"]["count"] == status["decision_cpu_us"]["count"] == 5
    assert status["decision_cpu_us"]["p50"] > 0 and status["decision_us"]["p50"] > 0


def test_requests_to_unconstrained_hosts_are_decided_as_the_connection(tmp_path: Path) -> None:
    """Where no rule constrains methods or paths, a request's decision is its host:port's
    (one engine call, then the cache); where one does, each request is decided itself."""
    (tmp_path / "policy.yaml").write_text(POLICY + (
        "  - {action: network, host: git.example, methods: [GET], effect: allow}\n"))
    with AuditWriter(tmp_path / "audit.jsonl", key=b"k" * 32) as writer:
        runtime = Runtime(tmp_path / "policy.yaml", writer)
        connect = runtime.decide_network("a.example", 443, "anonymous")
        for n in range(3):
            request = runtime.decide_network("a.example", 443, "anonymous", scheme="https",
                                             path=f"/p{n}", method="POST")
            assert request is connect
        assert runtime.cache_misses == 1
        get = runtime.decide_network("git.example", 443, None, scheme="https", path="/x",
                                     method="GET")
        post = runtime.decide_network("git.example", 443, None, scheme="https", path="/x",
                                      method="POST")
        assert (get.verdict, post.verdict) == (Verdict.ALLOW, Verdict.DENY)
        assert post.reason == "git.example matches no allow rule; the policy default is deny"


PATHS_POLICY = """version: 1
default: deny
rules:
  - {action: network, host: git.example, methods: [GET, HEAD], effect: allow}
  - {action: network, host: git.example, methods: [POST], paths: ["/*/git-upload-pack"], effect: allow}
  - {action: network, host: git.example, paths: ["/admin/**", "/.git/**"], effect: deny}
  - {action: network, host: "*.example", ports: [8443], paths: ["/v1/**"], effect: allow}
  - {action: network, host: plain.example, effect: allow}
  - {action: network, host: "10.1.2.3", paths: ["/ok/**"], effect: allow}
  - {action: network, host: methods.example, methods: [GET], effect: allow}
  - {action: network, host: methods.example, methods: [DELETE], agents: [anonymous], effect: deny}
"""


@pytest.fixture(scope="module")
def paths_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    directory = tmp_path_factory.mktemp("runtime")
    (directory / "policy.yaml").write_text(PATHS_POLICY)
    with AuditWriter(directory / "audit.jsonl", key=b"k" * 32) as writer:
        yield Runtime(directory / "policy.yaml", writer)


@settings(max_examples=400, deadline=None)
@given(host=st.sampled_from(["git.example", "api.example", "plain.example", "10.1.2.3",
                             "methods.example",
                             "::1", "xn--fa-hia.example"]),
       port=st.sampled_from([443, 8443, 80]),
       scheme=st.sampled_from(["https", "http", "HTTPS"]),
       tail=st.lists(st.sampled_from(["/", "a", "v1", "admin", ".git", "..", ".", "%2e",
                                      "%2F", "?", "#", "=", "git-upload-pack", "\x7f", " ",
                                      "é", "//", "%", "\n"]), max_size=8).map("".join),
       method=st.sampled_from(["GET", "POST", "put", "HEAD", "delete"]),
       agent=st.sampled_from([None, "anonymous"]))
def test_the_proxys_request_decision_is_the_engines_for_the_url(
        paths_runtime: Runtime, host: str, port: int, scheme: str, tail: str, method: str,
        agent: str | None) -> None:
    """Decided on the connection's parsed target (or as the connection, where nothing
    constrains requests), a request gets exactly what the engine says of its URL."""
    path = "/" + tail
    fast = paths_runtime.decide_network(host, port, agent, scheme=scheme, path=path,
                                        method=method)
    url = f"{scheme}://{authority(host, port)}{path}"
    reference = decide(paths_runtime.policy, Request(Action.NETWORK, url, agent=agent,
                                                     method=method))
    assert (fast.verdict, fast.rule, fast.reason, fast.target, fast.port) == \
        (reference.verdict, reference.rule, reference.reason, reference.target, reference.port)
