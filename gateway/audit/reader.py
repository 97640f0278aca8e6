"""Finding a log's segments and reading its entries in order.

A log named `audit.jsonl` is written to that path; rotation renames it to
`audit.000001.jsonl`, `audit.000002.jsonl`, ... (the number grows with age, and is
compared as a number, so more than six digits still sort right). The segments in
order are the numbered ones, ascending, then the current one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import orjson

SEGMENT_DIGITS = 6


def _parts(path: Path) -> tuple[str, str]:
    suffix = path.suffix
    return (path.name[: -len(suffix)] if suffix else path.name), suffix


def numbered_segments(path: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The rotated segments of the log at `path`, with their numbers, oldest first."""
    current = Path(path)
    stem, suffix = _parts(current)
    pattern = re.compile(re.escape(stem) + r"\.(\d{" + str(SEGMENT_DIGITS) + r",})"
                         + re.escape(suffix) + r"\Z")
    directory = current.parent
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = pattern.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    found.sort()
    return found


def segment_name(path: str | os.PathLike[str], number: int) -> Path:
    """Where segment `number` of the log at `path` goes when it is rotated."""
    current = Path(path)
    stem, suffix = _parts(current)
    return current.with_name(f"{stem}.{number:0{SEGMENT_DIGITS}d}{suffix}")


def segment_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Every segment of the log, oldest first; the current one last when it exists."""
    paths = [p for _, p in numbered_segments(path)]
    if Path(path).exists():
        paths.append(Path(path))
    return paths


def iter_entries(path: str | os.PathLike[str]) -> Iterator[dict[str, object]]:
    """Every readable entry of every segment, in order, for tail, query and stats.

    Lines that are not JSON objects (a torn last line while the writer works) are
    skipped: reading is not verifying, `verify_log` is the judge of integrity.
    """
    for segment in segment_paths(path):
        try:
            handle = open(segment, "rb")  # noqa: SIM115 (closed in the finally below)
        except FileNotFoundError:
            continue
        try:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(entry, dict):
                    yield entry
        finally:
            handle.close()
