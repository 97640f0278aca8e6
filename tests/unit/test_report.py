"""`gateway report`: totals, rules, denials by agent and target, never-used rules, and a
suggested policy that allows exactly what a simulate-mode run saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.format import record_from_decision
from gateway.audit.writer import AuditWriter
from gateway.cli import main
from gateway.engine import Request, decide
from gateway.policy.compiled import CompiledPolicy, compile_policy_text
from gateway.policy.load import parse_policy_source, validate_policy
from gateway.policy.model import Action, Mode
from gateway.report import (
    build_report,
    is_decision,
    render_text,
    report_json,
    shown_target,
    suggest,
    summarise,
)

KEY = b"k" * 32
HOME = "/home/u"
PROJECT = "/proj"
ENV = {"HOME": HOME}
NET, READ, WRITE, SHELL = Action.NETWORK, Action.FILE_READ, Action.FILE_WRITE, Action.SHELL_EXEC
POLICY = """\
version: 1
default: deny
mode: simulate
vars:
  DATA: ${PROJECT_DIR}/data
rules:
  - {action: network, host: api.example.com, ports: [443], effect: allow}
  - {action: network, host: unused.example.com, effect: allow}
  - {action: shell_exec, command: "git status", effect: allow}
  - {action: shell_exec, command: "rm -rf /*", effect: deny}
  - {action: file_read, path: "${DATA}/**", effect: allow}
  - {action: file_write, path: "${PROJECT_DIR}/secret/**", effect: deny}
"""
# (source, action, target, agent, method, proxy event, times)
RUN: list[tuple[str, Action, str, str | None, str | None, str | None, int]] = [
    ("proxy", NET, "api.example.com:443", "coder", None, "connect", 1),
    ("proxy", NET, "evil.com:443", "coder", None, "connect", 3),
    ("proxy", NET, "upload.example.org:443", "coder", None, "connect", 1),
    ("proxy", NET, "https://upload.example.org/v1/files", "coder", "POST", "request", 1),
    ("proxy", NET, "[::1]:8080", "anonymous", None, None, 1),
    ("shim", SHELL, "git status", "runner", None, None, 1),
    ("shim", SHELL, "git status && ls *.py", "runner", None, None, 2),
    ("shim", SHELL, "rm -rf /", "runner", None, None, 1),
    ("shim", SHELL, "echo $HOME", "runner", None, None, 1),
    ("fs", READ, "/proj/data/x.csv", "coder", None, None, 1),
    ("fs", READ, "/proj/notes.txt", "coder", None, None, 1),
    ("fs", WRITE, "/proj/secret/key", "coder", None, None, 1),
]
ENFORCED = ("cli", READ, "/etc/passwd", None, None, None, 1)


def compiled(text: str = POLICY, mode: Mode | None = None) -> CompiledPolicy:
    if mode is not None:
        text = text.replace("mode: simulate", f"mode: {mode.value}")
    return compile_policy_text(text, project_dir=PROJECT, environ=ENV)


def records(policy: CompiledPolicy, run: list[Any]) -> list[dict[str, object]]:
    """The entries enforcement points would write for `run`, with the proxy's extras."""
    out: list[dict[str, object]] = []
    for source, action, target, agent, method, event, times in run:
        decision = decide(policy, Request(action, target, agent=agent, method=method))
        details: dict[str, object] = {}
        if event == "request":
            details = {"event": "request", "method": method, "url": target}
        elif event == "connect":
            details = {"event": "connect"}
        for _ in range(times):
            out.append(record_from_decision(decision, source=source, details=details))
            if event == "request":
                out.append({"source": "proxy", "agent": agent, "action": "network",
                            "host": decision.target, "event": "done", "status": 200})
    return out


def write_log(path: Path, entries: list[dict[str, object]]) -> Path:
    with AuditWriter(path, key=KEY) as writer:
        writer.append({"source": "gateway", "action": "policy", "event": "reload",
                       "reason": "policy changed"})
        for entry in entries:
            writer.append(entry)
    return path


@pytest.fixture
def run_entries() -> list[dict[str, object]]:
    return records(compiled(), RUN) + records(compiled(mode=Mode.ENFORCE), [ENFORCED])


@pytest.fixture
def files(tmp_path: Path, run_entries: list[dict[str, object]],
          monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A policy file and the log of a run under it, and the environment the CLI reads."""
    monkeypatch.setenv("HOME", HOME)
    monkeypatch.delenv("GATEWAY_AUDIT_LOG", raising=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return policy, write_log(tmp_path / "audit.jsonl", run_entries)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def json_report(capsys: pytest.CaptureFixture[str], log: Path, *extra: str) -> dict[str, Any]:
    code, out, err = cli(capsys, str(log), "--format", "json", *extra)
    assert (code, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


def suggestion_for(entries: list[dict[str, object]], text: str = POLICY) -> tuple[
        CompiledPolicy, Any]:
    """The suggestion over `entries` and the compiled policy its text makes."""
    source = parse_policy_source(text)
    sg = suggest(summarise(entries), validate_policy(source), compiled(text), log="run.jsonl",
                 environ=ENV)
    return compile_policy_text(sg.text, project_dir=PROJECT, environ=ENV), sg


# --- what counts ----------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "expected"), [
    ({"action": "network", "host": "a.com", "verdict": "DENY"}, True),
    ({"action": "shell_exec", "command": "ls", "verdict": "ALLOW"}, True),
    ({"action": "audit", "event": "genesis", "source": "gateway"}, False),
    ({"action": "policy", "event": "rejected", "source": "gateway"}, False),
    ({"action": "network", "host": "a.com", "event": "done", "status": 200}, False),
    ({"action": "network", "host": "a.com", "verdict": "MAYBE"}, False),
], ids=["deny", "allow", "log_event", "gateway_event", "completion", "unknown_verdict"])
def test_only_decisions_count(entry: dict[str, object], expected: bool) -> None:
    """A decision has one of the four actions and a verdict of ALLOW or DENY."""
    assert is_decision(entry) is expected


def test_totals_count_decisions_by_verdict_mode_and_source(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Totals skip the log's own events, gateway events and completions."""
    report = json_report(capsys, files[1])
    assert report["totals"] == {"decisions": 16, "allowed": 3, "denied": 1, "would_deny": 12,
                                "by_source": {"proxy": 7, "shim": 5, "fs": 3, "cli": 1}}


def test_rules_that_fired_are_split_by_verdict_and_shown_with_the_policy(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Each rule index and "default" counts its decisions; --policy adds each rule's text."""
    without = json_report(capsys, files[1])["rules"]
    assert [(r["rule"], r["decisions"], r["allow"], r["deny"], r["text"]) for r in without] == [
        (0, 1, 1, 0, None), (2, 1, 1, 0, None), (3, 1, 0, 1, None), (4, 1, 1, 0, None),
        (5, 1, 0, 1, None), ("default", 11, 0, 11, None)]
    with_policy = json_report(capsys, files[1], "--policy", str(files[0]))["rules"]
    assert with_policy[0]["text"] == "{action: network, host: api.example.com, ports: [443], " \
                                     "effect: allow}"
    assert with_policy[-1]["text"] is None


def test_denials_are_grouped_by_agent_then_target_most_frequent_first(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Would-denies and enforce denies are separate groups; --top limits each agent's list."""
    report = json_report(capsys, files[1], "--top", "2")
    groups = {g["agent"]: g for g in report["would_deny"]}
    assert [g["agent"] for g in report["would_deny"]] == ["coder", "runner", "anonymous"]
    coder = groups["coder"]
    assert (coder["decisions"], coder["distinct"]) == (7, 5)
    assert coder["targets"] == [{"action": "network", "target": "evil.com:443", "count": 3},
                                {"action": "network", "target": "upload.example.org:443",
                                 "count": 1}]
    assert groups["runner"]["targets"][0] == {"action": "shell_exec", "target": "ls *.py",
                                              "count": 2}
    assert report["denied"] == [{"agent": None, "decisions": 1, "distinct": 1, "targets": [
        {"action": "file_read", "target": "/etc/passwd", "count": 1}]}]


@pytest.mark.parametrize(("entry", "shown"), [
    ({"action": "network", "host": "a.com", "port": 443, "event": "connect",
      "verdict": "DENY"}, "a.com:443"),
    ({"action": "network", "host": "a.com", "port": 443, "event": "request", "method": "GET",
      "url": "https://a.com/x", "verdict": "DENY"}, "a.com:443 GET https://a.com/x"),
    ({"action": "network", "host": "::1", "port": 80, "verdict": "DENY"}, "[::1]:80"),
    ({"action": "network", "host": "a.com", "verdict": "DENY"}, "a.com"),
    ({"action": "shell_exec", "command": "cd w && ls", "part": "cd w", "verdict": "DENY"},
     "cd w"),
    ({"action": "shell_exec", "command": "$X", "verdict": "DENY"}, "$X"),
    ({"action": "file_write", "path": "/p/a", "verdict": "DENY"}, "/p/a"),
], ids=["connect", "request", "ipv6", "no_port", "command_part", "whole_command", "path"])
def test_a_target_is_shown_by_its_action(entry: dict[str, object], shown: str) -> None:
    """Network shows host:port and METHOD url; commands the deciding part; files the path."""
    assert shown_target(entry) == shown


def test_allow_rules_no_decision_named_are_listed(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Rule 1 allowed nothing in the run; without --policy the section is a hint instead."""
    report = json_report(capsys, files[1], "--policy", str(files[0]))
    assert report["unused_allow_rules"] == [
        {"rule": 1, "text": "{action: network, host: unused.example.com, effect: allow}"}]
    bare = json_report(capsys, files[1])
    assert (bare["unused_allow_rules"], bare["suggestion"]) == (None, None)
    assert bare["hint"].startswith("give --policy POLICY")


# --- the suggestion ---------------------------------------------------------------------


@pytest.mark.parametrize(("action", "target", "agent", "method", "allowed"), [
    (NET, "evil.com:443", "coder", None, True),
    (NET, "evil.com:8443", "coder", None, False),
    (NET, "evil.com:443", "runner", None, False),
    (NET, "https://upload.example.org/v1/files", "coder", "POST", True),
    (NET, "upload.example.org:443", "coder", None, True),
    (NET, "https://upload.example.org/v2", "coder", "POST", False),
    (NET, "https://upload.example.org/v1/files", "coder", "DELETE", False),
    (NET, "[::1]:8080", "anonymous", None, True),
    (NET, "[::1]:8081", "anonymous", None, False),
    (SHELL, "git status && ls *.py", "runner", None, True),
    (SHELL, "ls *.py && rm x", "runner", None, False),
    (READ, "/proj/notes.txt", "coder", None, True),
    (READ, "/proj/notes.md", "coder", None, False),
    (WRITE, "/proj/notes.txt", "coder", None, False),
    (READ, "/etc/passwd", None, None, True),
    (READ, "/etc/shadow", None, None, False),
], ids=["seen_host", "other_port", "other_agent", "seen_request", "connect_of_request",
        "other_path", "other_method", "ipv6_literal", "ipv6_other_port", "seen_command",
        "other_command", "seen_path", "sibling_path", "other_action", "enforce_deny",
        "unseen_file"])
def test_the_suggestion_allows_exactly_what_was_seen(
        run_entries: list[dict[str, object]], action: Action, target: str, agent: str | None,
        method: str | None, allowed: bool) -> None:
    """Compiled, the suggested text allows each seen target and denies its neighbours."""
    policy, _ = suggestion_for(run_entries)
    decision = decide(policy, Request(action, target, agent=agent, method=method))
    assert (decision.verdict.value == "ALLOW") is allowed, decision.reason


def test_the_suggestion_keeps_the_policy_and_adds_narrow_rules(
        run_entries: list[dict[str, object]]) -> None:
    """version, default, mode, vars and rules are kept; each addition is scoped and counted."""
    _, sg = suggestion_for(run_entries)
    original = validate_policy(parse_policy_source(POLICY))
    model = validate_policy(parse_policy_source(sg.text))
    assert model.model_dump(exclude={"rules"}) == original.model_dump(exclude={"rules"})
    assert model.rules[:len(original.rules)] == original.rules
    added = [r.model_dump(mode="json", exclude_none=True) for r in model.rules[6:]]
    assert {"action": "network", "host": ["evil.com"], "ports": [443], "agents": ["coder"],
            "effect": "allow", "reason": "seen in run.jsonl (3 times)"} in added
    assert {"action": "network", "host": ["upload.example.org"], "ports": [443],
            "methods": ["POST"], "paths": ["/v1/files"], "agents": ["coder"], "effect": "allow",
            "reason": "seen in run.jsonl (1 time)"} in added
    assert not any(r.get("host") == ["upload.example.org"] and "paths" not in r for r in added)
    assert {"action": "file_read", "path": ["/etc/passwd"], "effect": "allow",
            "reason": "seen in run.jsonl (1 time)"} in added
    assert {"action": "network", "host": ["[::1]"], "ports": [8080], "agents": ["anonymous"],
            "effect": "allow", "reason": "seen in run.jsonl (1 time)"} in added


def test_targets_denied_by_explicit_rules_are_listed_for_review(
        run_entries: list[dict[str, object]]) -> None:
    """Deny overrides allow: explicit denies get no allow, only "review rule N"."""
    policy, sg = suggestion_for(run_entries)
    assert {i: [o.seen.target for o in os] for i, os in sg.explicit.items()} == {
        3: ["rm -rf /"], 5: ["/proj/secret/key"]}
    assert decide(policy, Request(SHELL, "rm -rf /", agent="runner")).rule == 3


def test_what_no_exact_rule_can_allow_is_listed_with_the_reason(
        run_entries: list[dict[str, object]]) -> None:
    """A command with a run-time hole stays denied and says why; nothing else is left out."""
    _, sg = suggestion_for(run_entries)
    assert [(o.seen.target, o.why) for o in sg.not_covered] == [
        ("echo $HOME", "echo $HOME: $HOME is filled in at run time, which no exact rule "
                       "admits")]


@pytest.mark.parametrize(("command", "why"), [
    ("sh -c 'curl x | sh'", "cannot analyse: a shell reading its commands from stdin, a pipe "
                            "or a file"),
    ("ls a | xargs grep x", "grep x: arguments are added at run time, which no exact rule "
                            "admits"),
    ("", "bad input: empty command"),
], ids=["cannot_analyse", "runtime_arguments", "bad_input"])
def test_commands_no_rule_can_allow_are_not_covered(command: str, why: str) -> None:
    """Cannot-analyse, run-time arguments and bad input get no rule, only the reason."""
    entries = records(compiled(), [("shim", SHELL, command, "a", None, None, 1)])
    _, sg = suggestion_for(entries)
    assert [o.why for o in sg.not_covered] == [why]


def test_every_denied_part_of_a_command_gets_its_own_rule() -> None:
    """The log names the first denied part only; the suggestion follows the rest too."""
    entries = records(compiled(), [("shim", SHELL, "cd w && make -j2 | tee log", "a", None,
                                    None, 1)])
    policy, sg = suggestion_for(entries)
    assert [r.command for r in sg.added] == [["cd w"], ["make -j2"], ["tee log"]]
    assert decide(policy, Request(SHELL, "cd w && make -j2 | tee log", agent="a")).verdict \
        .value == "ALLOW"
    assert decide(policy, Request(SHELL, "cd w && make -j3", agent="a")).verdict.value == "DENY"


@pytest.mark.parametrize(("action", "target", "neighbour"), [
    (READ, "/proj/in/a*b", "/proj/in/aXb"),
    (READ, "/proj/in/q?", "/proj/in/qz"),
    (READ, "/proj/in/[ab]", "/proj/in/a"),
    (READ, "/proj/in/**", "/proj/in/x"),
    (READ, "/proj/in/${HOME}", "/proj/in/home/u"),
    (READ, "/proj/in/~", "/home/u"),
    (WRITE, "/proj/in/sp ace 'q\" back\\slash {a,b} !", "/proj/in/sp"),
    (SHELL, "ls '*.py'", "ls a.py"),
    (SHELL, "cat 'x?' \"[ab]\"", "cat xy a"),
    (SHELL, "echo '${HOME}'", "echo /home/u"),
    (SHELL, "echo '{a,b}' \"a b\" 'c\\d' ''", "echo a b"),
    (SHELL, "printf 'a\nb'", "printf a"),
], ids=["star", "question", "bracket", "globstar", "variable", "tilde", "quotes_and_blanks",
        "command_star", "command_question_bracket", "command_variable", "command_braces",
        "command_newline"])
def test_glob_and_special_characters_in_targets_are_escaped(
        action: Action, target: str, neighbour: str) -> None:
    """A suggested rule matches its literal target only, not what the unescaped glob would."""
    entries = records(compiled(), [("fs", action, target, "a", None, None, 1)])
    policy, sg = suggestion_for(entries)
    assert sg.not_covered == []
    assert len(sg.added) == 1
    assert decide(policy, Request(action, target, agent="a")).verdict.value == "ALLOW"
    assert decide(policy, Request(action, neighbour, agent="a")).verdict.value == "DENY"


def test_an_unquoted_glob_in_a_command_stays_a_glob() -> None:
    """`ls *.py` can run as `ls a.py`: the rule keeps the glob, and admits no other program."""
    entries = records(compiled(), [("shim", SHELL, "ls *.py", "a", None, None, 1)])
    policy, sg = suggestion_for(entries)
    assert [r.command for r in sg.added] == [["ls *.py"]]
    assert decide(policy, Request(SHELL, "ls a.py", agent="a")).verdict.value == "ALLOW"
    assert decide(policy, Request(SHELL, "ls a.py b.py", agent="a")).verdict.value == "DENY"


def test_decisions_the_policy_now_makes_otherwise_are_flagged(tmp_path: Path) -> None:
    """A log made under another policy is reported, so the suggestion is read with care."""
    older = POLICY.replace("api.example.com, ports: [443]", "api.example.com, ports: [80]")
    entries = records(compiled(older), RUN[:1])
    _, sg = suggestion_for(entries)
    assert [(o.seen.shown(), o.why) for o in sg.differs] == [
        ("api.example.com:443", "logged DENY by rule default; POLICY now: ALLOW by rule 0")]


# --- output -----------------------------------------------------------------------------


def test_json_output_is_one_object_with_every_section(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints one object; the suggested policy is a string."""
    report = json_report(capsys, files[1], "--policy", str(files[0]), "--project-dir", PROJECT)
    assert set(report) == {"log", "policy", "totals", "rules", "would_deny", "denied",
                           "unused_allow_rules", "suggestion", "hint"}
    assert (report["log"], report["policy"], report["hint"]) == (
        str(files[1]), str(files[0]), None)
    sg = report["suggestion"]
    assert set(sg) == {"policy", "added", "seen", "covered", "explicit_denies", "not_covered",
                       "differs"}
    assert isinstance(sg["policy"], str)
    compile_policy_text(sg["policy"], project_dir=PROJECT, environ=ENV)
    assert (sg["seen"], sg["covered"], sg["differs"]) == (
        13, 10, {"distinct": 0, "targets": []})
    assert sg["explicit_denies"][0] == {
        "rule": 3, "text": '{action: shell_exec, command: "rm -rf /*", effect: deny}',
        "decisions": 1, "distinct": 1,
        "targets": [{"action": "shell_exec", "agent": "runner", "target": "rm -rf /",
                     "count": 1}]}
    assert sg["not_covered"]["targets"][0]["reason"].startswith("echo $HOME: $HOME is filled")


def test_text_output_shows_each_section(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The text report has totals, rules, groups, unused rules, suggestion and review lists."""
    code, out, err = cli(capsys, str(files[1]), "--policy", str(files[0]), "--project-dir",
                         PROJECT, "--top", "1")
    assert (code, err) == (0, "")
    assert "decisions: 16 (3 allowed, 1 denied, 12 would-deny)" in out
    assert "by source: 7 proxy, 5 shim, 3 fs, 1 cli" in out
    assert "  coder: 7 decisions, 5 targets\n        3  network     evil.com:443\n" \
           "  ... and 4 more" in out
    assert "allow rules never used:\n  1        {action: network, host: unused.example.com" in out
    assert "\nversion: 1\ndefault: deny\nmode: simulate\nvars:\n  DATA: " in out
    assert "  review rule 3 {action: shell_exec" in out
    assert "not covered by the suggestion:" in out


def test_text_output_without_policy_ends_with_the_hint(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Without --policy, sections 4 and 5 are one line saying how to get them."""
    code, out, _ = cli(capsys, str(files[1]))
    assert code == 0
    assert out.rstrip("\n").splitlines()[-1] == "give --policy POLICY to show rule texts, " \
                                                 "allow rules never used and a suggested policy"
    assert "suggested policy" not in out.split("\n\ngive")[0]


def test_the_library_report_matches_the_cli(
        files: tuple[Path, Path], run_entries: list[dict[str, object]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """build_report over the same entries gives the JSON and text the CLI prints."""
    report = build_report(run_entries, log=str(files[1]))
    assert report_json(report) == json_report(capsys, files[1])
    assert render_text(report) + "\n" == cli(capsys, str(files[1]))[1]


# --- bad input --------------------------------------------------------------------------


def _damaged(log: Path) -> str:
    with open(log, "ab") as f:
        f.write(b"{not json\n")
    return f"gateway: {log}:{len(log.read_bytes().splitlines())}: damaged entry, not a JSON " \
           "object (gateway audit verify names the damage)"


def _missing(log: Path) -> str:
    log.unlink()
    return f"gateway: no audit log at {log}"


def _directory(log: Path) -> str:
    log.unlink()
    log.mkdir()
    return f"gateway: {log}: cannot read: Is a directory"


@pytest.mark.parametrize("spoil", [_damaged, _missing, _directory],
                         ids=["damaged_line", "missing_log", "unreadable_log"])
def test_a_bad_log_is_one_line_on_stderr_and_exit_2(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], spoil: Any) -> None:
    """A log that cannot be read whole is named on one line; nothing is printed to stdout."""
    message = spoil(files[1])
    code, out, err = cli(capsys, str(files[1]))
    assert (code, out, err) == (2, "", message + "\n")


@pytest.mark.parametrize(("policy", "message"), [
    ("version: 1\ndefault: deny\nrules: [\n", ":4: invalid YAML: expected the node content"),
    ("version: 2\ndefault: deny\n", ":1: unsupported policy version (this gateway reads "
                                    "version: 1)"),
    ("version: 1\ndefault: deny\nrules:\n  - {action: network, host: 'a*1.2', effect: allow}\n",
     ":4: rules.0.host: host selector 'a*1.2': a name cannot end in a number"),
    (None, ": cannot read policy: No such file or directory"),
], ids=["bad_yaml", "bad_version", "bad_selector", "missing"])
def test_an_invalid_policy_is_one_line_on_stderr_and_exit_2(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], policy: str | None,
        message: str) -> None:
    """The policy's own error, `gateway: FILE:LINE: message`, and no report."""
    path = files[0]
    if policy is None:
        path.unlink()
    else:
        path.write_text(policy)
    code, out, err = cli(capsys, str(files[1]), "--policy", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"gateway: {path}{message}") and err.count("\n") == 1, err


def test_a_torn_last_line_is_not_damage(files: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A partial line with no newline is what a writer leaves mid-append: it is skipped."""
    with open(files[1], "ab") as f:
        f.write(b'{"action":"network","ver')
    assert json_report(capsys, files[1])["totals"]["decisions"] == 16


def test_the_docs_example_is_what_a_real_run_prints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """docs/report.md's example: its policy and requests, logged by eval, then reported."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    example = doc.split("## Example", 1)[1].split("```\n", 2)[1].split("```", 1)[0]
    policy = "\n".join(line for line in example.splitlines()
                       if line.startswith("  - {") and "seen in" not in line)
    (tmp_path / "policy.yaml").write_text(
        "version: 1\ndefault: deny\nmode: simulate\nrules:\n" + policy + "\n")
    requests = [("network", "pypi.org:443"), ("network", "files.pythonhosted.org:443"),
                ("network", "files.pythonhosted.org:443"),
                ("shell_exec", "python -m pytest -q"), ("shell_exec", "cd src && make"),
                ("shell_exec", "rm -rf /tmp/build"), ("shell_exec", "curl -s $URL"),
                ("file_read", "/proj/README.md"), ("file_read", "/data/report[1].csv")]
    (tmp_path / "requests.jsonl").write_text("".join(
        json.dumps({"action": a, "target": t, "agent": "coder"}) + "\n" for a, t in requests))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("GATEWAY_AUDIT_KEY", raising=False)
    assert main(["eval", "--policy", "policy.yaml", "--project-dir", "/proj", "--batch",
                 "requests.jsonl", "--audit-log", "audit.jsonl"]) == 0
    capsys.readouterr()
    code, out, _ = cli(capsys, "audit.jsonl", "--policy", "policy.yaml", "--project-dir",
                       "/proj")
    assert (code, out) == (0, example)
