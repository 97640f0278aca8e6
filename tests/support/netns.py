"""A test host in a network namespace the test makes itself, joined to this one by a
veth pair: an address outside the machine's loopback that is still the test's own.

It runs a TCP listener and a UDP listener (a stand-in DNS server) that write every
connection and datagram they receive to a file, so a test can show both that the host
is reachable from here and that nothing from a confined agent arrived.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

LISTENER = r"""
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
tcp = socket.socket(socket.AF_INET6); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
tcp.bind(("::", int(sys.argv[2]))); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 53))
def serve_udp():
    while True:
        data, peer = udp.recvfrom(2048)
        log.write(f"udp {peer[0]}\n"); udp.sendto(data, peer)
threading.Thread(target=serve_udp, daemon=True).start()
log.write("ready\n")
while True:
    conn, peer = tcp.accept(); log.write(f"tcp {peer[0].removeprefix('::ffff:')}\n"); conn.close()
"""


class OutsideHost:
    """`ip netns` host at 10.231.<n>.2 and fd00:231:<n>::2, this namespace's end at
    10.231.<n>.1 and fd00:231:<n>::1."""

    def __init__(self, directory: Path, port: int = 8080) -> None:
        n = os.getpid() % 200 + 20
        self.name = f"gwtest-{os.getpid()}"
        self.veth = f"gwt{os.getpid() % 100000}"
        self.address = f"10.231.{n}.2"
        self.address6 = f"fd00:231:{n}::2"
        self.port = port
        self.log = directory / "outside.log"
        self.log.write_text("")
        inside = ["ip", "netns", "exec", self.name]
        for argv in (["ip", "netns", "add", self.name],
                     ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                      "netns", self.name],
                     ["ip", "addr", "add", f"10.231.{n}.1/30", "dev", self.veth],
                     ["ip", "-6", "addr", "add", f"fd00:231:{n}::1/64", "dev", self.veth,
                      "nodad"],
                     ["ip", "link", "set", self.veth, "up"],
                     [*inside, "ip", "addr", "add", f"{self.address}/30", "dev", "eth0"],
                     [*inside, "ip", "-6", "addr", "add", f"{self.address6}/64", "dev", "eth0",
                      "nodad"],
                     [*inside, "ip", "link", "set", "eth0", "up"],
                     [*inside, "ip", "link", "set", "lo", "up"]):
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
        self.process = subprocess.Popen([*inside, sys.executable, "-c", LISTENER,
                                         str(self.log), str(port)])
        deadline = time.monotonic() + 10
        while "ready" not in self.log.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("the outside host did not start")
            time.sleep(0.05)

    def received(self, at_least: int = 0, timeout: float = 5.0) -> list[str]:
        """What arrived, once at least `at_least` entries have (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log.read_text().splitlines() if line != "ready"]
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
