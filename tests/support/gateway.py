"""A real `gateway up` in a subprocess, for tests that send real traffic through it.

`sealed=True` starts it in a network namespace of its own that has only loopback: a
test of targets that must never be contacted (cloud metadata, IP literals of other
hosts) then cannot send a packet anywhere even if the gateway were wrong. Clients for a
sealed gateway run in its namespace through `client_command`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.audit.reader import iter_entries

START_TIMEOUT = 20.0


class RunningGateway:
    def __init__(self, directory: Path, policy: str, *, hosts: str = "",
                 agents: str | None = None, upstream_ca: Path | None = None,
                 simulate: bool = False, sealed: bool = False,
                 extra: Sequence[str] = ()) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.policy_path = self.dir / "policy.yaml"
        self.policy_path.write_text(policy)
        self.state = self.dir / "state"
        self.sealed = sealed
        args = ["--policy", str(self.policy_path), "--listen", "127.0.0.1:0",
                "--state-dir", str(self.state), "--api-listen", "127.0.0.1:0", *extra]
        if hosts:
            (self.dir / "hosts").write_text(hosts)
            args += ["--hosts-file", str(self.dir / "hosts")]
        if agents is not None:
            (self.dir / "agents.yaml").write_text(agents)
            os.chmod(self.dir / "agents.yaml", 0o600)
            args += ["--agents", str(self.dir / "agents.yaml")]
        if upstream_ca is not None:
            args += ["--upstream-ca", str(upstream_ca)]
        if simulate:
            args.append("--simulate")
        command = [sys.executable, "-m", "gateway", "up", *args]
        if sealed:
            command = ["unshare", "--net", "--", "sh", "-c",
                       'ip link set lo up && exec "$@"', "sh", *command]
        self.stdout = open(self.dir / "stdout", "w+")  # noqa: SIM115 - closed in stop()
        self.stderr = open(self.dir / "stderr", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self.stdout, stderr=self.stderr,
                                        stdin=subprocess.DEVNULL)
        self.info = self._wait_ready()
        url = urlsplit(self.info["proxy"])
        self.proxy_url: str = self.info["proxy"]
        self.proxy_host, self.proxy_port = str(url.hostname), int(url.port or 0)
        self.ca_cert = Path(self.info["ca_cert"])
        self.audit_log = Path(self.info["audit_log"])
        self.api_tcp: tuple[str, int] | None = tuple(self.info["api_tcp"]) \
            if self.info.get("api_tcp") else None  # type: ignore[assignment]

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT
        state_file = self.state / "gateway.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}: "
                                   f"{self.read_stderr()}")
            if state_file.exists():
                try:
                    return dict(json.loads(state_file.read_text()))
                except ValueError:
                    pass
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError(f"gateway did not start: {self.read_stderr()}")

    def read_stderr(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return (self.dir / "stderr").read_text()

    def read_stdout(self) -> str:
        if not self.stdout.closed:
            self.stdout.flush()
        return (self.dir / "stdout").read_text()

    # -- clients ------------------------------------------------------------------------

    def env(self, credentials: str | None = None) -> dict[str, str]:
        """An environment whose proxy and CA variables point at this gateway."""
        url = self.proxy_url
        if credentials:
            url = url.replace("http://", f"http://{credentials}@", 1)
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
        env.update({"http_proxy": url, "https_proxy": url, "HTTP_PROXY": url,
                    "HTTPS_PROXY": url, "NO_PROXY": "", "no_proxy": ""})
        return env

    def client_command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run where this gateway's proxy is reachable (its namespace, if sealed)."""
        if not self.sealed:
            return list(argv)
        return ["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "--", *argv]

    def curl(self, *args: str, credentials: str | None = None, write_out: str = "",
             timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """curl through the gateway, printing `write_out` and then the status code last,
        on its own line."""
        argv = ["curl", "-sS", "--max-time", "10", "-w", write_out + "\n%{http_code}", "--cacert",
                str(self.ca_cert), "--proxy", self.proxy_url, *args]
        if credentials:
            argv += ["--proxy-user", credentials]
        return subprocess.run(self.client_command(argv), capture_output=True, text=True,
                              errors="replace", timeout=timeout, env=self.env(), check=False)

    def gateway_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", *args, "--state-dir",
                               str(self.state)], capture_output=True, text=True, timeout=30,
                              check=False)

    # -- the audit log --------------------------------------------------------------------

    def entries(self) -> list[dict[str, object]]:
        return list(iter_entries(self.audit_log))

    def wait_for(self, predicate: Callable[[dict[str, object]], bool], *, count: int = 1,
                 timeout: float = 5.0) -> list[dict[str, object]]:
        """Entries matching `predicate`, once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.entries() if predicate(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def decisions(self, **match: object) -> list[dict[str, object]]:
        """Decision entries (those with a verdict) whose members equal `match`."""
        return [e for e in self.entries() if "verdict" in e and e.get("source") == "proxy"
                and all(e.get(k) == v for k, v in match.items())]

    def verify(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "audit", "verify",
                               str(self.audit_log), "--key-file", f"{self.audit_log}.key"],
                              capture_output=True, text=True, timeout=60, check=False)

    # -- life cycle ---------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.stdout.close()
        self.stderr.close()
        return self.process.returncode


def have_namespaces() -> bool:
    """Whether this process may create network namespaces (root with unshare and ip)."""
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("ip")) \
        and bool(shutil.which("nsenter"))
