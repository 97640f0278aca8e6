"""`gateway up`, `gateway status`, `gateway reload` and `gateway env`: the daemon and
the admin calls that only its owner can make."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.daemon.client import admin_call
from gateway.daemon.state import default_state_dir, environment_lines, read_state
from gateway.errors import RequestError

EXIT_OK = 0
EXIT_FAILED = 1


def add_commands(sub: Any) -> None:
    """Register up, status, reload and env on the `gateway` parser's subcommands."""
    up = sub.add_parser(
        "up", help="run the gateway: egress proxy, decision API, audit log",
        description="Run the gateway in the foreground: the egress proxy that agents' "
                    "traffic must pass through, the decision API for the shim, watcher "
                    "and SDK, the audit writer, and a watcher that reloads the policy when "
                    "its file changes (or on SIGHUP). Prints where everything is on "
                    "stderr and the agent's environment lines on stdout. SIGTERM or "
                    "SIGINT stop it with the audit log flushed.")
    up.add_argument("--policy", metavar="FILE", default="policies/default.yaml",
                    help="policy file (default: %(default)s)")
    up.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:8080",
                    type=_address, help="proxy address (default: %(default)s; port 0 picks "
                                        "a free one)")
    up.add_argument("--simulate", action="store_true",
                    help="block nothing; record every would-deny with mode 'simulate'")
    up.add_argument("--audit-log", metavar="PATH", type=Path,
                    help="audit log (default: STATE_DIR/audit.jsonl)")
    up.add_argument("--audit-key-file", metavar="FILE", type=Path,
                    help="HMAC key for the log (default: $GATEWAY_AUDIT_KEY_FILE, "
                         "$GATEWAY_AUDIT_KEY, else LOG.key, created with mode 0600)")
    up.add_argument("--checkpoint-sink", metavar="PATH|'|COMMAND ARGS'",
                    help="also hand every signed checkpoint of the audit log to this file (on "
                         "another mount) or, after '|', to this command's stdin (run without "
                         "a shell): a copy the gateway host cannot rewrite shows truncation")
    up.add_argument("--agents", metavar="FILE", type=Path,
                    help="agents file: names and token hashes (see `gateway agents`); "
                         "without one every client is agent 'anonymous'")
    up.add_argument("--api-listen", metavar="HOST:PORT", type=_address,
                    help="also serve the decision API on TCP, for agents in other "
                         "containers (it can only decide and record)")
    up.add_argument("--api-socket", metavar="PATH", type=Path,
                    help="decision API Unix socket (default: STATE_DIR/api.sock)")
    up.add_argument("--admin-socket", metavar="PATH", type=Path,
                    help="admin Unix socket, owner only (default: STATE_DIR/admin.sock)")
    up.add_argument("--hosts-file", metavar="FILE", type=Path,
                    help="names pinned to addresses (/etc/hosts syntax), consulted before "
                         "DNS")
    up.add_argument("--upstream-ca", metavar="FILE", type=Path,
                    help="CA bundle for verifying upstream servers of decrypted connections "
                         "(default: the system's)")
    up.add_argument("--watch", metavar="DIR[=AGENT_PATH]", type=_watched, action="append",
                    default=[],
                    help="record every change under DIR (a writable mount of the agents) in "
                         "the audit log, judged by the file_write rules at the path the agent "
                         "sees: AGENT_PATH when given (an overlay's upper directory is seen "
                         "at its mount's target), else DIR (repeatable)")
    up.add_argument("--watch-agent", metavar="NAME",
                    help="the agent the --watch changes are recorded for")
    up.add_argument("--project-dir", metavar="DIR",
                    help="value of ${PROJECT_DIR} in the policy")
    _add_state_dir(up)
    up.set_defaults(run=_run_up)

    status = sub.add_parser(
        "status", help="show a running gateway's health",
        description="Uptime, policy hash and mode, the last rejected reload, decision "
                    "counts, decision latency and audit log health of a running gateway, "
                    "asked on its admin socket. Exit 1 when the audit log has failed or "
                    "the last reload was rejected.")
    _add_admin_target(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=_run_status)

    reload = sub.add_parser(
        "reload", help="reload a running gateway's policy now",
        description="Ask a running gateway to reload its policy and agents files. An "
                    "invalid policy is rejected and the running one kept (exit 1).")
    _add_admin_target(reload)
    reload.set_defaults(run=_run_reload)

    env = sub.add_parser(
        "env", help="print the environment an agent needs to use a running gateway",
        description="Print the proxy and CA variables for an agent, with its credentials "
                    "in the proxy URL when --agent and --token are given.")
    _add_state_dir(env)
    env.add_argument("--agent", metavar="NAME")
    env.add_argument("--token", metavar="TOKEN")
    env.set_defaults(run=_run_env)


def _add_state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", metavar="DIR", type=Path, default=None,
                   help="where the CA, sockets and default audit log live (default: "
                        "$GATEWAY_STATE_DIR, else $XDG_STATE_HOME/gateway, else "
                        "~/.local/state/gateway)")


def _add_admin_target(p: argparse.ArgumentParser) -> None:
    _add_state_dir(p)
    p.add_argument("--admin-socket", metavar="PATH", type=Path,
                   help="the gateway's admin socket (default: STATE_DIR/admin.sock)")


def _watched(text: str) -> tuple[Path, Path]:
    host, _, seen = text.partition("=")
    if not host or (_ and not seen):
        raise argparse.ArgumentTypeError(f"expected DIR or DIR=AGENT_PATH, not {text!r}")
    return Path(host), Path(seen or host)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def _run_up(args: argparse.Namespace) -> int:
    # The proxy (mitmproxy) loads only for the command that runs it: every other
    # command starts a third of a second sooner.
    from gateway.daemon.server import DaemonConfig, run

    policy = Path(args.policy)
    if not policy.is_file():
        raise RequestError(f"{policy}: no such policy file")
    config = DaemonConfig(
        policy=policy, state_dir=args.state_dir or default_state_dir(), listen=args.listen,
        api_listen=args.api_listen, api_socket=args.api_socket,
        admin_socket=args.admin_socket, audit_log=args.audit_log,
        audit_key_file=args.audit_key_file, checkpoint_sink=args.checkpoint_sink,
        agents=args.agents, hosts_file=args.hosts_file,
        upstream_ca=args.upstream_ca, project_dir=args.project_dir, simulate=args.simulate,
        watch=tuple(args.watch), watch_agent=args.watch_agent)
    return run(config)


def _admin_path(args: argparse.Namespace) -> Path:
    if args.admin_socket:
        return Path(args.admin_socket)
    return (args.state_dir or default_state_dir()) / "admin.sock"


def _run_status(args: argparse.Namespace) -> int:
    reply = admin_call(_admin_path(args), "status")
    status = reply.get("status", {})
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(render_status(status))
    healthy = status.get("audit", {}).get("ok") and not status.get("policy", {}).get(
        "last_error")
    return EXIT_OK if healthy else EXIT_FAILED


def render_status(status: dict[str, Any]) -> str:
    policy, audit = status.get("policy", {}), status.get("audit", {})
    decisions, timing = status.get("decisions", {}), status.get("decision_us", {})
    cpu = status.get("decision_cpu_us", {})
    lines = [
        f"uptime       {status.get('uptime_s', 0):.0f} s",
        f"policy       {policy.get('path')} sha256 {str(policy.get('sha256'))[:16]} "
        f"mode {policy.get('mode')}, {policy.get('rules')} rules, "
        f"{policy.get('reloads', 0)} reloads",
    ]
    if policy.get("last_error"):
        lines.append(f"REJECTED     {policy['last_error']} (the policy above still runs)")
    counts = ", ".join(f"{k} {v}" for k, v in decisions.items() if k != "by_source")
    lines.append(f"decisions    {counts or 'none yet'}")
    if decisions.get("by_source"):
        lines.append("by source    " + ", ".join(
            f"{k} {v}" for k, v in sorted(decisions["by_source"].items())))
    if timing.get("count"):
        lines.append(f"decide       p50 {timing['p50']} us, p99 {timing['p99']} us wall; "
                     f"p50 {cpu.get('p50')} us, p99 {cpu.get('p99')} us CPU "
                     f"({timing['count']} samples)")
    health = "ok" if audit.get("ok") else f"FAILED: {audit.get('error')}"
    lines.append(f"audit log    {audit.get('path')} {health}"
                 + ("" if audit.get("keyed", True) else " (UNKEYED)"))
    if audit.get("sink_error"):
        lines.append(f"checkpoints  sink failing: {audit['sink_error']}")
    if status.get("agents"):
        lines.append("agents       " + ", ".join(status["agents"]))
    return "\n".join(lines)


def _run_reload(args: argparse.Namespace) -> int:
    reply = admin_call(_admin_path(args), "reload")
    if reply.get("ok"):
        print("gateway: policy reloaded")
        return EXIT_OK
    print(f"gateway: reload rejected, the running policy stays: {reply.get('error')}",
          file=sys.stderr)
    return EXIT_FAILED


def _run_env(args: argparse.Namespace) -> int:
    state = read_state(args.state_dir or default_state_dir())
    url = str(state["proxy"])
    if args.agent or args.token:
        if not (args.agent and args.token):
            raise RequestError("--agent and --token go together")
        url = url.replace("http://", f"http://{args.agent}:{args.token}@", 1)
    bundle = state.get("ca_bundle")
    for line in environment_lines(url, Path(state["ca_cert"]), Path(bundle) if bundle else None):
        print(f"export {line}")
    return EXIT_OK
