"""The gateway a run sends the agent to: one started for the run (`gateway up` in a
child process, its state in the run's private directory) or one already running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.daemon.state import read_state
from gateway.errors import GatewayError
from gateway.sandbox.relay import Target

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a running gateway is: from its gateway.json, or given by address. The log
    is None for a gateway whose log is not on this machine."""

    proxy_host: str
    proxy_port: int
    api: str  # unix:/PATH or tcp:HOST:PORT
    ca_cert: Path
    audit_log: Path | None

    @classmethod
    def from_state(cls, info: dict[str, object]) -> Endpoints:
        try:
            url = urlsplit(str(info["proxy"]))
            api_tcp = info.get("api_tcp")
            api = f"unix:{info['api_socket']}" if info.get("api_socket") else \
                f"tcp:{api_tcp[0]}:{api_tcp[1]}"  # type: ignore[index]
            return cls(proxy_host=str(url.hostname), proxy_port=int(url.port or 0), api=api,
                       ca_cert=Path(str(info["ca_cert"])),
                       audit_log=Path(str(info["audit_log"])))
        except (KeyError, TypeError, ValueError) as e:
            raise GatewayError(f"the gateway's state file is not usable: {e}") from None


def gateway_at(proxy: str, api: str, ca_cert: Path) -> Endpoints:
    """A gateway given by its proxy's HOST:PORT (or http://HOST:PORT), its decision
    API's address and its CA certificate; GatewayError naming what is wrong."""
    url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme != "http" or not url.hostname or not port or url.path not in ("", "/"):
        raise GatewayError(f"--gateway {proxy}: expected a state directory or the proxy's "
                           "HOST:PORT")
    try:
        Target.parse(api)
    except ValueError:
        raise GatewayError(f"--gateway-api {api}: expected tcp:HOST:PORT or a socket "
                           "path") from None
    if not ca_cert.is_file():
        raise GatewayError(f"--gateway-ca {ca_cert}: no such file")
    return Endpoints(proxy_host=url.hostname, proxy_port=port, api=api, ca_cert=ca_cert,
                     audit_log=None)


def running_gateway(state_dir: Path) -> Endpoints:
    """The gateway running with `state_dir`; GatewayError when none answers there."""
    state = read_state(state_dir)
    endpoints = Endpoints.from_state(state)
    pid = state.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise GatewayError(f"no gateway is running with state directory {state_dir} "
                               f"(process {pid} is gone)") from None
        except PermissionError:
            pass
    return endpoints


class EmbeddedGateway:
    """`gateway up` for one run. Its output goes to files in `directory`; the last lines
    of its errors are shown when it fails to start."""

    def __init__(self, directory: Path, args: list[str]) -> None:
        self.directory = directory
        self.state = directory / "state"
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start it; `ready()` waits for it (the run prepares the rest meanwhile)."""
        command = [sys.executable, "-m", "gateway", "up", "--listen", "127.0.0.1:0",
                   "--state-dir", str(self.state), *self.args]
        with open(self.directory / "gateway.out", "wb") as out, \
                open(self.directory / "gateway.err", "wb") as err:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=err, start_new_session=True)

    def ready(self) -> Endpoints:
        """Its endpoints once it listens; GatewayError when it stops or takes too long."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + START_TIMEOUT
        state_file = self.state / "gateway.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayError(f"the gateway did not start: {self.last_error()}")
            if state_file.exists():
                try:
                    return Endpoints.from_state(json.loads(state_file.read_text()))
                except ValueError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise GatewayError(f"the gateway did not start within {START_TIMEOUT:.0f} s: "
                           f"{self.last_error()}")

    def stop(self) -> int | None:
        """SIGTERM (it flushes the log), then wait; its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def last_error(self) -> str:
        try:
            lines = (self.directory / "gateway.err").read_text(errors="replace").splitlines()
        except OSError:
            return "(no output)"
        lines = [line for line in lines if line.strip()]
        if not lines:
            return "(no output)"
        return lines[-1].removeprefix("gateway: ").removeprefix("error: ")
