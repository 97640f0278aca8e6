"""The process between `gateway run` and the agent (`python -m gateway.sandbox.stage
SPEC`): it enters the agent's network namespace, makes new mount, PID, IPC and UTS
namespaces, builds the root, and forks the namespace's init, which enters the root and
starts the agent with no capabilities.

Kept to the standard library and `gateway.sandbox.linux`: it starts once per run, and
nothing the agent can reach is loaded into it. Exit status: the agent's (128+N for a
signal), 125 when the sandbox could not be made, 126/127 when the command could not
be run, as `env` and `docker run` do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.sandbox.linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    drop_privileges,
    last_capability,
    mount,
    setns,
    unshare,
)

EXIT_SANDBOX = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
# The terminal sends these to its whole foreground group, the agent included.
FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT)
# /proc entries that change the host or show its kernel, as container runtimes treat them.
PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
PROC_HIDDEN = ("kcore", "keys", "timer_list", "sched_debug", "latency_stats", "kallsyms",
               "acpi", "scsi")
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class StageSpec:
    """What the stage needs, written by `gateway run` to a file only root can read."""

    netns_fd: int
    script: str
    root: str
    workdir: str
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    path: str  # where CMD is looked up: the agent's PATH without the shim
    real_shells: dict[str, str]  # a shell under the shim -> its real copy

    @classmethod
    def read(cls, path: str) -> StageSpec:
        data: dict[str, Any] = json.loads(Path(path).read_text())
        return cls(**data)


def main(argv: list[str]) -> int:
    spec = StageSpec.read(argv[1])
    for sig in FROM_TERMINAL:
        signal.signal(sig, signal.SIG_IGN)
    try:
        setns(spec.netns_fd, CLONE_NEWNET)
        os.close(spec.netns_fd)
        unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
        built = subprocess.run(["/bin/sh", spec.script], env={"ROOT": spec.root, "PATH": HOST_PATH},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, check=False)
        if built.returncode != 0:
            last = (built.stderr.strip().splitlines() or ["(no message)"])[-1]
            return _fail(f"cannot build the agent's root: {last}")
        # Only now: the first child after this is the namespace's init.
        unshare(CLONE_NEWPID)
    except OSError as e:
        return _fail(f"cannot make the agent's namespaces: {e.strerror or e}")
    init = os.fork()
    if init == 0:
        os._exit(_init(spec))
    _forward_signals(init)
    return _exit_code(_wait_for(init))


def _init(spec: StageSpec) -> int:
    """PID 1 of the agent's namespace: mount /proc, enter the root, start the agent,
    pass signals on, reap orphans, and end (taking every process left) with it."""
    try:
        last_cap = last_capability()
        _mount_proc(spec.root + "/proc")
        os.chroot(spec.root)
        os.chdir(spec.workdir)
    except OSError as e:
        return _fail(f"cannot enter the agent's root: {e.strerror or e}")
    agent = os.fork()
    if agent == 0:
        os._exit(_exec_agent(spec, last_cap))
    try:
        drop_privileges(last_cap)
    except OSError as e:
        os.kill(agent, signal.SIGKILL)
        return _fail(f"cannot drop privileges: {e.strerror or e}")
    _forward_signals(agent)
    return _exit_code(_wait_for(agent))


def _exec_agent(spec: StageSpec, last_cap: int) -> int:
    for sig in (*FORWARDED, *FROM_TERMINAL):
        signal.signal(sig, signal.SIG_DFL)
    try:
        drop_privileges(last_cap, spec.uid, spec.gid)
    except OSError as e:
        return _fail(f"cannot drop privileges: {e.strerror or e}")
    os.closerange(3, 65536)
    try:
        program = _find(spec.argv[0], spec.path)
        program = spec.real_shells.get(os.path.realpath(program), program)
        os.execve(program, spec.argv, spec.env)
    except FileNotFoundError:
        print(f"gateway run: {spec.argv[0]}: command not found in the agent's root",
              file=sys.stderr)
        return EXIT_NOT_FOUND
    except OSError as e:
        print(f"gateway run: {spec.argv[0]}: cannot run: {e.strerror or e}", file=sys.stderr)
        return EXIT_CANNOT_RUN


def _find(name: str, path: str) -> str:
    """CMD as `execvp` would find it, on `path`: CMD is the run's, started directly,
    while every command it starts meets the shim."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(name)


def _mount_proc(target: str) -> None:
    mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in PROC_READ_ONLY:
        path = f"{target}/{name}"
        if os.path.exists(path):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
                  | MS_NOEXEC)
    for name in PROC_HIDDEN:
        path = f"{target}/{name}"
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=4k,mode=000")
        elif os.path.exists(path):
            mount("/dev/null", path, None, MS_BIND)


def _forward_signals(child: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
    for sig in FORWARDED:
        signal.signal(sig, forward)


def _wait_for(child: int) -> int:
    """Reap every child (orphans come to PID 1) until `child` ends; its wait status."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            return status


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _fail(message: str) -> int:
    print(f"gateway run: {message}; the command was not run", file=sys.stderr)
    return EXIT_SANDBOX


if __name__ == "__main__":
    sys.exit(main(sys.argv))
