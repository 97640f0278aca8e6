"""What the proxy tells a refused agent, and what it logs of a URL."""

from __future__ import annotations

import json

import pytest

from gateway.engine import Request, decide
from gateway.policy.compiled import compile_policy_text
from gateway.policy.model import Action
from gateway.proxy.replies import REDACTED, redact_url, refusal

POLICY = compile_policy_text("version: 1\ndefault: deny\n")


@pytest.mark.parametrize(("url", "logged"), [
    ("https://api.test/v1/items?page=2&sort=asc", "https://api.test/v1/items?page=2&sort=asc"),
    ("https://api.test/x?token=abc", f"https://api.test/x?token={REDACTED}"),
    ("https://api.test/x?access_key=abc&X-Amz-Signature=ff", f"https://api.test/x?access_key={REDACTED}&X-Amz-Signature={REDACTED}"),
    ("https://api.test/x?q=" + "a" * 40, f"https://api.test/x?q={REDACTED}"),
    ("https://user:secret@api.test/x", "https://api.test/x"),
    ("https://api.test/x#frag", "https://api.test/x"),
    ("https://api.test/x?code=12&state=ok", f"https://api.test/x?code={REDACTED}&state=ok"),
])
def test_urls_are_logged_without_secrets(url: str, logged: str) -> None:
    """Userinfo, fragments and query values that may be credentials never reach the log."""
    assert redact_url(url) == logged


def test_long_urls_are_cut() -> None:
    """A URL is logged with at most 2,048 characters."""
    assert len(redact_url("https://api.test/" + "p" * 5000)) == 2048 + 3


def test_refusal_names_verdict_rule_and_reason_in_text_and_headers() -> None:
    """The plain-text refusal says what was refused and why; headers repeat it."""
    decision = decide(POLICY, Request(Action.NETWORK, "evil.test:443", agent="a1"))
    response = refusal(403, decision, decision.reason, None)
    assert response.status_code == 403
    assert response.text == f"gateway: forbidden: evil.test ({decision.reason})\n"
    assert response.headers["X-Gateway-Verdict"] == "DENY"
    assert response.headers["X-Gateway-Rule"] == "default"
    assert response.headers["X-Gateway-Reason"] == decision.reason


def test_refusal_is_json_for_clients_that_accept_it() -> None:
    """`Accept: application/json` gets an object an agent can parse."""
    decision = decide(POLICY, Request(Action.NETWORK, "evil.test:443", agent="a1"))
    response = refusal(421, decision, "one identity per request: x", "application/json, */*")
    body = json.loads(response.text)
    assert body == {"gateway": "refused", "status": 421, "verdict": "DENY", "rule": "default",
                    "reason": "one identity per request: x", "action": "network",
                    "target": "evil.test", "agent": "a1"}
    assert response.headers["Content-Type"] == "application/json"


def test_reason_header_is_ascii_on_one_line() -> None:
    """A reason with newlines or non-ASCII text still makes one valid header."""
    response = refusal(403, None, "bad\r\nhost ü", None)
    assert response.headers["X-Gateway-Reason"] == "bad  host \\xfc"
