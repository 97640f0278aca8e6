"""The agent's root: the policy's mount plan, on a base of the host's program and
library directories (what a container image would give), with the shim over the shells.

Everything here is text: the POSIX sh script `gateway.fs.render.to_shell` makes of the
plan, with lines before it (the base, /dev, /tmp, the run's own files) and after it
(the shim over every shell). The stage runs it in the agent's new mount namespace.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.engine import Verdict, decide, make_request
from gateway.fs.plan import MountPlan
from gateway.fs.render import to_shell
from gateway.policy.compiled import CompiledPolicy

# The host trees every program needs, shown read-only like a container image's.
BASE_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# From /etc, only what the dynamic loader, the C library and Python read to start.
BASE_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd",
            "/etc/group", "/etc/nsswitch.conf", "/etc/localtime", "/etc/alternatives",
            "/etc/os-release", "/etc/mime.types")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SHELLS = ("sh", "bash", "dash", "rbash", "ash", "ksh", "mksh", "zsh")
PROGRAM_DIRS = ("/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin")
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass(frozen=True, slots=True)
class RootSpec:
    """What goes into the agent's root besides the plan. `run_dir` is bound read-only
    at its own path (the shim's configuration path is compiled in); `shim` is the
    binary mounted over each shell; `hosts` the file shown as /etc/hosts; `workdir` is
    made (empty) when no mount makes it, so the agent can start there. `terminals` are
    bound alone, never the whole /dev/pts: the agent's stdio stays a terminal
    (`tty`, `ttyname`) without reaching anyone else's."""

    run_dir: str
    shim: str
    hosts: str
    workdir: str
    terminals: tuple[str, ...] = ()  # the run's own terminal(s), e.g. /dev/pts/3
    base: tuple[str, ...] = BASE_TREES + BASE_ETC


def base_entries(policy: CompiledPolicy, candidates: Sequence[str], agent: str | None,
                 notes: list[str]) -> list[str]:
    """The base paths that exist and that no rule of the policy denies reading by name
    (the default deny does not count: the base is there for programs to run)."""
    out = []
    for path in candidates:
        if not os.path.lexists(path):
            continue
        decision = decide(policy, make_request("file_read", path, agent=agent))
        if decision.verdict is Verdict.DENY and decision.rule is not None:
            notes.append(f"{path} is left out of the base: {decision.reason}")
            continue
        out.append(path)
    return out


def shells_to_cover(dirs: Sequence[str] = PROGRAM_DIRS) -> list[str]:
    """Every shell file in the program directories, by the path of the file itself
    (`/bin/sh -> dash` gives the dash file: a mount follows links)."""
    found: list[str] = []
    for directory in dirs:
        for name in SHELLS:
            real = os.path.realpath(os.path.join(directory, name))
            if os.path.isfile(real) and real not in found:
                found.append(real)
    return found


def root_script(plan: MountPlan, spec: RootSpec, base: Sequence[str],
                shells: Sequence[str], *, unprivileged: bool = False) -> str:
    """The whole script: base, /dev, /tmp and the run directory; the plan; the shim."""
    q = shlex.quote
    before = ["# The base: the host's program and library directories, read-only."]
    for path in base:
        target = '"$ROOT"' + q(path)
        if os.path.islink(path):
            before += [f"dir \"$ROOT\"{q(os.path.dirname(path))}",
                       f"ln -s {q(os.readlink(path))} {target}"]
            continue
        before += [f"dir {target}" if os.path.isdir(path)
                   else f"dir \"$ROOT\"{q(os.path.dirname(path))}; file {target}",
                   f"mount --bind {q(path)} {target}",
                   f"mount -o remount,bind,ro,nosuid {target}"]
    before += [
        "# Names resolve only from this file: there is no resolver.",
        "dir \"$ROOT\"/etc; file \"$ROOT\"/etc/hosts",
        f"mount --bind {q(spec.hosts)} \"$ROOT\"/etc/hosts",
        "mount -o remount,bind,ro,nosuid,nodev,noexec \"$ROOT\"/etc/hosts",
        "# /dev: a few devices; /tmp and /dev/shm: private, empty, gone after the run.",
        "dir \"$ROOT\"/dev",
        "mount -t tmpfs -o mode=0755,nosuid,noexec,size=64k tmpfs \"$ROOT\"/dev",
    ]
    for device in DEVICES:
        if os.path.exists(f"/dev/{device}"):
            before += [f"file \"$ROOT\"/dev/{device}",
                       f"mount --bind /dev/{device} \"$ROOT\"/dev/{device}"]
    for terminal in spec.terminals:
        before += [f"dir \"$ROOT\"{q(os.path.dirname(terminal))}",
                   f"file \"$ROOT\"{q(terminal)}",
                   f"mount --bind {q(terminal)} \"$ROOT\"{q(terminal)}"]
    before += ["ln -s /proc/self/fd \"$ROOT\"/dev/fd",
               "ln -s /proc/self/fd/0 \"$ROOT\"/dev/stdin",
               "ln -s /proc/self/fd/1 \"$ROOT\"/dev/stdout",
               "ln -s /proc/self/fd/2 \"$ROOT\"/dev/stderr",
               "dir \"$ROOT\"/dev/shm",
               "mount -t tmpfs -o mode=1777,nosuid,nodev,noexec tmpfs \"$ROOT\"/dev/shm",
               "dir \"$ROOT\"/tmp",
               "mount -t tmpfs -o mode=1777,nosuid,nodev,noexec tmpfs \"$ROOT\"/tmp",
               "dir \"$ROOT\"/proc",
               "# The run's shim, its real programs and the CA, at their own paths.",
               f"dir \"$ROOT\"{q(spec.run_dir)}",
               f"mount --bind {q(spec.run_dir)} \"$ROOT\"{q(spec.run_dir)}",
               f"mount -o remount,bind,ro,nosuid,nodev \"$ROOT\"{q(spec.run_dir)}",
               f"dir \"$ROOT\"{q(spec.workdir)}"]
    after = ["# The shim over every shell: /bin/sh and /bin/bash called by path are checked."]
    for shell in shells:
        target = '"$ROOT"' + q(shell)
        after += [f"if [ -f {target} ]; then",
                  f"  mount --bind {q(spec.shim)} {target}",
                  f"  mount -o remount,bind,ro,nosuid {target}",
                  "fi"]
    return to_shell(plan, before=before, after=after, unprivileged=unprivileged)
