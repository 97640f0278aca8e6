"""The command shim with real shells, real commands and a real gateway.

The shims are installed for policies/autogen.yaml: sh, bash, dash and every program
its shell_exec rules name (python*, pip*, rm*, curl*, wget*). An allowed command runs
exactly as it would without the shim (output, stdin, exit status); a denied one exits
126 and does not run, which each case proves by the file it would have removed still
being there. Every case is found in the audit log with its verdict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.agents import token_sha256
from gateway.policy.compiled import load_policy
from gateway.shim.install import install_shims
from tests.support.gateway import RunningGateway, have_namespaces

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "coder-token-0123456789abcdef"
ANALYZE = """import sys
data = sys.stdin.read() if not sys.stdin.isatty() else ""
print("analysed", data.strip())
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = root / "project"
        (self.project / "workspace").mkdir(parents=True)
        (self.project / "workspace" / "analyze.py").write_text(ANALYZE)
        agents = f'version: 1\nagents:\n  - name: coder\n    token_sha256: "{token_sha256(TOKEN)}"\n'
        self.gateway = RunningGateway(root / "gw", (ROOT / "policies" / "autogen.yaml").read_text(),
                                      agents=agents, extra=["--project-dir", str(self.project)])
        self.api = f"unix:{self.gateway.info['api_socket']}"
        policy = load_policy(self.gateway.policy_path, project_dir=str(self.project))
        self.shims = install_shims(root / "shims", api=self.api, policy=policy).directory

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "BASH_FUNC_"))}
        env.update(PATH=f"{self.shims}:{os.environ['PATH']}", GATEWAY_AGENT="coder",
                   GATEWAY_TOKEN=TOKEN, **extra)
        return env

    def run(self, argv: list[str] | str, *, shell: bool = False, stdin: str | None = None,
            **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, shell=shell, cwd=self.project, env=self.env(**extra),
                              input=stdin, capture_output=True, text=True, timeout=30,
                              check=False)

    def shim_entries(self) -> list[dict[str, object]]:
        return [e for e in self.gateway.entries() if e.get("source") == "shim"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    made = Setup(tmp_path_factory.mktemp("shim"))
    yield made
    assert made.gateway.stop() == 0
    assert made.gateway.verify().returncode == 0


@pytest.fixture
def victim(setup: Setup) -> Iterator[Path]:
    """A directory the denied commands try to remove."""
    path = setup.project / "victim"
    path.mkdir(exist_ok=True)
    (path / "keep.txt").write_text("still here")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _last(setup: Setup, command: str) -> dict[str, object]:
    found = [e for e in setup.shim_entries() if e.get("command") == command]
    assert found, f"no shim entry for {command!r}"
    return found[-1]


@pytest.mark.parametrize(("argv", "stdin", "output", "status"), [
    (["bash", "-c", "python workspace/analyze.py"], None, "analysed", 0),
    (["sh", "-c", "python workspace/analyze.py 3"], None, "analysed", 3),
    (["bash", "-c", "python workspace/analyze.py"], "piped data\n", "analysed piped data", 0),
    (["python3", "workspace/analyze.py", "4"], "x", "analysed x", 4),
])
def test_allowed_commands_run_unchanged(setup: Setup, argv: list[str], stdin: str | None, output: str, status: int) -> None:
    """Output, stdin and exit status are the real program's; the decision is ALLOW."""
    result = setup.run(argv, stdin=stdin)
    assert (result.stdout.strip(), result.returncode) == (output, status), result.stderr
    assert result.stderr == ""
    command = " ".join(a if " " not in a else f"'{a}'" for a in argv)
    entry = _last(setup, command)
    assert entry["verdict"] == "ALLOW" and entry["agent"] == "coder"


@pytest.mark.parametrize(("argv", "denied_part"), [
    (["bash", "-c", "rm -rf victim"], "rm -rf victim"),
    (["sh", "-c", "rm -rf victim"], "rm -rf victim"),
    (["dash", "-c", "rm -rf victim"], "rm -rf victim"),
    (["sh", "-c", "bash -c 'rm -rf victim'"], "rm -rf victim"),
    (["bash", "-c", "sh -c \"bash -c 'rm -rf victim'\""], "rm -rf victim"),
    (["bash", "-c", "env rm -rf victim"], "rm -rf victim"),
    (["bash", "-c", "python -c 'print(\"victim\")' | xargs rm -rf"], "xargs rm -rf"),
    (["bash", "-c", "find . -name victim -exec rm -rf {} +"], "find . -name victim -exec rm -rf {} +"),
    (["bash", "-c", "echo $(rm -rf victim)"], "rm -rf victim"),
    (["rm", "-rf", "victim"], "rm -rf victim"),
    (["env", "rm", "-rf", "victim"], "rm -rf victim"),
    (["pip", "install", "cryptography"], "pip install cryptography"),
    (["bash", "-c", "pip install cryptography"], "pip install cryptography"),
    (["curl", "http://example.invalid/"], "curl http://example.invalid/"),
    (["bash", "-c", "wget http://example.invalid/"], "wget http://example.invalid/"),
])
def test_denied_commands_do_not_run(setup: Setup, victim: Path, argv: list[str], denied_part: str) -> None:
    """Exit 126, `gateway: denied: <part> (<reason>)`, and nothing ran."""
    result = setup.run(argv)
    assert result.returncode == 126, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"gateway: denied: {denied_part} (")
    assert (victim / "keep.txt").read_text() == "still here"
    entry = setup.shim_entries()[-1]
    assert entry["verdict"] == "DENY" and entry["agent"] == "coder"


def test_subprocess_and_shell_true_through_path(setup: Setup, victim: Path) -> None:
    """subprocess.run([...]) of a shimmed name, and a shell found on PATH, are checked."""
    code = ("import subprocess, sys\n"
            "a = subprocess.run(['rm', '-rf', 'victim']).returncode\n"
            "b = subprocess.run(['bash', '-c', 'rm -rf victim']).returncode\n"
            "c = subprocess.run(['bash', '-c', 'python workspace/analyze.py']).returncode\n"
            "print(a, b, c)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=setup.project, env=setup.env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.split()[-3:] == ["126", "126", "0"], result.stderr
    assert victim.exists()


def test_scripts_are_judged_by_their_text(setup: Setup, victim: Path) -> None:
    """`bash run.sh` runs a script whose every line is allowed, and refuses one that is not."""
    (setup.project / "good.sh").write_text("python workspace/analyze.py\n")
    (setup.project / "bad.sh").write_text("python workspace/analyze.py\nrm -rf victim\n")
    assert setup.run(["bash", "good.sh"]).stdout.strip() == "analysed"
    bad = setup.run(["bash", "bad.sh"])
    assert bad.returncode == 126 and "rm -rf victim" in bad.stderr
    assert bad.stdout == "" and victim.exists()  # not even its first line ran
    assert _last(setup, "bash bad.sh")["script"] == "bad.sh"


def test_a_shell_reading_a_pipe_needs_the_shell_itself_allowed(setup: Setup, victim: Path) -> None:
    """`... | bash`: autogen.yaml allows no shell itself, so nothing it would read runs."""
    result = setup.run(["bash"], stdin="rm -rf victim\n")
    assert result.returncode == 126 and "reads its commands from its input" in result.stderr
    assert victim.exists()


def test_variables_that_run_code_are_refused(setup: Setup, tmp_path: Path) -> None:
    """BASH_ENV would make bash run a file before the checked command: refused."""
    evil = tmp_path / "evil.sh"
    marker = tmp_path / "ran"
    evil.write_text(f"touch {marker}\n")
    result = setup.run(["bash", "-c", "python workspace/analyze.py"], BASH_ENV=str(evil))
    assert result.returncode == 126 and "BASH_ENV is set in the environment" in result.stderr
    assert not marker.exists()


def test_the_gateway_stopped_means_nothing_runs(tmp_path: Path) -> None:
    """Fail closed: with no gateway answering, even an allowed command is refused."""
    setup = Setup(tmp_path)
    marker = setup.project / "ran"
    assert setup.run(["bash", "-c", "python workspace/analyze.py"]).returncode == 0
    assert setup.gateway.stop() == 0
    result = setup.run(["bash", "-c", f"python -c 'open(\"{marker}\", \"w\")'"])
    assert result.returncode == 126 and "did not answer" in result.stderr
    assert "nothing was run" in result.stderr and not marker.exists()


@pytest.mark.skipif(not have_namespaces(), reason="mounting over /bin/sh needs root and unshare")
def test_os_system_and_absolute_bin_sh_are_checked_where_the_shim_replaces_them(setup: Setup, victim: Path, tmp_path: Path) -> None:
    """Mounted over /bin/sh and /bin/bash (in a private mount namespace), the shim checks
    os.system, shell=True and /bin/bash by absolute path, whatever argv[0] the caller
    claims; an allowed one still runs."""
    over = install_shims(tmp_path / "over", api=setup.api, real_dir=tmp_path / "real")
    code = ("import os, subprocess\n"
            "a = os.waitstatus_to_exitcode(os.system('rm -rf victim'))\n"
            "b = subprocess.run('rm -rf victim', shell=True).returncode\n"
            "c = subprocess.run(['/bin/bash', '-c', 'rm -rf victim']).returncode\n"
            "d = os.waitstatus_to_exitcode(os.system('python3 workspace/analyze.py 5'))\n"
            "e = subprocess.run(['python9', '-c', 'rm -rf victim'], executable='/bin/sh')\n"
            "print(a, b, c, d, e.returncode)\n")
    script = (f"mount --make-rprivate / && mount --bind {over.shim} /bin/sh && "
              f"mount --bind {over.shim} /bin/bash && exec {sys.executable} -c \"$0\"")
    env = setup.env()
    env["PATH"] = os.environ["PATH"]  # no PATH shims: only the mounts stand in the way
    result = subprocess.run(["unshare", "--mount", "--", str(over.installed["bash"]), "-c",
                             script, code], cwd=setup.project, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.stdout.split()[-5:] == ["126", "126", "126", "5", "126"], result.stderr
    assert victim.exists()
    assert result.stderr.count("gateway: denied: rm -rf victim") == 4  # argv[0] is no disguise
