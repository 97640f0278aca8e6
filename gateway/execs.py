"""Decisions on a program about to be executed with a known argv, no shell in between:
what the command shim asks before it execs `sh -c ...`, a script, or `rm -rf dir`.

The argv becomes the command line that would start it (quoted so that every word
stays literal) and the engine judges that line as it judges any other: a shell's `-c`
string is seen through, wrappers and runners likewise. What the line alone cannot
tell comes with the request: the text of a script the shell would read (the shim
reads it where the agent's files are), and the names of the environment's variables.
Pure, like the engine: nothing here reads a file or the clock.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from gateway.engine import Decision, Request, Verdict, decide, decide_shell_itself
from gateway.matching.paths import BadPath, normalise_path
from gateway.policy.compiled import CompiledPolicy
from gateway.policy.model import Action
from gateway.shell.errors import CannotAnalyse
from gateway.shell.shells import SHELL_NAMES, shell_run

# Variables whose value a program runs as code when it starts: the loader's for every
# program, a shell's for shells. Other LD_* variables (LD_LIBRARY_PATH) only choose
# libraries, and writable mounts are noexec, so they pass.
LOADER_CODE = frozenset({"LD_PRELOAD", "LD_AUDIT"})
SHELL_CODE = frozenset({"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND"})
SHELL_CODE_PREFIXES = ("BASH_FUNC_",)


class ProvidedScript:
    """The engine's filesystem for one exec: the script the shim read for it, and
    nothing else (the gateway may not see the agent's files)."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def resolve(self, path: str, cwd: str) -> str:
        return normalise_path(path, cwd)

    def read_script(self, path: str) -> str | None:
        return self.text if path == self.path else None


def program_of(argv0: str) -> tuple[str, str]:
    """argv[0] as a command names it, and its basename: a login shell's `-bash` is
    `bash`."""
    head, slash, name = argv0.rpartition("/")
    if name.startswith("-") and name.strip("-"):
        name = name.lstrip("-")
    return head + slash + name, name


def command_line(argv: Sequence[str]) -> str:
    """The line that would start `argv`, every word literal."""
    return shlex.join([program_of(argv[0])[0], *argv[1:]])


def decide_exec(policy: CompiledPolicy, argv: Sequence[str], *, cwd: str | None = None,
                agent: str | None = None, script: str | None = None,
                script_path: str | None = None, env: Iterable[str] = ()) -> Decision:
    """The decision on executing `argv` directly. `script` is the text of the script
    operand `script_path` a shell would read; `env` the names of the variables set."""
    line = command_line(argv)
    request = Request(Action.SHELL_EXEC, line, cwd=cwd, agent=agent)
    program = program_of(argv[0])[1]
    is_shell = program in SHELL_NAMES
    for name in env:
        if name in LOADER_CODE:
            runs = f"the dynamic loader would run the code it names in {program}"
        elif is_shell and (name in SHELL_CODE or name.startswith(SHELL_CODE_PREFIXES)):
            runs = f"{program} would run its value as code"
        else:
            continue
        return _refuse(policy, request,
                       f"cannot analyse: {name} is set in the environment, and {runs}")
    if not is_shell:
        return decide(policy, request)
    try:
        run = shell_run(program, argv[1:])
    except CannotAnalyse as e:
        return _refuse(policy, request, f"cannot analyse: {e}")
    if run.stdin:
        return decide_shell_itself(policy, request, [program, *argv[1:]])
    if run.script is None:
        return decide(policy, request)
    operand = run.script.literal or ""
    if script is None or script_path != operand:
        return _refuse(policy, request, f"cannot analyse: the script {operand} could not be "
                                        "read where the command runs")
    try:
        path = normalise_path(operand, normalise_path(cwd or ".", policy.project_dir))
    except BadPath as e:
        return _refuse(policy, request, f"bad input: {e}")
    return decide(policy, request, ProvidedScript(path, script))


def _refuse(policy: CompiledPolicy, request: Request, reason: str) -> Decision:
    return Decision(Action.SHELL_EXEC, request.target, Verdict.DENY, reason, policy.mode,
                    agent=request.agent)
