"""Non-ASCII commands: the parser never sees them, the parts keep them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.shell.analyse import analyse

CRASHERS = ["{\U000ddc0e^", "{\U00031860", "echo {\U0010fffd", "x{\U000e0001"]


def test_high_plane_characters_do_not_crash_the_parser() -> None:
    """Inputs that crash tree-sitter-bash's scanner are analysed safely (in a child process,
    so a crash fails this test instead of the suite)."""
    code = ("from gateway.shell.analyse import analyse\n"
            f"for line in {CRASHERS!r}:\n"
            "    for _ in range(20):\n"
            "        analyse(line, home='/h')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-500:]


@pytest.mark.parametrize(("line", "program", "args"), [
    ("echo héllo wörld", "echo", ["héllo", "wörld"]),
    ("python 数据/分析.py", "python", ["数据/分析.py"]),
    ("bash -c 'cat \U0001f600.txt'", "cat", ["\U0001f600.txt"]),
    ("git commit -m \"✨ feat: ünïcode\"", "git", ["commit", "-m", "✨ feat: ünïcode"]),
], ids=["latin1", "cjk_path", "emoji_in_nested_shell", "quoted_message"])
def test_non_ascii_words_come_back_unchanged(line: str, program: str, args: list[str]) -> None:
    """The parts hold the original characters, in words and in the part's text."""
    analysis = analyse(line, home="/h")
    assert analysis.cannot_analyse is None
    part = analysis.parts[-1]
    assert part.program == program
    assert [w.literal for w in part.words[1:]] == args
    assert part.text in line


def test_a_marker_lookalike_is_just_text() -> None:
    """Text shaped like the internal marker is never turned into another character."""
    line = "echo é +q00000000e9+"
    (part,) = analyse(line, home="/h").parts
    assert [w.literal for w in part.words[1:]] == ["é", "+q00000000e9+"]


def test_assignment_with_a_non_ascii_name_is_the_program() -> None:
    """bash runs `é=1` as a program (names are ASCII); so does the analysis."""
    analysis = analyse("é=1 ls", home="/h")
    assert analysis.cannot_analyse is not None or analysis.parts[0].program == "é=1"
