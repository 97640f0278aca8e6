"""A MountPlan printed three ways: JSON, a Compose volumes block, a POSIX sh script.

Every path is quoted for where it goes (json, yaml.safe_dump, shlex.quote), and text in
comments has its control characters escaped, so a file name cannot become YAML or a
shell command.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

import yaml

from gateway.fs.plan import Mount, MountPlan

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NOEXEC_NOTE = ("Compose cannot set noexec on a bind mount: the writable binds here allow "
               "running files (gateway run mounts them noexec)")



def overlay_options(mount: Mount, *, unprivileged: bool = False) -> str:
    """Mount options of an overlay. redirect_dir and metacopy stay off: an upper
    directory written with them cannot be reviewed file by file (`gateway fs diff`).
    Mounted in a user namespace (`unprivileged`), overlayfs keeps its marks in
    `user.overlay.*` attributes (`userxattr`, which turns both off and refuses them
    being named)."""
    layers = f"lowerdir={mount.source},upperdir={mount.upper},workdir={mount.work}"
    flags = "userxattr" if unprivileged else "redirect_dir=off,metacopy=off"
    return f"{layers},{flags},nosuid" + (",noexec" if mount.noexec else "")

def to_json(plan: MountPlan) -> dict[str, Any]:
    """The plan as plain JSON types."""
    return {
        "mounts": [_mount_json(m) for m in plan.mounts],
        "notes": list(plan.notes),
        "overlay_dir": plan.overlay_dir,
        "complete": plan.complete,
    }


def _mount_json(mount: Mount) -> dict[str, Any]:
    return {"kind": mount.kind, "target": mount.target, "source": mount.source,
            "is_dir": mount.is_dir, "readonly": mount.readonly, "noexec": mount.noexec,
            "upper": mount.upper, "work": mount.work, "rule": mount.rule, "why": mount.why}


# --- compose ------------------------------------------------------------------------------


def compose_notes(plan: MountPlan) -> list[str]:
    """What the Compose form loses: noexec on writable binds."""
    lossy = any(m.kind == "bind" and not m.readonly and m.noexec for m in plan.mounts)
    return [NOEXEC_NOTE] if lossy else []


def to_compose(plan: MountPlan, service: str = "agent") -> str:
    """A Compose override file: the service's `volumes:` (long syntax) and, for overlays,
    the top-level named volumes (local driver, type overlay)."""
    volumes: list[dict[str, Any]] = []
    named: dict[str, Any] = {}
    for mount in plan.mounts:
        if mount.kind == "overlay":
            name = f"gateway-overlay-{len(named)}"
            options = overlay_options(mount)
            named[name] = {"driver": "local",
                           "driver_opts": {"type": "overlay", "device": "overlay",
                                           "o": options}}
            volumes.append({"type": "volume", "source": name, "target": mount.target,
                            "read_only": False, "volume": {"nocopy": True}})
        elif mount.kind == "bind":
            volumes.append({"type": "bind", "source": mount.source, "target": mount.target,
                            "read_only": mount.readonly,
                            "bind": {"create_host_path": False}})
        elif mount.is_dir:
            volumes.append({"type": "tmpfs", "target": mount.target, "read_only": True,
                            "tmpfs": {"size": 1}})
        else:
            volumes.append({"type": "bind", "source": plan.empty_file,
                            "target": mount.target, "read_only": True,
                            "bind": {"create_host_path": False}})
    data: dict[str, Any] = {"services": {service: {"volumes": volumes}}}
    if named:
        data["volumes"] = named
    lines = ["The mount plan as a Compose override (gateway mounts --format compose): merge",
             "it with docker compose -f compose.yaml -f THIS. Inside the container only the",
             "image and these mounts are visible. Masked directories are empty read-only",
             "tmpfs mounts; masked files are binds of an empty file of mode 0000 (reading fails)."]
    needs = []
    if any(m.kind == "mask" and not m.is_dir for m in plan.mounts):
        needs.append(f"the empty file {plan.empty_file} (mode 0000)")
    if named:
        needs.append("each overlay's upper and work directories (upper with the owner and "
                     "mode of its lower directory)")
    if needs:
        lines.append("Create first: " + "; ".join(needs) + ".")
    lines += compose_notes(plan)
    lines += [f"note: {n}" for n in plan.notes]
    body: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                               allow_unicode=True, width=1 << 16)
    return "".join(f"# {one_line(line)}\n" for line in lines) + body


# --- shell --------------------------------------------------------------------------------


_PRELUDE = r"""set -eu
: "${{{root}:?set {root} to an empty directory}}"
die() {{ printf 'gateway mounts: %s\n' "$*" >&2; exit 1; }}
case ${root} in /*) ;; *) die "{root} must be an absolute path" ;; esac
init=$(readlink /proc/1/ns/mnt 2>/dev/null || true)
if [ "$$" != 1 ] && [ "$(readlink /proc/self/ns/mnt)" = "$init" ]; then
  die 'refusing to change the mounts of the initial mount namespace: use unshare --mount'
fi
src() {{ {{ [ -e "$1" ] && [ ! -L "$1" ]; }} || die "$1: missing, or a symbolic link"; }}
dir() {{ [ ! -L "$1" ] || die "$1 is a symbolic link"; [ -d "$1" ] || mkdir -p "$1"; }}
file() {{ [ ! -L "$1" ] || die "$1 is a symbolic link"; [ -e "$1" ] || : > "$1"; }}
mount --make-rprivate /
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "${root}"
"""


def to_shell(plan: MountPlan, root_var: str = "ROOT", *, before: Sequence[str] = (),
             after: Sequence[str] = (), unprivileged: bool = False) -> str:
    """A POSIX sh script that, run as root in a new mount namespace, mounts a tmpfs at
    "$ROOT", builds the plan inside it (parents first) and makes the tmpfs read-only.

    `before` and `after` are lines of sh run just after the tmpfs is mounted and just
    before it is made read-only (`gateway run` adds the system's base and the shim);
    `unprivileged` mounts overlays as a user namespace allows."""
    if not _NAME.match(root_var):
        raise ValueError(f"not a shell variable name: {root_var!r}")
    q = shlex.quote
    root = f'"${root_var}"'
    out = ["#!/bin/sh",
           "# The mount plan as a script (gateway mounts --format shell). Run it as root in a",
           "# new mount namespace, with ROOT an empty directory, then enter ROOT (pivot_root",
           "# or chroot): nothing of the host but these mounts is visible there.",
           f"#   {root_var}=/run/agent-root unshare --mount --propagation private sh THIS"]
    out += [f"# note: {one_line(n)}" for n in plan.notes]
    out.append(_PRELUDE.format(root=root_var).rstrip("\n"))
    out += before
    overlays = [m for m in plan.mounts if m.kind == "overlay"]
    file_masks = any(m.kind == "mask" and not m.is_dir for m in plan.mounts)
    if overlays or file_masks:
        out.append(f"mkdir -p {q(plan.overlay_dir)}")
        out.append(f"chmod 0700 {q(plan.overlay_dir)}")
    if file_masks:
        empty = q(plan.empty_file)
        out.append(f'[ ! -L {empty} ] || die {q(plan.empty_file + " is a symbolic link")}')
        out += [f": > {empty}", f"chmod 0000 {empty}"]
    for mount in overlays:
        out += _workspace(mount)
    for mount in plan.mounts:
        target = root + q(mount.target)
        out.append(f"# {one_line(mount.target)}: {one_line(mount.why)}")
        if mount.is_dir:
            out.append(f"dir {target}")
        else:
            out += [f"dir {root}{q(_parent(mount.target))}", f"file {target}"]
        if mount.kind == "bind":
            assert mount.source is not None
            flags = "ro,nosuid" if mount.readonly else "nosuid" + (",noexec" * mount.noexec)
            out += [f"src {q(mount.source)}", f"mount --bind {q(mount.source)} {target}",
                    f"mount -o remount,bind,{flags} {target}"]
        elif mount.kind == "overlay":
            options = overlay_options(mount, unprivileged=unprivileged)
            out += [f"src {q(mount.source or '')}",
                    f"mount -t overlay overlay -o {q(options)} {target}"]
        elif mount.is_dir:
            out.append(f"mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k,mode=000 tmpfs "
                       f"{target}")
        else:
            out += [f"mount --bind {q(plan.empty_file)} {target}",
                    f"mount -o remount,bind,ro,nosuid,nodev,noexec {target}"]
    out += after
    out.append(f"mount -o remount,bind,ro,nosuid,nodev {root}")
    return "\n".join(out) + "\n"


def _workspace(mount: Mount) -> list[str]:
    """Create an overlay's workspace (upper, work and gateway-overlay.json, as
    gateway.fs.overlay lays it out) unless it exists."""
    assert mount.upper is not None and mount.work is not None and mount.source is not None
    q = shlex.quote
    base = _parent(mount.upper)
    config = json.dumps({"lower": mount.source, "target": mount.target}, ensure_ascii=False)
    marker = q(base + "/gateway-overlay.json")
    lower = q(mount.source)
    return [f"if [ ! -e {marker} ]; then",
            f"  mkdir -p {q(mount.upper)} {q(mount.work)}",
            f"  chmod 0700 {q(base)} {q(mount.work)}",
            f'  chown "$(stat -c %u:%g {lower})" {q(mount.upper)}',
            f'  chmod "$(stat -c %a {lower})" {q(mount.upper)}',
            f"  printf '%s\\n' {q(config)} > {marker}",
            "fi"]


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def one_line(text: str) -> str:
    """Text safe on one comment line: control characters escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
