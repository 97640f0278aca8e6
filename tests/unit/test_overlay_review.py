"""Overlay review: `changes`/`diff` read an upper layer as overlayfs does, and `commit`
applies only what file_write allows, per file, never through a symlink, and audits it.

Upper layers are built by hand here; tests/integration/test_overlay_mounts.py makes them
with a real overlay mount."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter
from gateway.cli import main
from gateway.fs.changes import Change, ChangeKind, FileKind, changes, diff
from gateway.fs.commit import commit
from gateway.fs.overlay import CONFIG, Workspace, WorkspaceError, create_workspace, read_workspace
from gateway.fs.safetree import CannotApply, open_parent
from gateway.policy.compiled import CompiledPolicy, compile_policy_text

KEY = b"k" * 32
POLICY = """version: 1
default: deny
rules:
  - {action: file_write, path: "${PROJECT_DIR}/workspace/**", effect: allow}
  - {action: file_write, path: ".git/hooks", effect: deny}
  - {action: file_write, path: "*.pem", effect: deny}
"""


@dataclass
class Trees:
    """A real tree (`project`, also where the agent saw it), its workspace and policy."""

    project: Path
    ws: Workspace
    policy: CompiledPolicy
    policy_file: Path

    @property
    def upper(self) -> Path:
        return self.ws.upper


@pytest.fixture
def trees(tmp_path: Path) -> Trees:
    project = tmp_path / "project"
    (project / "workspace").mkdir(parents=True)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    ws = create_workspace(tmp_path / "ws", lower=str(project), target=str(project),
                          policy=str(policy_file), project_dir=str(project))
    return Trees(project, ws, compile_policy_text(POLICY, project_dir=str(project)),
                 policy_file)


def put(root: Path, rel: str, content: str | bytes = "", mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    if mode is not None:
        os.chmod(path, mode)
    return path


def link(root: Path, rel: str, target: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def whiteout(root: Path, rel: str) -> None:
    """What overlayfs leaves in the upper layer for a deleted entry: a 0:0 char device."""
    if os.geteuid() != 0:
        pytest.skip("whiteouts are character devices: making them needs root")
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def opaque(root: Path, rel: str) -> Path:
    """An upper directory that replaces the lower one (trusted.overlay.opaque = y)."""
    if os.geteuid() != 0:
        pytest.skip("trusted.* extended attributes need root")
    path = root / rel
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")
    return path


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `root`, never following symlinks: kind, content or target, mode."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                out[rel] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                out[rel] = ("special", info.st_rdev)
    return out


def lines(ws: Workspace, patch: bool = False) -> list[str]:
    return diff(ws, patch=patch).splitlines()


def fs_entries(log: Path) -> list[dict[str, object]]:
    return [e for e in iter_entries(log) if e.get("source") == "fs"]


# --- workspaces -----------------------------------------------------------------------


def test_create_workspace_lays_out_upper_work_and_config(tmp_path: Path) -> None:
    """A new workspace is mode 0700 and holds upper/, work/ and the JSON config."""
    lower = tmp_path / "real"
    lower.mkdir(mode=0o751)
    os.chmod(lower, 0o751)
    ws = create_workspace(tmp_path / "ws", lower=str(lower), target="/seen/there",
                          policy=str(tmp_path / "p.yaml"))
    assert stat.S_IMODE(os.stat(ws.directory).st_mode) == 0o700
    assert ws.upper.is_dir() and ws.work.is_dir()
    assert stat.S_IMODE(os.stat(ws.upper).st_mode) == 0o751  # the merged root shows it
    assert json.loads((ws.directory / CONFIG).read_text()) == {
        "lower": str(lower), "target": "/seen/there", "policy": str(tmp_path / "p.yaml")}
    assert read_workspace(ws.directory) == ws


def test_create_workspace_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    """A workspace is never made over something else's files."""
    put(tmp_path, "ws/other.txt", "x")
    with pytest.raises(WorkspaceError, match="not empty"):
        create_workspace(tmp_path / "ws", lower=str(tmp_path), target=str(tmp_path))


@pytest.mark.parametrize(("config", "message"), [
    (None, "not an overlay workspace"),
    (b"{not json", "not JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"lower": "/", "target": "/", "extra": 1}', "unknown key 'extra'"),
    (b'{"target": "/"}', "'lower' must be an absolute path"),
    (b'{"lower": "rel", "target": "/"}', "'lower' must be an absolute path"),
    (b'{"lower": "/", "target": "/", "policy": 3}', "'policy' must be an absolute path"),
    (b'{"lower": "/nonexistent-lower", "target": "/"}', "No such file"),
], ids=["no-config", "not-json", "not-object", "unknown-key", "no-lower", "relative",
        "policy-type", "lower-missing"])
def test_read_workspace_names_the_problem_on_one_line(tmp_path: Path, config: bytes | None,
                                                      message: str) -> None:
    """Anything wrong with a workspace is a WorkspaceError with a one-line message."""
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    if config is not None:
        (tmp_path / CONFIG).write_bytes(config)
    with pytest.raises(WorkspaceError, match=message) as info:
        read_workspace(tmp_path)
    assert "\n" not in str(info.value)


def test_read_workspace_needs_upper_and_work(tmp_path: Path) -> None:
    """A config without its upper/ directory is not a workspace."""
    (tmp_path / CONFIG).write_text('{"lower": "/", "target": "/"}')
    with pytest.raises(WorkspaceError, match="upper"):
        read_workspace(tmp_path)


# --- changes and diff -----------------------------------------------------------------


def test_diff_lists_every_kind_of_change(trees: Trees) -> None:
    """Files, directories and symlinks added, modified and deleted; whiteouts and opaque
    directories read as overlayfs does; unchanged copy-ups are not changes."""
    low, up = trees.project, trees.upper
    put(low, "workspace/same.txt", "same\n")
    put(up, "workspace/same.txt", "same\n")  # copied up by a touch: not a change
    put(low, "workspace/edit.txt", "one\n")
    put(up, "workspace/edit.txt", "one\ntwo\n")
    put(low, "workspace/run.sh", "echo\n", 0o644)
    put(up, "workspace/run.sh", "echo\n", 0o755)
    put(low, "workspace/gone.txt", "bye\n")
    whiteout(up, "workspace/gone.txt")
    put(low, "workspace/olddir/a.txt", "a")
    put(low, "workspace/olddir/b/c.txt", "c")
    whiteout(up, "workspace/olddir")
    whiteout(up, "workspace/never-was")  # hides nothing: not a change
    link(low, "workspace/link", "a")
    link(up, "workspace/link", "b")
    link(low, "workspace/keep", "x")
    link(up, "workspace/keep", "x")
    put(up, "workspace/new/file.txt", "new")
    link(up, "workspace/newlink", "../x")
    put(low, "workspace/redo/old.txt", "old")
    put(low, "workspace/redo/kept.txt", "k")
    opaque(up, "workspace/redo")
    put(up, "workspace/redo/kept.txt", "k")
    put(up, "workspace/redo/fresh.txt", "fresh")
    put(low, "workspace/swap", "was a file")
    opaque(up, "workspace/swap")
    put(up, "workspace/swap/inner.txt", "in")
    assert lines(trees.ws) == [
        "M workspace/edit.txt (4 -> 8 bytes)",
        "D workspace/gone.txt",
        "M workspace/link -> b (was a)",
        "A workspace/new/",
        "A workspace/new/file.txt (3 bytes)",
        "A workspace/newlink -> ../x",
        "D workspace/olddir/",
        "A workspace/redo/fresh.txt (5 bytes)",
        "D workspace/redo/old.txt",
        "M workspace/run.sh (5 -> 5 bytes, mode 644 -> 755)",
        "D workspace/swap",
        "A workspace/swap/",
        "A workspace/swap/inner.txt (2 bytes)",
    ]
    edit = changes(trees.ws)[0]
    assert edit == Change(ChangeKind.MODIFIED, "workspace/edit.txt", FileKind.FILE,
                          size_before=4, size_after=8, mode_before=0o644, mode_after=0o644)


def test_a_new_directory_under_an_opaque_one_is_not_merged(trees: Trees) -> None:
    """Below an opaque directory, an upper directory replaces the lower one as well."""
    put(trees.project, "workspace/d/sub/old.txt", "old")
    opaque(trees.upper, "workspace/d")
    put(trees.upper, "workspace/d/sub/new.txt", "new")
    assert lines(trees.ws) == ["A workspace/d/sub/new.txt (3 bytes)",
                               "D workspace/d/sub/old.txt"]


def test_control_characters_in_names_cannot_forge_a_line(trees: Trees) -> None:
    """A newline or escape in a name or link target is shown escaped, on one line."""
    put(trees.upper, "workspace/x\napplied  M ok.txt", "x")
    link(trees.upper, "workspace/l", "\x1b[2Jt")
    assert lines(trees.ws) == ["A workspace/l -> \\x1b[2Jt",
                               "A workspace/x\\x0aapplied  M ok.txt (1 bytes)"]


@pytest.mark.parametrize(("lower", "upper", "expected"), [
    ({"a/x.txt": "payload"}, {"b/x.txt": "payload"},
     ["A b/", "R a/x.txt -> b/x.txt"]),
    ({"data.csv": "1,2\n"}, {"copy.csv": "1,2\n", "sub/data.csv": "1,2\n"},
     ["A copy.csv (4 bytes)", "A sub/", "R data.csv -> sub/data.csv"]),
    ({"a.txt": "one"}, {"b.txt": "two"},
     ["D a.txt", "A b.txt (3 bytes)"]),
    ({"a.txt": ""}, {"b.txt": ""},
     ["D a.txt", "A b.txt (0 bytes)"]),
], ids=["moved", "prefers-same-name", "different-bytes", "empty-files"])
def test_a_deleted_file_whose_bytes_were_added_is_one_rename(
        trees: Trees, lower: dict[str, str], upper: dict[str, str],
        expected: list[str]) -> None:
    """Exact content (sha256) pairs a deletion with an addition; empty files never pair."""
    for rel, text in lower.items():
        put(trees.project, rel, text)
        whiteout(trees.upper, rel)
    for rel, text in upper.items():
        put(trees.upper, rel, text)
    assert lines(trees.ws) == expected


def test_patch_shows_unified_diffs_for_text_and_says_when_binary(trees: Trees) -> None:
    """--patch: a unified diff per text file, marked where the last newline is missing;
    binary or over 1 MiB files are 'Binary files differ'."""
    put(trees.project, "workspace/a.txt", "hello\n")
    put(trees.upper, "workspace/a.txt", "hello\nworld")
    put(trees.upper, "workspace/b.bin", b"\x00\x01\x02")
    put(trees.upper, "workspace/big.txt", "x" * (1 << 20) + "\n")
    put(trees.project, "workspace/old.txt", "bye\n")
    whiteout(trees.upper, "workspace/old.txt")
    assert lines(trees.ws, patch=True) == [
        "M workspace/a.txt (6 -> 11 bytes)",
        "--- a/workspace/a.txt",
        "+++ b/workspace/a.txt",
        "@@ -1 +1,2 @@",
        " hello",
        "+world",
        "\\ No newline at end of file",
        "A workspace/b.bin (3 bytes)",
        "Binary files differ",
        f"A workspace/big.txt ({(1 << 20) + 1} bytes)",
        "Binary files differ",
        "D workspace/old.txt",
        "--- a/workspace/old.txt",
        "+++ /dev/null",
        "@@ -1 +0,0 @@",
        "-bye",
    ]


def test_redirect_and_metacopy_layers_are_refused(trees: Trees) -> None:
    """Layers that keep data elsewhere (redirect_dir, metacopy) are an error, not a guess."""
    if os.geteuid() != 0:
        pytest.skip("trusted.* extended attributes need root")
    moved = trees.upper / "workspace" / "moved"
    moved.mkdir(parents=True)
    os.setxattr(moved, "trusted.overlay.redirect", b"/workspace/old")
    with pytest.raises(WorkspaceError, match="redirect_dir=off"):
        changes(trees.ws)
    moved.rmdir()
    os.setxattr(put(trees.upper, "workspace/f.txt"), "trusted.overlay.metacopy", b"")
    with pytest.raises(WorkspaceError, match="metacopy=off"):
        changes(trees.ws)


# --- commit ---------------------------------------------------------------------------


def test_commit_applies_what_file_write_allows_and_keeps_the_rest(trees: Trees) -> None:
    """Allowed changes reach the real tree and leave the upper layer; denied ones (by
    rule or by default) stay there, untouched, with the deciding rule as the reason."""
    low, up = trees.project, trees.upper
    put(low, "workspace/a.txt", "old\n")
    put(up, "workspace/a.txt", "new\n")
    put(up, "workspace/src/main.py", "print(1)\n")
    link(up, "workspace/latest", "src/main.py")
    put(low, "workspace/gone.txt", "bye")
    whiteout(up, "workspace/gone.txt")
    put(low, "workspace/.git/hooks/pre-commit.sample", "#!/bin/sh\n")
    put(up, "workspace/.git/hooks/pre-commit", "#!/bin/sh\ncurl evil\n")
    put(up, "workspace/key.pem", "-----BEGIN-----\n")
    put(up, "outside.txt", "not in workspace/")
    report = commit(trees.ws, trees.policy)
    assert [(o.change.line(), o.applied) for o in report.outcomes] == [
        ("A outside.txt (17 bytes)", False),
        ("A workspace/.git/hooks/pre-commit (20 bytes)", False),
        ("M workspace/a.txt (4 -> 4 bytes)", True),
        ("D workspace/gone.txt", True),
        ("A workspace/key.pem (16 bytes)", False),
        ("A workspace/latest -> src/main.py", True),
        ("A workspace/src/", True),
        ("A workspace/src/main.py (9 bytes)", True),
    ]
    reasons = {o.change.path: o.reason for o in report.refused}
    assert reasons["outside.txt"].endswith("matches no allow rule; the policy default is deny")
    assert reasons["workspace/.git/hooks/pre-commit"].startswith("denied by rule 1")
    assert reasons["workspace/key.pem"].startswith("denied by rule 2")
    assert (low / "workspace/a.txt").read_text() == "new\n"
    assert (low / "workspace/src/main.py").read_text() == "print(1)\n"
    assert os.readlink(low / "workspace/latest") == "src/main.py"
    assert not (low / "workspace/gone.txt").exists()
    assert not (low / "workspace/.git/hooks/pre-commit").exists()
    assert not (low / "workspace/key.pem").exists() and not (low / "outside.txt").exists()
    assert lines(trees.ws) == ["A outside.txt (17 bytes)",
                               "A workspace/.git/hooks/pre-commit (20 bytes)",
                               "A workspace/key.pem (16 bytes)"]


def test_a_file_is_replaced_by_rename_with_its_mode_and_no_setuid(trees: Trees) -> None:
    """The real file is swapped in one rename: a reader holding the old file still reads
    the old bytes; the new one has the upper file's mode without setuid/setgid."""
    real = put(trees.project, "workspace/data.txt", "old contents\n", 0o640)
    put(trees.upper, "workspace/data.txt", "new contents\n", 0o6750)
    before = real.stat().st_ino
    with open(real, "rb") as reader:
        report = commit(trees.ws, trees.policy)
        assert [o.applied for o in report.outcomes] == [True]
        assert reader.read() == b"old contents\n"
    assert real.read_bytes() == b"new contents\n"
    assert real.stat().st_ino != before
    assert stat.S_IMODE(real.stat().st_mode) == 0o750
    assert sorted(os.listdir(real.parent)) == ["data.txt"]  # no temporary file left
    assert not (trees.upper / "workspace/data.txt").exists()


def test_a_symlink_in_the_real_tree_is_never_followed(trees: Trees, tmp_path: Path) -> None:
    """Changes under a real symlink that points out of the tree are refused and nothing
    is written outside; a file written where the real tree has a symlink replaces the
    link, never what it points to."""
    outside = tmp_path / "outside"
    secret = put(outside, "secret.txt", "secret\n")
    link(trees.project, "workspace/link", str(outside))
    put(trees.upper, "workspace/link/x.txt", "evil")
    put(trees.upper, "workspace/link/sub/y.txt", "evil")
    link(trees.project, "workspace/flink", str(secret))
    put(trees.upper, "workspace/flink", "replaced\n")
    report = commit(trees.ws, trees.policy)
    never = "workspace/link is a symlink in the real tree; a commit never follows one"
    assert [(o.change.line(), o.applied) for o in report.outcomes] == [
        ("D workspace/flink", True), ("A workspace/flink (9 bytes)", True),
        ("A workspace/link/", False), ("A workspace/link/sub/", False),
        ("A workspace/link/sub/y.txt (4 bytes)", False),
        ("A workspace/link/x.txt (4 bytes)", False)]
    assert [o.reason for o in report.refused] == [
        "workspace/link already exists in the real tree (as a symlink)", never, never, never]
    assert snapshot(outside) == {"secret.txt": ("file", b"secret\n", 0o644)}
    assert (trees.project / "workspace/flink").read_text() == "replaced\n"
    assert not (trees.project / "workspace/flink").is_symlink()


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/./b",
                                 "", "a/..", "a\x00b"])
def test_paths_that_could_leave_the_tree_are_refused(tmp_path: Path, rel: str) -> None:
    """`..`, `.`, empty and absolute components never reach the filesystem."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(CannotApply, match="not a plain relative path"):
            open_parent(fd, rel)
    finally:
        os.close(fd)


def test_open_parent_refuses_a_missing_or_non_directory_component(tmp_path: Path) -> None:
    """Every component must be a real directory of the tree; the reason names which."""
    put(tmp_path, "file", "x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(CannotApply, match=r"^missing is missing in the real tree$"):
            open_parent(fd, "missing/x")
        with pytest.raises(CannotApply, match=r"^file is not a directory in the real tree$"):
            open_parent(fd, "file/x")
    finally:
        os.close(fd)


def test_dry_run_decides_and_checks_but_changes_and_records_nothing(
        trees: Trees, tmp_path: Path) -> None:
    """A dry run reports what a commit would do, including under directories it would
    make, and leaves both trees and the audit log as they were."""
    put(trees.project, "workspace/a.txt", "old")
    put(trees.upper, "workspace/a.txt", "new")
    put(trees.upper, "workspace/newdir/deeper/f.txt", "f")
    put(trees.upper, "workspace/key.pem", "k")
    before = snapshot(trees.project), snapshot(trees.ws.directory)
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        report = commit(trees.ws, trees.policy, dry_run=True, writer=writer)
    assert report.dry_run
    assert [(o.change.path, o.applied) for o in report.outcomes] == [
        ("workspace/a.txt", True), ("workspace/key.pem", False),
        ("workspace/newdir", True), ("workspace/newdir/deeper", True),
        ("workspace/newdir/deeper/f.txt", True)]
    assert (snapshot(trees.project), snapshot(trees.ws.directory)) == before
    assert fs_entries(log) == []


def test_every_outcome_is_audited_and_the_log_verifies(trees: Trees, tmp_path: Path) -> None:
    """One entry per decision (two for a rename): source fs, event commit, the change,
    whether it was applied, the target path as the agent saw it."""
    put(trees.project, "workspace/old.txt", "moved bytes")
    whiteout(trees.upper, "workspace/old.txt")
    put(trees.upper, "workspace/new.txt", "moved bytes")
    put(trees.upper, "workspace/id.pem", "k")
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        commit(trees.ws, trees.policy, writer=writer, agent="coder")
    seen = str(trees.project)
    assert [(e["path"], e["verdict"], e["change"], e["applied"], e["event"], e["agent"],
             e["action"]) for e in fs_entries(log)] == [
        (f"{seen}/workspace/id.pem", "DENY", "added", False, "commit", "coder", "file_write"),
        (f"{seen}/workspace/old.txt", "ALLOW", "renamed", True, "commit", "coder",
         "file_write"),
        (f"{seen}/workspace/new.txt", "ALLOW", "renamed", True, "commit", "coder",
         "file_write"),
    ]
    assert fs_entries(log)[0]["rule"] == 2
    assert verify_log(log, key=KEY).ok


def test_a_refusal_that_is_not_the_policys_is_audited_with_the_error(
        trees: Trees, tmp_path: Path) -> None:
    """An allowed change that cannot be applied is recorded as not applied, with why."""
    if os.geteuid() != 0:
        pytest.skip("a fifo in the upper layer stands for any special file; mknod needs root")
    (trees.upper / "workspace").mkdir()
    os.mkfifo(trees.upper / "workspace/pipe")
    log = tmp_path / "audit.jsonl"
    with AuditWriter(log, key=KEY) as writer:
        report = commit(trees.ws, trees.policy, writer=writer)
    assert [(o.change.line(), o.applied, o.reason) for o in report.outcomes] == [
        ("A workspace/pipe (special file)", False,
         "workspace/pipe: special files are not applied")]
    [entry] = fs_entries(log)
    assert (entry["verdict"], entry["applied"], entry["error"]) == (
        "ALLOW", False, "workspace/pipe: special files are not applied")


def test_decisions_are_for_the_path_where_the_agent_saw_the_file(tmp_path: Path) -> None:
    """The policy is asked about `target` + path, not about the real tree's path."""
    real, seen = tmp_path / "real", tmp_path / "seen"
    (real / "workspace").mkdir(parents=True)
    ws = create_workspace(tmp_path / "ws", lower=str(real), target=str(seen))
    put(ws.upper, "workspace/a.txt", "a")
    as_real = compile_policy_text(POLICY, project_dir=str(real))
    as_seen = compile_policy_text(POLICY, project_dir=str(seen))
    assert [o.applied for o in commit(ws, as_real, dry_run=True).outcomes] == [False]
    report = commit(ws, as_seen)
    assert [o.applied for o in report.outcomes] == [True]
    assert report.outcomes[0].decisions[0].target == f"{seen}/workspace/a.txt"
    assert (real / "workspace/a.txt").read_text() == "a"


def test_a_second_commit_does_nothing(trees: Trees) -> None:
    """Applied changes leave the upper layer; committing again changes nothing."""
    put(trees.project, "workspace/a.txt", "old")
    put(trees.upper, "workspace/a.txt", "new")
    put(trees.upper, "workspace/dir/b.txt", "b")
    put(trees.upper, "workspace/k.pem", "k")
    assert len(commit(trees.ws, trees.policy).applied) == 3
    after = snapshot(trees.project), snapshot(trees.upper)
    again = commit(trees.ws, trees.policy)
    assert [(o.change.path, o.applied) for o in again.outcomes] == [("workspace/k.pem", False)]
    assert (snapshot(trees.project), snapshot(trees.upper)) == after
    assert not (trees.upper / "workspace/dir").exists()


def test_a_partly_committed_opaque_directory_keeps_only_what_was_refused(trees: Trees) -> None:
    """After a commit of a replaced directory, the workspace shows exactly the refused
    changes: applied entries are not hidden by the opaque flag."""
    put(trees.project, "workspace/redo/a.txt", "a")
    put(trees.project, "workspace/redo/key.pem", "k")
    opaque(trees.upper, "workspace/redo")
    put(trees.upper, "workspace/redo/b.txt", "b")
    report = commit(trees.ws, trees.policy)
    assert [(o.change.line(), o.applied) for o in report.outcomes] == [
        ("D workspace/redo/a.txt", True), ("A workspace/redo/b.txt (1 bytes)", True),
        ("D workspace/redo/key.pem", False)]
    assert sorted(os.listdir(trees.project / "workspace/redo")) == ["b.txt", "key.pem"]
    assert lines(trees.ws) == ["D workspace/redo/key.pem"]


def test_a_file_replaced_by_a_directory_is_applied_in_order(trees: Trees) -> None:
    """A type change is a deletion then an addition at the same path."""
    put(trees.project, "workspace/swap", "a file")
    opaque(trees.upper, "workspace/swap")
    put(trees.upper, "workspace/swap/inner.txt", "in")
    assert all(o.applied for o in commit(trees.ws, trees.policy).outcomes)
    assert (trees.project / "workspace/swap/inner.txt").read_text() == "in"
    assert lines(trees.ws) == []
    assert not (trees.upper / "workspace/swap").exists()


@pytest.mark.parametrize(("inside", "applied"), [
    ({"a.txt": "a", "sub/b.txt": "b"}, True),
    ({"a.txt": "a", "sub/id.pem": "k"}, False),
], ids=["all-allowed", "one-denied"])
def test_a_directory_is_deleted_only_when_everything_in_it_may_be(
        trees: Trees, inside: dict[str, str], applied: bool) -> None:
    """Deleting a directory is a file_write of every path beneath it."""
    for rel, text in inside.items():
        put(trees.project, f"workspace/old/{rel}", text)
    whiteout(trees.upper, "workspace/old")
    [outcome] = commit(trees.ws, trees.policy).outcomes
    assert outcome.applied is applied
    assert (trees.project / "workspace/old").exists() is not applied
    if not applied:
        assert outcome.reason.startswith("denied by rule 2")
        assert outcome.decisions[0].target.endswith("workspace/old/sub/id.pem")


def test_simulate_mode_applies_and_says_what_it_would_deny(trees: Trees) -> None:
    """Under `mode: simulate` a denied change is applied and its reason says so."""
    policy = compile_policy_text(POLICY + "mode: simulate\n", project_dir=str(trees.project))
    put(trees.upper, "workspace/id.pem", "k")
    [outcome] = commit(trees.ws, policy).outcomes
    assert outcome.applied
    assert outcome.reason.startswith("would deny (simulate): denied by rule 2")
    assert (trees.project / "workspace/id.pem").read_text() == "k"


# --- the command ----------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["fs", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_audit_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("GATEWAY_AUDIT_KEY", "GATEWAY_AUDIT_KEY_FILE", "GATEWAY_AUDIT_LOG"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_cli_diff_prints_the_changes(trees: Trees, capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway fs diff` prints one line per change, and patches with --patch."""
    put(trees.project, "workspace/a.txt", "a\n")
    put(trees.upper, "workspace/a.txt", "b\n")
    assert run(capsys, "diff", str(trees.ws.directory)) == (
        0, "M workspace/a.txt (2 -> 2 bytes)\n", "")
    code, out, _ = run(capsys, "diff", "--patch", str(trees.ws.directory))
    assert code == 0 and out.endswith("@@ -1 +1 @@\n-a\n+b\n")


def test_cli_commit_exit_codes_and_report(trees: Trees, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path, no_audit_env: None) -> None:
    """Exit 1 while something is refused, 0 once all was applied; the policy comes from
    the workspace; a dry run changes nothing; every outcome is in the audit log."""
    put(trees.upper, "workspace/ok.txt", "ok")
    key = put(trees.upper, "workspace/key.pem", "k")
    ws = str(trees.ws.directory)
    code, out, _ = run(capsys, "commit", "--dry-run", ws)
    assert code == 1
    assert out.splitlines()[-1] == "1 would apply, 1 would refuse; nothing was changed (dry run)"
    assert not (trees.project / "workspace/ok.txt").exists()
    log = tmp_path / "audit.jsonl"
    code, out, _ = run(capsys, "commit", ws, "--audit-log", str(log), "--agent", "coder")
    assert code == 1
    assert out.splitlines() == [
        'refused  A workspace/key.pem (1 bytes): denied by rule 2 {action: file_write, '
        'path: "*.pem", effect: deny}',
        'applied  A workspace/ok.txt (2 bytes): allowed by rule 0 {action: file_write, '
        'path: "${PROJECT_DIR}/workspace/**", effect: allow}',
        "1 applied, 1 refused"]
    assert [(e["applied"], e["agent"]) for e in fs_entries(log)] == [(False, "coder"),
                                                                      (True, "coder")]
    key.unlink()
    assert run(capsys, "commit", ws, "--policy", str(trees.policy_file)) == (
        0, "no changes\n", "")


@pytest.mark.parametrize(("argv", "message"), [
    (["diff", "{tmp}/nowhere"], "not an overlay workspace"),
    (["commit", "{tmp}/nowhere"], "not an overlay workspace"),
    (["commit", "{bare}"], "no policy: give --policy"),
    (["commit", "{ws}", "--policy", "{tmp}/missing.yaml"], "missing.yaml"),
], ids=["diff-no-workspace", "commit-no-workspace", "no-policy", "policy-missing"])
def test_cli_unusable_input_exits_2_with_one_line(
        trees: Trees, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    """Unusable input: exit 2, one `gateway: ...` line on stderr, no traceback."""
    bare = create_workspace(tmp_path / "bare", lower=str(trees.project),
                            target=str(trees.project))
    args = [a.format(tmp=tmp_path, ws=trees.ws.directory, bare=bare.directory) for a in argv]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("gateway: ") and err.count("\n") == 1 and message in err
