"""kill -9 mid-stream: every acknowledged entry survives, and the chain continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter

KEY_HEX = "6b" * 32

# Producer threads append and print each seq once it is acknowledged (durable).
CHILD = """
import sys, threading
from gateway.audit.writer import AuditWriter
writer = AuditWriter(sys.argv[1], key=bytes.fromhex(sys.argv[2]), checkpoint_every=500)
writer.start()
lock = threading.Lock()
def produce(worker):
    n = 0
    while True:
        seq = writer.append({"source": "proxy", "action": "network", "host": "h.example",
                             "verdict": "ALLOW", "reason": "x" * 100, "worker": worker, "n": n})
        n += 1
        with lock:
            sys.stdout.write(f"{seq}\\n")
            sys.stdout.flush()
for w in range(8):
    threading.Thread(target=produce, args=(w,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3), ids=["first", "second", "third"])
def test_kill_9_loses_no_acknowledged_entry(tmp_path: Path, round_: int) -> None:
    """After kill -9, a new writer recovers, every printed seq is in the log, and it verifies."""
    log = tmp_path / "audit.jsonl"
    acked: list[int] = []
    for life in range(2):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(log), KEY_HEX],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        target = 2000 + 1500 * round_
        for line in child.stdout:
            acked.append(int(line))
            if len(acked) >= target * (life + 1):
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        acked.extend(int(line) for line in child.stdout.read().split())
    with AuditWriter(log, key=bytes.fromhex(KEY_HEX)) as writer:
        after = writer.append({"source": "gateway", "action": "audit", "reason": "restarted"})
    on_disk = {e["seq"] for e in iter_entries(log)}
    assert set(acked) <= on_disk
    assert after == max(on_disk) and len(acked) == len(set(acked))
    result = verify_log(log, key=bytes.fromhex(KEY_HEX), checkpoints=f"{log}.checkpoints")
    assert result.ok, result.message
