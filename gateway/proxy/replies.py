"""What the proxy tells an agent it refused, and what it writes down about a URL.

A refusal names the verdict, the rule and the reason, in plain text or, when the
client asks for JSON, as an object: agents read these and change course. URLs go into
the audit log without secrets: no userinfo, and query values only when they are short
and their names do not look like credentials.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import orjson
from mitmproxy import http

from gateway.engine import Decision

REDACTED = "REDACTED"
_SECRET_NAME = re.compile(
    r"(?i)(token|secret|passw|pwd|auth|key|sig|session|cred|code|bearer|jwt|cookie)")
MAX_KEPT_VALUE = 16
MAX_URL_LOGGED = 2048

STATUS_TEXT = {403: "Forbidden", 421: "Misdirected Request", 502: "Bad Gateway",
               503: "Service Unavailable"}


def refusal(status: int, decision: Decision | None, reason: str,
            accept: str | None) -> http.Response:
    """A refusal the agent can read: `text/plain` unless it accepts JSON. The same facts
    go in `X-Gateway-*` headers for clients that only look at headers."""
    verdict = decision.verdict.value if decision else "DENY"
    rule = "default" if decision is None or decision.rule is None else str(decision.rule)
    if accept and "application/json" in accept.lower():
        body = orjson.dumps({
            "gateway": "refused", "status": status, "verdict": verdict, "rule": rule,
            "reason": reason,
            **({"action": decision.action.value, "target": decision.target,
                "agent": decision.agent} if decision else {}),
        }) + b"\n"
        kind = "application/json"
    else:
        target = f" {decision.target}" if decision else ""
        body = f"gateway: {STATUS_TEXT.get(status, 'refused').lower()}:{target} " \
               f"({reason})\n".encode()
        kind = "text/plain; charset=utf-8"
    return http.Response.make(status, body, {
        "Content-Type": kind,
        "X-Gateway-Verdict": verdict,
        "X-Gateway-Rule": rule,
        "X-Gateway-Reason": _header_safe(reason),
        "Connection": "close",
    })


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")[:512] \
        .replace("\r", " ").replace("\n", " ")


def redact_url(url: str) -> str:
    """The URL for the log: userinfo dropped, query values that may be secrets replaced,
    fragment dropped, at most MAX_URL_LOGGED characters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(name, safe='')}="
            + (quote(value, safe='') if _keep(name, value) else REDACTED)
            for name, value in pairs)
    logged = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return logged if len(logged) <= MAX_URL_LOGGED else logged[:MAX_URL_LOGGED] + "..."


def _keep(name: str, value: str) -> bool:
    return len(value) <= MAX_KEPT_VALUE and not _SECRET_NAME.search(name)
