"""Committing an overlay workspace: `commit` decides each change as a file_write of the
path the agent saw (`target` + the relative path) and applies the allowed ones to
`lower`, one file at a time, never through a symlink (gateway.fs.safetree), and audits
each outcome."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.audit.format import record_from_decision
from gateway.engine import Decision, Request, Verdict, decide
from gateway.fs.changes import XATTRS, Change, ChangeKind, FileKind, Scan, file_kind, scan_upper
from gateway.fs.overlay import TEMP, Workspace, WorkspaceError
from gateway.fs.safetree import (
    OPEN_DIR,
    OPEN_FILE,
    CannotApply,
    Tree,
    lstat_at,
    open_dir,
    parent_of,
    parent_planned,
    paths_beneath,
)
from gateway.policy.model import Action

if TYPE_CHECKING:
    from gateway.audit.writer import AuditWriter
    from gateway.policy.compiled import CompiledPolicy


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
    scan = scan_upper(ws)
    if not dry_run:
        _make_deletions_explicit(ws, scan)
    outcomes: list[Outcome] = []
    planned: set[str] = set()  # directories a dry run would have made
    made: list[str] = []
    try:
        with Tree(ws.lower) as root:
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
            beneath = list(paths_beneath(root, change.path))
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
    with parent_planned(root, path, planned) as (parent, name):
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
        temp = TEMP + secrets.token_hex(8)
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
    with parent_of(root, old_path) as (old_dir, old_name), \
            parent_of(root, change.path) as (new_dir, new_name):
        _expect(old_dir, old_name, FileKind.FILE, old_path)
        _expect(new_dir, new_name, None, change.path)
        if dry_run:
            return
        os.rename(old_name, new_name, src_dir_fd=old_dir, dst_dir_fd=new_dir)
        fd = os.open(new_name, OPEN_FILE, dir_fd=new_dir)
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
    with parent_of(root, change.path) as (parent, name):
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
    info = lstat_at(parent, name) if parent is not None else None
    now = None if info is None else file_kind(info.st_mode)
    if now is kind or (now is None and gone_ok):
        return info
    if kind is None:
        raise CannotApply(f"{path} already exists in the real tree (as a {now})")
    shown = "is missing" if now is None else f"is a {now}"
    raise CannotApply(f"{path} {shown} in the real tree, not a {kind}")


def _write_temp(source: Path, parent: int, temp: str, owner: os.stat_result) -> None:
    """Copy `source` to a new file `temp` in `parent`, with its permission bits (never
    setuid, setgid or sticky) and, when run as root, `owner`'s owner and group."""
    src = os.open(source, OPEN_FILE)
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
    fd = os.open(name, OPEN_DIR, dir_fd=parent)
    try:
        if os.geteuid() == 0:
            owner = os.fstat(parent)
            os.fchown(fd, owner.st_uid, owner.st_gid)
        os.fchmod(fd, mode & 0o777)
    finally:
        os.close(fd)
    os.fsync(parent)


def _not_opaque(upper: Path) -> None:
    for prefix in XATTRS:
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


def _make_deletions_explicit(ws: Workspace, scan: Scan) -> None:
    """Turn each upper directory that replaces a real one into one that merges with it:
    a whiteout for every real entry it hides, and no opaque flag (deepest first, so the
    merged tree is the same at every step). Applied entries can then leave the upper
    layer without the real ones being hidden."""
    with Tree(ws.lower) as root:
        for rel in sorted(scan.replacing, key=lambda r: r.count("/") + bool(r), reverse=True):
            upper = ws.upper / rel if rel else ws.upper
            lower = open_dir(root, rel)
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

