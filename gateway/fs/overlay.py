"""Overlay workspaces (see docs/overlay.md).

A workspace is a directory holding `upper/` and `work/` (the overlay's upperdir and
workdir) and `gateway-overlay.json`: {"lower": the real tree, "target": where the
merged tree is mounted, "policy"?, "project_dir"?}. `gateway.fs.changes` reads what an
agent changed in the upper layer; `gateway.fs.commit` applies the allowed part of it to
the real tree.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError

CONFIG = "gateway-overlay.json"
TEMP = ".gateway-commit-"
_KEYS = ("lower", "target", "policy", "project_dir")


class WorkspaceError(GatewayError):
    """A workspace that cannot be used: missing, malformed, or a layout review refuses."""


@dataclass(frozen=True, slots=True)
class Workspace:
    directory: Path
    lower: str
    target: str
    policy: str | None = None
    project_dir: str | None = None

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        return self.directory / "work"

    def seen_at(self, rel: str) -> str:
        """Where the agent saw `rel`: the path a change is decided for."""
        return os.path.join(self.target, rel)


def create_workspace(directory: str | os.PathLike[str], *, lower: str, target: str,
                     policy: str | None = None, project_dir: str | None = None) -> Workspace:
    """Make a workspace in `directory` (new or empty; mode 0700). `upper/` takes the
    mode of `lower`, as the merged tree's root shows the upper root's."""
    ws = Workspace(Path(directory), os.path.abspath(lower), os.path.abspath(target),
                   os.path.abspath(policy) if policy else None,
                   os.path.abspath(project_dir) if project_dir else None)
    try:
        info = os.stat(ws.lower)
        if not stat.S_ISDIR(info.st_mode):
            raise WorkspaceError(f"{ws.lower}: the real tree must be a directory")
        ws.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(ws.directory.iterdir()):
            raise WorkspaceError(f"{ws.directory}: not empty; a workspace needs a new or "
                                 "empty directory")
        os.chmod(ws.directory, 0o700)
        ws.upper.mkdir(mode=0o700)
        ws.work.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(ws.upper, info.st_uid, info.st_gid)
        os.chmod(ws.upper, stat.S_IMODE(info.st_mode))
        config = {k: getattr(ws, k) for k in _KEYS if getattr(ws, k) is not None}
        temp = ws.directory / (TEMP + CONFIG)
        temp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        temp.rename(ws.directory / CONFIG)
    except OSError as e:
        raise WorkspaceError(f"{e.filename or directory}: cannot create the workspace: "
                             f"{e.strerror or e}") from None
    return ws


def read_workspace(directory: str | os.PathLike[str]) -> Workspace:
    """The workspace in `directory`; WorkspaceError naming what is wrong."""
    where = Path(directory)
    path = where / CONFIG
    try:
        with open(path, "rb") as f:
            raw = f.read(65537)
    except FileNotFoundError:
        raise WorkspaceError(f"{where}: not an overlay workspace (no {CONFIG})") from None
    except OSError as e:
        raise WorkspaceError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(raw) if len(raw) <= 65536 else None
    except (ValueError, RecursionError):
        raise WorkspaceError(f"{path}: not JSON") from None
    if not isinstance(data, dict):
        raise WorkspaceError(f"{path}: must be a JSON object of at most 64 KiB")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise WorkspaceError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    for key in _KEYS:
        value = data.get(key)
        if (value is None and key in ("lower", "target")) or (
                value is not None and not (isinstance(value, str) and os.path.isabs(value))):
            raise WorkspaceError(f"{path}: {key!r} must be an absolute path")
    ws = Workspace(where, data["lower"], data["target"], data.get("policy"),
                   data.get("project_dir"))
    for name, ours in ((ws.upper, True), (ws.work, True), (Path(ws.lower), False)):
        try:  # the workspace's own directories are never reached through a symlink
            mode = (os.lstat(name) if ours else os.stat(name)).st_mode
        except OSError as e:
            raise WorkspaceError(f"{name}: {e.strerror or e}") from None
        if not stat.S_ISDIR(mode):
            raise WorkspaceError(f"{name}: not a directory")
    return ws
