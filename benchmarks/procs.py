"""What the benchmarks share about the processes they start: how to stop one, and the
end of its output for an error message."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a process's log, or nothing when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode
