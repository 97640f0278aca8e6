"""Who decides for the SDK: a policy file compiled in this process with an audit log
of its own (`LocalDecider`), or a running gateway asked through the decision API
(`RemoteDecider`). Either way each decision is recorded with source `sdk` before the
SDK acts on it, and a decision that cannot be recorded refuses (fail closed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.audit.keys import writer_key
from gateway.audit.writer import AuditWriter
from gateway.daemon.client import DecisionClient
from gateway.engine import Decision, Request, Verdict, decide_dynamic
from gateway.errors import GatewayError
from gateway.policy.model import Action, Mode
from gateway.runtime import AUDIT_TIMEOUT, Runtime

SOURCE = "sdk"
Details = Mapping[str, str | int | bool | None]


@dataclass(frozen=True, slots=True)
class Ruling:
    """A decision as the SDK acts on it: refuse when `blocks` (a DENY in enforce mode,
    or anything that could not be decided and recorded)."""

    verdict: str
    blocks: bool
    reason: str
    mode: str = Mode.ENFORCE.value
    seq: int | None = None

    @property
    def would_deny(self) -> bool:
        return self.verdict == Verdict.DENY.value and not self.blocks


def refused(reason: str) -> Ruling:
    return Ruling(Verdict.DENY.value, True, reason)


class Decider(Protocol):
    """Decides and records one action for the SDK."""

    agent: str | None

    def decide(self, action: Action, target: str, *, cwd: str | None = None,
               method: str | None = None, details: Details | None = None) -> Ruling:
        """The decision on `target`, recorded."""
        ...

    def decide_unjudged(self, action: Action, why: str, details: Details | None = None, *,
                        dynamic: bool) -> Ruling:
        """The decision on an action the engine cannot judge, recorded: one whose
        target is built at run time (`dynamic`: the policy's sdk.dynamic applies), or
        code that cannot be analysed (always a deny). `why` says which."""
        ...

    def close(self) -> None: ...


class LocalDecider:
    """A policy compiled in this process and an audit log this process writes: for an
    agent with no gateway beside it. The log is opened on the first decision and
    closed by `close()`; it may be opened again afterwards."""

    def __init__(self, policy: str | os.PathLike[str], audit_log: str | os.PathLike[str], *,
                 agent: str | None = None, key_file: str | os.PathLike[str] | None = None,
                 project_dir: str | None = None, simulate: bool = False) -> None:
        self.agent = agent
        self.audit_log = os.fspath(audit_log)
        self._key_file = key_file
        self._lock = threading.Lock()
        self._started = False
        # Raises PolicyError: a guard does not start on a bad policy.
        self.runtime = Runtime(policy, self._new_writer(), project_dir=project_dir,
                               simulate=simulate)

    def _new_writer(self) -> AuditWriter:
        return AuditWriter(self.audit_log, key=writer_key(self.audit_log, self._key_file,
                                                         os.environ))

    def _open(self) -> None:
        """Start a writer for the log (a writer starts once: each opening has its own);
        AuditUnavailable when the log cannot be opened."""
        with self._lock:
            if not self._started:
                self.runtime.writer = self._new_writer()
                self.runtime.writer.start()
                self._started = True

    def decide(self, action: Action, target: str, *, cwd: str | None = None,
               method: str | None = None, details: Details | None = None) -> Ruling:
        request = Request(action, target, cwd=cwd, agent=self.agent, method=method)
        return self._record(self.runtime.decide(request), details)

    def decide_unjudged(self, action: Action, why: str, details: Details | None = None, *,
                        dynamic: bool) -> Ruling:
        policy = self.runtime.policy
        decision = decide_dynamic(policy, action, why, agent=self.agent) if dynamic else \
            Decision(action, "", Verdict.DENY, why, policy.mode, agent=self.agent)
        return self._record(decision, {**(details or {}), "dynamic": dynamic})

    def _record(self, decision: Decision, details: Details | None) -> Ruling:
        try:
            self._open()
            seq = self.runtime.record(decision, SOURCE, details).result(AUDIT_TIMEOUT)
        except (GatewayError, ValueError) as e:  # AuditUnavailable, a bad key file
            return refused(f"audit log unavailable: {e}")
        return Ruling(decision.verdict.value, decision.blocks, decision.reason,
                      decision.mode.value, seq)

    def close(self) -> None:
        with self._lock:
            if self._started:
                self.runtime.writer.close()
                self._started = False


class RemoteDecider:
    """A running gateway's decision API (`unix:/path/api.sock`, a socket path, or
    `tcp:HOST:PORT`), asked as `agent` with `token`.

    A target built at run time is sent as `dynamic` (with why): the gateway's policy's
    `sdk.dynamic` decides it and the gateway records it. Code that cannot be analysed
    is sent with an empty target, which the gateway refuses and records.
    """

    def __init__(self, address: str, *, agent: str | None = None, token: str | None = None,
                 timeout: float = 5.0) -> None:
        self.agent = agent
        self.address = address.removeprefix("unix:")
        self._client = DecisionClient(self.address, agent=agent, token=token, source=SOURCE,
                                      timeout=timeout)
        self._lock = threading.Lock()

    def decide(self, action: Action, target: str, *, cwd: str | None = None,
               method: str | None = None, details: Details | None = None,
               dynamic: str | None = None) -> Ruling:
        try:
            with self._lock:
                reply = self._client.decide(action.value, target, cwd=cwd, method=method,
                                            details=details, dynamic=dynamic)
        except (GatewayError, ValueError) as e:
            return refused(f"no decision: {e}")
        reason = str(reply.get("reason") or reply.get("error") or "the gateway gave no reason")
        seq = reply.get("seq")
        return Ruling(str(reply.get("verdict", Verdict.DENY.value)),
                      reply.get("blocks") is not False, reason,
                      str(reply.get("mode", Mode.ENFORCE.value)),
                      seq if isinstance(seq, int) else None)

    def decide_unjudged(self, action: Action, why: str, details: Details | None = None, *,
                        dynamic: bool) -> Ruling:
        if dynamic:  # the gateway records it with "dynamic": true
            return self.decide(action, "", details=details, dynamic=why)
        asked = self.decide(action, "", details={**(details or {}), "dynamic": False})
        if not asked.blocks:  # simulate mode: the gateway records a would-deny
            return asked
        return Ruling(asked.verdict, True, why, asked.mode, asked.seq)

    def close(self) -> None:
        with self._lock:
            self._client.close()


def make_decider(*, policy: str | os.PathLike[str] | None = None,
                 audit_log: str | os.PathLike[str] | None = None,
                 gateway: str | None = None, agent: str | None = None,
                 token: str | None = None, key_file: str | os.PathLike[str] | None = None,
                 project_dir: str | None = None, simulate: bool = False) -> Decider:
    """A LocalDecider for `policy` + `audit_log`, or a RemoteDecider for `gateway`;
    GatewayError when the arguments do not say one of them."""
    if (policy is None) == (gateway is None):
        raise GatewayError("give either policy= (with audit_log=) or gateway=")
    if gateway is not None:
        if simulate or key_file or project_dir or audit_log:
            raise GatewayError("with gateway=, the gateway's own policy, mode and log "
                               "apply; pass only agent= and token=")
        return RemoteDecider(gateway, agent=agent, token=token)
    if audit_log is None:
        raise GatewayError("policy= needs audit_log=: every decision is recorded")
    assert policy is not None
    return LocalDecider(policy, audit_log, agent=agent, key_file=key_file,
                        project_dir=project_dir, simulate=simulate)
