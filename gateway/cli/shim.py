"""`gateway shim install|check`: the command shim that asks the gateway before a shell or
a named program runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.policy.compiled import load_policy
from gateway.shell.shells import SHELL_NAMES
from gateway.shim.install import (
    CONFIG_NAME,
    DEFAULT_TIMEOUT_MS,
    MAX_TIMEOUT_MS,
    SHIM_NAME,
    SYSTEM_CONFIG,
    InstallResult,
    check_shims,
    install_shims,
)

EXIT_OK = 0
EXIT_PROBLEMS = 2
FAIL_OPEN_WARNING = ("gateway: WARNING: --fail-open: when the gateway cannot be reached, "
                     "commands run unchecked (only remembered in the spool, audited later)")


def add_commands(sub: Any) -> None:
    """Register `gateway shim ...` on the `gateway` parser's subcommands."""
    shim = sub.add_parser(
        "shim", help="install and check the command shim for sh, bash and named programs",
        description="The command shim is a small C program that stands in for sh, bash, dash "
                    "and the programs a policy names. Before anything runs it sends the "
                    "exact argv (and a shell's script) to the gateway's decision API; it "
                    "execs the real program only when the gateway allows, and otherwise "
                    "prints 'gateway: denied: ...' and exits 126. It reads its settings "
                    f"from the {CONFIG_NAME} that install wrote (its path is compiled into "
                    f"the shim; else {SYSTEM_CONFIG}), never from the environment.")
    cmds = shim.add_subparsers(title="shim commands", metavar="COMMAND")

    install = cmds.add_parser(
        "install", help="build the shim and link programs to it in a directory",
        description=f"Compile the shim into DIR/{SHIM_NAME} (gcc, or $CC), write "
                    f"DIR/{CONFIG_NAME} and link each shimmed name in DIR to the shim. "
                    "Shimmed are sh, bash and dash where found, each --program, and with "
                    "--policy the program word of every shell_exec rule (a glob such as "
                    "'python*' shims every matching program on PATH). Each name's real "
                    "program is found on PATH, never in DIR, and recorded by absolute path. "
                    "A file in DIR that is not a link to the shim is never replaced.")
    install.add_argument("directory", metavar="DIR",
                         help="where the shim and its links go (created if missing); "
                              "agents must not be able to write it")
    install.add_argument("--api", metavar="ADDR", required=True,
                         help="the decision API: a Unix socket path (as `gateway up` "
                              "prints it), or tcp:IPV4:PORT / tcp:[IPV6]:PORT (addresses "
                              "only: the shim resolves no names)")
    install.add_argument("--policy", metavar="FILE",
                         help="also shim every program a shell_exec rule of this policy names")
    install.add_argument("--program", metavar="NAME", action="append", default=[],
                         help="also shim NAME (repeatable; a glob matches programs on PATH)")
    install.add_argument("--fail-open", action="store_true",
                         help="DANGEROUS: run commands unchecked when the gateway cannot be "
                              "reached (each is spooled and sent to the gateway later); the "
                              "default denies them")
    install.add_argument("--timeout-ms", metavar="N", type=int, default=DEFAULT_TIMEOUT_MS,
                         help=f"deadline to connect and get a reply, 1 to {MAX_TIMEOUT_MS} "
                              f"(default: %(default)s)")
    install.add_argument("--spool", metavar="FILE",
                         help="with --fail-open, where commands run unchecked are remembered "
                              "(created 0600 by the first one; it holds agents' tokens)")
    install.add_argument("--real-dir", metavar="DIR",
                         help="copy each real program into this directory and run it from "
                              "there: for containers where the shim is mounted over /bin/sh")
    install.add_argument("--path", metavar="PATH",
                         help="the PATH to find real programs on (default: $PATH)")
    install.set_defaults(run=_run_install)

    check = cmds.add_parser(
        "check", help="validate an installed shim directory",
        description=f"Check DIR/{SHIM_NAME}, DIR/{CONFIG_NAME} (as the shim parses it), "
                    "that each real program exists outside DIR, that each link has a real "
                    "program, and that group and others cannot write them. Prints 'OK: ...' "
                    "and exits 0, or prints each problem and exits 2.")
    check.add_argument("directory", metavar="DIR", help="a directory `shim install` wrote")
    check.set_defaults(run=_run_check)


def _run_install(args: argparse.Namespace) -> int:
    if args.fail_open:
        print(FAIL_OPEN_WARNING, file=sys.stderr)
    policy = load_policy(args.policy) if args.policy else None
    result = install_shims(args.directory, api=args.api, names=args.program, policy=policy,
                           fail_open=args.fail_open, timeout_ms=args.timeout_ms,
                           spool=args.spool, real_dir=args.real_dir, path=args.path)
    _print_result(result)
    return EXIT_OK


def _print_result(result: InstallResult) -> None:
    where = result.directory
    linked = "statically linked" if result.static else "dynamically linked"
    print(f"Installed {result.shim} ({linked}) with {result.config}")
    mode = "FAIL-OPEN" if result.fail_open else "fail-closed"
    print(f"  asks {result.api} (timeout {result.timeout_ms} ms, {mode})")
    width = max((len(n) for n in result.installed), default=0)
    print(f"Shimmed ({len(result.installed)}):")
    for name, real in result.installed.items():
        print(f"  {name:<{width}} -> {real}")
    if result.missing:
        print(f"Not found on PATH, not shimmed: {' '.join(result.missing)}")
    if result.unmatched:
        print(f"Globs matching no program on PATH: {' '.join(result.unmatched)}")
    print("\nOn the host, put the shims first on PATH:")
    print(f"  export PATH={where}:$PATH")
    print("\nIn a container (agents must not run by absolute path around PATH), mount "
          "read-only:")
    print(f"  {where} at {where}, first on PATH")
    for shell in sorted(n for n in result.installed if n in SHELL_NAMES):
        print(f"  {result.shim} over /bin/{shell}")
    print(f"  (the shim reads {result.config}, compiled in: keep {where} at the same path)")
    if result.real_dir is not None:
        print(f"  {result.real_dir} at {result.real_dir} (the real programs)")
    else:
        print("  (mounted over /bin/sh the shim hides the real sh: reinstall with "
              "--real-dir so the real programs live elsewhere)")
    if result.api.startswith("unix:"):
        print(f"  the API socket {result.api.removeprefix('unix:')} at the same path")


def _run_check(args: argparse.Namespace) -> int:
    report = check_shims(args.directory)
    for problem in report.problems:
        print(f"gateway: {problem}", file=sys.stderr)
    if report.problems or report.config is None:
        return EXIT_PROBLEMS
    config = report.config
    if config.fail_open:
        print(f"gateway: WARNING: {report.directory / CONFIG_NAME} has fail_open 1: commands "
              "run unchecked when the gateway cannot be reached", file=sys.stderr)
    print(f"OK: {len(config.real)} program{'' if len(config.real) == 1 else 's'} shimmed in "
          f"{report.directory}, asking {config.api}")
    return EXIT_OK
