"""Audit entry format: canonical JSON, what a record may hold, records from decisions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.format import (
    KEY_RE,
    MAX_INT,
    Clock,
    canonical_json,
    check_record,
    dump,
    record_from_decision,
    strip_hash,
)
from gateway.engine import Request, decide
from gateway.policy.compiled import compile_policy_text
from gateway.policy.model import Action


def reference(obj: Mapping[str, object]) -> bytes:
    """The documented canonical form, spelled with the standard library."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


names = st.from_regex(KEY_RE, fullmatch=True)
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
values = st.one_of(texts, st.integers(-MAX_INT, MAX_INT), st.booleans(), st.none())
records = st.dictionaries(names, values, max_size=12)


@given(records)
def test_canonical_json_is_byte_identical_to_the_documented_form(record: dict[str, object]) -> None:
    """orjson's output equals json.dumps(sort_keys, compact, ensure_ascii=False) for every type the log holds."""
    assert canonical_json(record) == reference(record)


@given(records)
def test_canonical_json_round_trips(record: dict[str, object]) -> None:
    """Parsing canonical bytes and serialising again gives the same bytes (what verify relies on)."""
    data = canonical_json(record)
    assert canonical_json(json.loads(data)) == data


@given(records, st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_the_hash_member_is_found_and_cut_exactly(record: dict[str, object], digest: str) -> None:
    """Cutting the hash member from a canonical line leaves the canonical form without it."""
    entry = {k: v for k, v in record.items() if k not in {"hash", "chain"}}
    entry["chain"] = "c" * 32
    line = dump({**entry, "hash": digest})
    cut = strip_hash(line)
    assert cut == (dump(entry), digest)


REJECTED = [
    ("float", {"a": 1.5}, "float is not allowed"),
    ("nan", {"a": float("nan")}, "float is not allowed"),
    ("big_int", {"a": 2**53}, "outside"),
    ("small_int", {"a": -(2**53)}, "outside"),
    ("nested_object", {"a": {"b": 1}}, "dict is not allowed"),
    ("list", {"a": [1]}, "list is not allowed"),
    ("bytes", {"a": b"x"}, "bytes is not allowed"),
    ("lone_surrogate", {"a": "x\ud800"}, "surrogate"),
    ("non_str_key", {1: "a"}, "not a short ASCII name"),
    ("non_ascii_key", {"é": "a"}, "not a short ASCII name"),
    ("empty_key", {"": "a"}, "not a short ASCII name"),
    ("key_with_quote", {'a"b': "a"}, "not a short ASCII name"),
    ("str_subclass_enum_value", {"a": Action.NETWORK}, "Action is not allowed"),
]


@pytest.mark.parametrize(("record", "reason"), [(r, w) for _, r, w in REJECTED],
                         ids=[i for i, _, _ in REJECTED])
def test_canonical_json_rejects_what_it_cannot_represent_exactly(record: dict[object, object], reason: str) -> None:
    """Only plain strings, safe integers, booleans and null are canonical; the rest is a ValueError with a reason."""
    with pytest.raises(ValueError, match=reason):
        canonical_json(record)  # type: ignore[arg-type]


def test_canonical_json_rejects_a_non_object() -> None:
    """A list is not a record."""
    with pytest.raises(ValueError, match="JSON object"):
        canonical_json([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["seq", "ts", "chain", "prev", "hash"])
def test_a_producer_record_may_not_carry_writer_fields(field: str) -> None:
    """The writer's fields cannot be supplied (or spoofed) by a producer."""
    with pytest.raises(ValueError, match="set by the writer"):
        check_record({"source": "cli", field: "x"})


POLICY = compile_policy_text(
    "version: 1\ndefault: deny\nrules:\n"
    "- {action: network, host: api.example.com, effect: allow}\n"
    "- {action: shell_exec, command: 'rm*', effect: deny}\n",
    project_dir="/project", environ={"HOME": "/home/u"})

DECISIONS = [
    ("network_allow", Action.NETWORK, "api.example.com:443", "host",
     {"verdict": "ALLOW", "rule": 0, "port": 443, "mode": "enforce"}),
    ("network_default_deny", Action.NETWORK, "evil.example", "host",
     {"verdict": "DENY", "rule": "default"}),
    ("command_deny", Action.SHELL_EXEC, "rm -rf /tmp/x", "command",
     {"verdict": "DENY", "rule": 1}),
]


@pytest.mark.parametrize(("action", "target", "selector", "expected"),
                         [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS])
def test_record_from_decision_carries_the_decision(action: Action, target: str, selector: str,
                                                   expected: dict[str, object]) -> None:
    """The record names source, agent, action, target, verdict, mode, rule and reason, and is canonical."""
    decision = decide(POLICY, Request(action, target, agent="a1"))
    record = record_from_decision(decision, source="proxy", details={"method": "GET"})
    assert record["source"] == "proxy" and record["agent"] == "a1"
    assert record["action"] == action.value and record[selector] == decision.target
    assert record["reason"] == decision.reason and record["method"] == "GET"
    for key, value in expected.items():
        assert record[key] == value
    assert not {"seq", "ts", "chain", "prev", "hash"} & set(record)
    assert canonical_json(record) == reference(record)


@pytest.mark.parametrize(("source", "details", "reason"), [
    ("nobody", None, "source must be one of"),
    ("proxy", {"verdict": "ALLOW"}, "would override"),
    ("proxy", {"duration": 1.5}, "float is not allowed"),
    ("proxy", {"seq": 5}, "set by the writer"),
], ids=["unknown_source", "detail_overrides_verdict", "float_detail", "detail_named_seq"])
def test_record_from_decision_refuses(source: str, details: dict[str, object] | None, reason: str) -> None:
    """A bad source, a detail that would override the decision, or a non-canonical detail is refused."""
    decision = decide(POLICY, Request(Action.NETWORK, "evil.example"))
    with pytest.raises(ValueError, match=reason):
        record_from_decision(decision, source=source, details=details)


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    """The clock gives `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    stamp = Clock().now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
