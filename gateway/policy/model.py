"""The policy file's schema, version 1: pydantic models, unknown keys are errors.

These models only check shape. Selector syntax (hosts, globs, command patterns) is
checked when the policy is compiled, where the error can name the rule.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)


class Action(StrEnum):
    NETWORK = "network"
    FILE_READ = "file_read"
    FILE_WRITE = "file_write"
    SHELL_EXEC = "shell_exec"

    @property
    def selector(self) -> str:
        """The rule key that names this action's targets, also the decision's target key."""
        return _SELECTOR_OF[self]


_SELECTOR_OF = {
    Action.NETWORK: "host",
    Action.FILE_READ: "path",
    Action.FILE_WRITE: "path",
    Action.SHELL_EXEC: "command",
}


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Mode(StrEnum):
    ENFORCE = "enforce"
    SIMULATE = "simulate"


def _one_or_many(value: object) -> object:
    """Selectors and option lists may be written as one value or a list."""
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


NonEmptyStr = Annotated[StrictStr, Field(min_length=1, max_length=4096)]
StrList = Annotated[list[NonEmptyStr], BeforeValidator(_one_or_many), Field(min_length=1)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
PortList = Annotated[list[Port], BeforeValidator(_one_or_many), Field(min_length=1)]
Method = Annotated[StrictStr, Field(pattern=r"^[A-Za-z]+$", max_length=32)]
MethodList = Annotated[list[Method], BeforeValidator(_one_or_many), Field(min_length=1)]

_NETWORK_ONLY = ("host", "ports", "methods", "paths")


class Rule(BaseModel):
    """One rule. Exactly the selector key of its action is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    effect: Effect
    host: StrList | None = None
    ports: PortList | None = None
    methods: MethodList | None = None
    paths: StrList | None = None
    path: StrList | None = None
    command: StrList | None = None
    agents: StrList | None = None
    reason: Annotated[StrictStr, Field(max_length=1024)] | None = None
    overlay: StrictBool | None = None
    exec: StrictBool | None = None

    @model_validator(mode="after")
    def _selector_fits_action(self) -> Rule:
        wanted = self.action.selector
        for key in ("host", "path", "command"):
            if key != wanted and getattr(self, key) is not None:
                raise ValueError(
                    f"'{key}' does not apply to {self.action.value} rules; use '{wanted}'"
                )
        if getattr(self, wanted) is None:
            raise ValueError(f"{self.action.value} rules need '{wanted}'")
        if self.action is not Action.NETWORK:
            for key in _NETWORK_ONLY[1:]:
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' applies to network rules only")
        for key in ("overlay", "exec"):
            if getattr(self, key) is not None and (self.action is not Action.FILE_WRITE
                                                   or self.effect is not Effect.ALLOW):
                raise ValueError(f"'{key}' applies to file_write allow rules only")
        return self

    def selectors(self) -> list[str]:
        value = getattr(self, self.action.selector)
        assert value is not None  # guaranteed by _selector_fits_action
        return value


class ProxySettings(BaseModel):
    """How the egress proxy treats TLS.

    `auto` decrypts a connection only where a rule for its host has `methods` or
    `paths` (those can only be enforced request by request); `all` decrypts every
    connection. Hosts matching `passthrough` (host selectors) are never decrypted, for
    pinned or mTLS clients; a `methods`/`paths` rule on such a host is a policy error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: Literal["auto", "all"] = "auto"
    passthrough: StrList | None = None


class SdkSettings(BaseModel):
    """How the SDK (`gateway.sdk`) treats an action whose target the code builds at run
    time, which static analysis cannot judge.

    `deny` (the default: fail closed) refuses the code; `allow` lets it run and relies
    on the runtime enforcement (proxy, command shim, mounts) to judge the real target.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dynamic: Effect = Effect.DENY


class PolicyModel(BaseModel):
    """A whole policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    default: Effect
    mode: Mode = Mode.ENFORCE
    vars: dict[Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], StrictStr] = Field(
        default_factory=dict
    )
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    sdk: SdkSettings = Field(default_factory=SdkSettings)
    rules: list[Rule] = Field(default_factory=list, max_length=100_000)
