"""A code block, by its language, becomes the actions it would take, each decided
and recorded on its own; and the message an agent gets when a block is refused.

Python blocks are analysed with `ast` (`gateway.sdk.pyanalysis`); shell blocks
(`sh`, `bash`, `shell`, `console`) are one command line for the engine, which finds
every command in them as it does for any `shell_exec`. Any other language cannot be
analysed and is refused (fail closed).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.policy.model import Action
from gateway.sdk.deciders import Decider, Ruling
from gateway.sdk.found import BlockAnalysis, Found
from gateway.sdk.pyanalysis import MAX_CALL_TEXT, analyse_python

PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"sh", "bash", "shell", "console"})
MAX_IMPORTS_TEXT = 200


def analyse_block(code: str, language: str) -> BlockAnalysis:
    """The actions of one block; a language the SDK cannot analyse is a `problem`."""
    lang = language.strip().lower()
    if lang in PYTHON or lang.startswith("python"):
        return analyse_python(code, lang)
    if lang in SHELL:
        if not code.strip():
            return BlockAnalysis(lang)
        first = next(line.strip() for line in code.splitlines() if line.strip())
        return BlockAnalysis(lang, (Found(Action.SHELL_EXEC, code, 1, first[:MAX_CALL_TEXT]),))
    shown = lang or "untagged"
    return BlockAnalysis(shown, problem=f"cannot analyse: {shown} blocks are not analysed; "
                                        "only python and sh/bash blocks are")


@dataclass(frozen=True, slots=True)
class Judged:
    """One action and its ruling; `found` is None for a block that cannot be analysed."""

    found: Found | None
    ruling: Ruling


@dataclass(frozen=True, slots=True)
class BlockVerdict:
    number: int
    analysis: BlockAnalysis
    judged: tuple[Judged, ...]

    @property
    def refused(self) -> bool:
        return any(j.ruling.blocks for j in self.judged)


def block_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def judge_block(decider: Decider, code: str, language: str, *, cwd: str,
                number: int = 1) -> BlockVerdict:
    """Analyse one block and decide each of its actions; every decision is recorded
    with the block's SHA-256 (`block`) and where in it the action is."""
    analysis = analyse_block(code, language)
    base: dict[str, str | int | bool | None] = {"block": block_hash(code),
                                                "language": analysis.language}
    if analysis.imports:
        base["imports"] = ",".join(analysis.imports)[:MAX_IMPORTS_TEXT]
    if analysis.problem is not None:
        ruling = decider.decide_unjudged(Action.SHELL_EXEC, analysis.problem, base,
                                         dynamic=False)
        return BlockVerdict(number, analysis, (Judged(None, ruling),))
    judged = []
    for found in analysis.found:
        details = {**base, "line": found.line, "call": found.call}
        if found.target is None:
            ruling = decider.decide_unjudged(found.action, found.why or "built at run time",
                                             details, dynamic=True)
        else:
            target = found.target
            if found.action in (Action.FILE_READ, Action.FILE_WRITE) and target.startswith("~"):
                target = os.path.expanduser(target)
            where = posixpath.join(cwd, found.cwd) if found.cwd else cwd
            ruling = decider.decide(found.action, target, cwd=where, method=found.method,
                                    details=details)
        judged.append(Judged(found, ruling))
    return BlockVerdict(number, analysis, tuple(judged))


_VERBS = {Action.FILE_READ: "reads", Action.FILE_WRITE: "writes", Action.SHELL_EXEC: "runs",
          Action.NETWORK: "connects to"}


def refusal(verdicts: Sequence[BlockVerdict]) -> str:
    """What the agent reads when the gateway refuses its code: each denied action, where
    it is and why, so that it can change course."""
    out = ["The gateway refused to run this code, so none of it ran:"]
    total = len(verdicts)
    for verdict in verdicts:
        if not verdict.refused:
            continue
        out.append(f"block {verdict.number} of {total} ({verdict.analysis.language}):")
        for judged in verdict.judged:
            if judged.ruling.blocks:
                shell = verdict.analysis.language in SHELL
                out.append(f"  {_describe(judged, shell)}")
    out.append("Change the code so that every file, command and host it uses is allowed "
               "by the policy.")
    return "\n".join(out)


def _describe(judged: Judged, shell: bool) -> str:
    found, reason = judged.found, judged.ruling.reason
    if found is None:
        return f"denied: {reason}"
    if shell:  # the engine's reason names the command of the script it denies
        return f"the script: denied: {reason}"
    where = f"line {found.line}: {found.call}"
    if found.target is None:
        return f"{where}: denied: {reason}"
    target = found.target
    if found.method:
        target = f"{found.method} {target}"
    return f"{where} {_VERBS[found.action]} {target}: denied: {reason}"
