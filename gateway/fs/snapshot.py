"""What a rescan compares: a watched tree as last seen (inode, type, size and mtime per
path), a fresh scan of it, and the differences between the two.

Nothing here follows symbolic links. A path that cannot be examined is left out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, MutableSet
from typing import NamedTuple


class Seen(NamedTuple):
    """A path as last seen. `recorded`: the log holds this inode's arrival there (not
    so for what was there at start). A whiteout is overlayfs's mark of a deletion."""

    ino: int
    mode: int
    size: int
    mtime_ns: int
    whiteout: bool
    recorded: bool

    def same(self, other: Seen) -> bool:
        return self[:5] == other[:5]


GONE = Seen(-1, 0, 0, 0, False, True)  # created, and gone before it could be seen


def seen_from(st: os.stat_result, recorded: bool) -> Seen:
    mode = st.st_mode
    if stat.S_ISDIR(mode):  # its size and mtime change with its children: not a write
        return Seen(st.st_ino, mode, 0, 0, False, recorded)
    whiteout = stat.S_ISCHR(mode) and st.st_rdev == 0
    return Seen(st.st_ino, mode, st.st_size, st.st_mtime_ns, whiteout, recorded)


def lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def scan_tree(top: str) -> dict[str, Seen]:
    """`top` and everything beneath it, parents before children."""
    st = lstat(top)
    if st is None:
        return {}
    found = {top: seen_from(st, False)}
    stack = [top]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                found[entry.path] = seen_from(st, False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return found


class Tree:
    """One watched tree as last seen, by directory: a directory's subtree is found
    without looking at the rest."""

    def __init__(self, seen: Mapping[str, Seen] | None = None) -> None:
        self._dirs: dict[str, dict[str, Seen]] = {}
        for path, entry in (seen or {}).items():
            self.set(path, entry)

    def get(self, path: str) -> Seen | None:
        parent, name = os.path.split(path)
        entries = self._dirs.get(parent)
        return entries.get(name) if entries else None

    def set(self, path: str, seen: Seen) -> None:
        parent, name = os.path.split(path)
        self._dirs.setdefault(parent, {})[name] = seen

    def pop(self, path: str) -> list[tuple[str, Seen]]:
        """Forget `path` and everything beneath it; what was forgotten, parents first."""
        parent, name = os.path.split(path)
        entries = self._dirs.get(parent)
        seen = entries.pop(name, None) if entries else None
        removed = [(path, seen)] if seen is not None else []
        stack = [path]
        while stack:
            directory = stack.pop()
            for child, entry in self._dirs.pop(directory, {}).items():
                child_path = os.path.join(directory, child)
                removed.append((child_path, entry))
                stack.append(child_path)
        return removed

    def items(self) -> Iterator[tuple[str, Seen]]:
        for parent, entries in self._dirs.items():
            for name, seen in entries.items():
                yield os.path.join(parent, name), seen

    def diff(self, scan: Mapping[str, Seen],
             gone: MutableSet[str]) -> list[tuple[str, str]]:
        """What changed between the tree as recorded and `scan`, as (kind, path); the
        tree becomes it. A path found deleted is added to `gone`, one found (again)
        leaves it."""
        changes: list[tuple[str, str]] = []
        for path, seen in scan.items():
            old = self.get(path)
            if old is None or old.ino != seen.ino or \
                    stat.S_IFMT(old.mode) != stat.S_IFMT(seen.mode):
                self.set(path, seen._replace(recorded=True))
                gone.discard(path)
                changes.append(("deleted" if seen.whiteout else "created", path))
            elif not old.same(seen):
                self.set(path, seen._replace(recorded=old.recorded))
                changes.append(("modified", path))
        for path in sorted((p for p, _ in self.items() if p not in scan), reverse=True):
            removed = self.pop(path)  # children went first: only the path itself is left
            if removed and not removed[0][1].whiteout:
                gone.add(path)
                changes.append(("deleted", path))
        return changes


__all__ = ["GONE", "Seen", "Tree", "lstat", "scan_tree", "seen_from"]
