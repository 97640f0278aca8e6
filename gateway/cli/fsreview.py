"""`gateway fs diff|commit`: review what an agent changed in an overlay workspace, and
apply the part its policy allows to the real tree (docs/overlay.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli.audit import add_writer_args, open_writer
from gateway.errors import GatewayError
from gateway.fs.changes import diff, shown
from gateway.fs.commit import CommitReport, commit
from gateway.fs.overlay import read_workspace
from gateway.policy.compiled import load_policy

EXIT_OK = 0
EXIT_REFUSED = 1


def add_commands(sub: Any) -> None:
    """Register `gateway fs ...` on the `gateway` parser's subcommands."""
    fs = sub.add_parser(
        "fs", help="review and commit what an agent changed in an overlay",
        description="Review an overlay workspace (upper/, work/ and gateway-overlay.json) "
                    "and apply what the policy's file_write rules allow to the real tree.")
    cmds = fs.add_subparsers(title="fs commands", metavar="COMMAND")

    show = cmds.add_parser(
        "diff", help="list what the agent changed: added, modified, deleted, renamed",
        description="One line per change, paths relative to the tree: 'A path (N bytes)', "
                    "'M path (a -> b bytes)', 'D path', 'R old -> new'; directories end in "
                    "'/', symlinks show '-> target'. Exit 0, or 2 for an unusable workspace.")
    show.add_argument("workspace", metavar="WORKSPACE", help="the overlay workspace directory")
    show.add_argument("--patch", action="store_true",
                      help="a unified diff under each text file (UTF-8, at most 1 MiB); "
                           "'Binary files differ' for others")
    show.set_defaults(run=_run_diff)

    apply = cmds.add_parser(
        "commit", help="apply the changes file_write allows; report and audit the rest",
        description="Decide every change as a file_write of the path where the agent saw "
                    "it, apply the allowed ones to the real tree (atomically per file, never "
                    "through a symlink) and leave the refused ones in the workspace. Exit 0 "
                    "when all were applied, 1 when some were refused, 2 for unusable input.")
    apply.add_argument("workspace", metavar="WORKSPACE", help="the overlay workspace directory")
    apply.add_argument("--policy", metavar="POLICY",
                       help="policy file (default: the one the workspace names)")
    apply.add_argument("--project-dir", metavar="DIR",
                       help="value of ${PROJECT_DIR} (default: the workspace's, else "
                            "$PROJECT_DIR, else the working directory)")
    apply.add_argument("--dry-run", action="store_true",
                       help="decide and report what would happen; change and record nothing")
    apply.add_argument("--agent", metavar="NAME",
                       help="the agent whose changes these are (for rules with agents:)")
    add_writer_args(apply)
    apply.set_defaults(run=_run_commit)


def _run_diff(args: argparse.Namespace) -> int:
    workspace = read_workspace(args.workspace)
    try:
        text = diff(workspace, patch=args.patch)
    except OSError as e:
        raise GatewayError(f"{e.filename or args.workspace}: {e.strerror or e}") from None
    sys.stdout.write(text)
    return EXIT_OK


def _run_commit(args: argparse.Namespace) -> int:
    workspace = read_workspace(args.workspace)
    policy_file = args.policy or workspace.policy
    if not policy_file:
        raise GatewayError(f"{args.workspace}: no policy: give --policy, or name one in the "
                           "workspace")
    policy = load_policy(policy_file, project_dir=args.project_dir or workspace.project_dir)
    writer = None if args.dry_run else open_writer(args)
    try:
        report = commit(workspace, policy, dry_run=args.dry_run, writer=writer,
                        agent=args.agent)
    except OSError as e:
        raise GatewayError(f"{e.filename or args.workspace}: {e.strerror or e}") from None
    finally:
        if writer is not None:
            writer.close()
    print(render_report(report))
    return EXIT_REFUSED if report.refused else EXIT_OK


def render_report(report: CommitReport) -> str:
    """One line per change, applied or refused (would be, in a dry run), with the
    reason; then the totals."""
    done, kept = ("would apply", "would refuse") if report.dry_run else ("applied", "refused")
    lines = [f"{done if o.applied else kept}  {o.change.line()}: {shown(o.reason)}"
             for o in report.outcomes]
    if not report.outcomes:
        return "no changes"
    lines.append(f"{len(report.applied)} {done}, {len(report.refused)} {kept}"
                 + ("; nothing was changed (dry run)" if report.dry_run else ""))
    return "\n".join(lines)
