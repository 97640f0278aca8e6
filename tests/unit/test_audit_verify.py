"""verify_log: each kind of damage is found, named, and placed at the right seq."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.audit.format import dump
from gateway.audit.reader import iter_entries, segment_paths
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def write_log(path: Path, count: int, key: bytes | None = KEY, **options: object) -> None:
    """A log with genesis + `count` records (seq 0..count), every one durable."""
    with AuditWriter(path, key=key, **options) as writer:  # type: ignore[arg-type]
        tickets = [writer.submit({"source": "cli", "action": "network",
                                  "host": f"h{n}.example", "verdict": "DENY" if n % 3 else "ALLOW",
                                  "n": n}) for n in range(count)]
        assert [t.result() for t in tickets] == list(range(1, count + 1))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"".join(change(lines_of(path))))


def edit_field(lines: list[bytes]) -> list[bytes]:
    entry = json.loads(lines[5])
    entry["verdict"] = "ALLOW" if entry["verdict"] == "DENY" else "DENY"
    entry["host"] = "innocent.example"
    lines[5] = dump(entry) + b"\n"
    return lines


def respell(lines: list[bytes]) -> list[bytes]:
    lines[5] = json.dumps(json.loads(lines[5]), indent=1).replace("\n", "").encode() + b"\n"
    return lines


def forge_from(key: bytes | None, start: int) -> Callable[[list[bytes]], list[bytes]]:
    """Edit entry `start` and recompute the chain from there, as someone without the key would."""
    import hmac

    def change(lines: list[bytes]) -> list[bytes]:
        prev = json.loads(lines[start - 1])["hash"] if start else "0" * 64
        for i in range(start, len(lines)):
            entry = json.loads(lines[i])
            entry.pop("hash")
            if i == start:
                entry["reason"] = "forged"
            entry["prev"] = prev
            data = prev.encode() + dump(entry)
            prev = (hmac.new(key, data, hashlib.sha256) if key else hashlib.sha256(data)).hexdigest()
            lines[i] = dump({**entry, "hash": prev}) + b"\n"
        return lines
    return change


DAMAGE = [
    ("edit_a_field", edit_field, "edited", 5),
    ("respell_without_changing_meaning", respell, "edited", 5),
    ("delete_a_line", lambda ls: ls[:4] + ls[5:], "deleted", 4),
    ("delete_three_lines", lambda ls: ls[:4] + ls[7:], "deleted", 4),
    ("swap_two_lines", lambda ls: [*ls[:4], ls[5], ls[4], *ls[6:]], "reordered", 4),
    ("move_a_line_far", lambda ls: ls[:3] + ls[4:9] + [ls[3]] + ls[9:], "reordered", 3),
    ("insert_a_copy", lambda ls: [*ls[:6], ls[2], *ls[6:]], "inserted", 6),
    ("insert_a_fake", lambda ls: [*ls[:6], ls[6].replace(b'"n":5', b'"n":55'), *ls[6:]], "inserted", 6),
    ("insert_a_blank_line", lambda ls: [*ls[:6], b"\n", *ls[6:]], "inserted", 6),
    ("garble_a_line", lambda ls: [*ls[:6], b"{garbage\n", *ls[7:]], "edited", 6),
    ("recompute_chain_plain_sha256", forge_from(None, 3), "forged", 3),
    ("recompute_chain_with_another_key", forge_from(OTHER_KEY, 3), "forged", 3),
    ("torn_last_line", lambda ls: [*ls[:-1], ls[-1][:40]], "torn", 10),
    ("delete_the_genesis", lambda ls: ls[1:], "missing segment", 0),
]


@pytest.mark.parametrize(("change", "kind", "seq"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damage_is_found_at_the_right_seq(tmp_path: Path, change: Callable[[list[bytes]], list[bytes]],
                                          kind: str, seq: int) -> None:
    """Each tampering is reported as its kind, at the first seq it affects, and fails verification."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 10)
    assert verify_log(log, key=KEY).ok
    rewrite(log, change)
    result = verify_log(log, key=KEY)
    assert (result.ok, result.damage, result.bad_seq) == (False, kind, seq), result.message


def test_an_intact_log_verifies_with_counts_and_head(tmp_path: Path) -> None:
    """OK gives entries, segments, last seq and the head hash (the last entry's hash)."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 10)
    result = verify_log(log, key=KEY, checkpoints=f"{log}.checkpoints")
    last = json.loads(lines_of(log)[-1])
    assert (result.ok, result.entries, result.segments, result.last_seq, result.keyed) == \
        (True, 11, 1, 10, True)
    assert result.head_hash == last["hash"] and result.damage is None


def test_a_keyed_verifier_refuses_an_unkeyed_log(tmp_path: Path) -> None:
    """An unkeyed log verifies without a key (keyed=False) and is refused as `unkeyed` with one."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 3, key=None)
    plain = verify_log(log, key=None)
    assert plain.ok and not plain.keyed
    result = verify_log(log, key=KEY)
    assert (result.ok, result.damage, result.bad_seq) == (False, "unkeyed", 0)


def test_a_keyed_log_needs_its_key(tmp_path: Path) -> None:
    """Without a key a keyed log is not declared OK."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    result = verify_log(log, key=None)
    assert (result.ok, result.damage) == (False, "key needed")


def test_the_wrong_key_is_reported_as_forged(tmp_path: Path) -> None:
    """A log checked with another key fails from seq 0."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    result = verify_log(log, key=OTHER_KEY)
    assert (result.ok, result.damage, result.bad_seq) == (False, "forged", 0)


def test_truncation_is_found_only_with_checkpoints(tmp_path: Path) -> None:
    """Cutting whole entries off the tail leaves a valid chain; the checkpoints kept elsewhere show it."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 20, checkpoint_every=5)
    kept = tmp_path / "elsewhere.checkpoints"
    shutil.copy(f"{log}.checkpoints", kept)
    rewrite(log, lambda ls: ls[:12])
    assert verify_log(log, key=KEY).ok
    result = verify_log(log, key=KEY, checkpoints=kept)
    assert (result.ok, result.damage, result.bad_seq) == (False, "truncated", 12), result.message


def test_deleting_the_whole_log_is_found_with_checkpoints(tmp_path: Path) -> None:
    """No log at all, against checkpoints, is a truncation at seq 0."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    log.unlink()
    result = verify_log(log, key=KEY, checkpoints=f"{log}.checkpoints")
    assert (result.ok, result.damage, result.bad_seq) == (False, "truncated", 0)


def test_a_wholesale_replaced_log_is_found_with_checkpoints(tmp_path: Path) -> None:
    """A fresh, internally valid log (even made with the key) is not the checkpointed one."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 5)
    kept = tmp_path / "kept.checkpoints"
    shutil.copy(f"{log}.checkpoints", kept)
    for path in tmp_path.glob("audit.jsonl*"):
        path.unlink()
    write_log(log, 8)
    assert verify_log(log, key=KEY).ok
    result = verify_log(log, key=KEY, checkpoints=kept)
    assert (result.ok, result.damage) == (False, "replaced"), result.message


def test_a_forged_checkpoint_is_reported(tmp_path: Path) -> None:
    """A checkpoint whose MAC fails under the key is itself damage."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    cp = Path(f"{log}.checkpoints")
    cp.write_bytes(cp.read_bytes().replace(b'"seq":3', b'"seq":2'))
    result = verify_log(log, key=KEY, checkpoints=cp)
    assert (result.ok, result.damage) == (False, "forged") and "MAC" in result.message


def test_rotated_segments_verify_and_a_missing_one_is_found(tmp_path: Path) -> None:
    """Segments chain into one another; removing a middle segment breaks the chain there."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 200, rotate_bytes=4096)
    segments = segment_paths(log)
    assert len(segments) >= 4
    result = verify_log(log, key=KEY)
    assert (result.ok, result.entries, result.segments) == (True, 201, len(segments))
    missing = segments[1]
    first_missing = json.loads(lines_of(missing)[0])["seq"]
    missing.unlink()
    result = verify_log(log, key=KEY)
    assert (result.ok, result.damage, result.bad_seq) == (False, "missing segment", first_missing)


def test_a_missing_first_segment_is_found(tmp_path: Path) -> None:
    """Without the segment that holds genesis the log does not begin at seq 0."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 100, rotate_bytes=4096)
    segment_paths(log)[0].unlink()
    result = verify_log(log, key=KEY)
    assert (result.ok, result.damage, result.bad_seq) == (False, "missing segment", 0)


def test_a_missing_last_segment_is_found_with_checkpoints(tmp_path: Path) -> None:
    """Deleting the newest segment leaves a valid chain; the checkpoints show the loss."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 100, rotate_bytes=4096)
    log.unlink()
    assert verify_log(log, key=KEY).ok
    result = verify_log(log, key=KEY, checkpoints=f"{log}.checkpoints")
    assert (result.ok, result.damage) == (False, "truncated")


def test_iter_entries_reads_every_segment_in_order(tmp_path: Path) -> None:
    """Readers see each seq once, in order, across rotation."""
    log = tmp_path / "audit.jsonl"
    write_log(log, 150, rotate_bytes=4096)
    assert [e["seq"] for e in iter_entries(log)] == list(range(151))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    log = tmp_path_factory.mktemp("pristine") / "audit.jsonl"
    write_log(log, 12)
    return log.read_bytes()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255),
       delete=st.booleans())
def test_no_single_byte_change_goes_unnoticed(tmp_path: Path, pristine: bytes, position: int,
                                              value: int, delete: bool) -> None:
    """Changing or deleting any one byte of a keyed log makes verification fail."""
    position %= len(pristine)
    if delete:
        changed = pristine[:position] + pristine[position + 1:]
    else:
        changed = pristine[:position] + bytes([value]) + pristine[position + 1:]
    assume(changed != pristine)
    log = tmp_path / "mutated.jsonl"
    log.write_bytes(changed)
    result = verify_log(log, key=KEY)
    assert not result.ok and result.damage is not None and result.message
