"""`gateway mounts`: the file_read / file_write rules as a mount plan (docs/mounts.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.cli.argtypes import count
from gateway.cli.decide import _add_project_dir
from gateway.errors import GatewayError
from gateway.fs.notes import mount_notes
from gateway.fs.plan import DEFAULT_OVERLAY_DIR, plan_mounts
from gateway.fs.render import compose_notes, one_line, to_compose, to_json, to_shell
from gateway.fs.tree import LocalTree
from gateway.policy.compiled import load_policy

__all__ = ["add_commands", "mount_notes"]

EXIT_OK = 0


def add_commands(sub: Any) -> None:
    """Register the command on the `gateway` parser's subcommands."""
    mounts = sub.add_parser(
        "mounts", help="print the mount plan that enforces the file rules",
        description="Turn the file_read and file_write rules into mounts into an empty "
                    "root: read-only binds for trees that may be read, read-write binds or "
                    "overlays for trees that may be written (noexec unless a rule says "
                    "exec: true), and masks over every existing path the policy denies "
                    "inside them. Nothing else of the host is visible. Notes on what mounts "
                    "cannot enforce go to stderr.")
    mounts.add_argument("--policy", required=True, metavar="POLICY", help="policy file (YAML)")
    _add_project_dir(mounts)
    mounts.add_argument("--format", choices=["json", "compose", "shell"], default="json",
                        help="json (default); compose: a Compose override with the "
                             "service's volumes; shell: a POSIX sh script that builds the "
                             "plan under \"$ROOT\" in a new mount namespace")
    mounts.add_argument("--overlay-dir", metavar="DIR", default=DEFAULT_OVERLAY_DIR,
                        help="where overlays keep their upper and work directories, and the "
                             f"empty file masks use (default {DEFAULT_OVERLAY_DIR})")
    mounts.add_argument("--agent", metavar="NAME",
                        help="plan for this agent (rules with agents: apply to it)")
    mounts.add_argument("--service", metavar="NAME", default="agent",
                        help="the Compose service the volumes belong to (default agent)")
    mounts.add_argument("--max-entries", type=count, default=100_000, metavar="N",
                        help="paths examined at most, all trees together (default 100000)")
    mounts.set_defaults(run=_run_mounts)


def _run_mounts(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy, project_dir=args.project_dir)
    try:
        plan = plan_mounts(policy, LocalTree(), overlay_dir=args.overlay_dir,
                           max_entries=args.max_entries, agent=args.agent)
    except ValueError as e:
        raise GatewayError(str(e)) from None
    notes = list(plan.notes)
    if args.format == "json":
        text = json.dumps(to_json(plan), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "compose":
        text = to_compose(plan, service=args.service)
        notes += compose_notes(plan)
    else:
        text = to_shell(plan)
    for note in notes:
        print(f"gateway: note: {one_line(note)}", file=sys.stderr)
    sys.stdout.write(text)
    return EXIT_OK
