"""Overlay workspaces: what an agent changed in an overlay's upper layer, and applying
the allowed part of it to the real tree (see docs/overlay.md).

A workspace is a directory holding `upper/` and `work/` (the overlay's upperdir and
workdir) and `gateway-overlay.json`: {"lower": the real tree, "target": where the
merged tree is mounted, "policy"?, "project_dir"?}. `changes` reads the upper layer as
overlayfs does. `commit` decides each change as a file_write of the path the agent saw
(`target` + the relative path) and applies the allowed ones to `lower`, one file at a
time, opening every directory on the way with O_NOFOLLOW relative to the one before, so
a symlink in the real tree is never followed.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.audit.format import record_from_decision
from gateway.engine import Decision, Request, Verdict, decide
from gateway.errors import GatewayError
from gateway.policy.model import Action

if TYPE_CHECKING:
    from gateway.audit.writer import AuditWriter
    from gateway.policy.compiled import CompiledPolicy

CONFIG = "gateway-overlay.json"
MAX_PATCH_BYTES = 1 << 20
_KEYS = ("lower", "target", "policy", "project_dir")
_XATTRS = ("trusted.overlay.", "user.overlay.")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP = ".gateway-commit-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class WorkspaceError(GatewayError):
    """A workspace that cannot be used: missing, malformed, or a layout review refuses."""


class CannotApply(GatewayError):
    """A change a commit refuses to apply whatever the policy says (why, on one line)."""


class ChangeKind(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"


class FileKind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    SPECIAL = "special"


@dataclass(frozen=True, slots=True)
class Workspace:
    directory: Path
    lower: str
    target: str
    policy: str | None = None
    project_dir: str | None = None

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        return self.directory / "work"

    def seen_at(self, rel: str) -> str:
        """Where the agent saw `rel`: the path a change is decided for."""
        return os.path.join(self.target, rel)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the merged tree and the real one. `path` is relative to
    the tree; `old_path` is set for renames; sizes and modes are None where they do not
    apply; `link_*` are symlink targets, as text."""

    kind: ChangeKind
    path: str
    file_kind: FileKind
    old_path: str | None = None
    size_before: int | None = None
    size_after: int | None = None
    mode_before: int | None = None
    mode_after: int | None = None
    link_before: str | None = None
    link_after: str | None = None

    def line(self) -> str:
        """The change as `gateway fs diff` shows it, control characters escaped (a name
        cannot forge a line of the review)."""
        kind, path = self.kind, shown(self.path)
        if kind is ChangeKind.RENAMED:
            return f"R {shown(self.old_path or '')} -> {path}"
        if self.file_kind is FileKind.DIR:
            return f"{kind.value[0].upper()} {path}/"
        if kind is ChangeKind.DELETED:
            return f"D {path}"
        if self.file_kind is FileKind.SYMLINK:
            was = f" (was {shown(self.link_before or '')})" \
                if kind is ChangeKind.MODIFIED else ""
            return f"{kind.value[0].upper()} {path} -> {shown(self.link_after or '')}{was}"
        if self.file_kind is FileKind.SPECIAL:
            return f"A {path} (special file)"
        if kind is ChangeKind.ADDED:
            return f"A {path} ({self.size_after} bytes)"
        mode = ""
        if self.mode_before != self.mode_after:
            mode = f", mode {self.mode_before:o} -> {self.mode_after:o}"
        return f"M {path} ({self.size_before} -> {self.size_after} bytes{mode})"


# --- workspaces -----------------------------------------------------------------------


def create_workspace(directory: str | os.PathLike[str], *, lower: str, target: str,
                     policy: str | None = None, project_dir: str | None = None) -> Workspace:
    """Make a workspace in `directory` (new or empty; mode 0700). `upper/` takes the
    mode of `lower`, as the merged tree's root shows the upper root's."""
    ws = Workspace(Path(directory), os.path.abspath(lower), os.path.abspath(target),
                   os.path.abspath(policy) if policy else None,
                   os.path.abspath(project_dir) if project_dir else None)
    try:
        info = os.stat(ws.lower)
        if not stat.S_ISDIR(info.st_mode):
            raise WorkspaceError(f"{ws.lower}: the real tree must be a directory")
        ws.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(ws.directory.iterdir()):
            raise WorkspaceError(f"{ws.directory}: not empty; a workspace needs a new or "
                                 "empty directory")
        os.chmod(ws.directory, 0o700)
        ws.upper.mkdir(mode=0o700)
        ws.work.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(ws.upper, info.st_uid, info.st_gid)
        os.chmod(ws.upper, stat.S_IMODE(info.st_mode))
        config = {k: getattr(ws, k) for k in _KEYS if getattr(ws, k) is not None}
        temp = ws.directory / (_TEMP + CONFIG)
        temp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        temp.rename(ws.directory / CONFIG)
    except OSError as e:
        raise WorkspaceError(f"{e.filename or directory}: cannot create the workspace: "
                             f"{e.strerror or e}") from None
    return ws


def read_workspace(directory: str | os.PathLike[str]) -> Workspace:
    """The workspace in `directory`; WorkspaceError naming what is wrong."""
    where = Path(directory)
    path = where / CONFIG
    try:
        with open(path, "rb") as f:
            raw = f.read(65537)
    except FileNotFoundError:
        raise WorkspaceError(f"{where}: not an overlay workspace (no {CONFIG})") from None
    except OSError as e:
        raise WorkspaceError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(raw) if len(raw) <= 65536 else None
    except (ValueError, RecursionError):
        raise WorkspaceError(f"{path}: not JSON") from None
    if not isinstance(data, dict):
        raise WorkspaceError(f"{path}: must be a JSON object of at most 64 KiB")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise WorkspaceError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    for key in _KEYS:
        value = data.get(key)
        if (value is None and key in ("lower", "target")) or (
                value is not None and not (isinstance(value, str) and os.path.isabs(value))):
            raise WorkspaceError(f"{path}: {key!r} must be an absolute path")
    ws = Workspace(where, data["lower"], data["target"], data.get("policy"),
                   data.get("project_dir"))
    for name, ours in ((ws.upper, True), (ws.work, True), (Path(ws.lower), False)):
        try:  # the workspace's own directories are never reached through a symlink
            mode = (os.lstat(name) if ours else os.stat(name)).st_mode
        except OSError as e:
            raise WorkspaceError(f"{name}: {e.strerror or e}") from None
        if not stat.S_ISDIR(mode):
            raise WorkspaceError(f"{name}: not a directory")
    return ws


# --- reading the upper layer ----------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    ws: Workspace
    changes: list[Change] = field(default_factory=list)
    # Upper directories that replace a real lower directory (opaque, or under one).
    replacing: list[str] = field(default_factory=list)


def changes(workspace: Workspace) -> list[Change]:
    """What the agent changed, parents before children, deletions before additions."""
    return _scan(workspace).changes


def _scan(ws: Workspace) -> _Scan:
    scan = _Scan(ws)
    with _Tree(ws.lower) as root:
        _walk(scan, "", root, opaque=_opaque(ws.upper))
    _pair_renames(scan)
    scan.changes.sort(key=_order)
    return scan


def _walk(scan: _Scan, rel: str, lower: int | None, *, opaque: bool) -> None:
    """Compare upper directory `rel` with the real directory open at `lower` (None: it
    has none to merge with). With `opaque`, lower entries missing from upper are gone."""
    upper = scan.ws.upper / rel if rel else scan.ws.upper
    names = sorted(os.listdir(upper))
    if lower is not None and opaque:
        scan.replacing.append(rel)
        for name in sorted(set(os.listdir(lower)) - set(names)):
            low = _lstat(lower, name)
            if low is not None:
                _deleted(scan, _join(rel, name), lower, name, low)
    for name in names:
        path, up = _join(rel, name), upper / name
        info = os.lstat(up)
        low = _lstat(lower, name) if lower is not None else None
        mode = info.st_mode
        if stat.S_ISCHR(mode) and info.st_rdev == 0:  # a whiteout
            if low is not None:
                _deleted(scan, path, lower, name, low)
            continue
        if stat.S_ISDIR(mode):
            if _xattr(up, "redirect") is not None:
                raise WorkspaceError(f"{up}: a redirected directory (overlayfs redirect_dir); "
                                     "review needs the overlay mounted with redirect_dir=off")
            replaces = opaque or _opaque(up)
            if low is not None and stat.S_ISDIR(low.st_mode):
                sub = os.open(name, _DIR, dir_fd=lower)
                try:
                    _walk(scan, path, sub, opaque=replaces)
                finally:
                    os.close(sub)
                continue
            if low is not None and replaces:
                _deleted(scan, path, lower, name, low)
            scan.changes.append(Change(ChangeKind.ADDED, path, FileKind.DIR,
                                       mode_after=stat.S_IMODE(mode)))
            _walk(scan, path, None, opaque=False)
            continue
        if stat.S_ISREG(mode) and _xattr(up, "metacopy") is not None:
            raise WorkspaceError(f"{up}: a metadata-only copy-up (overlayfs metacopy); "
                                 "review needs the overlay mounted with metacopy=off")
        kind = _file_kind(mode)
        if low is not None and _file_kind(low.st_mode) is kind and kind is not FileKind.SPECIAL:
            change = _modified(path, up, info, lower, name, low)
            if change is not None:
                scan.changes.append(change)
            continue
        if low is not None:
            _deleted(scan, path, lower, name, low)
        scan.changes.append(Change(
            ChangeKind.ADDED, path, kind,
            size_after=info.st_size if kind is FileKind.FILE else None,
            mode_after=stat.S_IMODE(mode) if kind is FileKind.FILE else None,
            link_after=os.readlink(up) if kind is FileKind.SYMLINK else None))


def _modified(path: str, up: Path, info: os.stat_result, lower: int | None, name: str,
              low: os.stat_result) -> Change | None:
    if stat.S_ISLNK(info.st_mode):
        before, after = os.readlink(name, dir_fd=lower), os.readlink(up)
        if before == after:
            return None
        return Change(ChangeKind.MODIFIED, path, FileKind.SYMLINK, link_before=before,
                      link_after=after)
    old, new = stat.S_IMODE(low.st_mode), stat.S_IMODE(info.st_mode)
    if old == new and low.st_size == info.st_size and _same_bytes(up, lower, name):
        return None  # copied up by a metadata-only operation
    return Change(ChangeKind.MODIFIED, path, FileKind.FILE, size_before=low.st_size,
                  size_after=info.st_size, mode_before=old, mode_after=new)


def _deleted(scan: _Scan, path: str, lower: int | None, name: str,
             low: os.stat_result) -> None:
    kind = _file_kind(low.st_mode)
    scan.changes.append(Change(
        ChangeKind.DELETED, path, kind,
        size_before=low.st_size if kind is FileKind.FILE else None,
        mode_before=stat.S_IMODE(low.st_mode) if kind is FileKind.FILE else None,
        link_before=os.readlink(name, dir_fd=lower) if kind is FileKind.SYMLINK else None))


def _pair_renames(scan: _Scan) -> None:
    """A deleted file whose bytes an added file holds is one rename (empty files and
    paths that are also added, a type change, are left alone)."""
    added = [c for c in scan.changes if c.kind is ChangeKind.ADDED
             and c.file_kind is FileKind.FILE and c.size_after]
    taken = {c.path for c in scan.changes if c.kind is ChangeKind.ADDED}
    deleted = [c for c in scan.changes if c.kind is ChangeKind.DELETED
               and c.file_kind is FileKind.FILE and c.size_before and c.path not in taken]
    if not added or not deleted:
        return
    with _Tree(scan.ws.lower) as root:
        digests: dict[tuple[bool, str], str] = {}

        def digest(upper: bool, path: str) -> str:
            if (upper, path) not in digests:
                fd = os.open(scan.ws.upper / path, _FILE) if upper else _open_lower(root, path)
                digests[upper, path] = _sha256(fd)
            return digests[upper, path]

        for gone in sorted(deleted, key=lambda c: c.path):
            matches = [c for c in added if c.size_after == gone.size_before
                       and digest(True, c.path) == digest(False, gone.path)]
            if not matches:
                continue
            base = os.path.basename(gone.path)
            new = min(matches, key=lambda c: (os.path.basename(c.path) != base, c.path))
            added.remove(new)
            scan.changes.remove(gone)
            scan.changes[scan.changes.index(new)] = Change(
                ChangeKind.RENAMED, new.path, FileKind.FILE, old_path=gone.path,
                size_before=gone.size_before, size_after=new.size_after,
                mode_before=gone.mode_before, mode_after=new.mode_after)


def _order(change: Change) -> tuple[tuple[str, ...], bool]:
    return tuple(change.path.split("/")), change.kind is not ChangeKind.DELETED


# --- diff -----------------------------------------------------------------------------


def diff(workspace: Workspace, patch: bool = False) -> str:
    """One line per change; with `patch`, a unified diff under each file's line."""
    out: list[str] = []
    with _Tree(workspace.lower) as root:
        for change in changes(workspace):
            out.append(change.line())
            if patch and change.file_kind is FileKind.FILE \
                    and change.kind is not ChangeKind.RENAMED:
                out.extend(_patch(workspace, root, change))
    return "".join(line + "\n" for line in out)


def _patch(ws: Workspace, root: int, change: Change) -> list[str]:
    before = after = b""
    if change.kind is not ChangeKind.ADDED:
        before = _read(_open_lower(root, change.path))
    if change.kind is not ChangeKind.DELETED:
        after = _read(os.open(ws.upper / change.path, _FILE))
    try:
        if max(len(before), len(after)) > MAX_PATCH_BYTES or b"\x00" in before + after:
            raise UnicodeError
        old, new = before.decode("utf-8"), after.decode("utf-8")
    except UnicodeError:
        return ["Binary files differ"]
    lines = []
    for line in difflib.unified_diff(
            _lines(old), _lines(new),
            "/dev/null" if change.kind is ChangeKind.ADDED else f"a/{shown(change.path)}",
            "/dev/null" if change.kind is ChangeKind.DELETED else f"b/{shown(change.path)}"):
        lines.append(line.rstrip("\n") if line.endswith("\n") else
                     line + "\n\\ No newline at end of file")
    return lines


# --- commit ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a commit did with one change: applied or refused, why, and the decisions
    that decided it (two for a rename)."""

    change: Change
    applied: bool
    reason: str
    decisions: tuple[Decision, ...]


@dataclass(frozen=True, slots=True)
class CommitReport:
    outcomes: tuple[Outcome, ...]
    dry_run: bool

    @property
    def applied(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.applied]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.applied]


def commit(workspace: Workspace, policy: CompiledPolicy, *, dry_run: bool = False,
           writer: AuditWriter | None = None, agent: str | None = None) -> CommitReport:
    """Apply to the real tree the changes file_write allows; leave the rest in the upper
    layer. Each outcome is recorded in `writer` (when given), durably, before the next
    change is considered. `dry_run` decides and checks, and changes and records nothing."""
    ws = workspace
    if not dry_run:
        _refuse_mounted(ws)
    scan = _scan(ws)
    if not dry_run:
        _make_deletions_explicit(ws, scan)
    outcomes: list[Outcome] = []
    planned: set[str] = set()  # directories a dry run would have made
    made: list[str] = []
    try:
        with _Tree(ws.lower) as root:
            for change in scan.changes:
                outcome = _settle(ws, policy, root, change, agent, dry_run, planned)
                outcomes.append(outcome)
                if outcome.applied and change.file_kind is FileKind.DIR \
                        and change.kind is ChangeKind.ADDED:
                    if dry_run:
                        planned.add(change.path)
                    else:
                        made.append(change.path)
                if writer is not None and not dry_run:
                    _record(writer, outcome)
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                (ws.upper / path).rmdir()  # kept while something refused is left in it
    return CommitReport(tuple(outcomes), dry_run)


def _settle(ws: Workspace, policy: CompiledPolicy, root: int, change: Change,
            agent: str | None, dry_run: bool, planned: set[str]) -> Outcome:
    """Decide one change and, when nothing blocks it, apply it (or check, in a dry run)."""
    paths = [change.path] if change.old_path is None else [change.old_path, change.path]
    decisions = [_decide(ws, policy, p, agent) for p in paths]
    if change.kind is ChangeKind.DELETED and change.file_kind is FileKind.DIR:
        try:
            beneath = list(_beneath(root, change.path))
        except (CannotApply, OSError) as e:
            why = str(e) if isinstance(e, CannotApply) else e.strerror or str(e)
            return Outcome(change, False, f"{change.path}: cannot list it: {why}",
                           tuple(decisions))
        decisions += [_decide(ws, policy, p, agent) for p in beneath]
    denied = [d for d in decisions if d.verdict is Verdict.DENY]
    blocking = next((d for d in denied if d.blocks), None)
    if blocking is not None:
        return Outcome(change, False, blocking.reason, (blocking,))
    deciding = tuple(decisions[:len(paths)]) if not denied or len(paths) > 1 \
        else (denied[0],)
    try:
        _apply(ws, root, change, dry_run, planned)
    except CannotApply as e:
        return Outcome(change, False, str(e), deciding)
    except OSError as e:
        return Outcome(change, False, f"{change.path}: {e.strerror or e}", deciding)
    reason = "; ".join(dict.fromkeys(
        ("would deny (simulate): " if d.verdict is Verdict.DENY else "") + d.reason
        for d in deciding))
    return Outcome(change, True, reason, deciding)


def _decide(ws: Workspace, policy: CompiledPolicy, rel: str, agent: str | None) -> Decision:
    return decide(policy, Request(Action.FILE_WRITE, ws.seen_at(rel), agent=agent))


def _record(writer: AuditWriter, outcome: Outcome) -> None:
    details: dict[str, object] = {"event": "commit", "change": outcome.change.kind.value,
                                  "applied": outcome.applied}
    if not outcome.applied and not any(d.blocks for d in outcome.decisions):
        details["error"] = outcome.reason
    for decision in outcome.decisions:
        writer.append(record_from_decision(decision, source="fs", details=details))


def _apply(ws: Workspace, root: int, change: Change, dry_run: bool, planned: set[str]) -> None:
    """Check that the real tree still holds what the change was reviewed against, then
    (unless `dry_run`) apply it and take it out of the upper layer. CannotApply says why
    it cannot be applied."""
    path, kind = change.path, change.file_kind
    if change.kind is ChangeKind.RENAMED:
        _rename(ws, root, change, dry_run)
        return
    if change.kind is ChangeKind.DELETED:
        _delete(ws, root, change, dry_run)
        return
    if kind is FileKind.SPECIAL:
        raise CannotApply(f"{path}: special files are not applied")
    with _parent_planned(root, path, planned) as (parent, name):
        existing = _expect(parent, name, kind if change.kind is ChangeKind.MODIFIED else None,
                           path)
        if dry_run or parent is None:
            return
        source = ws.upper / path
        if kind is FileKind.DIR:
            _make_dir(parent, name, change.mode_after or 0o755)
            _not_opaque(source)  # the real directory is new: there is nothing to hide
            return
        owner = existing or os.fstat(parent)
        temp = _TEMP + secrets.token_hex(8)
        if kind is FileKind.SYMLINK:
            os.symlink(os.readlink(source), temp, dir_fd=parent)
            if os.geteuid() == 0:
                os.chown(temp, owner.st_uid, owner.st_gid, dir_fd=parent,
                         follow_symlinks=False)
        else:
            _write_temp(source, parent, temp, owner)
        try:
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
        os.fsync(parent)
    _forget(source)


def _rename(ws: Workspace, root: int, change: Change, dry_run: bool) -> None:
    """Move the real file (the bytes are the same) and give it the new mode."""
    old_path = change.old_path or ""
    with _parent_of(root, old_path) as (old_dir, old_name), \
            _parent_of(root, change.path) as (new_dir, new_name):
        _expect(old_dir, old_name, FileKind.FILE, old_path)
        _expect(new_dir, new_name, None, change.path)
        if dry_run:
            return
        os.rename(old_name, new_name, src_dir_fd=old_dir, dst_dir_fd=new_dir)
        fd = os.open(new_name, _FILE, dir_fd=new_dir)
        try:
            os.fchmod(fd, (change.mode_after or 0o644) & 0o777)
        finally:
            os.close(fd)
        os.fsync(old_dir)
        os.fsync(new_dir)
    _forget(ws.upper / change.path)
    _forget_whiteout(ws.upper / old_path)


def _delete(ws: Workspace, root: int, change: Change, dry_run: bool) -> None:
    """Remove the real entry (a directory with all it holds, never through a symlink)."""
    with _parent_of(root, change.path) as (parent, name):
        if _expect(parent, name, change.file_kind, change.path, gone_ok=True) is not None \
                and not dry_run:
            if change.file_kind is FileKind.DIR:
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
            os.fsync(parent)
    if not dry_run:
        _forget_whiteout(ws.upper / change.path)


def _expect(parent: int | None, name: str, kind: FileKind | None, path: str, *,
            gone_ok: bool = False) -> os.stat_result | None:
    """The real entry, which must be of `kind`; None: it must not exist (`gone_ok`: it
    may be gone). A `parent` of None is a directory a dry run would have made."""
    info = _lstat(parent, name) if parent is not None else None
    now = None if info is None else _file_kind(info.st_mode)
    if now is kind or (now is None and gone_ok):
        return info
    if kind is None:
        raise CannotApply(f"{path} already exists in the real tree (as a {now})")
    shown = "is missing" if now is None else f"is a {now}"
    raise CannotApply(f"{path} {shown} in the real tree, not a {kind}")


def _write_temp(source: Path, parent: int, temp: str, owner: os.stat_result) -> None:
    """Copy `source` to a new file `temp` in `parent`, with its permission bits (never
    setuid, setgid or sticky) and, when run as root, `owner`'s owner and group."""
    src = os.open(source, _FILE)
    try:
        mode = stat.S_IMODE(os.fstat(src).st_mode) & 0o777
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600, dir_fd=parent)
        try:
            with open(src, "rb", closefd=False) as reader, \
                    open(out, "wb", closefd=False) as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
            if os.geteuid() == 0:
                os.fchown(out, owner.st_uid, owner.st_gid)
            os.fchmod(out, mode)
            os.fsync(out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
        finally:
            os.close(out)
    finally:
        os.close(src)


def _make_dir(parent: int, name: str, mode: int) -> None:
    os.mkdir(name, 0o700, dir_fd=parent)
    fd = os.open(name, _DIR, dir_fd=parent)
    try:
        if os.geteuid() == 0:
            owner = os.fstat(parent)
            os.fchown(fd, owner.st_uid, owner.st_gid)
        os.fchmod(fd, mode & 0o777)
    finally:
        os.close(fd)
    os.fsync(parent)


def _not_opaque(upper: Path) -> None:
    for prefix in _XATTRS:
        with contextlib.suppress(OSError):
            os.removexattr(upper, prefix + "opaque", follow_symlinks=False)


def _forget(upper: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(upper)


def _forget_whiteout(upper: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        info = os.lstat(upper)
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
            os.unlink(upper)


def _make_deletions_explicit(ws: Workspace, scan: _Scan) -> None:
    """Turn each upper directory that replaces a real one into one that merges with it:
    a whiteout for every real entry it hides, and no opaque flag (deepest first, so the
    merged tree is the same at every step). Applied entries can then leave the upper
    layer without the real ones being hidden."""
    with _Tree(ws.lower) as root:
        for rel in sorted(scan.replacing, key=lambda r: r.count("/") + bool(r), reverse=True):
            upper = ws.upper / rel if rel else ws.upper
            lower = _open_dir(root, rel)
            try:
                hidden = set(os.listdir(lower)) - set(os.listdir(upper))
            finally:
                os.close(lower)
            try:
                for name in sorted(hidden):
                    os.mknod(upper / name, stat.S_IFCHR, os.makedev(0, 0))
            except OSError as e:
                raise WorkspaceError(f"{upper / name}: cannot write a whiteout: "
                                     f"{e.strerror or e}") from None
            _not_opaque(upper)


def _refuse_mounted(ws: Workspace) -> None:
    """WorkspaceError when this namespace has the overlay mounted: its upper layer must
    not change under a mounted overlay."""
    upper = {str(ws.upper), os.path.realpath(ws.upper)}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return
    for line in lines:
        fields = line.split(" - ", 1)[-1].split()
        if len(fields) < 3 or fields[0] != "overlay":
            continue
        options = [_unescape(o) for o in fields[2].split(",")]
        if any(o.startswith("upperdir=") and o[9:] in upper for o in options):
            raise WorkspaceError(f"{ws.directory}: the overlay is still mounted at "
                                 f"{_unescape(line.split()[4])}; unmount it first")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


# --- the real tree, without following symlinks ----------------------------------------


def open_parent(root: int, rel: str) -> tuple[int, str]:
    """A new fd of the real directory holding `rel` (relative to the tree open at
    `root`) and its last name. Each directory is opened with O_NOFOLLOW relative to the
    one before; CannotApply for an absolute path, an empty, `.` or `..` component, and a
    component that is a symlink, not a directory, or missing."""
    parts = _parts(rel)
    fd = os.dup(root)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                following = os.open(part, _DIR, dir_fd=fd)
            except OSError as e:
                where = "/".join(parts[:i + 1])
                if e.errno == errno.ENOENT:
                    raise CannotApply(f"{where} is missing in the real tree") from None
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise CannotApply(f"{where} is a symlink in the real tree; a commit "
                                         "never follows one") from None
                    raise CannotApply(f"{where} is not a directory in the real tree") from None
                raise
            os.close(fd)
            fd = following
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _parts(rel: str) -> list[str]:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\x00" in rel or \
            any(p in ("", ".", "..") for p in parts):
        raise CannotApply(f"{rel!r} is not a plain relative path inside the tree")
    return parts


class _Tree:
    """The real tree's root, open as a directory for the duration of a `with`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> int:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise WorkspaceError(f"{self.path}: {e.strerror or e}") from None
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def _parent_of(root: int, rel: str) -> Iterator[tuple[int, str]]:
    """`open_parent` for a `with`."""
    fd, name = open_parent(root, rel)
    try:
        yield fd, name
    finally:
        os.close(fd)


@contextlib.contextmanager
def _parent_planned(root: int, rel: str, planned: set[str]) -> Iterator[tuple[int | None, str]]:
    """`_parent_of`, where the fd is None when the parent is missing because only a dry
    run made it (a directory in `planned`)."""
    parent, _, name = rel.rpartition("/")
    if parent in planned:
        _parts(rel)
        yield None, name
        return
    with _parent_of(root, rel) as opened:
        yield opened


def _open_dir(root: int, rel: str) -> int:
    """A new fd of the real directory `rel` ("" is the root), never through a symlink."""
    if not rel:
        return os.dup(root)
    parent, name = open_parent(root, rel)
    try:
        return os.open(name, _DIR, dir_fd=parent)
    finally:
        os.close(parent)


def _beneath(root: int, rel: str) -> Iterator[str]:
    """Every path under the real directory `rel`, never through a symlink."""
    yield from _entries(_open_dir(root, rel), rel)


def _entries(fd: int, rel: str) -> Iterator[str]:
    try:
        with os.scandir(fd) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        for name, is_dir in entries:
            yield _join(rel, name)
            if is_dir:
                yield from _entries(os.open(name, _DIR, dir_fd=fd), _join(rel, name))
    finally:
        os.close(fd)


def _open_lower(root: int, rel: str) -> int:
    parent, name = open_parent(root, rel)
    try:
        return os.open(name, _FILE, dir_fd=parent)
    finally:
        os.close(parent)


# --- small helpers --------------------------------------------------------------------


def shown(text: str) -> str:
    """`text` for one line of output: control characters as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _lines(text: str) -> list[str]:
    """Lines with their "\n"; unlike str.splitlines, nothing else ends a line."""
    pieces = text.split("\n")
    return [p + "\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _lstat(parent: int | None, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _file_kind(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return FileKind.FILE
    if stat.S_ISDIR(mode):
        return FileKind.DIR
    if stat.S_ISLNK(mode):
        return FileKind.SYMLINK
    return FileKind.SPECIAL


def _xattr(path: Path, name: str) -> bytes | None:
    for prefix in _XATTRS:
        try:
            return os.getxattr(path, prefix + name, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return None


def _opaque(path: Path) -> bool:
    return _xattr(path, "opaque") == b"y"


def _same_bytes(upper: Path, lower: int | None, name: str) -> bool:
    with open(upper, "rb") as a, open(os.open(name, _FILE, dir_fd=lower), "rb") as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _sha256(fd: int) -> str:
    with open(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read(fd: int) -> bytes:
    with open(fd, "rb") as f:
        return f.read(MAX_PATCH_BYTES + 1)
