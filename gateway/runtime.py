"""The live gateway that every enforcement point in one process shares: the current
policy (swapped whole, never edited), the agents, the audit writer and the counters.

Readers take `runtime.policy` once per decision, so a request never sees half of a
reload. Reloads are validated first and rejected whole: the running policy stays,
the rejection is audited and shown in `status()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.agents import AgentDirectory, load_agents
from gateway.audit.format import record_from_decision
from gateway.audit.recovery import AuditUnavailable
from gateway.audit.writer import AuditWriter, Ticket
from gateway.engine import Decision, FileSystem, Request, decide
from gateway.errors import GatewayError
from gateway.policy.compiled import CompiledPolicy, compile_policy_text
from gateway.policy.load import read_policy_text
from gateway.policy.model import Mode

AUDIT_TIMEOUT = 5.0
TIMING_SAMPLES = 10_000


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A compiled policy with what identifies it: the SHA-256 of the file's text."""

    policy: CompiledPolicy
    sha256: str
    loaded_at: float


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
        """The engine's decision on the current policy, timed for `status()`."""
        policy = self._loaded.policy
        start = time.perf_counter_ns()
        decision = decide(policy, request, fs)
        self.timings_ns.append(time.perf_counter_ns() - start)
        return decision

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
            "audit": {"path": os.fspath(self.writer.path), "keyed": self.writer.keyed,
                      "ok": self.writer.error is None, "error": self.writer.error,
                      "sink_error": self.writer.sink_error},
        }


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
