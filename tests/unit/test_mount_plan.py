"""The mount plan: roots, modes, masks, expansion, limits, renderers, and agreement with
the engine on every existing path."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.cli
from gateway.cli import mounts as mounts_cli
from gateway.engine import Request, Verdict, decide
from gateway.fs.notes import mount_notes
from gateway.fs.plan import Mount, MountPlan, plan_mounts
from gateway.fs.render import compose_notes, to_compose, to_json, to_shell
from gateway.fs.tree import Budget, Kind, LocalTree, resolve, walk
from gateway.policy.compiled import CompiledPolicy, compile_policy_text, load_policy
from gateway.policy.model import Action

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
OVERLAY = "/var/lib/gw-overlay"


# --- trees ------------------------------------------------------------------------------


class FakeTree:
    """A TreeView from a dict: path -> "dir" | "file" | "other" | ("symlink", text).
    Parents are implied; `unlistable` directories raise on listing; `devices` maps a
    path (and what lies beneath it) to a device number."""

    def __init__(self, entries: dict[str, object], *, unlistable: Iterable[str] = (),
                 devices: dict[str, int] | None = None) -> None:
        self.nodes: dict[str, object] = {"/": "dir"}
        for path, what in entries.items():
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                self.nodes.setdefault("/" + "/".join(parts[:i]), "dir")
            self.nodes[path] = what
        self.unlistable = set(unlistable)
        self.devices = devices or {}
        self.listed: list[str] = []

    def kind(self, path: str) -> Kind | None:
        what = self.nodes.get(path)
        if what is None:
            return None
        return "symlink" if isinstance(what, tuple) else what  # type: ignore[return-value]

    def children(self, path: str) -> list[str]:
        self.listed.append(path)
        if path in self.unlistable:
            raise PermissionError(13, "Permission denied", path)
        prefix = path.rstrip("/") + "/"
        return [p[len(prefix):] for p in self.nodes
                if p.startswith(prefix) and p != path and "/" not in p[len(prefix):]]

    def readlink(self, path: str) -> str:
        what = self.nodes[path]
        assert isinstance(what, tuple)
        return str(what[1])

    def device(self, path: str) -> int:
        best, number = "", 0
        for top, dev in self.devices.items():
            if (path == top or path.startswith(top + "/")) and len(top) > len(best):
                best, number = top, dev
        return number


class ConfinedTree(LocalTree):
    """The real filesystem, but only `base` and what lies beneath it: its ancestors are
    bare directories and everything else is missing (so /usr is not walked)."""

    def __init__(self, base: Path) -> None:
        self.base = str(base)

    def _inside(self, path: str) -> bool:
        return path == self.base or path.startswith(self.base + "/")

    def _ancestor(self, path: str) -> bool:
        return path == "/" or self.base.startswith(path.rstrip("/") + "/")

    def kind(self, path: str) -> Kind | None:
        if self._inside(path):
            return super().kind(path)
        return "dir" if self._ancestor(path) else None

    def children(self, path: str) -> list[str]:
        if self._inside(path):
            return super().children(path)
        return [self.base[len(path.rstrip("/")) + 1:].split("/")[0]]

    def device(self, path: str) -> int:
        return super().device(path if self._inside(path) else self.base)


def default_policy(project: str, home: str) -> CompiledPolicy:
    return load_policy(POLICIES / "default.yaml", project_dir=project, environ={"HOME": home})


def autogen_policy(project: str) -> CompiledPolicy:
    return load_policy(POLICIES / "autogen.yaml", project_dir=project,
                       environ={"HOME": "/nonexistent-home"})


def policy_text(rules: str) -> CompiledPolicy:
    return compile_policy_text("version: 1\ndefault: deny\nrules:\n" + rules,
                               project_dir="/p", environ={"HOME": "/h"})


def plan_of(policy: CompiledPolicy, tree: object, **kw: object) -> MountPlan:
    return plan_mounts(policy, tree, overlay_dir=OVERLAY, **kw)  # type: ignore[arg-type]


def shape(plan: MountPlan) -> list[tuple[str, str, str | None, str]]:
    """(kind, target, source, mode) per mount: mode is ro, rw, rw+exec or the mask kind."""
    out = []
    for m in plan.mounts:
        if m.kind == "mask":
            mode = "dir" if m.is_dir else "file"
        else:
            mode = "ro" if m.readonly else ("rw" if m.noexec else "rw+exec")
        out.append((m.kind, m.target, m.source, mode))
    return out


def noted(plan: MountPlan, *words: str) -> bool:
    return any(all(w in n for w in words) for n in plan.notes)


def innermost(plan: MountPlan, path: str) -> Mount | None:
    """The mount the agent sees `path` through: the last applied one around it."""
    found = None
    for m in plan.mounts:
        if m.target == "/" or path == m.target or path.startswith(m.target + "/"):
            found = m
    return found


# --- the shipped policies on a fake tree ---------------------------------------------------


SYSTEM = {
    "/usr/bin/python3": "file",
    "/usr/lib/ssl/cert.pem": "file",
    "/usr/lib/libc.so": "file",
    "/bin": ("symlink", "usr/bin"),
    "/etc/hosts": "file",
    "/etc/resolv.conf": "file",
    "/etc/passwd": "file",
    "/tmp/scratch.txt": "file",
}
PROJECT = {
    "/home/u/proj/main.py": "file",
    "/home/u/proj/.env": "file",
    "/home/u/proj/.git/HEAD": "file",
    "/home/u/proj/.git/config": "file",
    "/home/u/proj/.git/hooks/pre-commit": "file",
    "/home/u/proj/keys/server.pem": "file",
    "/home/u/proj/keys/readme.txt": "file",
    "/home/u/proj/.config/gcloud/creds.json": "file",
    "/home/u/proj/link": ("symlink", "/etc"),
    "/home/u/.bashrc": "file",
    "/home/u/.ssh/id_rsa": "file",
    "/home/u/notes.txt": "file",
}


def test_default_policy_on_a_fake_tree() -> None:
    """default.yaml: system trees read-only, the project and /tmp writable and noexec,
    secrets masked, .git/hooks and .git/config bound read-only, nothing else."""
    plan = plan_of(default_policy("/home/u/proj", "/home/u"), FakeTree({**SYSTEM, **PROJECT}))
    assert shape(plan) == [
        ("bind", "/bin", "/usr/bin", "ro"),
        ("bind", "/etc/hosts", "/etc/hosts", "ro"),
        ("bind", "/etc/resolv.conf", "/etc/resolv.conf", "ro"),
        ("bind", "/home/u/proj", "/home/u/proj", "rw"),
        ("mask", "/home/u/proj/.config/gcloud", None, "dir"),
        ("mask", "/home/u/proj/.env", None, "file"),
        ("bind", "/home/u/proj/.git/config", "/home/u/proj/.git/config", "ro"),
        ("bind", "/home/u/proj/.git/hooks", "/home/u/proj/.git/hooks", "ro"),
        ("mask", "/home/u/proj/keys/server.pem", None, "file"),
        ("bind", "/tmp", "/tmp", "rw"),
        ("bind", "/usr", "/usr", "ro"),
        ("mask", "/usr/lib/ssl/cert.pem", None, "file"),
    ]
    for missing in ("/sbin", "/lib", "/lib64", "/etc/ssl", "/etc/localtime"):
        assert noted(plan, missing, "does not exist"), missing
    assert plan.complete


ROLES = [
    ("project-writable", "/home/u/proj", 1, "file_write allowed"),
    ("system-read-only", "/usr", 2, "file_read allowed"),
    ("env-masked-by-the-secrets-rule", "/home/u/proj/.env", 4, "file_read denied"),
    ("hooks-read-only-by-the-git-rule", "/home/u/proj/.git/hooks", 5, "file_write denied"),
]


@pytest.mark.parametrize(("target", "rule", "why"), [c[1:] for c in ROLES],
                         ids=[c[0] for c in ROLES])
def test_each_mount_names_its_rule(target: str, rule: int, why: str) -> None:
    """Every mount records the rule that decided it and why."""
    plan = plan_of(default_policy("/home/u/proj", "/home/u"), FakeTree({**SYSTEM, **PROJECT}))
    mount = next(m for m in plan.mounts if m.target == target)
    assert mount.rule == rule
    assert why in mount.why


def test_home_dotfiles_are_masked_when_home_is_the_project() -> None:
    """${HOME}/.* denies reading: with the project at HOME, its dotfiles are masked."""
    plan = plan_of(default_policy("/home/u", "/home/u"), FakeTree(PROJECT))
    masks = {(t, mode) for kind, t, _, mode in shape(plan) if kind == "mask"}
    assert ("/home/u/.bashrc", "file") in masks
    assert ("/home/u/.ssh", "dir") in masks
    assert ("bind", "/home/u", "/home/u", "rw") in shape(plan)
    assert innermost(plan, "/home/u/notes.txt").target == "/home/u"  # type: ignore[union-attr]


AUTOGEN_TREE = {
    "/p/workspace/main.py": "file",
    "/p/workspace/.env": "file",
    "/p/workspace/.git/hooks/pre-commit": "file",
    "/p/data/input.csv": "file",
    "/p/data/.cache/x": "file",
    "/p/.env": "file",
    "/p/secret.txt": "file",
}


def test_autogen_policy_on_a_fake_tree() -> None:
    """autogen.yaml: data read-only, workspace writable, dotfiles masked, the project root
    and everything else invisible, a missing output/ noted."""
    plan = plan_of(autogen_policy("/p"), FakeTree(AUTOGEN_TREE))
    assert shape(plan) == [
        ("bind", "/p/data", "/p/data", "ro"),
        ("mask", "/p/data/.cache", None, "dir"),
        ("bind", "/p/workspace", "/p/workspace", "rw"),
        ("mask", "/p/workspace/.env", None, "file"),
        ("mask", "/p/workspace/.git", None, "dir"),
    ]
    assert noted(plan, "/p/output does not exist")
    assert innermost(plan, "/p/secret.txt") is None


# --- modes: overlay, exec, nesting -----------------------------------------------------------


MODES = [
    ("plain-write-is-noexec",
     '- {action: file_write, path: "/w/**", effect: allow}\n',
     [("bind", "/w", "/w", "rw")]),
    ("exec-true-keeps-exec",
     '- {action: file_write, path: "/w/**", exec: true, effect: allow}\n',
     [("bind", "/w", "/w", "rw+exec")]),
    ("overlay-true",
     '- {action: file_write, path: "/w/**", overlay: true, effect: allow}\n',
     [("overlay", "/w", "/w", "rw")]),
    ("read-only",
     '- {action: file_read, path: "/w/**", effect: allow}\n',
     [("bind", "/w", "/w", "ro")]),
    ("nested-exec-tree-gets-its-own-mount",
     '- {action: file_write, path: "/w/**", effect: allow}\n'
     '- {action: file_write, path: "/w/bin/**", exec: true, effect: allow}\n',
     [("bind", "/w", "/w", "rw"), ("bind", "/w/bin", "/w/bin", "rw+exec")]),
    ("nested-same-mode-not-repeated",
     '- {action: file_write, path: "/w/**", effect: allow}\n'
     '- {action: file_write, path: "/w/bin/**", effect: allow}\n',
     [("bind", "/w", "/w", "rw")]),
    ("overlay-covers-a-narrower-plain-rule",
     '- {action: file_write, path: "/w/**", overlay: true, effect: allow}\n'
     '- {action: file_write, path: "/w/bin/**", effect: allow}\n',
     [("overlay", "/w", "/w", "rw")]),
    ("exec-inside-an-overlay-is-its-own-overlay",
     '- {action: file_write, path: "/w/**", overlay: true, effect: allow}\n'
     '- {action: file_write, path: "/w/bin/**", exec: true, effect: allow}\n',
     [("overlay", "/w", "/w", "rw"), ("overlay", "/w/bin", "/w/bin", "rw+exec")]),
    ("writable-inside-read-only",
     '- {action: file_read, path: "/w/**", effect: allow}\n'
     '- {action: file_write, path: "/w/bin/**", effect: allow}\n',
     [("bind", "/w", "/w", "ro"), ("bind", "/w/bin", "/w/bin", "rw")]),
    ("read-only-inside-writable",
     '- {action: file_write, path: "/w/**", effect: allow}\n'
     '- {action: file_read, path: "/w/**", effect: allow}\n'
     '- {action: file_write, path: "/w/bin/**", effect: deny}\n',
     [("bind", "/w", "/w", "rw"), ("bind", "/w/bin", "/w/bin", "ro")]),
    ("denied-root-not-mounted",
     '- {action: file_read, path: "/w/**", effect: allow}\n'
     '- {action: file_read, path: "/w", effect: deny}\n',
     []),
]


@pytest.mark.parametrize(("rules", "expected"), [c[1:] for c in MODES], ids=[c[0] for c in MODES])
def test_modes(rules: str, expected: list[tuple[str, str, str, str]]) -> None:
    """Writable trees are binds or overlays (noexec unless exec: true), read-only trees
    keep exec, and a nested root is its own mount only when its mode differs."""
    tree = FakeTree({"/w/bin/tool": "file", "/w/src/a.py": "file"})
    assert shape(plan_of(policy_text(rules), tree)) == expected


def test_overlay_directories_are_recorded_per_overlay() -> None:
    """Each overlay gets <overlay_dir>/<n>-<target>/{upper,work}."""
    rules = ('- {action: file_write, path: ["/w/**", "/v/**"], overlay: true, effect: allow}\n')
    plan = plan_of(policy_text(rules), FakeTree({"/w/a": "file", "/v/b": "file"}))
    assert [(m.target, m.upper, m.work) for m in plan.mounts] == [
        ("/v", f"{OVERLAY}/0-v/upper", f"{OVERLAY}/0-v/work"),
        ("/w", f"{OVERLAY}/1-w/upper", f"{OVERLAY}/1-w/work"),
    ]


OVERLAY_FALLBACKS = [
    ("a-file", "/w/f", {"/w/f": "file"}, "an overlay needs a directory"),
    ("a-comma", "/w/a,b", {"/w/a,b/x": "file"}, "overlay options cannot carry"),
]


@pytest.mark.parametrize(("path", "entries", "why"), [c[1:] for c in OVERLAY_FALLBACKS],
                         ids=[c[0] for c in OVERLAY_FALLBACKS])
def test_an_overlay_that_cannot_be_made_is_read_only(path: str, entries: dict[str, object],
                                                     why: str) -> None:
    """An overlay over a file or a path overlay options cannot carry is mounted
    read-only instead, never as a write-through bind."""
    rules = (f'- {{action: file_read, path: "{path}", effect: allow}}\n'
             f'- {{action: file_write, path: "{path}", overlay: true, effect: allow}}\n')
    plan = plan_of(policy_text(rules), FakeTree(entries))
    assert [(m.kind, m.target, m.readonly) for m in plan.mounts] == [("bind", path, True)]
    assert noted(plan, why)


def test_writable_but_not_readable_is_mounted_writable_and_noted() -> None:
    """A root that may be written but not read is still a writable mount, and the plan
    says the mount makes it readable."""
    plan = plan_of(policy_text('- {action: file_write, path: "/out/**", effect: allow}\n'),
                   FakeTree({"/out/x": "file"}))
    assert shape(plan) == [("bind", "/out", "/out", "rw")]
    assert noted(plan, "/out may be written but not read")


def test_rules_for_other_agents_make_nothing_visible() -> None:
    """Rules narrowed to agents apply only to the agent the plan is for."""
    rules = '- {action: file_read, path: "/w/**", agents: [coder], effect: allow}\n'
    policy = policy_text(rules)
    tree = FakeTree({"/w/a": "file"})
    assert plan_of(policy, tree).mounts == ()
    assert noted(plan_of(policy, tree), "applies to agents coder only")
    assert shape(plan_of(policy, tree, agent="coder")) == [("bind", "/w", "/w", "ro")]


def test_simulate_mode_is_enforced_by_mounts_and_noted() -> None:
    """Mounts cannot record and allow: a simulate-mode policy is planned as written."""
    policy = compile_policy_text(
        "version: 1\nmode: simulate\ndefault: deny\nrules:\n"
        '- {action: file_read, path: "/w/**", effect: allow}\n', environ={"HOME": "/h"})
    plan = plan_of(policy, FakeTree({"/w/a": "file"}))
    assert shape(plan) == [("bind", "/w", "/w", "ro")]
    assert noted(plan, "simulate")


# --- patterns finer than a mount ---------------------------------------------------------------


FINER_TREE = {
    "/d/a/f.csv": "file",
    "/d/b/f.csv": "file",
    "/d/b/g.csv": "file",
    "/d/c/other.txt": "file",
    "/d/e/f.csv": ("symlink", "/etc/passwd"),
    "/d/s/f.csv": "file",
    "/d/deep/x/f.csv": "file",
}
FINER = [
    ("mid-path-star", '"/d/*/f.csv"', ["/d/a/f.csv", "/d/b/f.csv", "/d/s/f.csv"]),
    ("last-component-glob", '"/d/b/*.csv"', ["/d/b/f.csv", "/d/b/g.csv"]),
    ("globstar-in-the-middle", '"/d/**/x/f.csv"', ["/d/deep/x/f.csv"]),
    ("class", '"/d/[ab]/f.csv"', ["/d/a/f.csv", "/d/b/f.csv"]),
    ("no-match", '"/d/*/none"', []),
]


@pytest.mark.parametrize(("pattern", "bound"), [c[1:] for c in FINER], ids=[c[0] for c in FINER])
def test_a_pattern_finer_than_a_mount_binds_existing_matches_only(pattern: str,
                                                                  bound: list[str]) -> None:
    """Only existing paths the pattern matches are bound (symlinks and denied ones not),
    never its root; the plan notes that paths created later stay invisible."""
    rules = (f"- {{action: file_read, path: {pattern}, effect: allow}}\n"
             '- {action: file_read, path: "/d/s/**", effect: deny}\n')
    plan = plan_of(policy_text(rules), FakeTree(FINER_TREE))
    expected = [t for t in bound if not t.startswith("/d/s/")]
    assert shape(plan) == [("bind", t, t, "ro") for t in expected]
    assert noted(plan, "finer than a mount", f"matched {len(bound)} existing")
    assert noted(plan, "finer than a mount", "paths created later are not visible")
    if "/d/s/f.csv" in bound:
        assert noted(plan, "/d/s/f.csv is itself denied")
    if pattern == '"/d/*/f.csv"':
        assert noted(plan, "/d/e/f.csv is a symbolic link: not mounted")


def test_finer_pattern_walk_skips_directories_that_cannot_match() -> None:
    """A fixed segment prunes the expansion walk: `/d/a/*` never lists /d/b."""
    tree = FakeTree(FINER_TREE)
    plan_of(policy_text('- {action: file_read, path: "/d/a/*", effect: allow}\n'), tree)
    assert "/d/b" not in tree.listed


# --- what the walk meets ------------------------------------------------------------------------


def test_nonexistent_roots_are_noted_and_skipped() -> None:
    """A root that does not exist is not mounted; the note says it stays invisible."""
    plan = plan_of(policy_text('- {action: file_read, path: ["/w/**", "/gone/**"], '
                               'effect: allow}\n'), FakeTree({"/w/a": "file"}))
    assert shape(plan) == [("bind", "/w", "/w", "ro")]
    assert noted(plan, "/gone does not exist", "stays invisible")


def test_truncation_is_noted_and_marks_the_plan_incomplete() -> None:
    """Past max_entries the walk stops; the plan says masks may be missing."""
    entries = {f"/w/f{i:02}": "file" for i in range(30)}
    plan = plan_of(autogen_like(), FakeTree(entries), max_entries=10)
    assert not plan.complete
    assert noted(plan, "limit of 10 entries", "NOT masked")
    assert plan_of(autogen_like(), FakeTree(entries), max_entries=100).complete


def autogen_like() -> CompiledPolicy:
    return policy_text('- {action: file_read, path: "/w/**", effect: allow}\n'
                       '- {action: file_read, path: "*/.*", effect: deny}\n')


def test_a_symlink_inside_a_tree_is_not_followed() -> None:
    """The walk never lists through a symlink and nothing is mounted beneath one; a
    symlink the policy denies is noted, since a mount cannot cover it."""
    tree = FakeTree({"/w/link": ("symlink", "/secret"), "/w/.hidden": ("symlink", "/w/a"),
                     "/w/a": "file", "/secret/key": "file"})
    plan = plan_of(autogen_like(), tree)
    assert shape(plan) == [("bind", "/w", "/w", "ro")]
    assert "/w/link" not in tree.listed and "/secret" not in tree.listed
    assert noted(plan, "/w/.hidden is a symbolic link the policy denies")


def test_a_symlinked_root_binds_its_resolved_source() -> None:
    """`/bin -> usr/bin`: the bind's source is /usr/bin, its target /bin, and both names
    are judged (a deny on the real path masks it at the link's path too)."""
    rules = ('- {action: file_read, path: ["/bin/**", "/usr/bin/**"], effect: allow}\n'
             '- {action: file_read, path: "/usr/bin/secret", effect: deny}\n')
    tree = FakeTree({"/bin": ("symlink", "usr/bin"), "/usr/bin/ls": "file",
                     "/usr/bin/secret": "file"})
    assert shape(plan_of(policy_text(rules), tree)) == [
        ("bind", "/bin", "/usr/bin", "ro"), ("mask", "/bin/secret", None, "file"),
        ("bind", "/usr/bin", "/usr/bin", "ro"), ("mask", "/usr/bin/secret", None, "file")]


def test_a_symlinked_root_whose_destination_is_denied_is_not_mounted() -> None:
    """As in the engine, a path and what it resolves to must both be allowed: a link
    into a tree the policy does not allow mounts nothing."""
    rules = '- {action: file_read, path: "/bin/**", effect: allow}\n'
    tree = FakeTree({"/bin": ("symlink", "/secret/bin"), "/secret/bin/ls": "file"})
    plan = plan_of(policy_text(rules), tree)
    assert plan.mounts == ()
    assert noted(plan, "/bin is itself denied", "/secret/bin matches no allow rule")


def test_a_root_beneath_a_symlink_inside_a_mount_is_not_mounted() -> None:
    """A nested root reached only through a symlink in the tree around it would be
    mounted through the link: it is skipped and noted."""
    rules = ('- {action: file_read, path: "/w/**", effect: allow}\n'
             '- {action: file_write, path: "/w/link/out/**", effect: allow}\n')
    tree = FakeTree({"/w/link": ("symlink", "/elsewhere"), "/elsewhere/out/x": "file"})
    plan = plan_of(policy_text(rules), tree)
    assert shape(plan) == [("bind", "/w", "/w", "ro")]
    assert noted(plan, "beneath the symbolic link /w/link")


def test_a_directory_that_cannot_be_listed_is_masked() -> None:
    """What the plan cannot look into, it hides."""
    tree = FakeTree({"/w/locked/x": "file", "/w/a": "file"}, unlistable={"/w/locked"})
    plan = plan_of(autogen_like(), tree)
    assert shape(plan) == [("bind", "/w", "/w", "ro"), ("mask", "/w/locked", None, "dir")]
    assert noted(plan, "/w/locked cannot be examined")


def test_a_file_system_mounted_inside_a_tree_is_bound_on_its_own() -> None:
    """A bind does not carry mounts beneath it: a submount gets its own bind, with the
    mode of the tree around it, so masks inside it have something to cover."""
    tree = FakeTree({"/w/vol/.env": "file", "/w/a": "file"}, devices={"/w/vol": 7})
    assert shape(plan_of(autogen_like(), tree)) == [
        ("bind", "/w", "/w", "ro"), ("bind", "/w/vol", "/w/vol", "ro"),
        ("mask", "/w/vol/.env", None, "file")]


def test_a_root_inside_a_masked_directory_is_not_mounted() -> None:
    """A root beneath a mask could not be created there: skipped and noted."""
    rules = ('- {action: file_read, path: "/w/**", effect: allow}\n'
             '- {action: file_read, path: "*/.*", effect: deny}\n'
             '- {action: file_write, path: "/w/.cache/out/**", effect: allow}\n')
    plan = plan_of(policy_text(rules), FakeTree({"/w/.cache/out/x": "file"}))
    assert shape(plan) == [("bind", "/w", "/w", "ro"), ("mask", "/w/.cache", None, "dir")]
    assert noted(plan, "/w/.cache/out lies inside the masked /w/.cache")


def test_the_overlay_directory_is_masked_where_a_tree_shows_it() -> None:
    """The overlays' upper layers and the empty file never show inside a mounted tree."""
    rules = ('- {action: file_write, path: "/var/**", overlay: true, effect: allow}\n'
             '- {action: file_read, path: "/var/**", effect: allow}\n')
    plan = plan_of(policy_text(rules), FakeTree({"/var/lib/x": "file"}))
    assert shape(plan) == [("overlay", "/var", "/var", "rw"),
                           ("mask", OVERLAY, None, "dir")]
    assert noted(plan, f"overlay directory {OVERLAY} lies inside")


def test_a_relative_overlay_directory_is_refused() -> None:
    """The overlay directory must be absolute."""
    with pytest.raises(ValueError, match="absolute"):
        plan_mounts(autogen_like(), FakeTree({}), overlay_dir="overlay")


# --- the tree helpers -----------------------------------------------------------------------


RESOLVE = [
    ("plain", "/a/b", "/a/b"),
    ("relative-link", "/l/b", "/a/b"),
    ("absolute-link", "/abs/b", "/a/b"),
    ("missing", "/a/none", None),
    ("beneath-a-file", "/a/b/c", None),
    ("dotdot-after-link", "/l/../a/b", "/a/b"),
]


@pytest.mark.parametrize(("path", "expected"), [c[1:] for c in RESOLVE],
                         ids=[c[0] for c in RESOLVE])
def test_resolve_follows_links_through_the_tree_view(path: str, expected: str | None) -> None:
    """resolve() follows symlinks component by component, as the kernel does."""
    tree = FakeTree({"/a/b": "file", "/l": ("symlink", "a"), "/abs": ("symlink", "/a")})
    assert resolve(tree, path) == expected


def test_resolve_refuses_a_loop() -> None:
    """A symlink loop is an error, never a hang."""
    with pytest.raises(ValueError, match="too many levels"):
        resolve(FakeTree({"/x": ("symlink", "/y"), "/y": ("symlink", "/x")}), "/x/a")


def test_walk_is_sorted_depth_first_and_bounded() -> None:
    """walk() yields sorted entries, parents first, and stops when the budget is spent."""
    tree = FakeTree({"/t/b/x": "file", "/t/a": "file", "/t/c": "file"})
    paths = [e.path for e in walk(tree, "/t", Budget(100), lambda p: True)]
    assert paths == ["/t/a", "/t/b", "/t/b/x", "/t/c"]
    budget = Budget(3)
    assert [e.path for e in walk(tree, "/t", budget, lambda p: True)] == ["/t/a", "/t/b"]
    assert budget.exhausted


# --- what mounts cannot enforce ----------------------------------------------------------------


NOTES = [
    ("relative-deny", "autogen", "'*/.env' matches at any depth"),
    ("writable-trees-named", "autogen", "writable tree (/p/workspace, /p/output)"),
    ("write-only-root", "autogen", "/p/output may be written but not read"),
    ("git-hooks-deny", "default", "file_write deny of '.git/hooks' matches at any depth"),
]


@pytest.mark.parametrize(("policy", "words"), [c[1:] for c in NOTES], ids=[c[0] for c in NOTES])
def test_mount_notes_name_what_mounts_cannot_enforce(policy: str, words: str) -> None:
    """mount_notes() reads only the policy and names its limits."""
    compiled = autogen_policy("/p") if policy == "autogen" else default_policy("/p", "/h")
    assert any(words in n for n in mounts_cli.mount_notes(compiled))


def test_mount_notes_name_mid_path_and_relative_allows() -> None:
    """Allow patterns mounts cannot follow are named with their rule and line."""
    notes = mount_notes(policy_text(
        '- {action: file_read, path: ["/d/*/f.csv", "*.py"], effect: allow}\n'
        '- {action: file_read, path: "/p/**", effect: allow}\n'
        '- {action: file_write, path: "/p/**", effect: allow}\n'
        '- {action: file_write, path: "/p/vendor/**", effect: deny}\n'))
    assert any("rule 0 (line 4): file_read allow of '/d/*/f.csv' is finer" in n for n in notes)
    assert any("'*.py' matches at any depth; mounts cannot follow it" in n for n in notes)
    assert any("'/p/vendor/**' lies in the writable tree /p" in n for n in notes)


# --- real directories ---------------------------------------------------------------------------


def make_project(base: Path) -> Path:
    """A project tree: workspace/ (with .env, .git/hooks, keys), data/, .env, output/."""
    project = base / "proj"
    for name in ("workspace/.git/hooks", "workspace/keys", "workspace/src", "data/sub",
                 "output", "home/.ssh"):
        (project / name).mkdir(parents=True)
    for name in ("workspace/main.py", "workspace/.env", "workspace/.git/config",
                 "workspace/.git/hooks/pre-commit", "workspace/keys/server.pem",
                 "workspace/keys/server.crt", "workspace/src/a.py", "data/input.csv",
                 "data/sub/.hidden", "data/sub/b.csv", ".env", "notes.txt", "output/old.txt",
                 "home/.bashrc", "home/.ssh/id_rsa"):
        (project / name).write_text("x")
    (project / "workspace" / "outside").symlink_to(base)
    return project


def test_autogen_policy_on_real_directories(tmp_path: Path) -> None:
    """autogen.yaml over a real tree gives what it gives over the fake one."""
    project = make_project(tmp_path)
    p = str(project)
    plan = plan_of(autogen_policy(p), LocalTree())
    assert shape(plan) == [
        ("bind", f"{p}/data", f"{p}/data", "ro"),
        ("mask", f"{p}/data/sub/.hidden", None, "file"),
        ("bind", f"{p}/output", f"{p}/output", "rw"),
        ("bind", f"{p}/workspace", f"{p}/workspace", "rw"),
        ("mask", f"{p}/workspace/.env", None, "file"),
        ("mask", f"{p}/workspace/.git", None, "dir"),
    ]


def test_default_policy_on_real_directories(tmp_path: Path) -> None:
    """default.yaml over a real tree: keys and .env masked, hooks and git config
    read-only, home dotfiles masked, the symlink to the outside not followed."""
    project = make_project(tmp_path)
    p = str(project)
    tree = ConfinedTree(tmp_path)
    plan = plan_of(default_policy(p, f"{p}/home"), tree)
    masks = [(t, mode) for kind, t, _, mode in shape(plan) if kind == "mask"]
    assert masks == [(f"{p}/.env", "file"), (f"{p}/home/.bashrc", "file"),
                     (f"{p}/home/.ssh", "dir"), (f"{p}/workspace/.env", "file"),
                     (f"{p}/workspace/keys/server.pem", "file")]
    read_only = [t for kind, t, _, mode in shape(plan) if kind == "bind" and mode == "ro"]
    assert read_only == [f"{p}/workspace/.git/config", f"{p}/workspace/.git/hooks"]
    assert not any(m.target.startswith(f"{p}/workspace/outside") for m in plan.mounts)


POLICIES_FOR_AGREEMENT = ["autogen", "default", "overlay"]


@pytest.mark.parametrize("which", POLICIES_FOR_AGREEMENT)
def test_every_existing_path_agrees_with_the_engine(tmp_path: Path, which: str) -> None:
    """For each existing path: read-only-visible means file_read ALLOW, writable-visible
    means file_write ALLOW (and file_read ALLOW where its tree may be read), masked means
    file_read DENY."""
    project = make_project(tmp_path)
    p = str(project)
    if which == "autogen":
        policy = autogen_policy(p)
    elif which == "default":
        policy = default_policy(p, f"{p}/home")
    else:
        policy = compile_policy_text(
            "version: 1\ndefault: deny\nrules:\n"
            '- {action: file_read, path: "${PROJECT_DIR}/**", effect: allow}\n'
            '- {action: file_write, path: "${PROJECT_DIR}/workspace/**", overlay: true, '
            "effect: allow}\n"
            '- {action: file_read, path: ["*.pem", "${PROJECT_DIR}/home/**"], effect: deny}\n'
            '- {action: file_write, path: ".git/**", effect: deny}\n', project_dir=p,
            environ={"HOME": "/h"})
    plan = plan_of(policy, ConfinedTree(tmp_path))
    checked = 0
    for path in existing_paths(tmp_path):
        checked += agrees(policy, plan, path)
    assert checked > 10


def existing_paths(top: Path) -> list[str]:
    out = []
    for here, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                out.append(path)
    return out


def agrees(policy: CompiledPolicy, plan: MountPlan, path: str) -> int:
    """Assert the plan's view of `path` agrees with the engine; 1 if the path is visible."""
    mount = innermost(plan, path)
    if mount is None:
        return 0
    read = decide(policy, Request(Action.FILE_READ, path)).verdict
    write = decide(policy, Request(Action.FILE_WRITE, path)).verdict
    if mount.kind == "mask":
        assert read is Verdict.DENY, path
    elif mount.readonly:
        assert read is Verdict.ALLOW, path
    else:
        assert write is Verdict.ALLOW, path
        tree_read = decide(policy, Request(Action.FILE_READ, mount.target)).verdict
        if tree_read is Verdict.ALLOW:
            assert read is Verdict.ALLOW, path
    return 1


NAMES = st.sampled_from(["a", "b", ".env", ".git", "hooks", "config", "x.pem", ".ssh",
                         "id_rsa", "src", ".hidden", "keys"])
TREES = st.lists(st.lists(NAMES, min_size=1, max_size=4), min_size=1, max_size=25)


@given(TREES)
@settings(max_examples=150, deadline=None)
def test_the_plan_agrees_with_the_engine_on_generated_trees(paths: list[list[str]]) -> None:
    """On generated trees under the project and HOME, default.yaml's plan agrees with the
    engine on every existing path."""
    entries: dict[str, object] = {}
    for names in paths:
        path = "/home/u/proj/" + "/".join(names)
        if not any(p.startswith(path + "/") for p in entries) and not any(
                path.startswith(p + "/") for p, k in entries.items() if k == "file"):
            entries[path] = "file"
    policy = default_policy("/home/u/proj", "/home/u/proj")
    plan = plan_of(policy, FakeTree(entries))
    tree = FakeTree(entries)
    for path in tree.nodes:
        if path.startswith("/home/u/proj"):
            agrees(policy, plan, path)


# --- renderers ---------------------------------------------------------------------------------


def rich_plan() -> MountPlan:
    """A plan with every kind of mount: ro and rw binds, an overlay, both masks."""
    rules = ('- {action: file_read, path: ["/w/**", "/r/**", "/etc/hosts"], effect: allow}\n'
             '- {action: file_write, path: "/w/**", effect: allow}\n'
             '- {action: file_write, path: "/o/**", overlay: true, effect: allow}\n'
             '- {action: file_read, path: "/o/**", effect: allow}\n'
             '- {action: file_read, path: ["*.pem", ".ssh"], effect: deny}\n'
             '- {action: file_write, path: ".git/hooks", effect: deny}\n')
    tree = FakeTree({"/w/a b/k.pem": "file", "/w/.git/hooks/pre": "file", "/r/.ssh/id": "file",
                     "/o/x": "file", "/etc/hosts": "file",
                     "/w/we'ird\n$(touch pwned).pem": "file"})
    return plan_of(policy_text(rules), tree)


def test_the_rich_plan_holds_every_kind_of_mount() -> None:
    """The renderer tests below see binds, an overlay and both kinds of mask."""
    kinds = {(m.kind, m.readonly, m.is_dir) for m in rich_plan().mounts}
    assert {("bind", True, True), ("bind", False, True), ("bind", True, False),
            ("overlay", False, True), ("mask", True, True), ("mask", True, False)} <= kinds


def test_json_round_trips() -> None:
    """to_json() is plain JSON: dumping and loading it changes nothing."""
    plan = rich_plan()
    data = to_json(plan)
    assert json.loads(json.dumps(data)) == data
    assert [m["target"] for m in data["mounts"]] == [m.target for m in plan.mounts]
    assert data["complete"] is True and data["overlay_dir"] == OVERLAY


def test_compose_output_parses_back_to_the_plan() -> None:
    """The Compose block is YAML whose volumes are the plan's mounts, in order."""
    plan = rich_plan()
    data = yaml.safe_load(to_compose(plan))
    volumes = data["services"]["agent"]["volumes"]
    assert [v["target"] for v in volumes] == [m.target for m in plan.mounts]
    for volume, mount in zip(volumes, plan.mounts, strict=True):
        if mount.kind == "bind":
            assert volume == {"type": "bind", "source": mount.source, "target": mount.target,
                              "read_only": mount.readonly, "bind": {"create_host_path": False}}
        elif mount.kind == "overlay":
            named = data["volumes"][volume["source"]]
            assert named["driver"] == "local"
            opts = named["driver_opts"]
            assert (opts["type"], opts["device"]) == ("overlay", "overlay")
            assert opts["o"].startswith(f"lowerdir={mount.source},upperdir={mount.upper},"
                                        f"workdir={mount.work}")
            assert "noexec" in opts["o"].split(",")
        elif mount.is_dir:
            assert volume == {"type": "tmpfs", "target": mount.target, "read_only": True,
                              "tmpfs": {"size": 1}}
        else:
            assert volume["source"] == f"{OVERLAY}/empty" and volume["read_only"] is True


def test_compose_says_it_cannot_set_noexec() -> None:
    """A writable bind loses noexec in Compose: a comment and a note say so."""
    plan = rich_plan()
    text = to_compose(plan)
    assert "# Compose cannot set noexec on a bind mount" in text
    assert compose_notes(plan)
    ro_only = plan_of(policy_text('- {action: file_read, path: "/r/**", effect: allow}\n'),
                      FakeTree({"/r/a": "file"}))
    assert compose_notes(ro_only) == []


def test_comments_cannot_break_out_of_their_line() -> None:
    """A file name with a newline shows escaped in comments, and runs nowhere."""
    plan = rich_plan()
    weird = next(m.target for m in plan.mounts if "pwned" in m.target)
    compose, script = to_compose(plan), to_shell(plan)
    assert "we'ird\\x0a$(touch pwned).pem" in script  # in the mount's comment line
    assert weird in [v["target"] for v in yaml.safe_load(compose)["services"]["agent"]["volumes"]]
    assert not any(word.startswith("$(touch") for c in commands(script) for word in c)
    assert not any(line.startswith("$(touch") for line in compose.splitlines())


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_shell_script_is_valid_and_mounts_only_under_root() -> None:
    """The script passes `sh -n`, and every mount it makes targets "$ROOT" or beneath."""
    plan = rich_plan()
    script = to_shell(plan)
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    targets = []
    for command in commands(script):
        if command[0] != "mount":
            continue
        if command[1:] == ["--make-rprivate", "/"]:
            continue
        target = command[-1]
        assert target == "$ROOT" or target.startswith("$ROOT/"), command
        targets.append(target.removeprefix("$ROOT") or "/")
    for mount in plan.mounts:
        assert mount.target in targets
    assert "set -eu" in script


def commands(script: str) -> list[list[str]]:
    """The script's simple commands as words (quotes removed, $ROOT left unexpanded)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace = " \t"
    lexer.commenters = "#"
    out: list[list[str]] = [[]]
    for token in lexer:
        if token in ("\n", ";", "&&", "||", "|") or set(token) <= {";", "&", "|"}:
            out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


def test_shell_script_quotes_every_path() -> None:
    """A masked file whose name holds a quote, a newline and $(...) reaches mount as one
    word, exactly its path."""
    plan = rich_plan()
    weird = next(m.target for m in plan.mounts if "pwned" in m.target)
    mounted = [c[-1] for c in commands(to_shell(plan)) if c[0] == "mount"]
    assert "$ROOT" + weird in mounted


def test_shell_refuses_a_bad_root_variable() -> None:
    """The root variable must be a shell name."""
    with pytest.raises(ValueError, match="variable name"):
        to_shell(rich_plan(), root_var="R; rm -rf /")


# --- the command ----------------------------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    """gateway.cli.main with `mounts` registered."""
    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog="gateway")
        mounts_cli.add_commands(p.add_subparsers())
        return p
    monkeypatch.setattr(gateway.cli, "_parser", parser)
    return gateway.cli.main(argv)


@pytest.mark.parametrize("fmt", ["json", "compose", "shell"])
def test_cli_prints_the_plan_and_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """`gateway mounts` prints the plan in each format, notes on stderr, and exits 0."""
    project = make_project(tmp_path)
    code = run_cli(monkeypatch, ["mounts", "--policy", str(POLICIES / "autogen.yaml"),
                                 "--project-dir", str(project), "--format", fmt,
                                 "--overlay-dir", str(tmp_path / "ov")])
    out, err = capsys.readouterr()
    assert code == 0
    assert f"{project}/workspace" in out
    assert all(line.startswith("gateway: note: ") for line in err.splitlines())
    assert "matches at any depth" in err
    if fmt == "json":
        assert json.loads(out)["complete"] is True
    elif fmt == "compose":
        assert yaml.safe_load(out)["services"]["agent"]["volumes"]
        assert "Compose cannot set noexec" in err


def test_cli_bad_policy_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An unusable policy is exit 2 with one line naming the file."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [{action: file_read}]\n")
    code = run_cli(monkeypatch, ["mounts", "--policy", str(bad)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(bad) in err
