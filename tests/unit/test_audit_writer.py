"""AuditWriter: one linear chain under concurrency, recovery, rotation, checkpoints, refusals."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.audit.checkpoints import read_checkpoints
from gateway.audit.keys import AuditKey
from gateway.audit.reader import iter_entries, segment_paths
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditUnavailable, AuditWriter

KEY = b"k" * 32


def record(n: int, **extra: object) -> dict[str, object]:
    return {"source": "proxy", "action": "network", "host": f"h{n}.example", "verdict": "ALLOW",
            "n": n, **extra}


def test_concurrent_producers_make_one_linear_chain(tmp_path: Path) -> None:
    """Threads submitting at once get distinct seqs, none lost, and the chain verifies."""
    log = tmp_path / "audit.jsonl"
    seqs: list[int] = []
    lock = threading.Lock()

    def produce(worker: int, writer: AuditWriter) -> None:
        tickets = [writer.submit(record(i, worker=worker)) for i in range(500)]
        mine = [t.result() for t in tickets]
        blocking = [writer.append(record(i, worker=worker)) for i in range(20)]
        with lock:
            seqs.extend(mine + blocking)

    with AuditWriter(log, key=KEY) as writer:
        threads = [threading.Thread(target=produce, args=(w, writer)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(seqs) == list(range(1, 8 * 520 + 1))
    entries = list(iter_entries(log))
    by_seq = {e["seq"]: e for e in entries}
    assert len(by_seq) == len(entries) == 8 * 520 + 1
    for worker in range(8):  # each producer's own order is kept
        ns = [e["n"] for e in entries if e.get("worker") == worker][:500]
        assert ns == list(range(500))
    assert verify_log(log, key=KEY).ok


def test_a_restarted_writer_continues_the_chain(tmp_path: Path) -> None:
    """Seq and chain id continue across restarts; no second genesis."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        assert writer.append(record(1)) == 1
    with AuditWriter(log, key=KEY) as writer:
        assert writer.append(record(2)) == 2
    entries = list(iter_entries(log))
    assert [e.get("event") for e in entries] == ["genesis", None, None]
    assert len({e["chain"] for e in entries}) == 1
    assert verify_log(log, key=KEY).ok


@pytest.mark.parametrize(("tail", "torn_bytes"), [
    (b'{"action":"network","cha', 24),
    (b"\x00" * 300, 300),
    (b'{"not an entry": true}\n\x00\x00\n{"partial', 35),
], ids=["partial_line", "zeros_after_power_loss", "junk_lines_then_partial"])
def test_a_torn_tail_is_set_aside_and_recorded(tmp_path: Path, tail: bytes, torn_bytes: int) -> None:
    """Start-up moves bytes after the last whole entry to a sidecar, records that, and the chain verifies."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        writer.append(record(1))
    with open(log, "ab") as handle:
        handle.write(tail)
    assert verify_log(log, key=KEY).ok is False
    with AuditWriter(log, key=KEY) as writer:
        assert writer.append(record(2)) == 3
    entries = list(iter_entries(log))
    event = entries[2]
    assert (event["event"], event["source"], event["torn_bytes"]) == ("torn tail", "gateway", torn_bytes)
    sidecar = tmp_path / str(event["sidecar"])
    assert sidecar.read_bytes() == tail
    assert verify_log(log, key=KEY).ok


def test_a_torn_genesis_starts_a_fresh_log(tmp_path: Path) -> None:
    """A crash during the very first write leaves only torn bytes: a new chain begins and records them."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'{"action":"audit","chain":"ab')
    with AuditWriter(log, key=KEY) as writer:
        writer.append(record(1))
    events = [e.get("event") for e in iter_entries(log)]
    assert events == ["genesis", "torn tail", None]
    assert verify_log(log, key=KEY).ok


@pytest.mark.parametrize(("first", "second", "reason"), [
    (KEY, b"o" * 32, "fails its hash as a keyed entry"),
    (KEY, None, "fails its hash as an unkeyed entry"),
    (None, KEY, "fails its hash as a keyed entry"),
], ids=["wrong_key", "keyed_log_opened_unkeyed", "unkeyed_log_opened_keyed"])
def test_a_writer_refuses_a_log_its_key_does_not_vouch_for(tmp_path: Path, first: bytes | None,
                                                           second: bytes | None, reason: str) -> None:
    """Continuing a chain under another key (or none) would fork it: start() refuses."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=first) as writer:
        writer.append(record(1))
    with pytest.raises(AuditUnavailable, match=reason):
        AuditWriter(log, key=second).start()


def test_a_tampered_last_entry_stops_the_writer(tmp_path: Path) -> None:
    """A whole last line that fails its hash is tampering, not a torn write: start() refuses."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        writer.append(record(1))
    log.write_bytes(log.read_bytes().replace(b"h1.example", b"h2.example"))
    with pytest.raises(AuditUnavailable, match="fails its hash"):
        AuditWriter(log, key=KEY).start()


def test_one_writer_per_log(tmp_path: Path) -> None:
    """A second writer on the same log is refused while the first holds it."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY), pytest.raises(AuditUnavailable, match="another audit writer"):
        AuditWriter(log, key=KEY).start()
    with AuditWriter(log, key=KEY) as writer:
        assert writer.append(record(1)) == 1


@pytest.mark.parametrize(("bad", "reason"), [
    ({"source": "proxy", "seq": 7}, "set by the writer"),
    ({"source": "proxy", "hash": "0" * 64}, "set by the writer"),
    ({"source": "nobody"}, "source must be one of"),
    ({"source": "proxy", "latency": 0.5}, "float is not allowed"),
    ({"source": "proxy", "nested": {"a": 1}}, "dict is not allowed"),
], ids=["seq", "hash", "unknown_source", "float", "nested"])
def test_bad_records_are_refused_at_submit(tmp_path: Path, bad: dict[str, object], reason: str) -> None:
    """A record the log cannot hold is a ValueError for its producer; the writer keeps working."""
    with AuditWriter(tmp_path / "audit.jsonl", key=KEY) as writer:
        with pytest.raises(ValueError, match=reason):
            writer.submit(bad)
        assert writer.append(record(1)) == 1 and writer.error is None


def test_the_record_is_copied_at_submit(tmp_path: Path) -> None:
    """Changing a dict after submitting it does not change the entry."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        mine = record(1)
        ticket = writer.submit(mine)
        mine["verdict"] = "DENY"
        ticket.result()
    assert list(iter_entries(log))[1]["verdict"] == "ALLOW"


def test_a_closed_or_unstarted_writer_refuses(tmp_path: Path) -> None:
    """submit() before start() or after close() raises AuditUnavailable."""
    writer = AuditWriter(tmp_path / "audit.jsonl", key=KEY)
    with pytest.raises(AuditUnavailable, match="not running"):
        writer.submit(record(1))
    writer.start()
    writer.close()
    with pytest.raises(AuditUnavailable, match="not running"):
        writer.submit(record(1))


def test_rotation_by_size_keeps_the_chain(tmp_path: Path) -> None:
    """Segments stay near the size limit, are numbered in order, and chain into each other."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY, rotate_bytes=2000) as writer:
        for n in range(60):
            writer.append(record(n))
    segments = segment_paths(log)
    assert [p.name for p in segments[:2]] == ["audit.000001.jsonl", "audit.000002.jsonl"]
    assert segments[-1] == log and len(segments) > 5
    for segment in segments[:-1]:
        assert segment.stat().st_size < 2000 + 400
    first_lines = [json.loads(p.read_bytes().splitlines()[0]) for p in segments[1:]]
    last_lines = [json.loads(p.read_bytes().splitlines()[-1]) for p in segments[:-1]]
    assert [f["prev"] for f in first_lines] == [last["hash"] for last in last_lines]
    assert verify_log(log, key=KEY).segments == len(segments)


def test_rotation_by_age(tmp_path: Path) -> None:
    """A segment older than rotate_seconds is rotated, even with no new entries."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY, rotate_seconds=0.2, max_latency=0.01) as writer:
        writer.append(record(1))
        deadline = time.monotonic() + 5
        while len(segment_paths(log)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(segment_paths(log)) == 2
        assert writer.append(record(2)) == 2
    assert verify_log(log, key=KEY).ok


def test_checkpoints_every_n_entries_and_at_close(tmp_path: Path) -> None:
    """Checkpoints are written every N entries and at close, each signed and matching the log."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY, checkpoint_every=10) as writer:
        for n in range(25):
            writer.append(record(n))
    points = read_checkpoints(f"{log}.checkpoints", AuditKey(KEY))
    assert [p.seq for p in points][-1] == 25 and len(points) >= 3
    hashes = {e["seq"]: e["hash"] for e in iter_entries(log)}
    assert all(hashes[p.seq] == p.hash for p in points)


def test_checkpoints_by_time(tmp_path: Path) -> None:
    """With new entries, a checkpoint is written after checkpoint_seconds."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY, checkpoint_seconds=0.1) as writer:
        writer.append(record(1))
        deadline = time.monotonic() + 5
        while not Path(f"{log}.checkpoints").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_checkpoints(f"{log}.checkpoints", AuditKey(KEY))[-1].seq == 1


def test_checkpoint_sinks_receive_every_checkpoint(tmp_path: Path) -> None:
    """A path sink is appended to; a `|command` sink gets each line on stdin."""
    log = tmp_path / "audit.jsonl"
    elsewhere = tmp_path / "mnt" / "cp"
    elsewhere.parent.mkdir()
    script = f"import sys; open({str(tmp_path / 'piped')!r}, 'ab').write(sys.stdin.buffer.read())"
    for sink in (str(elsewhere), f"|{sys.executable} -c {json.dumps(script)}"):
        with AuditWriter(log, key=KEY, checkpoint_every=5, checkpoint_sink=sink) as writer:
            for n in range(12):
                writer.append(record(n))
    local = Path(f"{log}.checkpoints").read_bytes()
    assert elsewhere.read_bytes() + (tmp_path / "piped").read_bytes() == local
    assert verify_log(log, key=KEY, checkpoints=elsewhere).ok


def test_a_failing_sink_is_recorded_not_fatal(tmp_path: Path) -> None:
    """A sink command that fails leaves an entry saying so and `sink_error`; appends go on."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY, checkpoint_every=2, checkpoint_sink="|false") as writer:
        for n in range(4):
            writer.append(record(n))
        deadline = time.monotonic() + 5
        while writer.sink_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.sink_error is not None and "exit status 1" in writer.sink_error
        writer.append(record(9))
    assert any(e.get("event") == "sink failed" for e in iter_entries(log))
    assert verify_log(log, key=KEY).ok


def test_a_deferred_record_is_written_within_max_latency(tmp_path: Path) -> None:
    """A record nobody waits for does not wake the writer, but is durable within the bound."""
    with AuditWriter(tmp_path / "audit.jsonl", key=KEY, max_latency=0.05) as writer:
        time.sleep(0.1)  # let the writer go idle
        ticket = writer.submit(record(1), deferred=True)
        assert ticket.result(timeout=1.0) == 1


def test_a_deferred_record_rides_with_the_next_urgent_one(tmp_path: Path) -> None:
    """Deferred, then urgent: one batch (one timestamp), each in its submitted order."""
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY, max_latency=5.0) as writer:
        time.sleep(0.1)
        deferred = writer.submit(record(1), deferred=True)
        time.sleep(0.2)
        assert not deferred.done()  # nothing woke the writer for it
        assert writer.append(record(2)) == 2
        assert deferred.result(timeout=0) == 1
    entries = [e for e in iter_entries(log) if e["seq"] in (1, 2)]
    assert [e["n"] for e in entries] == [1, 2] and entries[0]["ts"] == entries[1]["ts"]
