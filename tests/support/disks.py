"""A small real disk for tests that make the audit log run out of space."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `directory/disk`, unmounted afterwards (root only:
    the test is skipped with the reason elsewhere)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = directory / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        while subprocess.run(["umount", "-l", str(mount)], check=False,
                             capture_output=True).returncode == 0:
            pass
