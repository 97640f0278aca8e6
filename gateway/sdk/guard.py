"""`guard`: a decorator for functions an agent calls as tools (sync or async). Each
call is decided on its arguments, and recorded, before the function runs; a refused
call raises `GatewayPermissionError`, whose text the agent sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from gateway.policy.model import Action
from gateway.sdk.deciders import Decider, Ruling, make_decider

P = ParamSpec("P")
R = TypeVar("R")
Target = str | Callable[[Mapping[str, Any]], object]


class GatewayPermissionError(PermissionError):
    """A call the gateway refused. `action`, `target` and `reason` say what and why."""

    def __init__(self, name: str, action: Action, target: str, reason: str) -> None:
        self.action, self.target, self.reason = action, target, reason
        super().__init__(f"the gateway refused {name}: {action.value} {target!r} is denied: "
                         f"{reason}")


def guard(action: str | Action, target: Target, *, decider: Decider | None = None,
          cwd: str | None = None, method: str | None = None,
          policy: str | os.PathLike[str] | None = None,
          audit_log: str | os.PathLike[str] | None = None, gateway: str | None = None,
          agent: str | None = None, token: str | None = None,
          simulate: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decide `action` on each call's `target` before the function runs.

    `target` names a parameter (`"path"`) or is a callable given the call's bound
    arguments by name, returning the target string. The decider is `decider=`, or one
    made from `policy=`/`audit_log=` or `gateway=` as for GuardedExecutor. A target
    that cannot be had (a missing argument, not a string) refuses the call.
    """
    kind = Action(action)
    chosen = decider or make_decider(policy=policy, audit_log=audit_log, gateway=gateway,
                                     agent=agent, token=token, simulate=simulate)

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)
        name = getattr(function, "__name__", "the call")

        def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            value, why = _target_of(signature, target, args, kwargs)
            details = {"call": name}
            if value is None:
                ruling = chosen.decide_unjudged(kind, why, details, dynamic=False)
                shown = "?"
            else:
                ruling = chosen.decide(kind, value, cwd=cwd, method=method, details=details)
                shown = value
            _enforce(name, kind, shown, ruling)

        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                await asyncio.to_thread(check, args, kwargs)
                return await function(*args, **kwargs)  # type: ignore[misc]
            return _resolved(guarded_async, function)  # type: ignore[return-value]

        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            check(args, kwargs)
            return function(*args, **kwargs)
        return _resolved(guarded, function)

    return wrap


def _resolved(wrapper: Callable[P, R], function: Callable[..., Any]) -> Callable[P, R]:
    """Give the wrapper the function's annotations as types, not strings: tool
    frameworks (AutoGen's FunctionTool) read them against the wrapper's module."""
    with contextlib.suppress(Exception):  # unresolvable: they stay as written
        wrapper.__annotations__ = typing.get_type_hints(function, include_extras=True)
    return wrapper


def _target_of(signature: inspect.Signature, target: Target, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> tuple[str | None, str]:
    """The call's target, or None and why not."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        return None, f"cannot analyse: the arguments do not fit the function: {e}"
    bound.apply_defaults()
    if isinstance(target, str):
        if target not in bound.arguments:
            return None, f"cannot analyse: the function has no parameter {target!r}"
        value = bound.arguments[target]
    else:
        try:
            value = target(bound.arguments)
        except Exception as e:  # a target function that fails refuses the call
            return None, f"cannot analyse: the target could not be computed ({type(e).__name__})"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        return None, f"cannot analyse: the target is {type(value).__name__}, not a string"
    return value, ""


def _enforce(name: str, action: Action, target: str, ruling: Ruling) -> None:
    if ruling.blocks:
        raise GatewayPermissionError(name, action, target, ruling.reason)
