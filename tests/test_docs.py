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


PROXY_DOC = (ROOT / "docs" / "proxy.md").read_text()


def _up_options() -> list[str]:
    up = _parser()._subparsers._group_actions[0].choices["up"]  # type: ignore[union-attr]
    return [o for action in up._actions for o in action.option_strings if o.startswith("--")]


@pytest.mark.parametrize("option", [o for o in _up_options() if o != "--help"])
def test_every_gateway_up_option_is_documented(option: str) -> None:
    """docs/proxy.md's option table names every flag of `gateway up`."""
    assert f"`{option}" in PROXY_DOC


def test_every_addon_option_is_documented() -> None:
    """docs/proxy.md lists exactly the options the mitmproxy addon declares."""
    from gateway.proxy.addon import _OPTIONS

    documented = set(re.findall(r"^\| `(policy|gateway_\w+)` \|", PROXY_DOC, re.M))
    assert documented == set(_OPTIONS)
