"""Loading policy files: every kind of bad file is one clear error naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy.compiled import compile_policy_text, load_policy
from gateway.policy.model import Action, Effect, Mode

GOOD = b"""version: 1
default: deny
rules:
  - {action: network, host: api.openai.com, ports: 443, effect: allow}
"""

BILLION_LAUGHS = b"""version: 1
default: deny
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""

BAD_FILES = [
    ("invalid_yaml", b"version: 1\ndefault: deny\nrules: [\n", 4, "invalid YAML"),
    ("duplicate_key", b"version: 1\ndefault: deny\ndefault: allow\n", 3, "duplicate key 'default'"),
    ("duplicate_key_in_rule",
     b"version: 1\ndefault: deny\nrules:\n- action: network\n  host: a\n  host: b\n  effect: allow\n",
     6, "duplicate key 'host'"),
    ("unknown_top_key", b"version: 1\ndefault: deny\nrulez: []\n", 3, "unknown key 'rulez'"),
    ("unknown_rule_key",
     b"version: 1\ndefault: deny\nrules:\n- {action: network, host: a, effect: allow, port: 1}\n",
     4, "unknown key 'port'"),
    ("unknown_action",
     b"version: 1\ndefault: deny\nrules:\n- {action: exec, command: ls, effect: allow}\n",
     4, "action"),
    ("unknown_effect",
     b"version: 1\ndefault: deny\nrules:\n- {action: network, host: a, effect: maybe}\n",
     4, "effect"),
    ("selector_does_not_fit_action",
     b"version: 1\ndefault: deny\nrules:\n- {action: file_read, host: a, effect: allow}\n",
     4, "'host' does not apply to file_read rules; use 'path'"),
    ("missing_selector",
     b"version: 1\ndefault: deny\nrules:\n- {action: shell_exec, effect: allow}\n",
     4, "shell_exec rules need 'command'"),
    ("ports_on_file_rule",
     b"version: 1\ndefault: deny\nrules:\n- {action: file_read, path: /x, ports: 1, effect: allow}\n",
     4, "applies to network rules only"),
    ("missing_default", b"version: 1\nrules: []\n", 1, "missing key 'default'"),
    ("missing_effect", b"version: 1\ndefault: deny\nrules:\n- {action: network, host: a}\n",
     4, "missing key 'rules.0.effect'"),
    ("wrong_version", b"version: 2\ndefault: deny\n", 1, "unsupported policy version"),
    ("python_tag", b"version: 1\ndefault: !!python/object:os.system [ls]\n", 2, "YAML tag"),
    ("custom_tag", b"version: 1\ndefault: !deny deny\n", 2, "YAML tag"),
    ("alias_bomb", BILLION_LAUGHS, None, "alias bomb"),
    ("not_utf8", b"version: 1\ndefault: deny\n# caf\xe9\n", 3, "not UTF-8"),
    ("nul_byte", b"version: 1\ndefault: deny\x00\n", 2, "NUL"),
    ("too_large", b"version: 1\ndefault: deny\n" + b"#" * (1 << 20), None, "larger than"),
    ("empty", b"", None, "empty"),
    ("not_a_mapping", b"- 1\n- 2\n", 1, "must be a mapping"),
    ("port_out_of_range",
     b"version: 1\ndefault: deny\nrules:\n- {action: network, host: a, ports: 70000, effect: allow}\n",
     4, "ports"),
    ("port_as_string",
     b"version: 1\ndefault: deny\nrules:\n- {action: network, host: a, ports: '443', effect: allow}\n",
     4, "ports"),
    ("undefined_variable",
     b"version: 1\ndefault: deny\nrules:\n- {action: file_read, path: '${NOPE}/x', effect: allow}\n",
     4, "undefined variable '${NOPE}'"),
    ("circular_variable",
     b"version: 1\ndefault: deny\nvars: {A: '${B}', B: '${A}'}\n", 3, "refers to itself"),
    ("two_catch_alls",
     b"version: 1\ndefault: deny\nrules:\n- {action: network, host: '*', effect: deny}\n"
     b"- {action: network, host: '*', effect: allow}\n", 5, "catch-all"),
    ("merge_key", b"version: 1\ndefault: deny\nx: &x {a: 1}\ny: {<<: *x}\n", 4, "merge keys"),
]


@pytest.mark.parametrize(("content", "line", "message"),
                         [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_policy_file_is_one_clear_error(tmp_path: Path, content: bytes, line: int | None,
                                            message: str) -> None:
    """Each bad file raises PolicyError naming the file, the line where known, and the problem."""
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as info:
        load_policy(path, environ={"HOME": "/home/user"}, project_dir="/project")
    text = str(info.value)
    assert "\n" not in text
    assert message in text
    assert text.startswith(f"{path}:{line}: " if line else f"{path}:")


def test_good_policy_loads_into_an_immutable_compiled_policy(tmp_path: Path) -> None:
    """A valid file compiles; its rules carry their line and a one-line text."""
    path = tmp_path / "p.yaml"
    path.write_bytes(GOOD)
    policy = load_policy(path, environ={"HOME": "/home/user"}, project_dir="/project")
    assert policy.default is Effect.DENY and policy.mode is Mode.ENFORCE
    (rule,) = policy.rules
    assert rule.line == 4 and rule.action is Action.NETWORK and rule.ports == frozenset({443})
    assert rule.text == "{action: network, host: api.openai.com, ports: [443], effect: allow}"
    with pytest.raises(AttributeError):
        policy.mode = Mode.SIMULATE  # type: ignore[misc]


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    """A policy that does not exist is an error naming it, never a fallback to defaults."""
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "nope.yaml")


VARIABLE_CASES = [
    ("project_dir_flag_beats_environment", {"PROJECT_DIR": "/env"}, "/flag", {}, "/flag/w/**"),
    ("environment_beats_cwd", {"PROJECT_DIR": "/env"}, None, {}, "/env/w/**"),
    ("policy_vars_expand_each_other", {}, "/p", {"W": "${PROJECT_DIR}/w"}, "/p/w/**"),
    ("glob_characters_in_values_are_literal", {}, "/a*b", {}, "/a\\*b/w/**"),
]


@pytest.mark.parametrize(("env", "flag", "policy_vars", "expected"),
                         [c[1:] for c in VARIABLE_CASES], ids=[c[0] for c in VARIABLE_CASES])
def test_variables_expand_in_selectors(env: dict[str, str], flag: str | None,
                                       policy_vars: dict[str, str], expected: str) -> None:
    """${NAME} comes from --project-dir, then vars, then the environment; values are literal."""
    selector = "${W}/**" if policy_vars else "${PROJECT_DIR}/w/**"
    vars_yaml = "".join(f"  {k}: '{v}'\n" for k, v in policy_vars.items())
    text = ("version: 1\ndefault: deny\n" + (f"vars:\n{vars_yaml}" if vars_yaml else "")
            + f"rules:\n- {{action: file_read, path: '{selector}', effect: allow}}\n")
    policy = compile_policy_text(text, project_dir=flag, environ={"HOME": "/h", **env})
    assert policy.rules[0].selectors == (expected,)


def test_tilde_in_a_path_selector_is_home() -> None:
    """`~/x` in a path selector is ${HOME}/x."""
    text = "version: 1\ndefault: deny\nrules:\n- {action: file_read, path: '~/.ssh', effect: deny}\n"
    policy = compile_policy_text(text, environ={"HOME": "/home/user"}, project_dir="/p")
    assert policy.rules[0].selectors == ("/home/user/.ssh",)


@pytest.mark.parametrize(("rule", "ok"), [
    ("{action: file_write, path: /w/**, overlay: true, effect: allow}", True),
    ("{action: file_write, path: /w/**, exec: true, effect: allow}", True),
    ("{action: file_write, path: /w/**, overlay: true, effect: deny}", False),
    ("{action: file_read, path: /w/**, exec: true, effect: allow}", False),
    ("{action: network, host: x.example, overlay: true, effect: allow}", False),
    ("{action: file_write, path: /w/**, overlay: 1, effect: allow}", False),
])
def test_overlay_and_exec_belong_to_file_write_allow_rules(rule: str, ok: bool) -> None:
    """`overlay`/`exec` choose how a writable tree is mounted: file_write allows only."""
    text = f"version: 1\ndefault: deny\nrules:\n  - {rule}\n"
    if ok:
        compiled = compile_policy_text(text)
        assert compiled.rules[0].overlay or compiled.rules[0].exec
    else:
        with pytest.raises(PolicyError, match=r"<policy>:4: rules\.0"):
            compile_policy_text(text)
