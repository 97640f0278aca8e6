"""The gateway's Python SDK: the policy and the audit log between code an agent writes
and the code running.

- `pyanalysis`, `pyvalues`, `pycalls`: Python source -> the actions it would take (pure)
- `blocks`: a code block by language -> actions, each decided; the agent's message
- `deciders`: a local policy + audit log, or a running gateway's decision API
- `guard`: a decorator deciding each call of a tool function
- `executor`: GuardedExecutor for AutoGen (the `[autogen]` extra; imported on use)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.sdk.blocks import analyse_block, judge_block
from gateway.sdk.deciders import Decider, LocalDecider, RemoteDecider, Ruling, make_decider
from gateway.sdk.found import BlockAnalysis, Found
from gateway.sdk.guard import GatewayPermissionError, guard
from gateway.sdk.pyanalysis import analyse_python

if TYPE_CHECKING:
    from gateway.sdk.executor import GuardedExecutor

__all__ = ["BlockAnalysis", "Decider", "Found", "GatewayPermissionError", "GuardedExecutor",
           "LocalDecider", "RemoteDecider", "Ruling", "analyse_block", "analyse_python",
           "guard", "judge_block", "make_decider"]


def __getattr__(name: str) -> Any:
    """GuardedExecutor needs AutoGen; import it only when asked for."""
    if name == "GuardedExecutor":
        try:
            from gateway.sdk.executor import GuardedExecutor
        except ImportError as e:
            raise ImportError(f"GuardedExecutor needs AutoGen: pip install 'gateway[autogen]' "
                              f"({e})") from None
        return GuardedExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
