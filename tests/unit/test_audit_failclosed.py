"""Fail closed: a full or read-only disk makes the writer unavailable, with the reason, and
nothing it could not write is acknowledged. Uses a real small tmpfs, so it needs root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditUnavailable, AuditWriter, Ticket
from tests.support.disks import small_tmpfs

KEY = b"k" * 32

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "64k") as mount:
        yield mount


def record(n: int) -> dict[str, object]:
    return {"source": "proxy", "action": "network", "host": f"h{n}.example", "verdict": "DENY",
            "reason": "x" * 200, "n": n}


def test_a_full_disk_fails_closed(small_disk: Path) -> None:
    """On ENOSPC every pending and later entry fails with the reason; acknowledged ones all verify."""
    log = small_disk / "audit.jsonl"
    writer = AuditWriter(log, key=KEY, checkpoint_every=1_000_000)
    writer.start()
    acked: list[int] = []
    with pytest.raises(AuditUnavailable, match="No space left on device"):
        for n in range(10_000):
            acked.append(writer.append(record(n)))
    assert writer.error is not None and "No space left" in writer.error
    with pytest.raises(AuditUnavailable, match="No space left"):
        writer.submit(record(0))
    writer.close()
    on_disk = [e["seq"] for e in iter_entries(log)]
    assert acked and set(acked) <= set(on_disk)
    assert on_disk == list(range(len(on_disk))) and on_disk[-1] == acked[-1]
    assert verify_log(log, key=KEY).ok


def test_pending_tickets_fail_when_the_disk_fills(small_disk: Path) -> None:
    """Tickets queued behind a failed write fail too; none resolves to a seq that is not on disk."""
    log = small_disk / "audit.jsonl"
    writer = AuditWriter(log, key=KEY, checkpoint_every=1_000_000)
    writer.start()
    tickets: list[Ticket] = []
    try:
        for n in range(2_000):
            tickets.append(writer.submit(record(n)))
    except AuditUnavailable:
        pass
    outcomes = []
    for ticket in tickets:
        try:
            outcomes.append(ticket.result())
        except AuditUnavailable as e:
            outcomes.append(str(e))
    writer.close()
    seqs = [o for o in outcomes if isinstance(o, int)]
    failures = [o for o in outcomes if isinstance(o, str)]
    assert failures and all("No space left" in f for f in failures)
    assert set(seqs) == {e["seq"] for e in iter_entries(log)} - {0}
    assert verify_log(log, key=KEY).ok


def test_a_read_only_disk_fails_closed(small_disk: Path) -> None:
    """When the log's directory turns read-only, the next write to it fails with the reason,
    and the writer stays failed. (The kernel refuses to remount a filesystem read-only under
    an open writer, so a read-only bind mount over the directory stands in: the writer's next
    segment must be created through it.)"""
    log = small_disk / "audit.jsonl"
    writer = AuditWriter(log, key=KEY, rotate_bytes=2000)
    writer.start()
    assert writer.append(record(1)) == 1
    subprocess.run(["mount", "--bind", str(small_disk), str(small_disk)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(small_disk)], check=True)
    acked = [1]
    with pytest.raises(AuditUnavailable, match="Read-only file system"):
        for n in range(2, 100):
            acked.append(writer.append(record(n)))
    assert writer.error is not None and "Read-only" in writer.error
    with pytest.raises(AuditUnavailable, match="Read-only"):
        writer.append(record(3))
    writer.close()
    assert [e["seq"] for e in iter_entries(log)] == list(range(acked[-1] + 1))
    assert verify_log(log, key=KEY).ok


def test_a_writer_that_cannot_open_its_log_refuses_to_start(small_disk: Path) -> None:
    """On a read-only disk start() raises AuditUnavailable with the reason."""
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(AuditUnavailable, match="Read-only file system"):
        AuditWriter(small_disk / "audit.jsonl", key=KEY).start()
