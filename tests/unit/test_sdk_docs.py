"""docs/autogen.md matches the code: its examples compile and run, and the refusal it
shows is the one the SDK gives."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gateway.sdk import LocalDecider, judge_block
from gateway.sdk.blocks import refusal

pytestmark = pytest.mark.filterwarnings("ignore:Using LocalCommandLineCodeExecutor:UserWarning")
ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "autogen.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC, re.S)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory like the examples assume: the policy and a workspace."""
    (tmp_path / "policies").mkdir()
    shutil.copy(ROOT / "policies" / "autogen.yaml", tmp_path / "policies")
    (tmp_path / "workspace").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATEWAY_TOKEN", "t" * 32)
    monkeypatch.setenv("PROJECT_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_examples_compile(number: int) -> None:
    compile(EXAMPLES[number], f"docs/autogen.md example {number + 1}", "exec")


@pytest.mark.parametrize("number", [0, 1])
def test_executor_examples_make_a_guarded_executor(project: Path, number: int) -> None:
    """The wrapping examples run as written and make a GuardedExecutor."""
    pytest.importorskip("autogen_ext.code_executors.local")
    from gateway.sdk import GuardedExecutor

    namespace: dict[str, object] = {}
    exec(EXAMPLES[number], namespace)
    assert isinstance(namespace["executor"], GuardedExecutor)


def test_guard_example_refuses_outside_the_policy(project: Path) -> None:
    """The guard example's tool reads the workspace and is refused /etc/passwd."""
    namespace: dict[str, object] = {}
    exec(EXAMPLES[-1], namespace)
    read_file = namespace["read_file"]
    (project / "workspace" / "notes.txt").write_text("hello")
    assert read_file(str(project / "workspace" / "notes.txt")) == "hello"  # type: ignore[operator]
    with pytest.raises(PermissionError, match="/etc/passwd matches no allow rule"):
        read_file("/etc/passwd")  # type: ignore[operator]


def test_the_refusal_shown_is_the_real_one(project: Path) -> None:
    """The documented refusal is what the SDK says for that code under autogen.yaml."""
    shown = DOC.split("## What a refusal looks like", 1)[1].split("```\n", 2)[1]
    code = 'import os\nprint(open("/etc/passwd").read())\nos.system("rm -rf /")\n'
    decider = LocalDecider(project / "policies" / "autogen.yaml", project / "audit.jsonl",
                           project_dir=str(project))
    try:
        verdict = judge_block(decider, code, "python", cwd=str(project / "workspace"))
    finally:
        decider.close()
    assert refusal([verdict]) + "\n" == shown
