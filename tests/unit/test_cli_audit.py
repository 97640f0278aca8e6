"""`gateway eval --audit-log` and `gateway audit ...` as users run them."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUTOGEN = str(ROOT / "policies" / "autogen.yaml")
REQUESTS = [
    {"action": "network", "target": "api.openai.com:443", "agent": "coder"},
    {"action": "network", "target": "webhook.site", "agent": "coder"},
    {"action": "shell_exec", "target": "rm -rf /", "agent": "runner"},
    {"action": "file_read", "target": "/home/user/.ssh/id_rsa", "agent": "runner"},
    {"action": "file_write", "target": "/project/workspace/a.py", "agent": "coder"},
]


def gateway(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_AUDIT")}
    env.update(HOME="/home/user", PROJECT_DIR="/project")
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log holding one decision per request above, written by `eval --batch`."""
    path = tmp_path / "audit" / "audit.jsonl"
    path.parent.mkdir()
    stdin = "\n".join(json.dumps(r) for r in REQUESTS)
    result = gateway("eval", "--policy", AUTOGEN, "--batch", "-", "--audit-log", str(path),
                     stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(REQUESTS)
    return path


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_records_each_decision_with_source_cli(log: Path) -> None:
    """Every decision eval prints is in the log, in order, as source 'cli', with its agent."""
    decisions = [e for e in entries(log) if e.get("source") == "cli"]
    assert [(e["action"], e["verdict"], e["agent"]) for e in decisions] == [
        ("network", "ALLOW", "coder"), ("network", "DENY", "coder"),
        ("shell_exec", "DENY", "runner"), ("file_read", "DENY", "runner"),
        ("file_write", "ALLOW", "coder")]
    assert decisions[2]["command"] == "rm -rf /" and decisions[2]["rule"] == 8
    assert oct(os.stat(str(log) + ".key").st_mode & 0o777) == "0o600"


def test_verify_reports_ok_with_counts_and_head(log: Path) -> None:
    """An untouched log verifies: OK, entry count, segments, last seq and head hash."""
    result = gateway("audit", "verify", str(log))
    assert result.returncode == 0, result.stdout + result.stderr
    last = entries(log)[-1]
    assert result.stdout.strip() == (f"OK: {len(entries(log))} entries, 1 segments, last seq "
                                     f"{last['seq']}, head {last['hash']}")


def test_verify_names_the_first_edited_seq_and_exits_1(log: Path) -> None:
    """Changing a verdict in place is reported at that entry's seq, exit 1."""
    lines = log.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if '"DENY"' in line)
    seq = json.loads(lines[target])["seq"]
    lines[target] = lines[target].replace('"DENY"', '"ALLOW"')
    log.write_text("\n".join(lines) + "\n")
    result = gateway("audit", "verify", str(log))
    assert result.returncode == 1
    assert result.stdout.startswith(f"DAMAGED: edited at seq {seq}")


def test_verify_with_the_wrong_key_says_forged(log: Path, tmp_path: Path) -> None:
    """A log checked against another key does not verify."""
    other = tmp_path / "other.key"
    other.write_text(os.urandom(32).hex() + "\n")
    other.chmod(0o600)
    result = gateway("audit", "verify", str(log), "--key-file", str(other))
    assert result.returncode == 1 and "DAMAGED" in result.stdout


def test_query_filters_by_agent_verdict_and_target(log: Path) -> None:
    """query keeps entries matching every filter; --json gives the entries themselves."""
    result = gateway("audit", "query", str(log), "--agent", "coder", "--verdict", "DENY",
                     "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["host"] for r in rows] == ["webhook.site"]
    table = gateway("audit", "query", str(log), "--target", "/home/*", "--since", "1h")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 1
    assert "/home/user/.ssh/id_rsa" in table.stdout and "DENY" in table.stdout


def test_stats_counts_by_agent_action_verdict_and_top_denied(log: Path) -> None:
    """stats summarises the decisions; top denied targets name action and target."""
    result = gateway("audit", "stats", str(log), "--source", "cli", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["entries"] == 5
    assert stats["by_agent"] == {"coder": 3, "runner": 2}
    assert stats["by_verdict"] == {"DENY": 3, "ALLOW": 2}
    assert {"target": "shell_exec rm -rf /", "count": 1} in stats["top_denied"]


def test_tail_shows_the_last_entries(log: Path) -> None:
    """tail -n N prints the last N entries."""
    result = gateway("audit", "tail", str(log), "-n", "2", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [e["seq"] for e in entries(log)[-2:]]


def test_unkeyed_log_is_announced_loudly(tmp_path: Path) -> None:
    """--unsafe-unkeyed-audit warns when writing, and verify warns that it proves little."""
    path = tmp_path / "a.jsonl"
    written = gateway("eval", "--policy", AUTOGEN, "--audit-log", str(path),
                      "--unsafe-unkeyed-audit", "network", "a.com")
    assert written.returncode == 0 and "UNKEYED" in written.stderr
    checked = gateway("audit", "verify", str(path))
    assert checked.returncode == 0 and "UNKEYED" in checked.stderr


def test_unwritable_log_fails_closed(tmp_path: Path) -> None:
    """When the log cannot be written, no decision is printed and eval exits 2."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = gateway("eval", "--policy", AUTOGEN, "--audit-log", str(blocker / "audit.jsonl"),
                     "network", "api.openai.com")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("gateway: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [("audit", "verify", "/nonexistent/log"),
                                  ("audit", "query", "/nonexistent/log"),
                                  ("audit", "stats")], ids=["verify", "query", "no_log"])
def test_missing_log_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    """A log that is not there is a one-line error, exit 2."""
    result = gateway(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gateway: ")


def test_tail_follow_prints_new_entries_as_they_are_written(log: Path) -> None:
    """`tail -f` shows the entries appended after it started, each once, and no older one."""
    before = entries(log)[-1]["seq"]
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "audit", "tail", str(log), "-n",
                             "0", "-f", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        written = gateway("eval", "--policy", AUTOGEN, "--audit-log", str(log), "--agent",
                          "late", "network", "late.example")
        assert written.returncode == 0, written.stderr
        expected = [e["seq"] for e in entries(log) if e["seq"] > before]  # type: ignore[operator]
        shown = read_json_lines(proc, len(expected), deadline=20)
        assert [e["seq"] for e in shown] == expected
        assert [e["agent"] for e in shown if e.get("source") == "cli"] == ["late"]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def read_json_lines(proc: subprocess.Popen[str], count: int, deadline: float) -> list[dict]:
    """Up to `count` JSON lines from the process's stdout, waiting at most `deadline` s."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    out: list[dict] = []
    end = time.monotonic() + deadline
    while len(out) < count and time.monotonic() < end:
        with contextlib.suppress(queue.Empty):
            out.append(json.loads(lines.get(timeout=max(0.01, end - time.monotonic()))))
    return out
