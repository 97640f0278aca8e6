"""The `gateway` command as users run it: exit codes, JSON output, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUTOGEN = str(ROOT / "policies" / "autogen.yaml")
DEFAULT = str(ROOT / "policies" / "default.yaml")


def gateway(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": "/home/user", "PROJECT_DIR": "/project"}
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_check_accepts_a_valid_policy() -> None:
    """`gateway check` exits 0 and summarises a valid policy."""
    result = gateway("check", AUTOGEN)
    assert result.returncode == 0, result.stderr
    assert "valid, 14 rules" in result.stdout


def test_check_reports_file_and_line_and_exits_2(tmp_path: Path) -> None:
    """An invalid policy gives one `FILE:LINE: message` line on stderr, exit 2, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefault: deny\nrules:\n- {action: network, hots: a, effect: allow}\n")
    result = gateway("check", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"gateway: {bad}:4: unknown key 'hots' in rules.0"
    assert "Traceback" not in result.stderr


def test_check_warns_about_suspicious_rules(tmp_path: Path) -> None:
    """Warnings (over-broad, redundant, never matching) go to stderr with exit 0."""
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\ndefault: deny\nrules:\n"
        "- {action: file_write, path: '/**', effect: allow}\n"
        "- {action: network, host: a.com, effect: allow}\n"
        "- {action: network, host: a.com, effect: allow}\n"
        "- {action: file_read, path: '/x/../y', effect: allow}\n"
        "- {action: network, host: 10.0.0.0/8, effect: allow}\n")
    result = gateway("check", str(policy))
    assert result.returncode == 0, result.stderr
    assert f"{policy}:4: warning: rule 0: over-broad allow" in result.stderr
    assert f"{policy}:6: warning: rule 2: redundant: rule 1 already allows 'a.com'" in result.stderr
    assert f"{policy}:7: warning: rule 3: path '/x/../y' can never match" in result.stderr
    assert f"{policy}:8: warning: rule 4: allow of 10.0.0.0/8 covers" in result.stderr


def test_eval_prints_the_decision_json() -> None:
    """`gateway eval` prints one JSON decision and exits 0 whatever the verdict."""
    result = gateway("eval", "--policy", AUTOGEN, "file_read", "/home/user/.ssh/id_rsa")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["verdict"] == "DENY" and decision["path"] == "/home/user/.ssh/id_rsa"
    assert decision["rule"] == 3


@pytest.mark.parametrize(("args", "message"), [
    (("eval", "--policy", AUTOGEN, "exec", "ls"), "unknown action 'exec'"),
    (("eval", "--policy", AUTOGEN, "network"), "give ACTION and TARGET"),
    (("eval", "--policy", "/nonexistent.yaml", "network", "a"), "cannot read policy"),
], ids=["unknown_action", "missing_target", "missing_policy"])
def test_eval_bad_request_exits_2(args: tuple[str, ...], message: str) -> None:
    """A request that is not a request exits 2 with a one-line message."""
    result = gateway(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") <= 1 or result.stderr.startswith("usage")


def test_eval_bad_target_is_a_decision_not_an_error() -> None:
    """A target the engine can judge as bad input still gets a decision and exit 0."""
    result = gateway("eval", "--policy", AUTOGEN, "network", "http://evil.com\\@api.openai.com/")
    assert result.returncode == 0
    decision = json.loads(result.stdout)
    assert decision["verdict"] == "DENY" and decision["reason"].startswith("bad input:")


def test_batch_answers_each_line_in_order_and_survives_bad_lines() -> None:
    """--batch reads JSON lines and writes one decision or error line for each, in order."""
    lines = [
        {"action": "network", "target": "api.openai.com:443"},
        "not json",
        {"action": "exec", "target": "x"},
        {"target": "x"},
        {"action": "file_write", "target": "analyze.py", "cwd": "workspace"},
        ["a list"],
        {"action": "shell_exec", "target": "rm -rf /"},
    ]
    stdin = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    result = gateway("eval", "--policy", AUTOGEN, "--batch", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 7
    assert out[0]["verdict"] == "ALLOW"
    assert out[1] == {"error": "line 2: not JSON"}
    assert out[2]["error"].startswith("line 3: unknown action")
    assert out[3] == {"error": "line 4: missing 'action'"}
    assert out[4]["verdict"] == "ALLOW" and out[4]["path"] == "/project/workspace/analyze.py"
    assert out[5] == {"error": "line 6: not a JSON object"}
    assert out[6]["verdict"] == "DENY" and out[6]["rule"] == 8


def test_explain_shows_steps_matches_and_winner() -> None:
    """`gateway explain` shows normalisation, every matching rule, and the winner."""
    result = gateway("explain", "--policy", AUTOGEN, "file_read", "/project/workspace/../workspace/.env")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "-> '/project/workspace/.env'" in out
    assert "rule 0" in out and "rule 2" in out and "rule 3" in out
    assert "verdict: DENY by rule 2" in out


def test_default_policy_checks_clean() -> None:
    """The shipped default policy is valid and draws no warnings."""
    result = gateway("check", DEFAULT)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_help_explains_every_command() -> None:
    """`--help` lists the commands, and each command's help describes its exit codes."""
    result = gateway("--help")
    for command in ("check", "eval", "explain"):
        assert command in result.stdout
    assert "exit 2 when" in " ".join(gateway("eval", "--help").stdout.split())


def test_explain_shows_every_part_even_after_the_first_denied_one() -> None:
    """explain lists the rules matching each part; the verdict names the first denied part."""
    result = gateway("explain", "--policy", AUTOGEN, "shell_exec", "rm -rf / ; curl x.invalid")
    assert result.returncode == 0, result.stderr
    assert "rules matching 'rm -rf /'" in result.stdout
    assert "rules matching 'curl x.invalid'" in result.stdout
    assert "verdict: DENY by rule 8: rm -rf /:" in result.stdout


def test_check_says_what_mounts_will_not_enforce() -> None:
    """`gateway check` lists, on stderr, the file rules that mounts can hold only in part."""
    result = gateway("check", DEFAULT, "--project-dir", "/project")
    assert result.returncode == 0
    err = result.stderr
    assert "mounts: rule 4 (line 20): file_read deny of '.env' matches at any depth" in err
    assert "judged only by the engine and the watcher" in err
