"""Suite-wide settings. In CI (CI=true) a skipped test fails the run: tests that need
root, namespaces or optional extras must run there."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; in CI every test must run",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
