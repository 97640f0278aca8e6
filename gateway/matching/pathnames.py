"""File paths: fold them lexically, or resolve them as the kernel does.

Targets are compared as normalised absolute paths (`.`, `..` and `//` folded);
enforcement points that touch the filesystem also resolve symlinks component by
component. Both refuse, as BadPath with a reason, what names no file.
"""

from __future__ import annotations

import os
import re
import stat

__all__ = ["MAX_PATH", "MAX_SYMLINKS", "BadPath", "check_text", "normalise_path", "resolve_path"]

MAX_PATH = 4096
"""Longest path accepted, in UTF-8 bytes (Linux PATH_MAX)."""

MAX_SYMLINKS = 40
"""Symbolic links followed in one resolution before giving up, as Linux does."""

_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class BadPath(ValueError):
    """A path that cannot be judged; str(e) is the reason."""


def check_text(text: str, what: str, max_chars: int | None = None) -> None:
    """Refuse what no file name may hold, or what the kernel would refuse.

    The limit is MAX_PATH UTF-8 bytes, or `max_chars` characters when given (a
    pattern, whose variables may double its length by escaping). Raises BadPath
    naming `what`.
    """
    if not isinstance(text, str):
        raise BadPath(f"{what} is not a string")
    if not text:
        raise BadPath(f"empty {what}")
    if max_chars is not None:
        if len(text) > max_chars:
            raise BadPath(f"{what} longer than {max_chars} characters")
    elif len(text) > MAX_PATH or (
        not text.isascii() and len(text.encode("utf-8", "surrogatepass")) > MAX_PATH
    ):
        raise BadPath(f"{what} longer than {MAX_PATH} bytes")
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        raise BadPath(f"{what} contains {_bad_char(bad.group())}")


def _bad_char(char: str) -> str:
    if char == "\x00":
        return "a NUL byte"
    if "\ud800" <= char <= "\udfff":
        return "undecodable bytes"
    return f"a control character (U+{ord(char):04X})"


def _fold(path: str) -> str:
    """Fold `.`, `..` and repeated slashes of an absolute path, lexically."""
    if not (
        "//" in path or "/./" in path or "/../" in path or path.endswith(("/", "/.", "/.."))
    ):
        return path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def normalise_path(path: str, cwd: str) -> str:
    """The absolute, lexically folded form of `path`; relative paths are taken from `cwd`.

    A leading `//` is `/`, as on Linux. Raises BadPath with the reason for input that
    names no file (empty, NUL or control characters, undecodable bytes, too long).
    """
    check_text(path, "path")
    if not path.startswith("/"):
        check_text(cwd, "cwd")
        if not cwd.startswith("/"):
            raise BadPath("cwd is not absolute")
        path = cwd + "/" + path
    folded = _fold(path)
    if len(folded) > MAX_PATH and len(folded.encode("utf-8")) > MAX_PATH:
        raise BadPath(f"path longer than {MAX_PATH} bytes")
    return folded


def resolve_path(path: str, cwd: str | None = None) -> str:
    """The path the kernel would reach: symlinks followed component by component.

    Takes the path as written (absolute, or relative to `cwd`), before lexical folding:
    a `..` after a symlink leaves the link's target, so `w/link/../key` with
    `link -> /secret/x` is `/secret/key`. The part from the first missing component
    on is kept lexically (lookups resume once `..` climbs back out of it). Loops, and
    components that cannot be examined, raise BadPath: they fail closed.
    """
    check_text(path, "path")
    if not path.startswith("/"):
        if cwd is None:
            raise BadPath("path is not absolute")
        check_text(cwd, "cwd")
        if not cwd.startswith("/"):
            raise BadPath("cwd is not absolute")
        path = cwd + "/" + path
    todo = path.split("/")
    todo.reverse()
    done: list[str] = []
    missing_from: int | None = None  # index in `done` of the first missing component
    links = 0
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            if done:
                done.pop()
            if missing_from is not None and len(done) <= missing_from:
                missing_from = None
            continue
        done.append(name)
        if missing_from is not None:
            continue
        current = "/" + "/".join(done)
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            missing_from = len(done) - 1
            continue
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise BadPath(f"cannot resolve {current}: {reason}") from None
        if not stat.S_ISLNK(info.st_mode):
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise BadPath(f"too many levels of symbolic links at {current}")
        try:
            target = os.readlink(current)
        except OSError as e:
            raise BadPath(f"cannot resolve {current}: {e.strerror}") from None
        done.pop()
        if target.startswith("/"):
            done.clear()
        parts = target.split("/")
        parts.reverse()
        todo.extend(parts)
        if len(todo) > MAX_PATH * (MAX_SYMLINKS + 1):
            raise BadPath(f"symbolic link targets too long at {current}")
    resolved = "/" + "/".join(done)
    check_text(resolved, "resolved path")
    return resolved

