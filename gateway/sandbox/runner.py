"""`gateway run`: prepare everything outside the agent's namespaces (policy, plan, the
gateway, the shim, the CA, the agent's network), prove the confinement holds, then run
the command through the stage and report what it did.

Order matters for failing closed: nothing of the command runs until the plan is
complete, the gateway answers, the shim is installed and checked, and the self-test
has shown that the only way out of the agent's network is the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gateway.agents import add_agent
from gateway.audit.recovery import read_tail
from gateway.daemon.state import (
    default_state_dir,
    loop_factory,
)
from gateway.engine import Verdict, decide, make_request
from gateway.errors import GatewayError
from gateway.fs.overlay import create_workspace
from gateway.fs.plan import DEFAULT_OVERLAY_DIR, MountPlan, plan_mounts
from gateway.fs.tree import LocalTree
from gateway.policy.compiled import CompiledPolicy, load_policy
from gateway.sandbox.agentenv import (
    AGENT_PATH,
    API_PORT,
    PROXY_PORT,
    agent_environment,
    ca_files,
    terminals,
)
from gateway.sandbox.netns import PROBE_HOST
from gateway.sandbox.relay import Relay, Target
from gateway.sandbox.rootfs import HOSTS, RootSpec, base_entries, root_script, shells_to_cover
from gateway.sandbox.stage import FORWARDED, FROM_TERMINAL, StageSpec
from gateway.sandbox.upstream import EmbeddedGateway, Endpoints, gateway_at, running_gateway
from gateway.shim.install import check_shims, install_shims

SELFTEST_AGENT = "gateway-selftest"


@dataclass(frozen=True, slots=True)
class RunConfig:
    argv: tuple[str, ...]
    policy: Path
    agent: str = "agent"
    workspace: Path | None = None
    project_dir: str | None = None
    gateway: str | None = None  # a running gateway's state directory, or its proxy's address
    gateway_api: str | None = None  # with an address: its decision API
    gateway_ca: Path | None = None  # with an address: its CA certificate
    token: str | None = None
    simulate: bool = False
    audit_log: Path | None = None
    audit_key_file: Path | None = None
    overlay_dir: str | None = None  # /var/lib/gateway/overlay; without root, STATE_DIR/overlay
    user: tuple[int, int] | None = None
    max_entries: int = 100_000
    hosts_file: Path | None = None
    upstream_ca: Path | None = None
    clean_env: bool = False
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(slots=True)
class RunResult:
    """What the summary needs: the log and the seq the run started after. `started`
    is False when the stage stopped before the command (it said why)."""

    exit_code: int
    started: bool
    audit_log: Path | None
    since_seq: int
    agent: str
    notes: list[str]


class ConfinedRun:
    """One `gateway run`. `err` gets its messages (never the agent's output)."""

    def __init__(self, config: RunConfig, err: TextIO = sys.stderr) -> None:
        self.config = config
        self.err = err
        self.notes: list[str] = []
        self._cleanups: list[Callable[[], object]] = []

    def run(self) -> RunResult:
        """Set up, run, clean up. SIGTERM while setting up stops the run cleanly (the
        gateway started for it is stopped too); while CMD runs it goes to CMD."""
        previous = signal.signal(signal.SIGTERM, _interrupted)
        try:
            return self._run()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
            for cleanup in reversed(self._cleanups):
                cleanup()
            signal.signal(signal.SIGTERM, previous)

    # -- preparation --------------------------------------------------------------------

    def _run(self) -> RunResult:
        config = self.config
        userns = os.geteuid() != 0
        workdir, project_dir = self._check_options(userns)
        policy = load_policy(config.policy, project_dir=project_dir)
        probe = self._probe(policy)
        overlay_dir = config.overlay_dir or (str(default_state_dir() / "overlay") if userns
                                             else DEFAULT_OVERLAY_DIR)
        plan = self._plan(policy, overlay_dir, project_dir)
        run_dir = self._run_dir()
        agent_dir, private = run_dir / "agent", run_dir / "private"

        ready, token, probe_agent = self._gateway(plan, private, project_dir)
        shim_dir = agent_dir / "shim"
        installed = install_shims(shim_dir, api=f"tcp:127.0.0.1:{API_PORT}", policy=policy,
                                  real_dir=agent_dir / "real", path=AGENT_PATH).installed
        report = check_shims(shim_dir)
        if report.problems:
            raise GatewayError("the shim failed its check: " + "; ".join(report.problems))
        endpoints = ready()
        since = _last_seq(endpoints.audit_log)
        bundle, gateway_ca = ca_files(agent_dir / "ca", endpoints.ca_cert)
        (agent_dir / "hosts").write_text(HOSTS)
        for path in (agent_dir, *agent_dir.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

        spec_root = RootSpec(run_dir=str(agent_dir), shim=str(shim_dir / "gateway-shim"),
                             hosts=str(agent_dir / "hosts"), workdir=workdir,
                             terminals=terminals())
        base = base_entries(policy, spec_root.base, config.agent, self.notes)
        shells = shells_to_cover()
        (private / "root.sh").write_text(root_script(plan, spec_root, base, shells,
                                                     unprivileged=userns))
        (private / "root").mkdir()
        uid, gid = (0, 0) if userns else config.user or _owner(workdir)
        control, stage_end = socket.socketpair()
        self._cleanups += [control.close, stage_end.close]
        spec = StageSpec(
            control_fd=stage_end.fileno(), proxy_port=PROXY_PORT, api_port=API_PORT,
            probe_credentials=None if probe is None else probe_agent, userns=userns,
            script=str(private / "root.sh"), root=str(private / "root"), workdir=workdir,
            argv=list(config.argv),
            env=agent_environment(config.environ, agent=config.agent, token=token,
                                  shim_dir=shim_dir, bundle=bundle, gateway_ca=gateway_ca,
                                  clean=config.clean_env),
            uid=uid, gid=gid, path=AGENT_PATH,
            real_shells={shell: installed[os.path.basename(shell)] for shell in shells
                         if os.path.basename(shell) in installed})
        spec_file = private / "stage.json"
        spec_file.write_text(json.dumps(_fields(spec)))
        for note in self.notes + list(plan.notes):
            print(f"gateway run: note: {note}", file=self.err)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            code, started = runner.run(self._serve(control, stage_end, endpoints, spec_file))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the gateway stops: the log completes
        for cleanup in reversed(self._cleanups):
            cleanup()
        self._cleanups.clear()
        return RunResult(exit_code=code, started=started, audit_log=endpoints.audit_log,
                         since_seq=since, agent=config.agent, notes=self.notes)

    def _check_options(self, userns: bool) -> tuple[str, str]:
        """The working directory and ${PROJECT_DIR}; GatewayError for options that
        cannot go together."""
        config = self.config
        if userns and config.user is not None:
            raise GatewayError("--user needs root: without it the agent runs as you")
        if config.gateway is None and (config.gateway_api or config.gateway_ca):
            raise GatewayError("--gateway-api and --gateway-ca go with --gateway HOST:PORT")
        if config.gateway is not None:
            own = [flag for flag, value in (
                ("--simulate", config.simulate), ("--audit-log", config.audit_log),
                ("--audit-key-file", config.audit_key_file), ("--hosts-file", config.hosts_file),
                ("--upstream-ca", config.upstream_ca)) if value]
            if own:
                raise GatewayError(f"{', '.join(own)}: for the run's own gateway only; the "
                                   "running gateway keeps its own settings")
        workdir = os.path.abspath(config.workspace or os.getcwd())
        if not os.path.isdir(workdir):
            raise GatewayError(f"--workspace {workdir}: not a directory")
        return workdir, config.project_dir or workdir

    def _running_gateway(self) -> Endpoints:
        """The gateway --gateway names: a state directory on this machine, or the
        proxy's address with --gateway-api and --gateway-ca."""
        config = self.config
        assert config.gateway is not None
        by_address = config.gateway_api is not None or config.gateway_ca is not None
        if not by_address and os.path.isdir(config.gateway):
            return running_gateway(Path(config.gateway))
        if config.gateway_api is None or config.gateway_ca is None:
            raise GatewayError(f"--gateway {config.gateway}: not a state directory; a "
                               "gateway given by its proxy's address needs --gateway-api "
                               "and --gateway-ca")
        return gateway_at(config.gateway, config.gateway_api, config.gateway_ca)

    def _gateway(self, plan: MountPlan, private: Path,
                 project_dir: str) -> tuple[Callable[[], Endpoints], str, str]:
        """Start the run's gateway (or find the running one): a call that waits until it
        listens, the agent's token, and the self-test's NAME:TOKEN (empty: anonymous)."""
        config = self.config
        watched = self._writable(plan)
        if config.gateway is not None:
            running = self._running_gateway()
            if running.audit_log is not None:
                self._check_log_hidden(plan, running.audit_log)
            if watched:
                self.notes.append("writes are recorded only if the running gateway watches "
                                  "the writable mounts (gateway up --watch)")
            return (lambda: running), config.token or config.environ.get("GATEWAY_TOKEN", ""), ""
        log = config.audit_log or default_state_dir() / "audit.jsonl"
        key = config.audit_key_file or config.environ.get("GATEWAY_AUDIT_KEY_FILE")
        self._check_log_hidden(plan, log, Path(key) if key else Path(f"{log}.key"))
        agents = private / "agents.yaml"
        token = add_agent(agents, config.agent)
        probe = f"{SELFTEST_AGENT}:{add_agent(agents, SELFTEST_AGENT)}"
        gateway = EmbeddedGateway(private, self._gateway_args(log, agents, project_dir, watched))
        self._cleanups.append(gateway.stop)
        gateway.launch()  # it starts while the shim is built
        return gateway.ready, token, probe

    def _probe(self, policy: CompiledPolicy) -> bool | None:
        """Whether the self-test probes the proxy (None: not in simulate mode, where
        nothing would be refused). A policy that allows the probe's address cannot pass
        the self-test."""
        if self.config.simulate:
            return None
        for agent in (SELFTEST_AGENT, None):
            request = make_request("network", f"http://{PROBE_HOST}/", agent=agent)
            if decide(policy, request).verdict is not Verdict.DENY:
                raise GatewayError(f"the self-test failed: the policy allows {PROBE_HOST}, "
                                   "its denied host (a documentation address); remove that "
                                   "rule")
        return True

    def _plan(self, policy: CompiledPolicy, overlay_dir: str, project_dir: str) -> MountPlan:
        try:
            plan = plan_mounts(policy, LocalTree(), overlay_dir=overlay_dir,
                               max_entries=self.config.max_entries, agent=self.config.agent)
        except ValueError as e:
            raise GatewayError(str(e)) from None
        if not plan.complete:
            raise GatewayError(f"the mount plan is incomplete: more than "
                               f"{self.config.max_entries} paths to examine, so denied "
                               "paths past that would not be masked; raise --max-entries")
        for mount in plan.mounts:
            if mount.kind == "overlay" and mount.upper and mount.source:
                workspace = os.path.dirname(mount.upper)
                if not os.path.exists(os.path.join(workspace, "gateway-overlay.json")):
                    create_workspace(workspace, lower=mount.source, target=mount.target,
                                     policy=os.path.abspath(self.config.policy),
                                     project_dir=project_dir)
        return plan

    def _writable(self, plan: MountPlan) -> list[tuple[str, str]]:
        """(host directory, the path the agent sees) of each writable mount."""
        out = []
        for mount in plan.mounts:
            if mount.kind == "overlay" and mount.upper:
                out.append((mount.upper, mount.target))
            elif mount.kind == "bind" and not mount.readonly and mount.is_dir and mount.source:
                out.append((mount.source, mount.target))
        return out

    def _run_dir(self) -> Path:
        base = "/run" if os.access("/run", os.W_OK) else None
        run_dir = Path(tempfile.mkdtemp(prefix="gateway-run-", dir=base))
        self._cleanups.append(lambda: shutil.rmtree(run_dir, ignore_errors=True))
        os.chmod(run_dir, 0o711)
        (run_dir / "agent").mkdir(mode=0o755)
        (run_dir / "private").mkdir(mode=0o700)
        return run_dir

    def _gateway_args(self, log: Path, agents: Path, project_dir: str,
                      watched: list[tuple[str, str]]) -> list[str]:
        config = self.config
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        args = ["--policy", str(config.policy), "--agents", str(agents),
                "--project-dir", project_dir, "--audit-log", str(log)]
        optional = (("--audit-key-file",
                    config.audit_key_file), ("--hosts-file", config.hosts_file),
                    ("--upstream-ca", config.upstream_ca))
        for flag, value in optional:
            if value is not None:
                args += [flag, str(value)]
        if config.simulate:
            args.append("--simulate")
        for host, seen in watched:
            args += ["--watch", f"{host}={seen}"]
        if watched:
            args += ["--watch-agent", config.agent]
        return args

    def _check_log_hidden(self, plan: MountPlan, *paths: Path) -> None:
        """The agent must not see the log or its key: refuse a plan that shows them."""
        for path in paths:
            real = os.path.realpath(path)
            for mount in plan.mounts:
                for source in (mount.source, mount.upper):
                    if source and (real == source
                                   or real.startswith(source.rstrip("/") + "/")):
                        raise GatewayError(
                            f"{path} (the audit log or its key) would be visible to the "
                            f"agent through {mount.target}; keep it outside what the policy "
                            "lets the agent read (--audit-log, --audit-key-file)")


    # -- the run ------------------------------------------------------------------------

    async def _serve(self, control: socket.socket, stage_end: socket.socket,
                     endpoints: Endpoints, spec_file: Path) -> tuple[int, bool]:
        """Start the stage, serve the listeners it hands over, and wait for it."""
        loop = asyncio.get_running_loop()
        stage: list[asyncio.subprocess.Process] = []
        for sig in FORWARDED:
            loop.add_signal_handler(sig, _forward, stage, sig)
        for sig in FROM_TERMINAL:
            loop.add_signal_handler(sig, lambda: None)
        relays: list[Relay] = []
        started = False
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.sandbox.stage", str(spec_file),
                pass_fds=(stage_end.fileno(),), env=_stage_environment())
            stage.append(process)
            stage_end.close()
            message, fds, _, _ = await loop.run_in_executor(None, socket.recv_fds, control,
                                                            1024, 8)
            if message:
                counts = json.loads(message)
                listeners = [socket.socket(fileno=fd) for fd in fds]
                for listener in listeners:
                    listener.setblocking(False)
                split = counts["proxy"]
                relays = [Relay(listeners[:split], Target(host=endpoints.proxy_host,
                                                          port=endpoints.proxy_port)),
                          Relay(listeners[split:], Target.parse(endpoints.api))]
                for relay in relays:
                    await relay.start()
                control.sendall(b"g")
                # The stage says when the command starts; closing without it means the
                # stage stopped first (and said why).
                started = await loop.run_in_executor(None, control.recv, 1) == b"r"
            code = await process.wait()
            return (code if code >= 0 else 128 - code), started
        finally:
            for sig in (*FORWARDED, *FROM_TERMINAL):
                loop.remove_signal_handler(sig)
            for relay in relays:
                await relay.close()


def _interrupted(signum: int, _frame: object) -> None:
    raise GatewayError(f"stopped by {signal.Signals(signum).name} before the command ran")


def _forward(stage: list[asyncio.subprocess.Process], sig: signal.Signals) -> None:
    """Pass `sig` to the stage once it runs (it passes it on to the agent)."""
    for process in stage:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


def _stage_environment() -> dict[str, str]:
    """Only what the stage's interpreter needs to start: the caller's other variables
    (an audit key among them, perhaps) stay out of the processes beside the agent."""
    return {k: v for k, v in os.environ.items()
            if k in ("PATH", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LANG")}


def _fields(spec: StageSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in StageSpec.__dataclass_fields__}


def _owner(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_uid, info.st_gid


def _last_seq(log: Path | None) -> int:
    """The seq of the log's last entry before the run (-1 for none or unreadable)."""
    if log is None:
        return -1
    try:
        entry = read_tail(log).entry
    except (OSError, GatewayError):
        return -1
    seq = entry.get("seq") if entry else None
    return seq if isinstance(seq, int) else -1
