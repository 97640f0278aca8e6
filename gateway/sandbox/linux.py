"""The few Linux system calls the sandbox needs that Python 3.11's `os` lacks: unshare,
mount, and dropping capabilities. Each raises OSError with errno on failure."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    """New namespaces for the calling thread (a new PID namespace: for its children)."""
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(_libc.mount(source.encode(), target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {target}")


def not_dumpable() -> None:
    """Keep processes of the same user from reading this one's memory, environment or
    file descriptors through /proc or ptrace (reset by execve: the agent's own
    programs are not affected)."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "set not dumpable")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def last_capability() -> int:
    """The highest capability number this kernel knows (read before leaving /proc)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def drop_privileges(last_cap: int, uid: int = 0, gid: int = 0, *, groups: bool = True) -> None:
    """Become `uid`:`gid` with no capability now or after any exec, and no way to gain
    one (setuid files, file capabilities): empty bounding and ambient sets,
    no_new_privs, and empty effective, permitted and inheritable sets."""
    for cap in range(last_cap + 1):
        _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
           "clear ambient capabilities")
    if groups:  # a user namespace made without root may not set them (setgroups deny)
        os.setgroups([gid] if gid else [])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def capabilities_of(pid: int | str = "self") -> dict[str, int]:
    """CapEff, CapPrm, CapBnd and CapAmb of a process, from /proc (for checks)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
                out[name] = int(value.strip(), 16)
    return out
