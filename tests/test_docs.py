"""The docs match the code: tables in docs/policy.md list what the code holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli import _parser
from gateway.matching.addresses import SPECIAL_RANGES
from gateway.shell.wrappers import TOOLS

ROOT = Path(__file__).resolve().parents[1]
POLICY_DOC = (ROOT / "docs" / "policy.md").read_text()
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_wrapper_runner_and_shell_is_documented(name: str) -> None:
    """Each entry of the wrappers table is named in docs/policy.md."""
    assert f"`{name}" in POLICY_DOC or f"`{name} " in POLICY_DOC or f"/`{name}`" in POLICY_DOC


@pytest.mark.parametrize("cidr", [c for c, _ in SPECIAL_RANGES])
def test_every_special_range_is_documented(cidr: str) -> None:
    """Each special range of the code's table appears in docs/policy.md."""
    shown = re.sub(r"/(32|128)$", "", cidr)
    assert f"`{cidr}`" in POLICY_DOC or f"`{shown}`" in POLICY_DOC or shown in POLICY_DOC


def test_readme_has_exactly_two_setup_commands_and_documents_every_command() -> None:
    """The README gives two set-up commands, and its command table matches the CLI."""
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert setup.count("```sh") == 2
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    documented = set(re.findall(r"^\| `gateway (\w+)", README, re.M))
    assert documented == commands


def test_readme_test_command_is_what_ci_runs() -> None:
    """.ci/run runs the README's test command verbatim."""
    setup = README.split("## Set up", 1)[1]
    test_command = setup.split("```sh", 2)[2].split("```", 1)[0].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
