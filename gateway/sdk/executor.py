"""GuardedExecutor: an AutoGen `CodeExecutor` that decides every code block before the
executor it wraps runs it.

The only module of the SDK that imports AutoGen (the `[autogen]` extra), so that
`gateway.sdk` imports without it. The blocks of one call are one program, run in
order in one working directory: when any of them is refused, none of them runs, and
the agent gets a result with exit code 1 that names each denied action and why.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from autogen_core import CancellationToken, Component, ComponentModel
from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult
from pydantic import BaseModel

from gateway.sdk.blocks import BlockVerdict, judge_block, refusal
from gateway.sdk.deciders import Decider, make_decider

REFUSED_EXIT_CODE = 1
TOKEN_VARIABLE = "GATEWAY_TOKEN"


class GuardedExecutorConfig(BaseModel):
    """What `dump_component` saves. The token is never saved: a loaded executor reads
    it from $GATEWAY_TOKEN."""

    executor: ComponentModel
    policy: str | None = None
    audit_log: str | None = None
    gateway: str | None = None
    agent: str | None = None
    key_file: str | None = None
    project_dir: str | None = None
    simulate: bool = False
    work_dir: str | None = None


class GuardedExecutor(CodeExecutor, Component[GuardedExecutorConfig]):
    """Wraps any AutoGen `CodeExecutor`; decides each block against a policy
    (`policy=` and `audit_log=`) or a running gateway (`gateway=`, `agent=`,
    `token=`), or with a `decider=` shared with other guards.

    `work_dir` resolves relative paths in the code; by default the wrapped
    executor's own `work_dir`, else the current directory.
    """

    component_config_schema = GuardedExecutorConfig
    component_provider_override = "gateway.sdk.GuardedExecutor"

    def __init__(self, executor: CodeExecutor, *,
                 policy: str | os.PathLike[str] | None = None,
                 audit_log: str | os.PathLike[str] | None = None,
                 gateway: str | None = None, agent: str | None = None,
                 token: str | None = None, key_file: str | os.PathLike[str] | None = None,
                 project_dir: str | None = None, simulate: bool = False,
                 work_dir: str | os.PathLike[str] | None = None,
                 decider: Decider | None = None) -> None:
        self._executor = executor
        self._work_dir = os.fspath(work_dir) if work_dir is not None else None
        self._owns_decider = decider is None
        self._settings: dict[str, Any] | None = None
        if decider is None:
            settings = {"policy": policy, "audit_log": audit_log, "gateway": gateway,
                        "agent": agent, "key_file": key_file, "project_dir": project_dir,
                        "simulate": simulate}
            decider = make_decider(token=token, **settings)
            self._settings = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                              for k, v in settings.items()}
        self.decider = decider

    @property
    def executor(self) -> CodeExecutor:
        return self._executor

    @property
    def work_dir(self) -> str:
        if self._work_dir is not None:
            return os.path.abspath(self._work_dir)
        inner = getattr(self._executor, "work_dir", None)
        return os.path.abspath(inner) if isinstance(inner, str | Path) else os.getcwd()

    def judge(self, code_blocks: Sequence[CodeBlock]) -> list[BlockVerdict]:
        """Decide (and record) every block; blocking, so called off the event loop."""
        cwd = self.work_dir
        return [judge_block(self.decider, b.code, b.language, cwd=cwd, number=i)
                for i, b in enumerate(code_blocks, 1)]

    async def execute_code_blocks(self, code_blocks: list[CodeBlock],
                                  cancellation_token: CancellationToken) -> CodeResult:
        verdicts = await asyncio.to_thread(self.judge, code_blocks)
        if any(v.refused for v in verdicts):
            return CodeResult(exit_code=REFUSED_EXIT_CODE, output=refusal(verdicts))
        return await self._executor.execute_code_blocks(code_blocks, cancellation_token)

    async def start(self) -> None:
        await self._executor.start()

    async def stop(self) -> None:
        """Stop the executor and close the audit log this guard opened (a later
        block opens it again)."""
        try:
            await self._executor.stop()
        finally:
            if self._owns_decider:
                await asyncio.to_thread(self.decider.close)

    async def restart(self) -> None:
        await self._executor.restart()

    def __getattr__(self, name: str) -> Any:
        """Whatever else the wrapped executor offers (`timeout`, `functions`, ...)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._executor, name)

    def _to_config(self) -> GuardedExecutorConfig:
        if self._settings is None:
            raise ValueError("a GuardedExecutor made with decider= cannot be saved; "
                             "make it with policy= or gateway=")
        return GuardedExecutorConfig(executor=self._executor.dump_component(),
                                     work_dir=self._work_dir, **self._settings)

    @classmethod
    def _from_config(cls, config: GuardedExecutorConfig) -> Self:
        settings = config.model_dump(exclude={"executor", "work_dir"})
        token = os.environ.get(TOKEN_VARIABLE) if config.gateway else None
        return cls(CodeExecutor.load_component(config.executor), work_dir=config.work_dir,
                   token=token, **settings)
