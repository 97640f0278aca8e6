"""`gateway report`: summarise a run from its audit log; with the policy, suggest rules."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.audit.reader import segment_paths
from gateway.cli.argtypes import count
from gateway.cli.audit import _add_log, _log_path
from gateway.cli.decide import _add_project_dir
from gateway.errors import GatewayError
from gateway.policy.compiled import compile_policy
from gateway.policy.load import load_policy_file
from gateway.report import DEFAULT_TOP, build_report, render_text, report_json

EXIT_OK = 0


def add_commands(sub: Any) -> None:
    """Register the command on the `gateway` parser's subcommands."""
    report = sub.add_parser(
        "report", help="summarise a run from its audit log; suggest rules for what was denied",
        description="Summarise the decisions in an audit log (typically of a simulate-mode "
                    "run): totals by source, the rules that fired, and what was denied or "
                    "would have been, by agent and target. With --policy, also the allow "
                    "rules no decision named, and a suggested policy: the policy's rules "
                    "plus one narrow allow per target its default denied, checked by "
                    "deciding every target seen again. The suggestion is printed for "
                    "review, never written.")
    _add_log(report)
    report.add_argument("--policy", metavar="POLICY",
                        help="the policy the run used (YAML); enables unused rules and the "
                             "suggestion")
    _add_project_dir(report)
    report.add_argument("--format", choices=["text", "json"], default="text",
                        help="text for people (default), or one JSON object")
    report.add_argument("--top", type=count, default=DEFAULT_TOP, metavar="N",
                        help=f"targets listed per group (default {DEFAULT_TOP})")
    report.set_defaults(run=_run_report)


def read_entries(path: str) -> Iterator[dict[str, object]]:
    """Every entry of every segment, like `iter_entries`, but a whole line that is not a
    JSON object is an error naming its segment and line: a report over a damaged log
    would count wrong. A torn last line (no newline yet) is skipped, as writing leaves it."""
    for segment in segment_paths(path):
        try:
            with open(segment, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.endswith(b"\n"):
                        break
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        entry = None
                    if not isinstance(entry, dict):
                        raise GatewayError(f"{segment}:{number}: damaged entry, not a JSON "
                                           "object (gateway audit verify names the damage)")
                    yield entry
        except OSError as e:
            raise GatewayError(f"{segment}: cannot read: {e.strerror or e}") from None


def _run_report(args: argparse.Namespace) -> int:
    log = _log_path(args)
    model = policy = None
    if args.policy:
        model, source = load_policy_file(args.policy)
        policy = compile_policy(model, source, project_dir=args.project_dir)
    report = build_report(read_entries(log), log=log, model=model, policy=policy)
    if args.format == "json":
        print(json.dumps(report_json(report, args.top), ensure_ascii=False))
    else:
        print(render_text(report, args.top))
    return EXIT_OK
