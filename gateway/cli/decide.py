"""`gateway check`, `gateway eval` and `gateway explain`: the engine, for people and scripts."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from typing import IO, Any

from gateway.audit.format import record_from_decision
from gateway.audit.writer import AuditWriter, Ticket
from gateway.cli.audit import add_writer_args, open_writer
from gateway.engine import ACTIONS, Decision, Request, Trace, decide, make_request
from gateway.errors import RequestError
from gateway.fs.notes import mount_notes
from gateway.lint import lint_policy
from gateway.localfs import LocalFileSystem
from gateway.policy.compiled import CompiledPolicy, load_policy
from gateway.policy.model import Action

EXIT_OK = 0

_BATCH_KEYS = {"action", "target", "cwd", "agent", "method"}


def add_commands(sub: Any) -> None:
    """Register check, eval and explain on the `gateway` parser's subcommands."""

    check = sub.add_parser(
        "check", help="validate a policy and warn about suspicious rules",
        description="Validate and lint a policy. Exit 0 when it is valid (warnings about "
                    "rules that never match, redundant rules and over-broad allows go to "
                    "stderr); exit 2 with FILE:LINE: message when it is not.")
    check.add_argument("policy", metavar="POLICY", help="policy file (YAML)")
    _add_project_dir(check)
    check.set_defaults(run=_run_check)

    ev = sub.add_parser(
        "eval", help="decide one request, or a batch of JSON lines",
        description="Print the decision for ACTION TARGET as JSON. Exit 0 when it was "
                    "decided (ALLOW or DENY); exit 2 when the request or policy is unusable. "
                    "With --batch, read JSON lines {\"action\", \"target\", \"cwd\"?, "
                    "\"agent\"?, \"method\"?} and write one decision line each, in order; a "
                    "line that is not a request gets {\"error\": ...} and the rest go on.")
    _add_request_args(ev)
    ev.add_argument("--batch", metavar="FILE", help="JSON lines of requests; '-' for stdin")
    add_writer_args(ev)
    ev.set_defaults(run=_run_eval)

    explain = sub.add_parser(
        "explain", help="show how a request is decided, for people",
        description="Show the normalisation steps, every rule that matched, which one won "
                    "and why.")
    _add_request_args(explain)
    explain.set_defaults(run=_run_explain, batch=None)


def _add_project_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project-dir", metavar="DIR",
                   help="value of ${PROJECT_DIR} (default: $PROJECT_DIR, else the working "
                        "directory)")


def _add_request_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, metavar="POLICY", help="policy file (YAML)")
    _add_project_dir(p)
    p.add_argument("--cwd", metavar="DIR",
                   help="directory relative paths and commands run in (default: the project "
                        "directory; a relative DIR is taken from it)")
    p.add_argument("--agent", metavar="NAME", help="the agent asking (for rules with agents:)")
    p.add_argument("--method", metavar="METHOD",
                   help="HTTP method, for a URL target: decides methods/paths rules per request")
    p.add_argument("--resolve", action="store_true",
                   help="consult the filesystem: resolve symlinks (the link and its target "
                        "must both be allowed) and read scripts that commands run")
    p.add_argument("action", nargs="?", metavar="ACTION", help=ACTIONS)
    p.add_argument("target", nargs="?", metavar="TARGET",
                   help="host, host:port or URL; a path; or a command line")


def _run_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy, project_dir=args.project_dir)
    warnings = lint_policy(policy)
    for warning in warnings:
        print(f"{warning}", file=sys.stderr)
    for note in mount_notes(policy):
        print(f"{args.policy}: mounts: {note}", file=sys.stderr)
    counts = {a: sum(1 for r in policy.rules if r.action is a) for a in Action}
    summary = ", ".join(f"{n} {a.value}" for a, n in counts.items())
    print(f"{args.policy}: valid, {len(policy.rules)} rules ({summary}), default "
          f"{policy.default.value}, mode {policy.mode.value}"
          + (f", {len(warnings)} warning(s)" if warnings else ""))
    return EXIT_OK


def _run_eval(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy, project_dir=args.project_dir)
    if args.batch is not None:
        if args.action or args.target:
            raise RequestError("give either --batch or ACTION TARGET, not both")
        return _run_batch(policy, args)
    request = _request(args)
    writer = open_writer(args)
    try:
        output = _Output(writer)
        output.decision(decide(policy, request, _filesystem(args)))
        output.drain()
    finally:
        if writer is not None:
            writer.close()
    return EXIT_OK


class _Output:
    """Prints results in input order; with an audit log, each decision only once it is
    durable there (an unrecorded decision is never shown: AuditUnavailable ends the run)."""

    def __init__(self, writer: AuditWriter | None) -> None:
        self.writer = writer
        self.pending: deque[tuple[dict[str, Any], Ticket | None]] = deque()

    def decision(self, decision: Decision) -> None:
        if self.writer is None:
            _print_json(decision.to_json())
            return
        ticket = self.writer.submit(record_from_decision(decision, source="cli"))
        self.pending.append((decision.to_json(), ticket))
        self.drain(block=False)

    def error(self, obj: dict[str, Any]) -> None:
        if self.pending:
            self.pending.append((obj, None))
        else:
            _print_json(obj)

    def drain(self, block: bool = True) -> None:
        while self.pending:
            obj, ticket = self.pending[0]
            if ticket is not None:
                if not block and not ticket.done():
                    return
                ticket.result()
            _print_json(obj)
            self.pending.popleft()
        sys.stdout.flush()


def _run_batch(policy: CompiledPolicy, args: argparse.Namespace) -> int:
    stream: IO[str]
    if args.batch == "-":
        stream = sys.stdin
    else:
        try:
            stream = open(args.batch, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        except OSError as e:
            raise RequestError(f"cannot read {args.batch}: {e.strerror or e}") from None
    writer = open_writer(args)
    output = _Output(writer)
    try:
        with stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    request = _batch_request(line, args)
                except RequestError as e:
                    output.error({"error": f"line {number}: {e}"})
                    continue
                output.decision(decide(policy, request, _filesystem(args)))
                if writer is None:
                    sys.stdout.flush()
        output.drain()
    finally:
        if writer is not None:
            writer.close()
    return EXIT_OK


def _batch_request(line: str, args: argparse.Namespace) -> Request:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise RequestError("not JSON") from None
    if not isinstance(data, dict):
        raise RequestError("not a JSON object")
    unknown = sorted(set(data) - _BATCH_KEYS)
    if unknown:
        raise RequestError(f"unknown key {unknown[0]!r}")
    for key in ("cwd", "agent", "method"):
        if key in data and not isinstance(data[key], str):
            raise RequestError(f"{key!r} must be a string")
    return make_request(data.get("action"), data.get("target"), cwd=data.get("cwd", args.cwd),
                        agent=data.get("agent", args.agent),
                        method=data.get("method", args.method))


def _request(args: argparse.Namespace) -> Request:
    if args.action is None or args.target is None:
        raise RequestError("give ACTION and TARGET (or --batch FILE)")
    return make_request(args.action, args.target, cwd=args.cwd, agent=args.agent,
                        method=args.method)


def _filesystem(args: argparse.Namespace) -> LocalFileSystem | None:
    return LocalFileSystem() if args.resolve else None


def _run_explain(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy, project_dir=args.project_dir)
    request = _request(args)
    trace = Trace()
    decision = decide(policy, request, _filesystem(args), trace)
    print(render_explanation(policy, request, decision, trace))
    return EXIT_OK


def render_explanation(policy: CompiledPolicy, request: Request, decision: Decision,
                       trace: Trace) -> str:
    lines = [f"request: {request.action.value} {request.target!r}"
             + (f" (agent {request.agent})" if request.agent else "")]
    lines += [f"  {step}" for step in trace.steps]
    table = policy.actions[request.action]
    if table.default_rule is not None:
        lines.append(f"default for {request.action.value}: {table.default.value} "
                     f"(set by catch-all rule {table.default_rule})")
    else:
        lines.append(f"default for {request.action.value}: {table.default.value} "
                     "(the policy's default:)")
    for target, candidates in trace.candidates:
        lines.append(f"rules matching {target!r}:" if candidates
                     else f"no rule matches {target!r}")
        for c in candidates:
            status = "" if c.counts else f"   (ignored: {c.note})"
            where = f" line {c.rule.line}" if c.rule.line else ""
            lines.append(f"  rule {c.rule.index}{where}: {c.rule.effect.value:5} "
                         f"{c.rule.text}{status}")
    rule = "default" if decision.rule is None else f"rule {decision.rule}"
    lines.append(f"verdict: {decision.verdict.value} by {rule}: {decision.reason}")
    lines.append("why: deny overrides allow; with neither, the action's default decides")
    if decision.mode.value == "simulate":
        lines.append("mode: simulate (enforcement points record this and do not block)")
    return "\n".join(lines)


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False))

