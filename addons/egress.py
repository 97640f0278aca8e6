"""The gateway's egress addon for mitmproxy.

    mitmdump -s addons/egress.py --set policy=policies/default.yaml

Every CONNECT and request is decided by the policy and recorded in the audit log
before anything goes upstream; see docs/proxy.md for the options. `gateway up` runs
the same addon inside the gateway daemon.
"""

from gateway.proxy.addon import EgressGuard

addons = [EgressGuard()]
