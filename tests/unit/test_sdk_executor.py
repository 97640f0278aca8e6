"""GuardedExecutor around a recording executor: refused calls never reach it, allowed
ones do unchanged, its life cycle is delegated, and simulate mode refuses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

core = pytest.importorskip("autogen_core.code_executor")

from autogen_core import CancellationToken  # noqa: E402

from gateway.sdk import GuardedExecutor  # noqa: E402
from gateway.sdk.executor import REFUSED_EXIT_CODE  # noqa: E402

POLICY = """\
version: 1
default: deny
mode: {mode}
rules:
  - {{action: file_write, path: "${{PROJECT_DIR}}/**", effect: allow}}
"""


class Recording(core.CodeExecutor):  # type: ignore[misc, name-defined]
    """An executor that records what it is asked and runs nothing."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.calls: list[str] = []
        self.timeout = 7

    async def execute_code_blocks(self, code_blocks, cancellation_token):  # type: ignore[no-untyped-def]
        self.calls.append("execute:" + ",".join(b.code for b in code_blocks))
        return core.CodeResult(exit_code=0, output="ran")

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def restart(self) -> None:
        self.calls.append("restart")


def make(tmp_path: Path, mode: str = "enforce") -> tuple[GuardedExecutor, Recording]:
    (tmp_path / "policy.yaml").write_text(POLICY.format(mode=mode))
    inner = Recording(tmp_path)
    guarded = GuardedExecutor(inner, policy=tmp_path / "policy.yaml",
                              audit_log=tmp_path / "audit.jsonl", project_dir=str(tmp_path))
    return guarded, inner


def run(guarded: GuardedExecutor, *blocks: tuple[str, str]) -> core.CodeResult:
    code_blocks = [core.CodeBlock(code=c, language=lang) for c, lang in blocks]
    return asyncio.run(guarded.execute_code_blocks(code_blocks, CancellationToken()))


def test_refused_calls_never_reach_the_executor(tmp_path: Path) -> None:
    """One refused block of two: neither runs; the result says which and why."""
    guarded, inner = make(tmp_path)
    result = run(guarded, ('open("a", "w")', "python"), ('open("/etc/passwd")', "python"))
    assert result.exit_code == REFUSED_EXIT_CODE
    assert "block 2 of 2 (python):" in result.output and "block 1 of" not in result.output
    assert inner.calls == []


def test_allowed_calls_run_unchanged(tmp_path: Path) -> None:
    """Allowed blocks go to the executor as they came; its result comes back."""
    guarded, inner = make(tmp_path)
    result = run(guarded, ('open("a", "w")', "python"), ("print(1)", "python"))
    assert (result.exit_code, result.output) == (0, "ran")
    assert inner.calls == ['execute:open("a", "w"),print(1)']


def test_simulate_runs_everything(tmp_path: Path) -> None:
    """Would-denies are recorded; nothing is refused."""
    guarded, inner = make(tmp_path, mode="simulate")
    assert run(guarded, ('open("/etc/passwd")', "python"), ("x", "ruby")).output == "ran"
    assert inner.calls == ['execute:open("/etc/passwd"),x']


def test_life_cycle_and_attributes_are_delegated(tmp_path: Path) -> None:
    """start, restart, stop reach the executor; other attributes read through."""
    guarded, inner = make(tmp_path)

    async def cycle() -> None:
        async with guarded:
            await guarded.restart()

    asyncio.run(cycle())
    assert inner.calls == ["start", "restart", "stop"]
    assert guarded.timeout == 7
    assert guarded.work_dir == str(tmp_path)
