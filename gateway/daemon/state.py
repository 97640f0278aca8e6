"""Where a running gateway keeps its state and what an agent needs to use it, read by
`gateway env`, `gateway status` and `gateway run` without loading the proxy; and the
event loop the gateway's processes run on."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

STATE_FILE = "gateway.json"
CA_BUNDLE = "ca-bundle.pem"
# Each names one file of trusted CAs: the bundle (the gateway's CA and the system's).
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
                "GIT_SSL_CAINFO")
SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                   "/etc/ssl/cert.pem")


def default_state_dir() -> Path:
    """$GATEWAY_STATE_DIR, else $XDG_STATE_HOME/gateway, else ~/.local/state/gateway."""
    if os.environ.get("GATEWAY_STATE_DIR"):
        return Path(os.environ["GATEWAY_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "gateway"


def environment_lines(proxy_url: str, ca_cert: Path, ca_bundle: Path | None = None) -> list[str]:
    """What an agent's environment needs to use the gateway (both spellings of the proxy
    variables: curl reads only lower-case `http_proxy`). The CA variables name the
    bundle, so that hosts the proxy passes through untouched verify too; Node's
    NODE_EXTRA_CA_CERTS adds to its own roots and takes the gateway's CA alone."""
    lines = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        lines.append(f"{name}={proxy_url}")
    lines += ["NO_PROXY=", "no_proxy="]
    lines += [f"{name}={ca_bundle or ca_cert}" for name in CA_VARIABLES]
    lines.append(f"NODE_EXTRA_CA_CERTS={ca_cert}")
    return lines


def ca_bundle(gateway_ca: bytes) -> bytes:
    """The gateway's CA followed by the system's trusted CAs (none where none is found):
    an agent trusting it verifies decrypted connections and passed-through ones."""
    system = b""
    for candidate in (ssl.get_default_verify_paths().cafile, *SYSTEM_CA_FILES):
        if candidate and os.path.isfile(candidate):
            with open(candidate, "rb") as f:
                system = f.read()
            break
    return gateway_ca.rstrip(b"\n") + b"\n" + system


def read_state(state_dir: Path) -> dict[str, Any]:
    """The running gateway's gateway.json; GatewayError when none runs there."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise GatewayError(f"no gateway is running with state directory {state_dir}") from None
    if not isinstance(data, dict):
        raise GatewayError(f"{state_dir / STATE_FILE}: not a gateway state file")
    return data



def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux and macOS wheels): the proxy's own per-connection
    cost is about a tenth lower on it, and `gateway run`'s relays are quicker too.
    Otherwise asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
