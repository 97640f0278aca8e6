"""What a confined agent is given besides its root: its environment (the proxy with its
credentials, the CA files, the shim first on PATH, nothing of the gateway's own), the
CA files themselves, and the terminals of the run's stdio."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from gateway.daemon.state import ca_bundle, environment_lines

PROXY_PORT = 8080  # inside the agent's network namespace, which has nothing else
API_PORT = 8081
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Never handed to the agent: they would let it find or sign the log, reach the
# gateway's own state, or change what its programs load.
WITHHELD = ("GATEWAY_AUDIT_KEY", "GATEWAY_AUDIT_KEY_FILE", "GATEWAY_STATE_DIR",
            "GATEWAY_TOKEN", "GATEWAY_AGENT", "LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH")
KEPT_WHEN_CLEAN = ("HOME", "TERM", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "COLORTERM")


def agent_environment(environ: Mapping[str, str], *, agent: str, token: str, shim_dir: Path,
                      bundle: Path, gateway_ca: Path, clean: bool) -> dict[str, str]:
    """The caller's environment (or, `clean`, only its terminal, locale and identity
    variables) without the gateway's own and any proxy settings, plus the agent's."""
    if clean:
        env = {k: v for k, v in environ.items() if k in KEPT_WHEN_CLEAN or k.startswith("LC_")}
    else:
        env = {k: v for k, v in environ.items()
               if k not in WITHHELD and k.lower() not in ("http_proxy", "https_proxy",
                                                          "all_proxy", "no_proxy")}
    credentials = f"{quote(agent, safe='')}:{quote(token, safe='')}@" if token else ""
    proxy = f"http://{credentials}127.0.0.1:{PROXY_PORT}"
    for line in environment_lines(proxy, gateway_ca, bundle):
        name, _, value = line.partition("=")
        env[name] = value
    env["PATH"] = f"{shim_dir}:{AGENT_PATH}"
    env["TMPDIR"] = "/tmp"
    env["GATEWAY_AGENT"] = agent
    if token:
        env["GATEWAY_TOKEN"] = token
    return env


def ca_files(directory: Path, gateway_ca: Path) -> tuple[Path, Path]:
    """The gateway's CA alone (for NODE_EXTRA_CA_CERTS) and the bundle of it and the
    system's CAs, where the agent can read them."""
    directory.mkdir(mode=0o755)
    ca = gateway_ca.read_bytes()
    (directory / "gateway-ca.pem").write_bytes(ca)
    (directory / "ca-bundle.pem").write_bytes(ca_bundle(ca))
    return directory / "ca-bundle.pem", directory / "gateway-ca.pem"


def terminals() -> tuple[str, ...]:
    """The terminals of this process's stdin, stdout and stderr (a pseudo-terminal under
    /dev/pts), each once."""
    found: list[str] = []
    for fd in (0, 1, 2):
        try:
            name = os.ttyname(fd)
        except OSError:
            continue
        if name.startswith("/dev/pts/") and name not in found:
            found.append(name)
    return tuple(found)
