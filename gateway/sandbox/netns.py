"""The agent's network namespace: loopback only, made and entered from threads of this
process, so that listeners inside it can be served by an event loop outside it.

A namespace is a thread's property on Linux: a helper thread unshares or enters it,
creates sockets there and ends; the sockets stay in that namespace, usable from any
thread. Nothing here sends a packet off the machine: the probes only ask the kernel
for a route (a UDP connect sends nothing).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from gateway.sandbox.linux import CLONE_NEWNET, setns, unshare

T = TypeVar("T")

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
# Documentation addresses (RFC 5737, RFC 3849): a route lookup for them must fail.
PROBE_ADDRESSES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))


def _in_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread and return its result (or raise its exception): the
    namespace changes it makes die with the thread."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as e:
            error.append(e)

    thread = threading.Thread(target=body, name="gateway-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def new_namespace() -> int:
    """A new network namespace with its loopback up; an fd that holds it open."""
    def make() -> int:
        unshare(CLONE_NEWNET)
        fd = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            _loopback_up()
        except OSError:
            os.close(fd)
            raise
        return fd
    return _in_thread(make)


def run_inside(fd: int, fn: Callable[[], T]) -> T:
    """`fn()` in the namespace `fd`, on a thread of its own."""
    def inside() -> T:
        setns(fd, CLONE_NEWNET)
        return fn()
    return _in_thread(inside)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def listen(fd: int, port: int) -> list[socket.socket]:
    """TCP listeners on 127.0.0.1:port and, where IPv6 exists, [::1]:port, inside the
    namespace `fd`."""
    def bind() -> list[socket.socket]:
        out = []
        for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(128)
                s.setblocking(False)
            except OSError as e:
                s.close()
                if family == socket.AF_INET6 and e.errno in (errno.EADDRNOTAVAIL,
                                                             errno.EAFNOSUPPORT):
                    continue
                raise
            out.append(s)
        return out
    return run_inside(fd, bind)


def interfaces(fd: int) -> list[str]:
    """The names of the interfaces in the namespace `fd`."""
    return run_inside(fd, lambda: sorted(name for _, name in socket.if_nameindex()))


def routes_outside(fd: int) -> list[str]:
    """Each probe address the namespace `fd` has a route to (none is right): the kernel
    is asked by connecting a UDP socket, which sends nothing."""
    def probe() -> list[str]:
        reachable = []
        for address, family in PROBE_ADDRESSES:
            try:
                s = socket.socket(family, socket.SOCK_DGRAM)
            except OSError:
                continue  # no IPv6 in this kernel: nothing to route either
            with s:
                try:
                    s.connect((address, 53))
                except OSError as e:
                    if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL,
                                   errno.EAFNOSUPPORT):
                        continue
                    raise
                reachable.append(address)
        return reachable
    return run_inside(fd, probe)
