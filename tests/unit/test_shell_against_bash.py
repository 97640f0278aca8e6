"""Generated command lines run under real bash: every program bash ran must be a part.

Stub programs p1..p6 on a PATH of their own log their name; real wrappers (env, nice,
timeout, xargs, sh) are linked in beside them. Whatever bash runs, analyse() must
have found it, unless it said the line cannot be analysed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.shell.analyse import analyse

BASH = shutil.which("bash") or "/bin/bash"
STUBS = [f"p{i}" for i in range(1, 7)]
REAL = ["env", "nice", "timeout", "xargs", "sh", "nohup", "stdbuf", "cat"]

pytestmark = pytest.mark.skipif(not os.path.exists(BASH), reason="needs /bin/bash")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bash")
    bindir = root / "bin"
    bindir.mkdir()
    for name in STUBS:
        stub = bindir / name
        stub.write_text('#!/bin/sh\nprintf "%s\\n" "${0##*/}" >> "$LOG"\n')
        stub.chmod(0o755)
    for name in REAL:
        real = shutil.which(name)
        if real is None:
            pytest.skip(f"needs {name}")
        (bindir / name).symlink_to(real)
    return root


def _run(sandbox: Path, line: str) -> set[str]:
    # A fresh log per run: process substitutions may still write after bash exits.
    fd, name = tempfile.mkstemp(dir=sandbox, prefix="log")
    os.close(fd)
    log = Path(name)
    env = {"PATH": str(sandbox / "bin"), "LOG": str(log), "HOME": str(sandbox)}
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([BASH, "--noprofile", "--norc", "-c", line], cwd=sandbox, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=5, check=False)
    return set(log.read_text().split())


# --- a grammar of command lines -----------------------------------------------------

prog = st.sampled_from(STUBS)
plain_arg = st.sampled_from(["a", "-x", "/tmp/q", "'s q'", '"d q"', "b\\ c", "{u,v}", "1"])


def _quote_prog(p: str, style: int) -> str:
    return [p, f"'{p}'", f'"{p}"', f"\\{p}", f"{p[0]}''{p[1:]}", f"{p[0]}\\\n{p[1:]}"][style]


@st.composite
def simple(draw: st.DrawFn, inner: st.SearchStrategy[str]) -> str:
    p = _quote_prog(draw(prog), draw(st.integers(0, 5)))
    args = draw(st.lists(st.one_of(plain_arg, inner.map(lambda c: f'"$({c})"'),
                                   inner.map(lambda c: f"$({c})")), max_size=3))
    pre = draw(st.sampled_from(["", "A=1 ", "env ", "nice -n 1 ", "timeout 5 ",
                                "command ", "env -u X ", "nohup ", "stdbuf -oL ",
                                "time ", "exec_skip"]))
    redir = draw(st.sampled_from(["", " >/dev/null", " 2>/dev/null a", " >/dev/null z"]))
    if pre == "exec_skip":
        pre = ""
    return " ".join([pre + p, *args]) + redir


def _compound(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(children, children)
    return st.one_of(
        two.map(lambda t: f"{t[0]}; {t[1]}"),
        two.map(lambda t: f"{t[0]} && {t[1]}"),
        two.map(lambda t: f"{t[0]} || {t[1]}"),
        two.map(lambda t: f"{t[0]} | {t[1]}"),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"{{ {c}; }}"),
        children.map(lambda c: f"time {{ {c}; }}"),
        two.map(lambda t: f"! if {t[0]}; then {t[1]}; fi"),
        children.map(lambda c: f"for i in 1 2; do {c}; done"),
        children.map(lambda c: f"case x in x) {c};; esac"),
        children.map(lambda c: f"f() {{ {c}; }}; f"),
        children.map(lambda c: f"p1 `{c}`"),
        children.map(lambda c: f"p1 <(p2 $({c}))"),
        children.map(lambda c: f"sh -c '{c}'"),
        children.map(lambda c: f"bash -c \"{c}\"".replace("$(", "\\$(")),
        children.map(lambda c: f"eval '{c}'"),
        children.map(lambda c: f"p1 <<EOF\n$({c})\nEOF\n"),
        children.map(lambda c: f"p1 <<-EOF\n\t$({c})\n\tEOF\n"),
        children.map(lambda c: f"echo x | xargs p3 && {c}"),
        children.map(lambda c: f"x=${{y:-`{c}`}}"),
        children.map(lambda c: f"p1 {{a,b}} && {c}"),
        children.map(lambda c: f"sh <<'EOF'\n{c}\nEOF\n"),
    )


lines = st.recursive(st.deferred(lambda: simple(st.sampled_from(STUBS))), _compound,
                     max_leaves=4)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(line=lines)
def test_every_program_bash_runs_is_a_part(sandbox: Path, line: str) -> None:
    """What bash really ran is among the parts (or the line is cannot-analyse)."""
    result = analyse(line, home=str(sandbox), cwd=str(sandbox))
    assert result.cannot_analyse is None or "internal error" not in result.cannot_analyse
    ran = _run(sandbox, line)
    if result.cannot_analyse is not None:
        return
    found = {p.program for p in result.parts}
    assert ran <= found, f"bash ran {sorted(ran - found)} that analyse() missed in {line!r}"


@pytest.mark.parametrize("line", [
    pytest.param("p1 >/dev/null p2", id="words-after-redirection"),
    pytest.param("p\\\n1", id="line-continuation"),
    pytest.param("echo `echo \\`p1\\``", id="nested-backquotes"),
    pytest.param("x=${y:-`p1`}", id="backquote-in-default"),
    pytest.param("p2 <<-EOF\n\t$(p1)\n\tEOF\n", id="dash-heredoc-tab"),
    pytest.param("time { p1; p2; }", id="time-group"),
    pytest.param("! if p1; then p2; fi", id="negated-if"),
    pytest.param('$"p1"', id="translated-string-program"),
    pytest.param("p1 $'\\x41' && p2", id="ansi-c"),
])
def test_known_traps_agree_with_bash(sandbox: Path, line: str) -> None:
    """Each parser trap: what bash runs is found, and the line is analysed."""
    result = analyse(line, home=str(sandbox), cwd=str(sandbox))
    assert result.cannot_analyse is None, result.cannot_analyse
    ran = _run(sandbox, line)
    assert ran, "the line must run a stub"
    assert ran <= {p.program for p in result.parts}
