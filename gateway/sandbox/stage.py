"""The process between `gateway run` and the agent (`python -m gateway.sandbox.stage
SPEC`): it makes the agent's namespaces (network, mount, IPC, UTS, PID; without root,
a user namespace first), hands the listeners inside the network to `gateway run` for
its relays, runs the self-test, builds the root, and forks the namespace's init, which
enters the root and starts the agent with no capabilities.

Kept to the standard library and `gateway.sandbox.linux`: it starts once per run, and
nothing the agent can reach is loaded into it. Exit status: the agent's (128+N for a
signal), 125 when the sandbox could not be made, 126/127 when the command could not
be run, as `env` and `docker run` do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.sandbox import netns
from gateway.sandbox.linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
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
    not_dumpable,
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
    """What the stage needs, written by `gateway run` to a file only its owner can read.
    `control_fd` is the stage's end of a socket pair with `gateway run`."""

    control_fd: int
    proxy_port: int
    api_port: int
    probe_credentials: str | None  # NAME:TOKEN for the proxy probe; None: no probe
    userns: bool  # no root: a user namespace maps the caller to root inside
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
    control = socket.socket(fileno=spec.control_fd)
    try:
        if spec.userns:
            _own_user_namespace()
        # The agent has init's uid inside: it must not read the spec (its tokens) from
        # init's memory. (Only now: a process that is not dumpable cannot write its maps.)
        not_dumpable()
        unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)
        netns.loopback_up()
        proxy, api = netns.listen(spec.proxy_port), netns.listen(spec.api_port)
        socket.send_fds(control, [json.dumps({"proxy": len(proxy), "api": len(api)}).encode()],
                        [s.fileno() for s in proxy + api])
        for listener in proxy + api:
            listener.close()  # gateway run holds them now
        if control.recv(1) != b"g":
            return _fail("gateway run stopped before the relays started")
    except OSError as e:
        return _fail(f"cannot make the agent's namespaces: {e.strerror or e}")
    auth = base64.b64encode(spec.probe_credentials.encode()).decode() \
        if spec.probe_credentials else None
    try:
        netns.self_test(spec.proxy_port, spec.api_port, auth, spec.probe_credentials is not None)
    except netns.SelfTestFailed as e:
        return _fail(f"the self-test failed: {e}")
    try:
        built = subprocess.run(["/bin/sh", spec.script], env={"ROOT": spec.root, "PATH": HOST_PATH},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, check=False)
        if built.returncode != 0:
            return _fail(f"cannot build the agent's root: {_reason(built.stderr)}")
        # Only now: the first child after this is the namespace's init.
        unshare(CLONE_NEWPID)
        control.sendall(b"r")  # gateway run: the command starts now
        control.close()
    except OSError as e:
        return _fail(f"cannot make the agent's namespaces: {e.strerror or e}")
    init = os.fork()
    if init == 0:
        os._exit(_init(spec))
    _forward_signals(init)
    return _exit_code(_wait_for(init))


def _own_user_namespace() -> None:
    """A user namespace in which the caller is root (its own uid and gid, nothing else:
    what an unprivileged process may map)."""
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER)
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


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
        drop_privileges(last_cap, groups=not spec.userns)
    except OSError as e:
        os.kill(agent, signal.SIGKILL)
        return _fail(f"cannot drop privileges: {e.strerror or e}")
    _forward_signals(agent)
    return _exit_code(_wait_for(agent))


def _exec_agent(spec: StageSpec, last_cap: int) -> int:
    for sig in (*FORWARDED, *FROM_TERMINAL):
        signal.signal(sig, signal.SIG_DFL)
    try:
        drop_privileges(last_cap, spec.uid, spec.gid, groups=not spec.userns)
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


def _reason(stderr: str) -> str:
    """The line that says what failed (mount(8) adds a hint about dmesg after it)."""
    lines = [line.strip() for line in stderr.splitlines()
             if line.strip() and "dmesg(1)" not in line]
    return lines[-1] if lines else "(no message)"


def _fail(message: str) -> int:
    print(f"gateway run: {message}; the command was not run", file=sys.stderr)
    return EXIT_SANDBOX


if __name__ == "__main__":
    sys.exit(main(sys.argv))
