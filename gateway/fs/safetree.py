"""The real tree, without following symlinks: every directory on the way to a path is
opened with O_NOFOLLOW relative to the one before, so a symlink in the real tree is never
followed."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from gateway.errors import GatewayError
from gateway.fs.overlay import WorkspaceError

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class CannotApply(GatewayError):
    """A change a commit refuses to apply whatever the policy says (why, on one line)."""


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
                following = os.open(part, OPEN_DIR, dir_fd=fd)
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


class Tree:
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
def parent_of(root: int, rel: str) -> Iterator[tuple[int, str]]:
    """`open_parent` for a `with`."""
    fd, name = open_parent(root, rel)
    try:
        yield fd, name
    finally:
        os.close(fd)


@contextlib.contextmanager
def parent_planned(root: int, rel: str, planned: set[str]) -> Iterator[tuple[int | None, str]]:
    """`parent_of`, where the fd is None when the parent is missing because only a dry
    run made it (a directory in `planned`)."""
    parent, _, name = rel.rpartition("/")
    if parent in planned:
        _parts(rel)
        yield None, name
        return
    with parent_of(root, rel) as opened:
        yield opened


def open_dir(root: int, rel: str) -> int:
    """A new fd of the real directory `rel` ("" is the root), never through a symlink."""
    if not rel:
        return os.dup(root)
    parent, name = open_parent(root, rel)
    try:
        return os.open(name, OPEN_DIR, dir_fd=parent)
    finally:
        os.close(parent)


def paths_beneath(root: int, rel: str) -> Iterator[str]:
    """Every path under the real directory `rel`, never through a symlink."""
    yield from _entries(open_dir(root, rel), rel)


def _entries(fd: int, rel: str) -> Iterator[str]:
    try:
        with os.scandir(fd) as it:
            entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        for name, is_dir in entries:
            yield join_rel(rel, name)
            if is_dir:
                yield from _entries(os.open(name, OPEN_DIR, dir_fd=fd), join_rel(rel, name))
    finally:
        os.close(fd)


def open_lower(root: int, rel: str) -> int:
    """A new fd of the real file `rel`, read-only, never through a symlink."""
    parent, name = open_parent(root, rel)
    try:
        return os.open(name, OPEN_FILE, dir_fd=parent)
    finally:
        os.close(parent)


def join_rel(rel: str, name: str) -> str:
    """`name` inside the tree-relative directory `rel` ("" is the root)."""
    return f"{rel}/{name}" if rel else name


def lstat_at(parent: int | None, name: str) -> os.stat_result | None:
    """`name` in the directory open at `parent`, not followed if a symlink; None: missing."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None

