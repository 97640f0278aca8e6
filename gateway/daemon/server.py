"""`gateway up`: one process holding the proxy, the engine, the audit writer, the
policy watcher, the decision API and the admin socket.

mitmproxy is embedded with only the addons a forwarding proxy needs (not mitmdump's
full default chain, which costs a third of its CPU per connection) plus EgressGuard.
Everything shares one Runtime, so the proxy, the API and `gateway status` see one
policy and one log. SIGTERM/SIGINT stop cleanly with the log flushed; SIGHUP reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mitmproxy import master, options
from mitmproxy.addons import (
    core,
    disable_h2c,
    errorcheck,
    next_layer,
    proxyserver,
    termlog,
    tlsconfig,
)

from gateway.audit.keys import writer_key
from gateway.audit.writer import AuditWriter
from gateway.daemon.admin import AdminSocket
from gateway.daemon.api import DecisionApi
from gateway.daemon.state import (
    CA_BUNDLE,
    STATE_FILE,
    ca_bundle,
    environment_lines,
    loop_factory,
)
from gateway.daemon.watcher import PolicyWatcher
from gateway.errors import GatewayError
from gateway.fs.watch import WriteWatcher
from gateway.proxy.addon import EgressGuard
from gateway.proxy.resolver import Resolver, load_hosts_file
from gateway.runtime import Runtime

CA_CERT = "mitmproxy-ca-cert.pem"
PUBLIC_CA_CERT = "ca-cert.pem"
GC_THRESHOLD = 20_000
DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    policy: Path
    state_dir: Path
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    api_listen: tuple[str, int] | None = None
    api_socket: Path | None = None
    admin_socket: Path | None = None
    audit_log: Path | None = None
    audit_key_file: Path | None = None
    checkpoint_sink: str | None = None
    agents: Path | None = None
    hosts_file: Path | None = None
    upstream_ca: Path | None = None
    project_dir: str | None = None
    simulate: bool = False
    watch: tuple[tuple[Path, Path], ...] = ()  # (directory, the path the agent sees)
    watch_agent: str | None = None

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "ca"

    @property
    def ca_cert(self) -> Path:
        """The CA's public certificate, readable by everyone; its key stays in ca/."""
        return self.state_dir / PUBLIC_CA_CERT

    @property
    def log_path(self) -> Path:
        return self.audit_log or self.state_dir / "audit.jsonl"

    @property
    def api_path(self) -> Path:
        return self.api_socket or self.state_dir / "api.sock"

    @property
    def admin_path(self) -> Path:
        return self.admin_socket or self.state_dir / "admin.sock"


def run(config: DaemonConfig, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the gateway until it is told to stop; the process's exit status."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_serve(config, out, err))


async def _serve(config: DaemonConfig, out: TextIO, err: TextIO) -> int:
    _check_listen(config.listen, "--listen")
    _check_readable(config.upstream_ca, "--upstream-ca")
    try:
        # Others may pass through (to the API socket and the CA certificate) but not
        # list it; the CA's key and the admin socket are the owner's alone.
        config.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(config.state_dir, 0o711)
        config.ca_dir.mkdir(exist_ok=True, mode=0o700)
    except OSError as e:
        raise GatewayError(f"--state-dir {config.state_dir}: cannot create it: "
                           f"{e.strerror or e}") from None
    key = writer_key(config.log_path, config.audit_key_file, os.environ)
    resolver = Resolver(load_hosts_file(config.hosts_file) if config.hosts_file else {})
    writer = AuditWriter(config.log_path, key=key, checkpoint_sink=config.checkpoint_sink)
    writer.start()
    try:
        runtime = Runtime(config.policy, writer, agents_path=config.agents,
                          project_dir=config.project_dir, simulate=config.simulate)
        fs_watcher = WriteWatcher(
            runtime, [d for d, _ in config.watch], agent=config.watch_agent,
            path_map={os.fspath(d): os.fspath(seen) for d, seen in config.watch}) \
            if config.watch else None
    except GatewayError:
        writer.close()
        raise
    proxy = master.Master(_options(config), with_termlog=False)
    started = _Started(config, runtime, out, err)
    proxy.addons.add(termlog.TermLog(err), errorcheck.ErrorCheck(), core.Core(),
                     proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                     disable_h2c.DisableH2C(), EgressGuard(runtime, resolver), started)
    proxy.options.update(termlog_verbosity="warn")
    api = DecisionApi(runtime, unix_path=os.fspath(config.api_path), tcp=config.api_listen)
    admin = AdminSocket(runtime, os.fspath(config.admin_path), on_stop=proxy.shutdown)
    watcher = PolicyWatcher(runtime, err)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, proxy.shutdown)
    loop.add_signal_handler(signal.SIGINT, proxy.shutdown)
    loop.add_signal_handler(signal.SIGHUP, watcher.reload_soon, "SIGHUP")
    code = 0
    try:
        await api.start()
        await admin.start()
        started.api = api
        watcher.start()
        if fs_watcher is not None:
            fs_watcher.start()
        await proxy.run()
    except SystemExit as e:  # errorcheck: the proxy could not start (port in use...)
        code = e.code if isinstance(e.code, int) else 2
    finally:
        await _drain(proxy)
        watcher.stop()
        if fs_watcher is not None:
            fs_watcher.stop()
        await admin.close()
        await api.close()
        with contextlib.suppress(OSError):
            (config.state_dir / STATE_FILE).unlink()
        writer.close()
    if writer.error:
        print(f"gateway: audit log failed: {writer.error}", file=err)
        return code or 1
    print("gateway: stopped; audit log flushed", file=err)
    return code


async def _drain(proxy: master.Master, seconds: float = DRAIN_SECONDS) -> None:
    """Stop listening, give open connections a moment to finish (their decisions are
    still recorded), then cancel the rest, before the log is closed."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_ignore_cancelled)  # a cancelled connection is no error
    server = proxy.addons.get("proxyserver")
    with contextlib.suppress(Exception):  # a listener that never started cannot stop
        await server.servers.update([])
    deadline = loop.time() + seconds
    while server.connections and loop.time() < deadline:
        await asyncio.sleep(0.02)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def _check_readable(path: Path | None, flag: str) -> None:
    if path is None:
        return
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise GatewayError(f"{flag} {path}: cannot read it: {e.strerror or e}") from None


def _check_listen(address: tuple[str, int], flag: str) -> None:
    """Say plainly when the proxy's address cannot be had, before anything starts."""
    host, port = address
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise GatewayError(f"{flag} {host}:{port}: cannot listen there: "
                               f"{e.strerror or e}") from None


def _options(config: DaemonConfig) -> options.Options:
    opts = options.Options()
    opts.update_defer(
        listen_host=config.listen[0], listen_port=config.listen[1],
        confdir=os.fspath(config.ca_dir),
        # Dial only after the request was decided, and never buffer huge bodies.
        connection_strategy="lazy", stream_large_bodies="1m",
    )
    if config.upstream_ca is not None:
        opts.update_defer(ssl_verify_upstream_trusted_ca=os.fspath(config.upstream_ca))
    return opts


class _Started:
    """Once the proxy listens: settle the collector, say where everything is, and
    leave it in gateway.json for `gateway env` and tooling."""

    def __init__(self, config: DaemonConfig, runtime: Runtime, out: TextIO, err: TextIO) -> None:
        self.config, self.runtime, self.out, self.err = config, runtime, out, err
        self.api: DecisionApi | None = None

    def running(self) -> None:
        from mitmproxy import ctx

        _publish(self.config.ca_dir / CA_CERT, self.config.ca_cert)
        _write_public(self.config.state_dir / CA_BUNDLE,
                      ca_bundle(self.config.ca_cert.read_bytes()))
        # What start-up allocated lives as long as the process: keep the collector off
        # it, and collect young objects less often (each request makes thousands).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 20, 20)

        servers = ctx.master.addons.get("proxyserver").listen_addrs()
        host, port = servers[0][:2] if servers else self.config.listen
        shown = f"[{host}]" if ":" in host else host
        proxy_url = f"http://{shown}:{port}"
        policy = self.runtime.policy
        info: dict[str, Any] = {
            "pid": os.getpid(), "proxy": proxy_url, "ca_cert": os.fspath(self.config.ca_cert),
            "ca_bundle": os.fspath(self.config.state_dir / CA_BUNDLE),
            "api_socket": os.fspath(self.config.api_path),
            "api_tcp": [self.config.api_listen[0], self.api.tcp_port]
            if self.api and self.config.api_listen and self.api.tcp_port else None,
            "admin_socket": os.fspath(self.config.admin_path),
            "audit_log": os.fspath(self.config.log_path),
        }
        _write_json(self.config.state_dir / STATE_FILE, info)
        print(f"gateway: proxy listening on {proxy_url} (policy {self.config.policy}, "
              f"sha256 {self.runtime.policy_sha256[:12]}, mode {policy.mode.value})",
              file=self.err)
        print(f"gateway: CA certificate {self.config.ca_cert}; with the system's CAs "
              f"{info['ca_bundle']}", file=self.err)
        api = f"unix:{info['api_socket']}"
        if info["api_tcp"]:
            api += f", tcp:{info['api_tcp'][0]}:{info['api_tcp'][1]}"
        print(f"gateway: decision API {api}; admin socket {info['admin_socket']}", file=self.err)
        print(f"gateway: audit log {info['audit_log']}"
              + ("" if self.runtime.writer.keyed else " (UNKEYED)"), file=self.err)
        print("# the agent's environment:", file=self.out)
        for line in environment_lines(proxy_url, self.config.ca_cert,
                                      Path(info["ca_bundle"])):
            print(line, file=self.out)
        self.out.flush()
        self.err.flush()


def _publish(source: Path, target: Path) -> None:
    """Copy the CA certificate (never its key) to where agents can read it."""
    _write_public(target, source.read_bytes())


def _write_public(target: Path, data: bytes) -> None:
    """Replace `target` with `data`, readable by everyone, atomically."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
