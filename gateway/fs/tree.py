"""How the mount plan looks at the host: a `TreeView`, a real one, and a bounded walk.

A TreeView never follows symbolic links: `kind` reports a link as "symlink" and
`children` lists a directory's own entries. The plan is pure given a TreeView, so tests
hand it a fake tree; `LocalTree` is the real filesystem (os.lstat, os.scandir).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["dir", "file", "symlink", "other"]
"""What a path is: "other" is a device, socket or FIFO."""

MAX_SYMLINKS = 40


class TreeView(Protocol):
    """Read-only questions about the host's tree. Paths are absolute and normalised.

    `kind` is None for a path that does not exist; `children` lists the names in a
    directory (no order promised) and raises OSError when it cannot; `readlink` is a
    symbolic link's text; `device` tells file systems apart, so the plan sees where a
    file system is mounted inside a tree (a bind mount does not carry it along).
    """

    def kind(self, path: str) -> Kind | None: ...

    def children(self, path: str) -> list[str]: ...

    def readlink(self, path: str) -> str: ...

    def device(self, path: str) -> int: ...


class LocalTree:
    """The local filesystem. `kind` is None when the path or a parent is missing; other
    lstat failures raise OSError, which the plan treats as a path it cannot judge."""

    def kind(self, path: str) -> Kind | None:
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISREG(mode):
            return "file"
        return "other"

    def children(self, path: str) -> list[str]:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            with os.scandir(fd) as entries:
                return [entry.name for entry in entries]
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def device(self, path: str) -> int:
        return os.lstat(path).st_dev


class Budget:
    """How many entries the walks of one plan may still look at, all walks together."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the entry limit must not be negative")
        self.limit = limit
        self.used = 0
        self.exhausted = False

    def take(self, count: int) -> bool:
        """Spend `count` entries; False (and exhausted from then on) when too few remain."""
        if self.exhausted or self.used + count > self.limit:
            self.exhausted = True
            return False
        self.used += count
        return True


@dataclass(frozen=True, slots=True)
class Entry:
    """One path met by `walk`. `error` is set, after the directory's own entry, when
    the directory's contents cannot be examined (its children are then not walked)."""

    path: str
    kind: Kind | None
    error: str | None = None


def join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else f"{parent}/{name}"


def walk(tree: TreeView, top: str, budget: Budget, enter: Callable[[str], bool]) -> Iterator[Entry]:
    """The entries beneath directory `top` (not `top` itself), depth first, names sorted,
    never following symbolic links. Each directory's entry is yielded before its
    children, which are walked only when `enter(path)` is then true (so the caller
    decides, having seen the entry). Every child costs one from `budget`; when a
    directory's children do not fit, the walk stops (budget.exhausted tells).

    A directory whose listing fails, which holds a name that is not valid UTF-8, or one
    of whose children cannot be examined, yields an Entry with `error` and none of its
    children: the caller cannot know what is inside it.
    """
    stack: list[Iterator[tuple[str, Kind | None]]] = []

    def open_dir(path: str) -> Entry | None:
        try:
            names = sorted(tree.children(path))
            bad = next((n for n in names if not representable(n)), None)
            if bad is not None:
                return Entry(path, "dir", f"{path} holds a name that is not valid UTF-8")
            if not budget.take(len(names)):
                return None
            items = [(join(path, n), tree.kind(join(path, n))) for n in names]
        except OSError as e:
            return Entry(path, "dir", f"{e.filename or path}: {e.strerror or e}")
        stack.append(iter(items))
        return None

    failed = open_dir(top)
    if failed is not None:
        yield failed
    while stack and not budget.exhausted:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        path, kind = item
        yield Entry(path, kind)
        if kind == "dir" and enter(path):
            failed = open_dir(path)
            if failed is not None:
                yield failed


def resolve(tree: TreeView, path: str) -> str | None:
    """`path` with every symbolic link followed, component by component, as the kernel
    would open it; None when a component is missing (or is not a directory). Raises
    ValueError for a loop, or a component or link that cannot be examined."""
    todo = path.split("/")[::-1]
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        done.append(name)
        current = "/" + "/".join(done)
        try:
            kind = tree.kind(current)
        except OSError as e:
            raise ValueError(f"cannot examine {current}: {e.strerror or e}") from None
        if kind is None:
            return None
        if kind != "symlink":
            if kind != "dir" and any(t not in ("", ".") for t in todo):
                return None  # ENOTDIR: nothing can lie beneath a file
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise ValueError(f"too many levels of symbolic links at {current}")
        try:
            target = tree.readlink(current)
        except OSError as e:
            raise ValueError(f"cannot read the symbolic link {current}: "
                             f"{e.strerror or e}") from None
        done.pop()
        if target.startswith("/"):
            done.clear()
        todo.extend(target.split("/")[::-1])
    return "/" + "/".join(done)


def representable(path: str) -> bool:
    """Whether `path` can be written out as text: os gives undecodable bytes as
    surrogates, which JSON, YAML and a shell script cannot carry faithfully."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
