"""The live gateway that every enforcement point in one process shares: the current
policy (swapped whole, never edited), the agents, the audit writer and the counters.

Readers take `runtime.policy` once per decision, so a request never sees half of a
reload. Reloads are validated first and rejected whole: the running policy stays,
the rejection is audited and shown in `status()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.agents import AgentDirectory, load_agents
from gateway.audit.format import record_from_decision
from gateway.audit.recovery import AuditUnavailable
from gateway.audit.writer import AuditWriter, Ticket
from gateway.egress import authority, constrains_paths, constrains_requests
from gateway.engine import Decision, FileSystem, Request, decide, decide_parsed
from gateway.errors import GatewayError
from gateway.execs import decide_exec
from gateway.matching.hosts import BadTarget, NetworkTarget, parse_network_target
from gateway.matching.targets import request_target
from gateway.policy.compiled import CompiledPolicy, compile_policy_text
from gateway.policy.load import read_policy_text
from gateway.policy.model import Action, Mode

AUDIT_TIMEOUT = 5.0
TIMING_SAMPLES = 10_000
CACHED_DECISIONS = 8_192


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A compiled policy with what identifies it (the SHA-256 of the file's text) and
    the decisions it has made: a decision is a pure function of policy and request, so
    a repeated request (the same host, the same URL) is answered from `decisions`. The
    cache lives and dies with its policy version, so a reload never serves a stale one."""

    policy: CompiledPolicy
    sha256: str
    loaded_at: float
    decisions: dict[Request, Decision] = field(default_factory=dict)
    connections: dict[Request, KnownConnection] = field(default_factory=dict)


def load_policy_version(path: str | os.PathLike[str], *, project_dir: str | None,
                        simulate: bool) -> LoadedPolicy:
    """Read and compile once, hashing exactly the text that was compiled. PolicyError
    for anything unusable. `simulate` forces simulate mode whatever the file says."""
    text = read_policy_text(path)
    policy = compile_policy_text(text, file=os.fspath(path), project_dir=project_dir)
    if simulate:
        policy = replace(policy, mode=Mode.SIMULATE)
    return LoadedPolicy(policy, hashlib.sha256(text.encode()).hexdigest(), time.time())


class Runtime:
    """One gateway's shared state. Thread-safe: the proxy's event loop, the decision
    API, the policy watcher and the admin socket all use one instance."""

    def __init__(self, policy_path: str | os.PathLike[str], writer: AuditWriter, *,
                 agents_path: str | os.PathLike[str] | None = None,
                 project_dir: str | None = None, simulate: bool = False) -> None:
        self.policy_path = Path(policy_path)
        self.agents_path = Path(agents_path) if agents_path else None
        self.project_dir = project_dir
        self.simulate = simulate
        self.writer = writer
        self.started = time.time()
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.timings_ns: deque[int] = deque(maxlen=TIMING_SAMPLES)
        self.cpu_ns: deque[int] = deque(maxlen=TIMING_SAMPLES)
        self.cache_hits = self.cache_misses = 0
        self.reloads = 0
        self.last_reload_error: str | None = None
        self._reload_lock = threading.Lock()
        # Raise here (PolicyError, AgentsFileError): a gateway does not start on a bad policy.
        self._loaded = load_policy_version(policy_path, project_dir=project_dir,
                                           simulate=simulate)
        self.agents = self._load_agents()

    @property
    def policy(self) -> CompiledPolicy:
        return self._loaded.policy

    @property
    def policy_sha256(self) -> str:
        return self._loaded.sha256

    def _load_agents(self) -> AgentDirectory:
        if self.agents_path is None:
            return AgentDirectory.empty()
        return load_agents(self.agents_path)

    # -- deciding and recording -----------------------------------------------------

    def decide(self, request: Request, fs: FileSystem | None = None) -> Decision:
        """The decision of the current policy, timed for `status()`. Decisions made
        without a filesystem are cached per policy version; with one (symlinks,
        scripts) they depend on the disk and are not."""
        with self._timed():
            return self._decide(self._loaded, request, fs)

    def decide_network(self, host: str, port: int, agent: str | None, *,
                       scheme: str | None = None, path: str | None = None,
                       method: str | None = None) -> Decision:
        """The proxy's decision for a connection to host:port (no `path`), or for a
        request on it (`scheme`, origin-form `path`, `method`). A request to a host whose
        rules constrain no methods or paths is decided as the connection itself, which
        the cache answers; others are decided on the connection's parsed target, not a
        URL parsed again. Either way the engine's answer for the request's URL."""
        loaded = self._loaded
        with self._timed():
            connection = Request(Action.NETWORK, authority(host, port), agent=agent)
            if path is None:
                return self._decide(loaded, connection, None)
            known = loaded.connections.get(connection)
            if known is None:
                known = _connection(loaded.policy, connection.target, port, agent)
                _remember(loaded.connections, connection, known)
            url = f"{scheme}://{connection.target}{path}"
            request = Request(Action.NETWORK, url, agent=agent, method=method)
            target = _parsed_request(known, scheme or "http", path, url)
            if target is None:  # an unusual URL: the engine reads it and says what is wrong
                return self._decide(loaded, request, None)
            if not known.constrained:
                return self._decide(loaded, connection, None)
            if not known.paths and method is not None:  # only the method matters
                return self._decide(loaded, Request(Action.NETWORK, connection.target,
                                                    agent=agent, method=method), None)
            self.cache_misses += 1
            return decide_parsed(loaded.policy, request, target)

    def decide_exec(self, argv: Sequence[str], *, cwd: str | None, agent: str | None,
                    script: str | None, script_path: str | None,
                    env: Iterable[str]) -> Decision:
        """The decision on executing `argv` directly (`gateway.execs`), timed."""
        with self._timed():
            self.cache_misses += 1
            return decide_exec(self._loaded.policy, argv, cwd=cwd, agent=agent,
                               script=script, script_path=script_path, env=env)

    def _decide(self, loaded: LoadedPolicy, request: Request,
                fs: FileSystem | None) -> Decision:
        decision = loaded.decisions.get(request) if fs is None else None
        if decision is not None:
            self.cache_hits += 1
            return decision
        self.cache_misses += 1
        decision = decide(loaded.policy, request, fs)
        if fs is None:
            _remember(loaded.decisions, request, decision)
        return decision

    def _timed(self) -> _Stopwatch:
        return _Stopwatch(self.timings_ns, self.cpu_ns)

    def record(self, decision: Decision, source: str,
               details: Mapping[str, object] | None = None) -> Ticket:
        """Queue the decision's audit entry. AuditUnavailable when the log has failed:
        the caller must then refuse the action (fail closed)."""
        entry = record_from_decision(decision, source=source, details=details)
        ticket = self.writer.submit(entry)
        self.counts[(source, decision.verdict.value, decision.mode.value)] += 1
        return ticket

    def note(self, record: Mapping[str, object], *, deferred: bool = False) -> Ticket | None:
        """Queue a record that follows a decision already recorded (a reload, a request's
        completion: `deferred`, nobody waits for it); None when the log is down, which
        `status()` already shows."""
        try:
            return self.writer.submit(record, deferred=deferred)
        except (AuditUnavailable, ValueError):
            return None

    # -- reloading ------------------------------------------------------------------

    def reload(self, why: str) -> str | None:
        """Load the policy and agents files again and swap them in whole; on any error
        keep what runs, audit the rejection and return its message (None on success)."""
        with self._reload_lock:
            try:
                loaded = load_policy_version(self.policy_path, project_dir=self.project_dir,
                                             simulate=self.simulate)
                agents = self._load_agents()
            except GatewayError as e:
                self.last_reload_error = str(e)
                self.note({"source": "gateway", "action": "policy", "event": "rejected",
                           "reason": f"{why}: {e}", "path": os.fspath(self.policy_path)})
                return str(e)
            changed = loaded.sha256 != self._loaded.sha256
            self._loaded, self.agents = loaded, agents
            self.last_reload_error = None
            self.reloads += 1
            self.note({"source": "gateway", "action": "policy", "event": "loaded",
                       "reason": why, "path": os.fspath(self.policy_path),
                       "sha256": loaded.sha256, "changed": changed})
            return None

    # -- reporting ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        samples = sorted(self.timings_ns)
        by_verdict: Counter[str] = Counter()
        by_source: Counter[str] = Counter()
        for (source, verdict, mode), n in self.counts.items():
            label = "would_deny" if verdict == "DENY" and mode == "simulate" else verdict.lower()
            by_verdict[label] += n
            by_source[source] += n
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "policy": {"path": os.fspath(self.policy_path), "sha256": self.policy_sha256,
                       "mode": self.policy.mode.value, "rules": len(self.policy.rules),
                       "loaded_at": round(self._loaded.loaded_at, 3),
                       "reloads": self.reloads, "last_error": self.last_reload_error},
            "agents": list(self.agents.names),
            "decisions": {"total": sum(by_verdict.values()), **dict(by_verdict),
                          "by_source": dict(by_source)},
            "decision_us": _percentiles(samples),
            "decision_cpu_us": _percentiles(sorted(self.cpu_ns)),
            "decision_cache": {"hits": self.cache_hits, "misses": self.cache_misses},
            "audit": {"path": os.fspath(self.writer.path), "keyed": self.writer.keyed,
                      "ok": self.writer.error is None, "error": self.writer.error,
                      "sink_error": self.writer.sink_error},
        }


class _Stopwatch:
    """Samples a decision's wall time, and this thread's CPU time (the decision's own
    cost, without the moments the OS or another thread had the CPU). A collection
    triggered by the request's other allocations is not the decision's cost and must
    not stall one: it runs right after instead."""

    __slots__ = ("_collecting", "_cpu", "_cpu_ns", "_start", "_wall_ns")

    def __init__(self, wall_ns: deque[int], cpu_ns: deque[int]) -> None:
        self._wall_ns, self._cpu_ns = wall_ns, cpu_ns

    def __enter__(self) -> None:
        self._collecting = gc.isenabled()
        gc.disable()
        self._start, self._cpu = time.perf_counter_ns(), time.thread_time_ns()

    def __exit__(self, *exc: object) -> None:
        self._cpu_ns.append(time.thread_time_ns() - self._cpu)
        self._wall_ns.append(time.perf_counter_ns() - self._start)
        if self._collecting:
            gc.enable()


@dataclass(frozen=True, slots=True)
class KnownConnection:
    """host:port for one agent, parsed once per policy version: its target (None when
    unparsable: requests are then decided the long way), and whether requests there are
    constrained by methods/paths rules, and by paths rules."""

    target: NetworkTarget | None
    constrained: bool
    paths: bool


def _connection(policy: CompiledPolicy, text: str, port: int, agent: str | None
                ) -> KnownConnection:
    try:
        target = parse_network_target(text)
    except BadTarget:
        return KnownConnection(None, True, True)
    return KnownConnection(target, constrains_requests(policy, target, port, agent),
                           constrains_paths(policy, target, port, agent))


def _parsed_request(known: KnownConnection, scheme: str, path: str,
                    url: str) -> NetworkTarget | None:
    if known.target is None or not path.startswith("/"):
        return None
    try:
        return request_target(known.target, scheme, path, url)
    except BadTarget:
        return None


def _remember(cache: dict[Request, Any], key: Request, value: object) -> None:
    if len(cache) >= CACHED_DECISIONS:
        cache.clear()  # bounded; a policy's working set refills it at once
    cache[key] = value


def _percentiles(samples: list[int]) -> dict[str, float | int]:
    if not samples:
        return {"count": 0}
    def at(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(q * len(samples)))] / 1000, 1)
    return {"count": len(samples), "p50": at(0.50), "p99": at(0.99), "max": at(1.0)}


async def durable(ticket: Ticket, timeout: float = AUDIT_TIMEOUT) -> int:
    """Wait on the event loop, without a thread, until the entry is on disk; its seq.
    AuditUnavailable when it failed or took longer than `timeout`."""
    if not ticket.done():
        loop = asyncio.get_running_loop()
        settled = loop.create_future()

        def wake(_: Ticket) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while we waited
                loop.call_soon_threadsafe(_set, settled)

        ticket.add_done_callback(wake)
        try:
            await asyncio.wait_for(settled, timeout)
        except TimeoutError:
            raise AuditUnavailable(f"audit entry not durable within {timeout} s") from None
    return ticket.result(0)


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
