"""`gateway audit verify|tail|query|stats`: reading the audit log, and where eval writes it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gateway.audit.keys import load_key, writer_key
from gateway.audit.query import Filter, parse_time, select, summarise, table_row
from gateway.audit.reader import iter_entries
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter
from gateway.errors import GatewayError

EXIT_OK = 0
EXIT_DAMAGED = 1
LOG_ENV = "GATEWAY_AUDIT_LOG"
UNKEYED_WARNING = ("gateway: WARNING: this audit log is UNKEYED (plain SHA-256): anyone who can "
                   "write it can rewrite it undetectably; configure a key")


def add_commands(sub: Any) -> None:
    """Register `gateway audit ...` on the `gateway` parser's subcommands."""
    audit = sub.add_parser(
        "audit", help="verify and read the tamper-evident audit log",
        description="Verify and read the audit log. LOG defaults to $GATEWAY_AUDIT_LOG; all "
                    "its rotated segments are read in order.")
    cmds = audit.add_subparsers(title="audit commands", metavar="COMMAND")

    verify = cmds.add_parser(
        "verify", help="check the chain: edits, deletions, reordering, truncation, forgery",
        description="Walk every segment and check each entry's sequence, chain link and "
                    "keyed hash; with --checkpoints (kept elsewhere), also a truncated tail "
                    "or a replaced log. Prints 'OK: N entries, S segments, last seq, head "
                    "hash' and exits 0, or names the first bad seq and the kind of damage "
                    "and exits 1.")
    _add_log(verify)
    _add_key(verify)
    verify.add_argument("--checkpoints", metavar="FILE",
                        help="checkpoint file kept apart from the log (default: none)")
    verify.set_defaults(run=_run_verify)

    tail = cmds.add_parser("tail", help="show the last entries; -f follows new ones",
                           description="Show the last entries of the log, one per line.")
    _add_log(tail)
    tail.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                      help="how many entries (default 10)")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep printing entries as they are written (Ctrl-C stops)")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    tail.set_defaults(run=_run_tail)

    query = cmds.add_parser(
        "query", help="entries matching filters, as a table or JSON lines",
        description="Entries matching every filter given. Times are RFC 3339 "
                    "(2026-11-24T08:00:00Z) or ages (90s, 15m, 2h, 7d).")
    _add_log(query)
    _add_filters(query)
    query.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    query.set_defaults(run=_run_query)

    stats = cmds.add_parser(
        "stats", help="counts by agent, action and verdict; top denied targets",
        description="Counts by agent, action and verdict, and the most denied targets, over "
                    "the entries matching the filters.")
    _add_log(stats)
    _add_filters(stats)
    stats.add_argument("--top", type=int, default=10, metavar="N",
                       help="how many denied targets to list (default 10)")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(run=_run_stats)


def add_writer_args(p: argparse.ArgumentParser) -> None:
    """The options with which a command records its decisions."""
    p.add_argument("--audit-log", metavar="LOG",
                   help="record every decision in this audit log (source 'cli'); a decision "
                        "that cannot be recorded is not printed, and the command exits 2")
    p.add_argument("--audit-key-file", metavar="FILE",
                   help="HMAC key for the log (default: $GATEWAY_AUDIT_KEY_FILE, "
                        "$GATEWAY_AUDIT_KEY, else LOG.key, created with mode 0600)")
    p.add_argument("--unsafe-unkeyed-audit", action="store_true",
                   help="write plain SHA-256 entries with no key: anyone who can write the "
                        "log can rewrite it undetectably")


def open_writer(args: argparse.Namespace) -> AuditWriter | None:
    """The started writer for --audit-log, or None without one."""
    if not args.audit_log:
        return None
    if args.unsafe_unkeyed_audit:
        print(UNKEYED_WARNING, file=sys.stderr)
        key = None
    else:
        key = writer_key(args.audit_log, args.audit_key_file, os.environ)
    writer = AuditWriter(args.audit_log, key=key)
    writer.start()
    return writer


def _key_in_environment() -> bool:
    return bool(os.environ.get("GATEWAY_AUDIT_KEY_FILE") or os.environ.get("GATEWAY_AUDIT_KEY"))


def _key_environ(explicit: str | None) -> Mapping[str, str]:
    return {} if explicit else os.environ


def _add_log(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", nargs="?", metavar="LOG",
                   help="the log's current segment (default: $GATEWAY_AUDIT_LOG)")


def _add_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-file", metavar="FILE",
                   help="HMAC key (default: $GATEWAY_AUDIT_KEY_FILE, $GATEWAY_AUDIT_KEY, else "
                        "LOG.key when it exists; without a key only an unkeyed log verifies)")


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", help="only this agent")
    p.add_argument("--source", help="only this source (proxy, shim, fs, sdk, cli, gateway)")
    p.add_argument("--action", help="only this action")
    p.add_argument("--verdict", choices=["ALLOW", "DENY", "allow", "deny"],
                   help="only this verdict")
    p.add_argument("--target", metavar="GLOB", help="host, path or command matching GLOB")
    p.add_argument("--since", metavar="TIME", help="entries at or after TIME")
    p.add_argument("--until", metavar="TIME", help="entries at or before TIME")


def _log_path(args: argparse.Namespace) -> str:
    path: str | None = args.log or os.environ.get(LOG_ENV)
    if not path:
        raise GatewayError(f"give the audit LOG (or set ${LOG_ENV})")
    if not os.path.exists(path):
        raise GatewayError(f"no audit log at {path}")
    return path


def _filter(args: argparse.Namespace) -> Filter:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as e:
        raise GatewayError(str(e)) from None
    return Filter(agent=args.agent, source=args.source, action=args.action,
                  verdict=args.verdict, target=args.target, since=since, until=until)


def _run_verify(args: argparse.Namespace) -> int:
    path = _log_path(args)
    key_file = args.key_file
    if key_file is None and not _key_in_environment():
        key_file = path + ".key" if os.path.exists(path + ".key") else None
    key = load_key(key_file=key_file, environ=_key_environ(args.key_file), create=False)
    if key is None:
        print("gateway: WARNING: no key given: verifying as an UNKEYED log, which proves "
              "nothing against someone who can write it", file=sys.stderr)
    result = verify_log(path, key=key, checkpoints=args.checkpoints)
    if result.ok:
        if not result.keyed:
            print(UNKEYED_WARNING, file=sys.stderr)
        print(f"OK: {result.entries} entries, {result.segments} segments, last seq "
              f"{result.last_seq}, head {result.head_hash}")
        return EXIT_OK
    where = f" at seq {result.bad_seq}" if result.bad_seq is not None else ""
    print(f"DAMAGED: {result.damage}{where}: {result.message}")
    return EXIT_DAMAGED


def _print_entries(entries: Iterable[Mapping[str, object]], as_json: bool) -> None:
    for entry in entries:
        print(json.dumps(entry, ensure_ascii=False) if as_json else table_row(entry))
        sys.stdout.flush()


def _run_query(args: argparse.Namespace) -> int:
    _print_entries(select(iter_entries(_log_path(args)), _filter(args)), args.json)
    return EXIT_OK


def _run_stats(args: argparse.Namespace) -> int:
    stats = summarise(select(iter_entries(_log_path(args)), _filter(args)))
    if args.json:
        print(json.dumps(stats.as_json(args.top), ensure_ascii=False))
    else:
        print(stats.render(args.top))
    return EXIT_OK


def _run_tail(args: argparse.Namespace) -> int:
    path = _log_path(args)
    last: deque[Mapping[str, object]] = deque(maxlen=max(args.lines, 0))
    seen = -1
    for entry in iter_entries(path):
        last.append(entry)
        seq = entry.get("seq")
        seen = seq if isinstance(seq, int) else seen
    _print_entries(last, args.json)
    if args.follow:
        _print_entries(follow(path, seen), args.json)
    return EXIT_OK


def follow(path: str, seen: int, interval: float = 0.25) -> Iterator[dict[str, object]]:
    """Entries after seq `seen` as they are written. Reads only what was appended to the
    current segment since the last look; after a rotation, the segments in between."""
    position: tuple[int, int] | None = None  # (inode, offset) of the current segment
    while True:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            time.sleep(interval)
            continue
        if position is None or position[0] != stat.st_ino or stat.st_size < position[1]:
            entries: Iterable[dict[str, object]] = iter_entries(path)  # rotated: rescan
            offset = 0
            with open(path, "rb") as current:
                offset = current.seek(0, os.SEEK_END)
        else:
            entries, offset = _appended(path, position[1])
        for entry in entries:
            seq = entry.get("seq")
            if isinstance(seq, int) and seq > seen:
                seen = seq
                yield entry
        position = (stat.st_ino, offset)
        time.sleep(interval)


def _appended(path: str, offset: int) -> tuple[list[dict[str, object]], int]:
    """Whole lines appended at `offset`, and where the next read starts."""
    with open(path, "rb") as current:
        current.seek(offset)
        data = current.read()
    complete = data[: data.rfind(b"\n") + 1]
    out = []
    for line in complete.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out, offset + len(complete)
