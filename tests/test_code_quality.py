"""The code base stays lint-clean: ruff runs over everything we ship and test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_reports_nothing() -> None:
    """`ruff check` passes on gateway/, addons/, benchmarks/ and tests/."""
    dirs = [d for d in ("gateway", "addons", "benchmarks", "tests") if (ROOT / d).is_dir()]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *dirs], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
