"""Verifying a log: every segment in order, every entry's seq, link and hash, and,
given checkpoints kept elsewhere, that the log still reaches what they vouch for.

Each entry's hash is checked over the line's own bytes with the hash member cut
out, not over a re-serialisation. For a line the writer wrote the two are the same
bytes (the writer emits the canonical form, and the hash member is its only
`,"hash":"` sequence: flat records, and inside JSON strings every `"` follows a
backslash). A line edited into any other form, even one that means the same, fails;
the report then says whether its meaning changed.

Verification stops at the first damage and names its seq and kind:

- `edited`: an entry's content no longer matches its hash;
- `deleted`: entries missing from the middle (the next seq present comes later);
- `reordered`: the expected seq appears further on;
- `inserted`: a line that is not the next entry (a copy, a foreign entry, a fake);
- `missing segment`: the chain breaks where one segment ends and the next begins,
  or the log does not begin at seq 0;
- `truncated`: the log ends before a checkpoint's seq;
- `replaced`: the chain id or a hash differs from what a checkpoint recorded;
- `forged`: hashes that link up but do not verify under the key (a chain
  recomputed without it), or a checkpoint whose MAC fails;
- `unkeyed`: a keyed verifier given a log that says it is unkeyed;
- `key needed`: a keyed log and no key to check it with;
- `torn`: the last line is incomplete (the writer stopped mid-write; its next
  start sets the bytes aside and records that).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.audit.checkpoints import Checkpoint, read_checkpoints
from gateway.audit.format import GENESIS_PREV, HASH_MEMBER_LEN, HASH_MEMBER_PREFIX, dump
from gateway.audit.keys import AuditKey
from gateway.audit.reader import segment_paths
from gateway.errors import GatewayError


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    segments: int
    last_seq: int | None
    head_hash: str | None
    keyed: bool
    damage: str | None
    bad_seq: int | None
    message: str


class _Damage(Exception):  # internal control flow: never escapes verify_log
    def __init__(self, kind: str, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.kind, self.seq, self.message = kind, seq, message


@dataclass(slots=True)
class _Line:
    """A line parsed for classification, with what its own hash check says."""

    raw: bytes
    entry: dict[str, object] | None
    valid: bool
    plain_sha256: bool


def _parse(raw: bytes, key: AuditKey) -> _Line:
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _Line(raw, None, False, False)
    if not isinstance(entry, dict) or not isinstance(entry.get("prev"), str) \
            or type(entry.get("seq")) is not int or not isinstance(entry.get("hash"), str):
        return _Line(raw, None, False, False)
    body = {k: v for k, v in entry.items() if k != "hash"}
    try:
        data = entry["prev"].encode() + dump(body)
    except (ValueError, UnicodeEncodeError):
        return _Line(raw, entry, False, False)
    valid = key.hexdigest(data) == entry["hash"]
    plain = key.keyed and hashlib.sha256(data).hexdigest() == entry["hash"]
    return _Line(raw, entry, valid, plain)


class _Walk:
    """Segments as lists of lines, with a cursor for looking ahead once damage shows."""

    def __init__(self, segments: list[Path]) -> None:
        self.segments = segments

    def lines(self, segment: int) -> tuple[list[bytes], bytes]:
        with open(self.segments[segment], "rb") as handle:
            data = handle.read()
        lines = data.split(b"\n")
        return lines, lines.pop()

    def after(self, segment: int, index: int, lines: list[bytes]) -> Iterator[bytes]:
        yield from lines[index + 1:]
        for later in range(segment + 1, len(self.segments)):
            more, _ = self.lines(later)
            yield from more


def verify_log(path: str | os.PathLike[str], *, key: bytes | None,
               checkpoints: str | os.PathLike[str] | None = None) -> VerifyResult:
    """Check the whole log at `path` (all its segments); see the module doc for kinds."""
    akey = AuditKey(key)
    segments = segment_paths(path)
    points: list[Checkpoint] = []
    if checkpoints is not None:
        try:
            points = read_checkpoints(checkpoints, akey)
        except OSError as e:
            raise GatewayError(f"{checkpoints}: cannot read checkpoints: "
                               f"{e.strerror}") from None
        except ValueError as e:
            return _result(False, 0, len(segments), None, None, akey.keyed,
                           _Damage("forged", None, f"checkpoint {e}"))
    if not segments:
        damage = _Damage("truncated" if points else "missing segment", 0,
                         f"no audit log at {path}")
        return _result(False, 0, 0, None, None, akey.keyed, damage)
    state = _State(akey, {p.seq for p in points})
    try:
        state.walk(_Walk(segments))
        _check_points(state, points)
    except _Damage as damage:
        return _result(False, state.count, len(segments), state.seq - 1 if state.seq else None,
                       state.head, state.log_keyed, damage)
    message = f"{state.count} entries, {len(segments)} segments"
    return VerifyResult(ok=True, entries=state.count, segments=len(segments),
                        last_seq=state.seq - 1 if state.seq else None,
                        head_hash=state.head, keyed=state.log_keyed, damage=None,
                        bad_seq=None, message=message)


def _result(ok: bool, entries: int, segments: int, last: int | None, head: str | None,
            keyed: bool, damage: _Damage) -> VerifyResult:
    return VerifyResult(ok=ok, entries=entries, segments=segments, last_seq=last,
                        head_hash=head, keyed=keyed, damage=damage.kind, bad_seq=damage.seq,
                        message=damage.message)


class _State:
    def __init__(self, key: AuditKey, wanted: set[int]) -> None:
        self.key = key
        self.wanted = wanted
        self.seen: dict[int, str] = {}
        self.seq = 0
        self.count = 0
        self.head: str | None = None
        self.chain: str | None = None
        self.log_keyed = key.keyed

    def walk(self, walk: _Walk) -> None:
        digest, wanted = self.key.hexdigest, self.wanted
        prefix, span = HASH_MEMBER_PREFIX, HASH_MEMBER_LEN
        start = len(prefix)
        prev, seq, chain = GENESIS_PREV, 0, None
        prev_bytes = prev.encode()
        last = len(walk.segments) - 1
        for number in range(last + 1):
            lines, torn = walk.lines(number)
            for index, line in enumerate(lines):
                if chain is None:
                    chain = self._genesis(line)
                    chain_member = b'"chain":"%s"' % (chain or "").encode()
                i = line.find(prefix)
                # Members are found as bytes, not by parsing: in canonical JSON a quote
                # inside a string is escaped, so `"seq":N,` and `"prev":"H"` with bare
                # quotes can only be top-level members of this flat object, and the
                # keyed digest covers every byte but the hash member's own.
                if i > 0 and line[i + span - 1:i + span] == b'"' and line[:1] == b"{" \
                        and b'"seq":%d,' % seq in line and b'"prev":"' + prev_bytes + b'"' \
                        in line and chain_member in line:
                    got = line[i + start:i + span - 1]
                    if digest(prev_bytes + line[:i] + line[i + span:]).encode() == got:
                        prev, prev_bytes = got.decode(), got
                        if seq in wanted:
                            self.seen[seq] = prev
                        seq += 1
                        continue
                self.seq, self.head, self.count = seq, (prev if seq else None), seq
                raise self._classify(walk, number, index, lines, seq, prev, chain)
            if torn:
                self.seq, self.head, self.count = seq, (prev if seq else None), seq
                where = "" if number == last else f" of {walk.segments[number].name}"
                raise _Damage("torn", seq, f"the last line{where} is incomplete "
                              f"({len(torn)} bytes): the writer stopped mid-write")
        self.seq, self.head, self.count, self.chain = seq, (prev if seq else None), seq, chain

    def _genesis(self, line: bytes) -> str | None:
        """The chain id, after checking the genesis entry's keyed marker."""
        parsed = _parse(line, self.key)
        entry = parsed.entry
        if entry is None:
            raise _Damage("edited", 0, "the first line is not a whole entry")
        if entry.get("seq") != 0:
            seq = entry.get("seq")
            raise _Damage("missing segment", 0, f"the log does not begin at seq 0 (its "
                          f"first entry is {seq!r}): a first segment is missing")
        keyed = entry.get("keyed")
        if keyed is False:
            self.log_keyed = False
            if self.key.keyed:
                raise _Damage("unkeyed", 0, "the log says it is unkeyed (plain SHA-256), "
                              "so anyone who can write it can rewrite it; a keyed verifier "
                              "refuses it")
        elif keyed is True:
            self.log_keyed = True
            if not self.key.keyed:
                raise _Damage("key needed", None, "the log is keyed: give its key to "
                              "verify it")
        chain = entry.get("chain")
        return chain if isinstance(chain, str) else None

    def _classify(self, walk: _Walk, number: int, index: int, lines: list[bytes],
                  seq: int, prev: str, chain: str | None) -> _Damage:
        here = _parse(lines[index], self.key)
        ahead = walk.after(number, index, lines)
        entry = here.entry
        if not here.valid:
            following = next(ahead, None)
            nxt = _parse(following, self.key) if following is not None else None
            if nxt is not None and nxt.valid and nxt.entry is not None and \
                    nxt.entry["seq"] == seq and nxt.entry["prev"] == prev:
                return _Damage("inserted", seq, f"a line that is not an entry of this "
                               f"chain stands before seq {seq}")
            if here.plain_sha256:
                return _Damage("forged", seq, f"entry {seq} is hashed with plain SHA-256, "
                               "not the key: the chain was recomputed without the key")
            if entry is not None and nxt is not None and nxt.entry is not None and \
                    not nxt.valid and nxt.entry.get("prev") == entry["hash"]:
                return _Damage("forged", seq, f"entries from seq {seq} link up but fail "
                               "the key: the chain was recomputed without it")
            return _Damage("edited", seq, self._edit_note(here, seq))
        assert entry is not None
        found = entry["seq"]
        if found == seq and entry["prev"] == prev and entry.get("chain") == chain:
            return _Damage("edited", seq, f"entry {seq} is not byte for byte as written "
                           "(its meaning is unchanged, its bytes are not canonical)")
        if found == seq:
            return _Damage("inserted", seq, f"an entry numbered {seq} that does not link to "
                           f"seq {seq - 1} of this chain (another log's, or a fork)")
        if isinstance(found, int) and found < seq:
            return _Damage("inserted", seq, f"a copy of entry {found} stands where seq "
                           f"{seq} belongs")
        for later in ahead:
            other = _parse(later, self.key)
            if other.valid and other.entry is not None and other.entry["seq"] == seq:
                return _Damage("reordered", seq, f"entry {seq} appears after entry {found}")
        if index == 0:
            return _Damage("missing segment", seq, f"{walk.segments[number].name} begins at "
                           f"seq {found}, but seq {seq} comes next: a segment is missing")
        return _Damage("deleted", seq, f"entries {seq} to {found - 1} are missing"
                       if isinstance(found, int) and found > seq + 1 else
                       f"entry {seq} is missing")

    @staticmethod
    def _edit_note(line: _Line, seq: int) -> str:
        if line.entry is None:
            return f"the line where seq {seq} belongs is not a whole entry"
        if line.valid is False and line.entry.get("seq") == seq:
            return f"entry {seq} no longer matches its hash"
        return f"the line where seq {seq} belongs no longer matches its hash"


def _check_points(state: _State, points: list[Checkpoint]) -> None:
    """The log must reach every checkpoint, with the same chain and hash there."""
    if points and state.seq == 0:
        raise _Damage("truncated", 0, "the log has no entries but checkpoints vouch for "
                      f"seq {max(p.seq for p in points)}")
    for point in points:
        if point.chain != state.chain:
            raise _Damage("replaced", 0, f"the log's chain {state.chain} is not the "
                          f"checkpointed chain {point.chain}: the log was replaced")
    for point in points:
        if point.seq >= state.seq:
            raise _Damage("truncated", state.seq, f"the log ends at seq {state.seq - 1} "
                          f"but a checkpoint vouches for seq {point.seq}")
        if state.seen.get(point.seq) != point.hash:
            raise _Damage("replaced", point.seq, f"entry {point.seq} is not the one "
                          "checkpointed: the log was rewritten from there")
