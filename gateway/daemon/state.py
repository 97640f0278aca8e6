"""Where a running gateway keeps its state and what an agent needs to use it, read by
`gateway env`, `gateway status` and `gateway run` without loading the proxy; and the
event loop the gateway's processes run on."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

STATE_FILE = "gateway.json"
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE",
                "PIP_CERT", "GIT_SSL_CAINFO")


def default_state_dir() -> Path:
    """$GATEWAY_STATE_DIR, else $XDG_STATE_HOME/gateway, else ~/.local/state/gateway."""
    if os.environ.get("GATEWAY_STATE_DIR"):
        return Path(os.environ["GATEWAY_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "gateway"


def environment_lines(proxy_url: str, ca_cert: Path) -> list[str]:
    """What an agent's environment needs to use the gateway (both spellings of the proxy
    variables: curl reads only lower-case `http_proxy`)."""
    lines = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        lines.append(f"{name}={proxy_url}")
    lines += ["NO_PROXY=", "no_proxy="]
    lines += [f"{name}={ca_cert}" for name in CA_VARIABLES]
    return lines


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
