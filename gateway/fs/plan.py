"""The mount plan: the file_read / file_write rules as mounts into an empty root.

`plan_mounts(policy, tree)` is pure given the TreeView. It lists what to mount into an
empty root, parents first; nothing else of the host is visible. Trees that may be
written are read-write binds or overlays (`overlay: true`), noexec unless a rule says
`exec: true`; trees that may only be read are read-only binds. Inside them, every
existing path the engine denies is masked (or, where only writing is denied, bound
read-only): the engine judges every path, so the plan and the engine agree on every
path that exists when the plan is made. docs/mounts.md has the details and what mounts
cannot enforce (`gateway.fs.notes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from gateway.engine import Decision, Verdict
from gateway.fs.notes import (
    FILE_ACTIONS,
    Judge,
    literal_count,
    literal_prefix,
    mount_notes,
    within,
    write_only_note,
)
from gateway.fs.tree import Budget, Kind, TreeView, join, representable, resolve, walk
from gateway.matching.paths import BadPath, PathGlob, compile_path_glob, normalise_path
from gateway.policy.compiled import CompiledPolicy, CompiledRule
from gateway.policy.model import Action, Effect

MountKind = Literal["bind", "overlay", "mask"]
DEFAULT_OVERLAY_DIR = "/var/lib/gateway/overlay"
_OVERLAY_UNSAFE = re.compile(r"[,:\\]")


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount, at `target` in the new root. `source` is a host path (None for a mask);
    `upper`/`work` are an overlay's directories; `rule` is the deciding rule (None: the
    policy's default); `is_dir` says whether the target is a directory (a mask over a
    file is an empty read-only file, over a directory an empty read-only tmpfs)."""

    kind: MountKind
    target: str
    source: str | None
    readonly: bool
    noexec: bool
    upper: str | None
    work: str | None
    rule: int | None
    why: str
    is_dir: bool = True


@dataclass(frozen=True, slots=True)
class MountPlan:
    """Mounts in the order to apply them (parents first), and what the plan could not
    do or wants said. `complete` is False when the walk stopped at its entry limit: then
    denied paths beyond it are not masked."""

    mounts: tuple[Mount, ...]
    notes: tuple[str, ...]
    overlay_dir: str = DEFAULT_OVERLAY_DIR
    complete: bool = True

    @property
    def empty_file(self) -> str:
        """The empty read-only file bound over masked files."""
        return join(self.overlay_dir, "empty")


@dataclass(frozen=True, slots=True)
class _Access:
    """What a mounted tree grants: `read` is whether the engine allows reading there
    (a mount always shows what it holds), the rest how a writable tree is mounted."""

    write: bool
    read: bool
    overlay: bool = False
    exec: bool = False

    def same_mount(self, other: _Access) -> bool:
        if self.write != other.write:
            return False
        return not self.write or (self.overlay, self.exec) == (other.overlay, other.exec)


_READ_ONLY = _Access(write=False, read=True)


def plan_mounts(policy: CompiledPolicy, tree: TreeView, *, overlay_dir: str,
                max_entries: int = 100_000, agent: str | None = None) -> MountPlan:
    """The mount plan for `policy` (as it applies to `agent`) on `tree`.

    `overlay_dir` (absolute, else ValueError) holds the overlays' upper and work
    directories and the empty file bound over masked files; where a mounted tree would
    show it, it is masked. At most `max_entries` paths are examined, all walks together.
    """
    if not overlay_dir.startswith("/"):
        raise ValueError(f"the overlay directory must be absolute: {overlay_dir!r}")
    try:
        overlay_dir = normalise_path(overlay_dir, "/")
    except BadPath as e:
        raise ValueError(f"bad overlay directory: {e}") from None
    planner = _Planner(policy, tree, overlay_dir, Budget(max_entries), agent)
    planner.collect()
    planner.mount_points()
    return planner.finish(mount_notes(policy, agent=agent))


@dataclass(slots=True)
class _Planner:
    policy: CompiledPolicy
    tree: TreeView
    overlay_dir: str
    budget: Budget
    agent: str | None
    judge: Judge = field(init=False)
    points: dict[str, list[int]] = field(default_factory=dict)  # path -> rules naming it
    visited: set[str] = field(default_factory=set)
    mounts: list[Mount] = field(default_factory=list)
    granted: dict[str, _Access | None] = field(default_factory=dict)  # by target; None: mask
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.judge = Judge(self.policy, self.agent)

    # --- points -----------------------------------------------------------------------

    def collect(self) -> None:
        """Roots of whole-tree allow patterns, then the existing matches of finer ones."""
        finer: list[tuple[CompiledRule, str, PathGlob, int]] = []
        for rule in self.policy.rules:
            if (rule.action not in FILE_ACTIONS or rule.effect is not Effect.ALLOW
                    or not rule.applies_to(self.agent)):
                continue
            for selector in rule.selectors:
                glob = compile_path_glob(selector)
                if not glob.segments:  # `**` or `/**`: every path
                    self._point("/", rule.index)
                    continue
                if not glob.anchored:
                    continue  # matches at any depth: nothing to mount (see mount_notes)
                literal = literal_count(glob)
                if literal == len(glob.segments):
                    self._point(literal_prefix(glob, literal), rule.index)
                else:
                    finer.append((rule, selector, glob, literal))
        for rule, selector, glob, literal in finer:
            self._expand(rule, selector, glob, literal)

    def _point(self, target: str, rule: int) -> None:
        """A path that gets a mount of its own if the engine allows it: a root, or an
        existing match of a pattern finer than a mount."""
        named = self.points.setdefault(target, [])
        if rule not in named:
            named.append(rule)

    def _expand(self, rule: CompiledRule, selector: str, glob: PathGlob, literal: int) -> None:
        """Bind each existing path matching a pattern finer than a mount, never its root."""
        top = literal_prefix(glob, literal)
        what = f"rule {rule.index}: {rule.action.value} of {selector!r}"
        source = self._resolve(top, what)
        if source is None or _kind(self.tree, source) != "dir":
            return
        rest = glob.segments[literal:]
        fixed = []
        for seg in rest:
            if seg.globstar:
                break
            fixed.append(re.compile(seg.regex))
        depth_limit = len(rest) if len(fixed) == len(rest) else None
        enter: set[str] = set()
        found: list[str] = []
        for entry in walk(self.tree, source, self.budget, enter.__contains__):
            target = _rebase(entry.path, source, top)
            if entry.error is not None:
                self.notes.append(f"{what}: cannot look inside {target} ({entry.error}): "
                                  "its matches there are not mounted")
                continue
            if entry.kind is None:
                continue
            if glob.match(target):
                if entry.kind == "symlink":
                    self.notes.append(f"{what}: {target} is a symbolic link: not mounted")
                else:
                    found.append(target)
                continue
            depth = target.count("/") - top.rstrip("/").count("/")
            if entry.kind == "dir" and (depth_limit is None or depth < depth_limit) and (
                    depth > len(fixed) or fixed[depth - 1].fullmatch(target.rsplit("/", 1)[1])):
                enter.add(entry.path)
        for target in found:
            self._point(target, rule.index)
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        self.notes.append(f"{what} is finer than a mount: it matched {len(found)} existing "
                          "path(s) when the plan was made, each mounted on its own"
                          + (f" ({shown})" if found else ""))

    def _resolve(self, target: str, what: str) -> str | None:
        try:
            source = resolve(self.tree, target)
        except (OSError, ValueError) as e:
            self.notes.append(f"{what}: {target} cannot be examined ({e}): not mounted")
            return None
        if source is None:
            self.notes.append(f"{what}: {target} does not exist: nothing mounted for it "
                              "(created later, it stays invisible)")
        elif not representable(source):
            self.notes.append(f"{what}: {target} leads to a path that is not valid UTF-8: "
                              "not mounted")
            return None
        return source

    # --- mounting ---------------------------------------------------------------------

    def mount_points(self) -> None:
        """Each point not reached by the walk of a tree around it, parents first."""
        for target in sorted(self.points, key=_components):
            if target in self.visited:
                continue
            self.visited.add(target)
            what = f"rule {self.points[target][0]}"
            inherited = None
            enclosing = self._enclosing(target)
            if enclosing is not None:
                around, access = enclosing
                if access is None:
                    self.notes.append(f"{what}: {target} lies inside the masked {around}: "
                                      "not mounted")
                    continue
                link = self._link_between(around, target)
                if link is not None:
                    self.notes.append(f"{what}: {target} lies beneath the symbolic link "
                                      f"{link} inside the mount at {around}: not mounted "
                                      "(the link leads where the plan decides)")
                    continue
                inherited = access
            source = self._resolve(target, what)
            if source is None:
                continue
            kind = _kind(self.tree, source)
            if kind is None or kind == "symlink":
                continue  # cannot be, after resolve, unless the tree changed meanwhile
            access = self._node(target, source, kind, inherited, point=True)
            if access is not None and kind == "dir":
                self._walk(target, source, access)

    def _walk(self, top: str, source_top: str, access: _Access) -> None:
        """Masks and read-only binds inside a mounted tree, and the points it holds."""
        held: dict[str, _Access] = {source_top: access}  # directories to enter
        for entry in walk(self.tree, source_top, self.budget, held.__contains__):
            target = _rebase(entry.path, source_top, top)
            if entry.error is not None:
                held.pop(entry.path, None)
                self._mask(target, "dir", None, f"its contents cannot be examined "
                           f"({entry.error}), so it is hidden")
                self.notes.append(f"{target} cannot be examined ({entry.error}): masked")
                continue
            if entry.kind is None:
                continue  # gone since it was listed
            parent = entry.path.rsplit("/", 1)[0] or "/"
            point = target in self.points
            if point:
                self.visited.add(target)
            granted = self._node(target, entry.path, entry.kind, held[parent], point=point,
                                 parent=parent)
            if granted is not None and entry.kind == "dir":
                held[entry.path] = granted

    def _node(self, target: str, source: str, kind: Kind, inherited: _Access | None, *,
              point: bool, parent: str | None = None) -> _Access | None:
        """Mount what this path needs; what its children inherit (None: do not enter)."""
        if kind == "symlink":
            if inherited is not None:
                self._denied_link(target, source, inherited)
            return None
        if point:
            access, why, rule = self._point_access(target, source)
            if access is None:
                if inherited is None:
                    self.notes.append(f"rule {self.points[target][0]}: {target} is itself "
                                      f"denied ({why}): not mounted")
                else:
                    self._mask(target, kind, rule, why)
                return None
            if inherited is None or not access.same_mount(inherited):
                return self._emit(target, source, kind, access, why, rule)
        else:
            assert inherited is not None
            outcome, decision = self._derive(inherited, target, source)
            if outcome == "mask":
                self._mask(target, kind, decision.rule, f"{decision.action.value} denied "
                           f"({decision.reason})")
                return None
            if outcome == "read-only":
                why = (f"file_write denied ({decision.reason}); file_read allowed")
                return self._emit(target, source, kind, _READ_ONLY, why, decision.rule)
            access = inherited
        if parent is not None and self._other_device(source, parent):
            return self._emit(target, source, kind, access, "a file system mounted inside "
                              "a mounted tree: a bind does not carry it, so it is bound on "
                              "its own, as the tree around it", None)
        return access

    def _point_access(self, target: str, source: str) -> tuple[_Access | None, str, int | None]:
        write = self.judge.check(Action.FILE_WRITE, target, source)
        read = self.judge.check(Action.FILE_READ, target, source)
        if write.verdict is Verdict.ALLOW:
            matching = self.judge.write_allows(target, source)
            naming = [r for r in matching if r.index in self.points[target]] or matching
            # Copy-on-write when any matching rule asks for it, so that a broader rule's
            # promise that the host tree stays unchanged holds; exec only when every rule
            # that names this tree (else every matching one) allows it.
            overlay = any(r.overlay for r in matching)
            exec_ = bool(naming) and all(r.exec for r in naming)
            if read.verdict is Verdict.DENY:
                self.notes.append(write_only_note(target, read))
            why = f"file_write allowed ({write.reason})"
            return _Access(True, read.verdict is Verdict.ALLOW, overlay, exec_), why, write.rule
        if read.verdict is Verdict.ALLOW:
            why = f"file_read allowed ({read.reason}); file_write denied ({write.reason})"
            return _READ_ONLY, why, read.rule
        return None, f"file_read denied ({read.reason})", read.rule

    def _derive(self, inherited: _Access, target: str, source: str) -> tuple[str, Decision]:
        """What a path inside a tree keeps of what the tree grants: "same", "read-only"
        (writing denied, reading allowed) or "mask"; and the decision that says so."""
        if inherited.write:
            write = self.judge.check(Action.FILE_WRITE, target, source)
            if write.verdict is Verdict.ALLOW:
                if inherited.read:
                    read = self.judge.check(Action.FILE_READ, target, source)
                    if read.verdict is Verdict.DENY:
                        return "mask", read
                return "same", write
            read = self.judge.check(Action.FILE_READ, target, source)
            return ("read-only", write) if read.verdict is Verdict.ALLOW else ("mask", read)
        read = self.judge.check(Action.FILE_READ, target, source)
        return ("same", read) if read.verdict is Verdict.ALLOW else ("mask", read)

    def _emit(self, target: str, source: str, kind: Kind, access: _Access, why: str,
              rule: int | None) -> _Access:
        is_dir = kind == "dir"
        if access.write and access.overlay:
            problem = None
            if not is_dir:
                problem = "an overlay needs a directory"
            elif _OVERLAY_UNSAFE.search(source + target + self.overlay_dir):
                problem = "its path holds a character overlay options cannot carry (, : or \\)"
            if problem is None:
                self._add(Mount("overlay", target, source, False, not access.exec, None, None,
                                rule, why + "; copy-on-write"), access)
                return access
            self.notes.append(f"{target} is to be an overlay, but {problem}: mounted "
                              "read-only instead")
            access = _Access(False, access.read)
            why += f"; read-only, as {problem}"
        if access.write:
            self._add(Mount("bind", target, source, False, not access.exec, None, None, rule,
                            why, is_dir), access)
        else:
            self._add(Mount("bind", target, source, True, False, None, None, rule, why,
                            is_dir), access)
        return access

    def _mask(self, target: str, kind: Kind | None, rule: int | None, why: str) -> None:
        self._add(Mount("mask", target, None, True, True, None, None, rule, why,
                        kind == "dir"), None)

    def _add(self, mount: Mount, access: _Access | None) -> None:
        self.mounts.append(mount)
        self.granted[mount.target] = access

    def _denied_link(self, target: str, source: str, inherited: _Access) -> None:
        outcome, decision = self._derive(inherited, target, source)
        if outcome != "same":
            self.notes.append(f"{target} is a symbolic link the policy denies for "
                              f"{decision.action.value} ({decision.reason}); a mount cannot "
                              "cover a link, so what it leads to is judged under its own "
                              "name, where the plan shows it")

    def _other_device(self, source: str, parent: str) -> bool:
        try:
            return self.tree.device(source) != self.tree.device(parent)
        except OSError:
            return False

    def _enclosing(self, target: str) -> tuple[str, _Access | None] | None:
        """The deepest mount strictly around `target`, and what it grants."""
        path = target
        while path != "/":
            path = path.rsplit("/", 1)[0] or "/"
            if path in self.granted:
                return path, self.granted[path]
        return None

    def _link_between(self, around: str, target: str) -> str | None:
        """A symbolic link on the way from the mount at `around` down to `target`."""
        mount = next(m for m in reversed(self.mounts) if m.target == around)
        assert mount.source is not None
        path = mount.source
        for name in _components(target)[len(_components(around)):]:
            path = join(path, name)
            if _kind(self.tree, path) == "symlink":
                return _rebase(path, mount.source, around)
        return None

    # --- finishing --------------------------------------------------------------------

    def finish(self, policy_notes: list[str]) -> MountPlan:
        ordered = sorted(self.mounts, key=lambda m: _components(m.target))
        mounts: list[Mount] = []
        overlays = 0
        for mount in ordered:
            if mount.kind == "overlay":
                base = join(self.overlay_dir, f"{overlays}-{_sanitise(mount.target)}")
                mount = replace(mount, upper=join(base, "upper"), work=join(base, "work"))
                overlays += 1
            mounts.append(mount)
        if overlays or any(m.kind == "mask" and not m.is_dir for m in mounts):
            mounts = self._hide_overlay_dir(mounts)
        notes = list(policy_notes) + self.notes
        if self.budget.exhausted:
            notes.append(f"the walk stopped at its limit of {self.budget.limit} entries: "
                         "paths beyond it that the policy denies are NOT masked, so this "
                         "plan is incomplete; raise the limit")
        return MountPlan(tuple(mounts), tuple(dict.fromkeys(notes)), self.overlay_dir,
                         not self.budget.exhausted)

    def _hide_overlay_dir(self, mounts: list[Mount]) -> list[Mount]:
        """Mask the overlay directory wherever a mounted tree would show it: it holds
        every overlay's upper layer and the empty file, which are not the agent's."""
        hidden: list[Mount] = []
        for mount in mounts:
            if mount.kind == "mask" or mount.source is None or not within(
                    self.overlay_dir, mount.source):
                continue
            target = _rebase(self.overlay_dir, mount.source, mount.target)
            if any(within(target, m.target) for m in mounts + hidden if m.kind == "mask"):
                continue  # hidden already
            hidden.append(Mount("mask", target, None, True, True, None, None, None,
                                "the overlay directory, which holds the overlays' upper "
                                "layers and the empty file: never the agent's"))
            self.notes.append(f"the overlay directory {self.overlay_dir} lies inside the "
                              f"mounted tree {mount.source}: masked at {target}")
        if not hidden:
            return mounts
        kept = [m for m in mounts if not any(
            within(m.target, h.target) and m.target != h.target for h in hidden)]
        return sorted(kept + hidden, key=lambda m: _components(m.target))


# --- paths ------------------------------------------------------------------------------


def _kind(tree: TreeView, path: str) -> Kind | None:
    """The kind of an already resolved path; None when it cannot be examined."""
    try:
        return tree.kind(path)
    except OSError:
        return None


def _components(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def _rebase(path: str, old: str, new: str) -> str:
    """`path` beneath `old`, moved to the same place beneath `new`."""
    rel = path[len(old):].lstrip("/")
    return join(new, rel) if rel else new


def _sanitise(target: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", target.strip("/")).strip("_.")
    return name[:80] or "root"
