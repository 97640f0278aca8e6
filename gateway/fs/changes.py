"""What an agent changed in an overlay's upper layer, read as overlayfs does: `changes`
lists it, `diff` shows it for review."""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from gateway.fs.overlay import Workspace, WorkspaceError
from gateway.fs.safetree import OPEN_DIR, OPEN_FILE, Tree, join_rel, lstat_at, open_lower

MAX_PATCH_BYTES = 1 << 20
XATTRS = ("trusted.overlay.", "user.overlay.")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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


# --- reading the upper layer ----------------------------------------------------------


@dataclass(slots=True)
class Scan:
    """What `scan_upper` found in a workspace."""

    ws: Workspace
    changes: list[Change] = field(default_factory=list)
    # Upper directories that replace a real lower directory (opaque, or under one).
    replacing: list[str] = field(default_factory=list)


def changes(workspace: Workspace) -> list[Change]:
    """What the agent changed, parents before children, deletions before additions."""
    return scan_upper(workspace).changes


def scan_upper(ws: Workspace) -> Scan:
    """The upper layer read against the real tree: its changes, in the order `changes`
    gives them, and the upper directories that replace real ones."""
    scan = Scan(ws)
    with Tree(ws.lower) as root:
        _walk(scan, "", root, opaque=_opaque(ws.upper))
    _pair_renames(scan)
    scan.changes.sort(key=_order)
    return scan


def _walk(scan: Scan, rel: str, lower: int | None, *, opaque: bool) -> None:
    """Compare upper directory `rel` with the real directory open at `lower` (None: it
    has none to merge with). With `opaque`, lower entries missing from upper are gone."""
    upper = scan.ws.upper / rel if rel else scan.ws.upper
    names = sorted(os.listdir(upper))
    if lower is not None and opaque:
        scan.replacing.append(rel)
        for name in sorted(set(os.listdir(lower)) - set(names)):
            low = lstat_at(lower, name)
            if low is not None:
                _deleted(scan, join_rel(rel, name), lower, name, low)
    for name in names:
        path, up = join_rel(rel, name), upper / name
        info = os.lstat(up)
        low = lstat_at(lower, name) if lower is not None else None
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
                sub = os.open(name, OPEN_DIR, dir_fd=lower)
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
        kind = file_kind(mode)
        if low is not None and file_kind(low.st_mode) is kind and kind is not FileKind.SPECIAL:
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


def _deleted(scan: Scan, path: str, lower: int | None, name: str,
             low: os.stat_result) -> None:
    kind = file_kind(low.st_mode)
    scan.changes.append(Change(
        ChangeKind.DELETED, path, kind,
        size_before=low.st_size if kind is FileKind.FILE else None,
        mode_before=stat.S_IMODE(low.st_mode) if kind is FileKind.FILE else None,
        link_before=os.readlink(name, dir_fd=lower) if kind is FileKind.SYMLINK else None))


def _pair_renames(scan: Scan) -> None:
    """A deleted file whose bytes an added file holds is one rename (empty files and
    paths that are also added, a type change, are left alone)."""
    added = [c for c in scan.changes if c.kind is ChangeKind.ADDED
             and c.file_kind is FileKind.FILE and c.size_after]
    taken = {c.path for c in scan.changes if c.kind is ChangeKind.ADDED}
    deleted = [c for c in scan.changes if c.kind is ChangeKind.DELETED
               and c.file_kind is FileKind.FILE and c.size_before and c.path not in taken]
    if not added or not deleted:
        return
    with Tree(scan.ws.lower) as root:
        digests: dict[tuple[bool, str], str] = {}

        def digest(upper: bool, path: str) -> str:
            if (upper, path) not in digests:
                fd = os.open(scan.ws.upper / path, OPEN_FILE) if upper else open_lower(root, path)
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
    with Tree(workspace.lower) as root:
        for change in changes(workspace):
            out.append(change.line())
            if patch and change.file_kind is FileKind.FILE \
                    and change.kind is not ChangeKind.RENAMED:
                out.extend(_patch(workspace, root, change))
    return "".join(line + "\n" for line in out)


def _patch(ws: Workspace, root: int, change: Change) -> list[str]:
    before = after = b""
    if change.kind is not ChangeKind.ADDED:
        before = _read(open_lower(root, change.path))
    if change.kind is not ChangeKind.DELETED:
        after = _read(os.open(ws.upper / change.path, OPEN_FILE))
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


# --- small helpers --------------------------------------------------------------------


def shown(text: str) -> str:
    """`text` for one line of output: control characters as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _lines(text: str) -> list[str]:
    """Lines with their "\n"; unlike str.splitlines, nothing else ends a line."""
    pieces = text.split("\n")
    return [p + "\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def file_kind(mode: int) -> FileKind:
    """The kind of an entry with `st_mode` `mode`."""
    if stat.S_ISREG(mode):
        return FileKind.FILE
    if stat.S_ISDIR(mode):
        return FileKind.DIR
    if stat.S_ISLNK(mode):
        return FileKind.SYMLINK
    return FileKind.SPECIAL


def _xattr(path: Path, name: str) -> bytes | None:
    for prefix in XATTRS:
        try:
            return os.getxattr(path, prefix + name, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return None


def _opaque(path: Path) -> bool:
    return _xattr(path, "opaque") == b"y"


def _same_bytes(upper: Path, lower: int | None, name: str) -> bool:
    with open(upper, "rb") as a, open(os.open(name, OPEN_FILE, dir_fd=lower), "rb") as b:
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
