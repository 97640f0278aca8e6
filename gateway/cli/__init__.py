"""The `gateway` command: a thin layer over the library, and the only place that prints
or exits.

Exit codes: 0 done (whatever the verdict), 1 a check that found problems (`audit
verify`), 2 bad input: a policy, log or request that cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.cli import agents, audit, daemon, decide, fsreview, mounts, report, run, shim
from gateway.errors import GatewayError

EXIT_OK = 0
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdin
                               else "backslashreplace")
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.run(args)
        return code
    except GatewayError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Outbound network, filesystem and command gateway for AI agents. "
                    "One deny-by-default policy decides every network, file_read, "
                    "file_write and shell_exec action.",
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    decide.add_commands(sub)
    daemon.add_commands(sub)
    run.add_commands(sub)
    agents.add_commands(sub)
    shim.add_commands(sub)
    mounts.add_commands(sub)
    fsreview.add_commands(sub)
    report.add_commands(sub)
    audit.add_commands(sub)
    return parser


