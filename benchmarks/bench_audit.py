"""Audit log throughput: durable append and verify, beside a plain json.dumps + SHA-256 chain.

Run: python benchmarks/bench_audit.py [--entries 200000] [--threads 1,8,64] [--dir DIR]

Prints one markdown table of entries per second, all measured in the same run on the
same disk with the same ~300-byte decision records:

- gateway append: N producer threads submit records to one AuditWriter (keyed
  HMAC-SHA256, group commit: every entry fdatasynced before it is acknowledged) and
  wait for their last ticket; a second row has 64 threads each blocking on every
  append (what a proxy does before forwarding).
- gateway verify: `verify_log` with the key over the log just written.
- baseline append: one thread, `json.dumps(sort_keys=True)` + SHA-256 chain (no key),
  written line by line and fsynced once per 1,000 entries (so up to 999 entries are
  not durable when they are "written").
- baseline verify: read each line, re-serialise, SHA-256, compare, link.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter

KEY = b"\x5a" * 32
RECORD: dict[str, object] = {
    "source": "proxy", "agent": "agent-7", "action": "network", "host": "api.example.com",
    "port": 443, "verdict": "ALLOW", "mode": "enforce", "rule": 3,
    "reason": "allowed by rule 3: api.example.com", "method": "GET", "status": 200,
    "bytes": 1234, "duration_ms": 12,
}


def gateway_append(directory: Path, entries: int, threads: int) -> tuple[float, Path]:
    """Entries/s for `threads` producers submitting tickets, all durable at the end."""
    log = directory / f"gw-{threads}.jsonl"
    per = entries // threads
    with AuditWriter(log, key=KEY, rotate_bytes=None) as writer:
        def produce() -> None:
            last = None
            for _ in range(per):
                last = writer.submit(RECORD)
            assert last is not None
            last.result(60)
        workers = [threading.Thread(target=produce) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
    return per * threads / elapsed, log


def gateway_blocking_append(directory: Path, entries: int, threads: int) -> float:
    """Entries/s when each of `threads` producers waits for every entry to be durable."""
    log = directory / f"gw-blocking-{threads}.jsonl"
    per = max(1, entries // threads)
    with AuditWriter(log, key=KEY, rotate_bytes=None) as writer:
        def produce() -> None:
            for _ in range(per):
                writer.append(RECORD, timeout=60)
        workers = [threading.Thread(target=produce) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return per * threads / (time.perf_counter() - start)


def gateway_verify(log: Path) -> float:
    start = time.perf_counter()
    result = verify_log(log, key=KEY)
    elapsed = time.perf_counter() - start
    assert result.ok, result.message
    return result.entries / elapsed


def baseline_append(directory: Path, entries: int) -> tuple[float, Path]:
    """The plain loop: dumps + SHA-256 chain, write per line, fsync per 1,000."""
    log = directory / "baseline.jsonl"
    start = time.perf_counter()
    prev = "0" * 64
    with open(log, "w", encoding="utf-8") as handle:
        for seq in range(entries):
            entry = {**RECORD, "seq": seq, "prev": prev}
            body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            prev = hashlib.sha256((prev + body).encode()).hexdigest()
            entry["hash"] = prev
            handle.write(json.dumps(entry, sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=False) + "\n")
            if seq % 1000 == 999:
                handle.flush()
                os.fsync(handle.fileno())
        handle.flush()
        os.fsync(handle.fileno())
    return entries / (time.perf_counter() - start), log


def baseline_verify(log: Path) -> float:
    start = time.perf_counter()
    prev, count = "0" * 64, 0
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            claimed = entry.pop("hash")
            body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            assert entry["prev"] == prev
            assert hashlib.sha256((prev + body).encode()).hexdigest() == claimed
            prev, count = claimed, count + 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--threads", default="1,8,64")
    parser.add_argument("--dir", help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        base_append, base_log = baseline_append(directory, args.entries)
        base_verify = baseline_verify(base_log)
        print("| measurement | entries/s | baseline (json.dumps + SHA-256) entries/s |")
        print("|---|---:|---:|")
        print(f"| baseline append: 1 thread, unkeyed, fsync per 1,000 | — | {base_append:,.0f} |")
        log = None
        for threads in (int(t) for t in args.threads.split(",")):
            rate, log = gateway_append(directory, args.entries, threads)
            print(f"| gateway append: {threads} producer threads, keyed, every entry "
                  f"durable before ack | {rate:,.0f} | {base_append:,.0f} |", flush=True)
        blocking = gateway_blocking_append(directory, min(args.entries, 50_000), 64)
        print(f"| gateway append: 64 threads each waiting on every entry | {blocking:,.0f} "
              f"| {base_append:,.0f} |", flush=True)
        assert log is not None
        print(f"| gateway verify: keyed, {args.entries:,} entries | {gateway_verify(log):,.0f} "
              f"| {base_verify:,.0f} |")


if __name__ == "__main__":
    main()
