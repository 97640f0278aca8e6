"""The engine's view of the local filesystem, for `--resolve` and enforcement points."""

from __future__ import annotations

from gateway.matching.paths import resolve_path

MAX_SCRIPT_BYTES = 64 * 1024


class LocalFileSystem:
    """Resolves symlinks as the kernel does and reads scripts that a command runs."""

    def resolve(self, path: str, cwd: str) -> str:
        return resolve_path(path, cwd=cwd)

    def read_script(self, path: str) -> str | None:
        """The script's text, or None when it cannot be read. The engine passes paths
        already made absolute against the request's working directory."""
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_SCRIPT_BYTES + 1)
        except OSError:
            return None
        if len(raw) > MAX_SCRIPT_BYTES:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
