"""`gateway run -- CMD`: run one command confined by the policy on this machine."""

from __future__ import annotations

import argparse
import pwd
import sys
from pathlib import Path
from typing import Any

from gateway.cli.argtypes import count
from gateway.errors import GatewayError
from gateway.fs.plan import DEFAULT_OVERLAY_DIR
from gateway.sandbox.runner import ConfinedRun, RunConfig
from gateway.sandbox.stage import EXIT_SANDBOX
from gateway.sandbox.summary import summarise_run


def add_commands(sub: Any) -> None:
    """Register the command on the `gateway` parser's subcommands."""
    run = sub.add_parser(
        "run", help="run a command confined by the policy (namespaces, mounts, shim, proxy)",
        description="Run CMD as an agent confined by the policy: in new network, mount and "
                    "PID namespaces whose only way out is the gateway's proxy, with the "
                    "policy's mount plan as its root (on a read-only base of the host's "
                    "program and library directories), the shim over /bin/sh and /bin/bash "
                    "and first on PATH, the proxy and CA variables set, and no "
                    "capabilities. A self-test runs first: if confinement cannot be shown, "
                    "CMD does not run. Exit status: CMD's (128+N for signal N), or 125 when "
                    "the gateway could not set the run up. As root, or without root where "
                    "unprivileged user namespaces are allowed (see docs/run.md).",
        usage="gateway run [options] -- CMD [ARG ...]")
    run.add_argument("--policy", metavar="FILE", type=Path, default=Path("policies/default.yaml"),
                     help="policy file (default: %(default)s)")
    run.add_argument("--agent", metavar="NAME", default="agent",
                     help="the agent's name in the audit log and for rules with agents: "
                          "(default: %(default)s)")
    run.add_argument("--workspace", metavar="DIR", type=Path,
                     help="where CMD starts, and ${PROJECT_DIR} unless --project-dir is given "
                          "(default: the current directory)")
    run.add_argument("--project-dir", metavar="DIR", help="value of ${PROJECT_DIR}")
    run.add_argument("--gateway", metavar="STATE_DIR|HOST:PORT",
                     help="use a running gateway instead of starting one for the run: its "
                          "state directory, or its proxy's address with --gateway-api and "
                          "--gateway-ca (the agent's token: $GATEWAY_TOKEN)")
    run.add_argument("--gateway-api", metavar="ADDR",
                     help="with --gateway HOST:PORT: its decision API, tcp:HOST:PORT or a "
                          "socket path")
    run.add_argument("--gateway-ca", metavar="FILE", type=Path,
                     help="with --gateway HOST:PORT: its CA certificate (ca-cert.pem)")
    run.add_argument("--simulate", action="store_true",
                     help="a first dry run: network and commands are recorded, not blocked "
                          "(the mounts still confine files)")
    run.add_argument("--user", metavar="USER[:GROUP]", type=_user,
                     help="run CMD as this user (name or id; default: the owner of the "
                          "workspace). Root keeps its uid but no capability. Needs root")
    run.add_argument("--audit-log", metavar="PATH", type=Path,
                     help="the run's gateway writes here (default: STATE_DIR/audit.jsonl of "
                          "`gateway up`)")
    run.add_argument("--audit-key-file", metavar="FILE", type=Path,
                     help="HMAC key for the log (default as for `gateway up`)")
    run.add_argument("--overlay-dir", metavar="DIR",
                     help="where overlays keep what the agent wrote, for `gateway fs diff` "
                          f"and `commit` (default {DEFAULT_OVERLAY_DIR}; without root, "
                          "STATE_DIR/overlay)")
    run.add_argument("--hosts-file", metavar="FILE", type=Path,
                     help="names pinned to addresses for the run's gateway (/etc/hosts syntax)")
    run.add_argument("--upstream-ca", metavar="FILE", type=Path,
                     help="CA bundle the run's gateway verifies upstream servers with")
    run.add_argument("--max-entries", type=count, default=100_000, metavar="N",
                     help="paths the mount plan examines at most (default 100000); a plan "
                          "that needs more is refused")
    run.add_argument("--clean-env", action="store_true",
                     help="pass CMD only HOME, TERM, USER, LOGNAME, TZ and locale variables "
                          "from this environment (default: all but the gateway's own)")
    run.add_argument("--no-summary", action="store_true",
                     help="do not print the summary when CMD ends")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD",
                     help="the command and its arguments, after --")
    run.set_defaults(run=_run)


def _user(text: str) -> tuple[int, int]:
    name, _, group = text.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise argparse.ArgumentTypeError(f"no such user: {name!r}") from None
        uid = gid = int(name)
    if group:
        if not group.isdigit():
            raise argparse.ArgumentTypeError(f"the group must be a number: {group!r}")
        gid = int(group)
    return uid, gid


def _run(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("gateway run: no command given: gateway run [options] -- CMD [ARG ...]",
              file=sys.stderr)
        return EXIT_SANDBOX
    config = RunConfig(
        argv=tuple(argv), policy=args.policy, agent=args.agent, workspace=args.workspace,
        project_dir=args.project_dir, gateway=args.gateway, gateway_api=args.gateway_api,
        gateway_ca=args.gateway_ca, simulate=args.simulate,
        audit_log=args.audit_log, audit_key_file=args.audit_key_file,
        overlay_dir=args.overlay_dir, user=args.user, max_entries=args.max_entries,
        hosts_file=args.hosts_file, upstream_ca=args.upstream_ca, clean_env=args.clean_env)
    try:
        result = ConfinedRun(config).run()
    except GatewayError as e:
        print(f"gateway run: {e}; the command was not run", file=sys.stderr)
        return EXIT_SANDBOX
    if not args.no_summary and result.started:
        summary = summarise_run(result.audit_log, result.since_seq, result.agent,
                                result.exit_code, result.notes)
        print(summary.render(), file=sys.stderr)
    return result.exit_code
