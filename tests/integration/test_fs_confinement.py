"""The file rules as the real boundary: a mount plan applied in a mount namespace, an
agent process confined to it, the watcher recording its writes, and overlay review.

The policy is policies/autogen.yaml with the workspace as an overlay, plus a tools
tree holding a static test program that acts as the agent inside the plan's root
(chroot, as an unprivileged user): what it can read and write there is what the plan
lets an agent do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from tests.support.gateway import RunningGateway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces and chroot need root"),
]

ROOT = Path(__file__).resolve().parents[2]
AGENT = "65534:65534"


def _policy() -> str:
    text = (ROOT / "policies" / "autogen.yaml").read_text()
    text = text.replace('- {action: file_write, path: "${PROJECT_DIR}/workspace/**", effect: allow}',
                        '- {action: file_write, path: "${PROJECT_DIR}/workspace/**", overlay: true, effect: allow}\n'
                        '- {action: file_write, path: "*.pem", effect: deny}\n'
                        '- {action: file_read, path: "${PROJECT_DIR}/tools/**", effect: allow}')
    assert "overlay: true" in text
    return text


def _tree(base: Path) -> tuple[Path, Path]:
    project, home = base / "project", base / "home" / "user"
    for d in ("workspace", "data", "output", "tools"):
        (project / d).mkdir(parents=True)
    (project / "workspace").chmod(0o777)
    (project / "workspace" / "analyze.py").write_text("print('hi')\n")
    (project / "workspace" / ".env").write_text("API_KEY=secret\n")
    (project / "data" / "d.csv").write_text("a,b\n")
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    (base / "outside").mkdir()
    (base / "outside" / "secret").write_text("outside\n")
    os.symlink(base / "outside", project / "workspace" / "link")
    subprocess.run(["gcc", "-static", "-O2", "-o", str(project / "tools" / "checker"),
                    str(Path(__file__).with_name("checker.c"))], check=True, timeout=120)
    return project, home


def test_the_plan_confines_an_agent_and_every_write_is_reviewed(tmp_path: Path) -> None:
    """autogen.yaml as mounts: masked .env unreadable, ~/.ssh invisible, read-only trees
    EROFS, escapes by symlink or `..` fail, workspace writes land in the overlay and the
    log (a 1,000-file burst included), and commit applies only what file_write allows."""
    project, home = _tree(tmp_path)
    env = {**os.environ, "HOME": str(home)}
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy())
    overlay_dir = tmp_path / "overlays"
    def mounts(fmt: str) -> str:
        return subprocess.run([sys.executable, "-m", "gateway", "mounts", "--policy", str(policy),
                               "--project-dir", str(project), "--overlay-dir", str(overlay_dir),
                               "--format", fmt], capture_output=True, text=True, env=env,
                              timeout=60, check=True).stdout
    (tmp_path / "plan.sh").write_text(mounts("shell"))
    subprocess.run(["sh", "-n", str(tmp_path / "plan.sh")], check=True)
    overlays = [m for m in json.loads(mounts("json"))["mounts"] if m["kind"] == "overlay"]
    assert [m["target"] for m in overlays] == [str(project / "workspace")]
    upper = Path(overlays[0]["upper"])

    # The gateway records what the agent writes into the overlay, as the agent sees it.
    workspace = str(project / "workspace")
    script = tmp_path / "inside.sh"
    checker = f"{project}/tools/checker"
    ops = [("read", f"{workspace}/.env"), ("read", f"{home}/.ssh/id_rsa"),
           ("read", f"{project}/data/d.csv"), ("write", f"{project}/data/new.csv"),
           ("write", f"{workspace}/results.csv"), ("write", f"{workspace}/key.pem"),
           ("read", f"{workspace}/link/secret"), ("read", f"{workspace}/../../outside/secret"),
           ("write", f"{workspace}/../escape.txt"), ("burst", workspace)]
    args = " ".join(f"{op} '{path}'" for op, path in ops)
    script.write_text(f"set -e\nROOT='{tmp_path}/root'\nexport ROOT\nmkdir -p \"$ROOT\"\n"
                      f". '{tmp_path}/plan.sh'\n"
                      f"chroot --userspec={AGENT} \"$ROOT\" {checker} {args}\n")
    upper.mkdir(parents=True)  # so that the gateway can watch it from the start
    gateway = RunningGateway(tmp_path / "gw", policy.read_text(),
                             extra=["--project-dir", str(project),
                                    "--watch", f"{upper}={project / 'workspace'}"])
    try:
        result = subprocess.run(["unshare", "--mount", "--fork", "sh", str(script)],
                                capture_output=True, text=True, env=env, timeout=120,
                                check=False)
        assert result.returncode == 0, result.stderr
        seen = dict((line.split(" ", 2)[1], line.split(" ", 2)[2])
                    for line in result.stdout.splitlines() if line.count(" ") >= 2)
        assert seen[f"{workspace}/.env"] == "EACCES"             # masked
        assert seen[f"{home}/.ssh/id_rsa"] == "ENOENT"          # not in the plan at all
        assert seen[f"{project}/data/d.csv"] == "ok"
        assert seen[f"{project}/data/new.csv"] == "EROFS"       # read-only tree
        assert seen[f"{workspace}/results.csv"] == "ok"
        assert seen[f"{workspace}/link/secret"] == "ENOENT"     # the link leads nowhere inside
        assert seen[f"{workspace}/../../outside/secret"] == "ENOENT"
        assert seen[f"{workspace}/../escape.txt"] in ("EROFS", "EACCES", "ENOENT")
        assert not (project / "escape.txt").exists()
        assert (upper / "results.csv").read_text() == "written\n"
        assert not (project / "workspace" / "results.csv").exists()  # not until committed
        entries = _wait_fs_entries(gateway, 1002)
    finally:
        assert gateway.stop() == 0
    by_path = {e["path"]: e for e in entries}
    assert by_path[f"{workspace}/results.csv"]["verdict"] == "ALLOW"
    assert by_path[f"{workspace}/key.pem"]["verdict"] == "DENY"
    assert sum(1 for p in by_path if "/burst-" in str(p)) == 1000
    assert gateway.verify().returncode == 0

    # Review: commit applies results.csv and the burst, refuses key.pem.
    workspace_dir = upper.parent
    review = subprocess.run([sys.executable, "-m", "gateway", "fs", "commit", str(workspace_dir),
                             "--policy", str(policy), "--project-dir", str(project)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert review.returncode == 1, review.stdout + review.stderr  # some refused
    assert (project / "workspace" / "results.csv").read_text() == "written\n"
    assert not (project / "workspace" / "key.pem").exists()
    assert "key.pem" in review.stdout


def _wait_fs_entries(gateway: RunningGateway, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        found = [e for e in iter_entries(gateway.audit_log) if e.get("source") == "fs"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
