"""The container deployment holds its invariants: compose.yaml, the Dockerfile, the
scripts in docker/ and policies/team.yaml, each parsed and asserted by name.

No container engine runs here, so nothing is built or started; the network-namespace
tests stand for the containers. What can run runs: the entrypoint and the healthcheck
against a real gateway on loopback.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.engine import decide, make_request
from gateway.lint import lint_policy
from gateway.policy.compiled import load_policy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
GATEWAY = "gateway"
SHIM_SERVICE = "shim"
AGENT_NETWORK = "agents"
# Where things are, as compose.yaml and the Dockerfile must agree on them.
SHIM_DIR = "/opt/gateway"
SHIM_PATH_DIR = "/opt/gateway/shim"
SHIM_SUBPATH = "shim/gateway-shim"
CA_DIR = "/etc/gateway-ca"
STATE_VOLUMES = ("gateway-state", "gateway-audit")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
CA_VARIABLES = {  # the variable -> the file in the CA volume it names
    "SSL_CERT_FILE": "ca-bundle.pem",
    "REQUESTS_CA_BUNDLE": "ca-bundle.pem",
    "CURL_CA_BUNDLE": "ca-bundle.pem",
    "PIP_CERT": "ca-bundle.pem",
    "GIT_SSL_CAINFO": "ca-bundle.pem",
    "NODE_EXTRA_CA_CERTS": "ca-cert.pem",
}
AGENT_ENVIRONMENT = {*PROXY_VARIABLES, "NO_PROXY", "no_proxy", *CA_VARIABLES, "PATH",
                     "GATEWAY_AGENT", "GATEWAY_TOKEN"}


def _networks(service: dict[str, Any]) -> list[str]:
    networks = service.get("networks", [])
    return list(networks) if isinstance(networks, dict | list) else []


AGENTS = sorted(name for name, s in SERVICES.items()
                if name != GATEWAY and AGENT_NETWORK in _networks(s))


# --- the Dockerfile ------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY...
    args: str     # continuation lines joined
    stage: str    # the stage's name (or its index) the instruction belongs to
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    stage = ""
    stages = 0
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            lowered = [w.lower() for w in words]
            stage = words[lowered.index("as") + 1] if "as" in lowered else str(stages)
            stages += 1
        out.append(Instruction(keyword, args.strip(), stage, start))
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


DOCKERFILE = parse_dockerfile((ROOT / "Dockerfile").read_text())
GLOBAL_ARGS = {i.args.partition("=")[0]: i.args.partition("=")[2]
               for i in DOCKERFILE if i.keyword == "ARG" and i.stage == ""}


def _stage(name: str) -> list[Instruction]:
    found = [i for i in DOCKERFILE if i.stage == name]
    assert found, f"the Dockerfile has no stage {name}"
    return found


def _stage_arg(stage: str, name: str) -> str:
    for i in _stage(stage):
        if i.keyword == "ARG" and i.args.partition("=")[0] == name:
            return i.args.partition("=")[2]
    raise AssertionError(f"stage {stage} declares no ARG {name}")


def _exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)
    assert isinstance(value, list), f"not the exec form: {args}"
    return value


def _healthcheck() -> tuple[dict[str, str], list[str]]:
    (check,) = [i for i in _stage(GATEWAY) if i.keyword == "HEALTHCHECK"]
    words = check.args.split()
    options = {}
    while words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        options[key] = value
    assert words[0] == "CMD", check.args
    return options, _exec_form(" ".join(words[1:]))


def test_parser_joins_continuations_and_skips_comments() -> None:
    """The Dockerfile parser joins `\\` lines, drops comments and names stages."""
    parsed = parse_dockerfile("ARG A=1\n# c\nFROM x AS one\nRUN a \\\n  # inside\n  && b\n"
                              "FROM y\nCMD [\"z\"]\n")
    assert [(i.keyword, i.args, i.stage) for i in parsed] == [
        ("ARG", "A=1", ""), ("FROM", "x AS one", "one"), ("RUN", "a && b", "one"),
        ("FROM", "y", "1"), ("CMD", '["z"]', "1")]


def test_gateway_image_is_python_3_12_and_the_default_target() -> None:
    """The gateway stage is FROM python:3.12-slim (pinned by minor version) and last."""
    froms = [i for i in DOCKERFILE if i.keyword == "FROM"]
    assert froms[-1].args == "${PYTHON_IMAGE} AS gateway"
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", GLOBAL_ARGS["PYTHON_IMAGE"])


def test_gateway_image_runs_as_a_non_root_user() -> None:
    """The gateway stage's last USER is a named, non-root user."""
    users = [i.args for i in _stage(GATEWAY) if i.keyword == "USER"]
    assert users, "the gateway stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users


def test_gateway_image_has_a_healthcheck_with_timings() -> None:
    """HEALTHCHECK runs the healthcheck script with interval, timeout, retries, start period."""
    options, command = _healthcheck()
    assert {"interval", "timeout", "retries", "start-period"} <= set(options)
    assert command == ["/usr/local/bin/gateway-healthcheck"]
    copied = [i.args for i in _stage(GATEWAY) if i.keyword == "COPY"]
    assert "--chmod=0755 docker/healthcheck.sh /usr/local/bin/gateway-healthcheck" in copied


def test_gateway_image_entrypoint_publishes_the_ca() -> None:
    """ENTRYPOINT (exec form) is docker/entrypoint.sh; CMD starts `up`."""
    (entry,) = [i for i in _stage(GATEWAY) if i.keyword == "ENTRYPOINT"]
    assert _exec_form(entry.args) == ["/usr/local/bin/gateway-entrypoint"]
    copied = [i.args for i in _stage(GATEWAY) if i.keyword == "COPY"]
    assert "--chmod=0755 docker/entrypoint.sh /usr/local/bin/gateway-entrypoint" in copied
    (cmd,) = [i for i in _stage(GATEWAY) if i.keyword == "CMD"]
    assert _exec_form(cmd.args)[0] == "up"


def test_dockerfile_adds_nothing_from_urls() -> None:
    """No ADD at all (so none from a URL): everything comes from the build context."""
    assert [i.args for i in DOCKERFILE if i.keyword == "ADD"] == []


def test_every_pip_install_has_no_cache_and_installs_the_project() -> None:
    """Each `pip install` keeps no cache and installs this checkout, mitmproxy held below 13."""
    installs = [i for i in DOCKERFILE if i.keyword == "RUN" and "pip install" in i.args]
    assert {i.stage for i in installs} == {GATEWAY, "shim-build"}
    for run in installs:
        for command in run.args.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command, run.line
                assert "/tmp/gateway-src" in command.split(), run.line
    (gateway_install,) = [i for i in installs if i.stage == GATEWAY]
    assert '"mitmproxy>=12.0,<13"' in gateway_install.args


def test_dockerfile_copies_only_what_exists_and_bakes_in_no_secret() -> None:
    """COPY sources from the context exist; no ARG or ENV names a token, key or secret."""
    for i in DOCKERFILE:
        if i.keyword == "COPY" and "--from=" not in i.args:
            words = [w for w in i.args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"line {i.line}: {source}"
        if i.keyword in ("ARG", "ENV"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", i.args) or [i.args.split("=")[0]]
            for name in names:
                assert not re.search(r"TOKEN|SECRET|PASSWORD|AUDIT_KEY", name, re.I), name


def test_dockerignore_keeps_tokens_and_state_out_of_the_build() -> None:
    """.dockerignore excludes everything but the sources: never .env or the agents file."""
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*"
    included = [p[1:] for p in patterns if p.startswith("!")]
    for secret in (".env", "docker/agents/agents.yaml", "agents.yaml", ".git/config",
                   "audit.jsonl"):
        assert not any(fnmatch.fnmatch(secret, p) or secret.startswith(p.rstrip("/") + "/")
                       for p in included), secret


def test_shim_is_built_in_the_agents_image_with_real_program_copies() -> None:
    """shim-build is FROM AGENT_BASE and installs /opt/gateway/shim with --real-dir copies."""
    (base,) = [i.args for i in _stage("shim-build") if i.keyword == "FROM"]
    assert base == "${AGENT_BASE} AS shim-build"
    (install,) = [i.args for i in _stage("shim-build") if "shim install" in i.args]
    (command,) = [c for c in install.split("&&") if "shim install" in c]
    words = shlex.split(command)
    assert words[words.index("install") + 1] == SHIM_PATH_DIR
    assert words[words.index("--api") + 1] == "$GATEWAY_API"
    assert words[words.index("--real-dir") + 1] == f"{SHIM_DIR}/real"
    assert "shim check" in install and "u-s,g-s,go-w" in install
    (copy,) = [i.args for i in _stage(SHIM_SERVICE) if i.keyword == "COPY" and "--from" in i.args]
    assert copy == f"--from=shim-build {SHIM_DIR}/ {SHIM_DIR}/"


# --- compose.yaml: the network ---------------------------------------------------------


def _gateway_flag(name: str) -> str:
    for word in SERVICES[GATEWAY]["command"]:
        if word.startswith(f"--{name}="):
            return str(word.split("=", 1)[1])
    raise AssertionError(f"the gateway's command has no --{name}")


GATEWAY_IP = SERVICES[GATEWAY]["networks"][AGENT_NETWORK]["ipv4_address"]


def test_the_examples_are_two_agents() -> None:
    """The agents (services on the agents network besides the gateway) are coder and reviewer."""
    assert AGENTS == ["coder", "reviewer"]


def test_agents_network_is_internal_and_holds_only_the_gateway_and_agents() -> None:
    """`agents` is internal: true; its members are exactly the gateway and the agents."""
    network = COMPOSE["networks"][AGENT_NETWORK]
    assert network["internal"] is True
    members = {name for name, s in SERVICES.items() if AGENT_NETWORK in _networks(s)}
    assert members == {GATEWAY, *AGENTS}


def test_gateway_has_a_fixed_address_no_one_else_can_get() -> None:
    """The gateway's address is in the subnet and outside the range handed out to others."""
    (pool,) = COMPOSE["networks"][AGENT_NETWORK]["ipam"]["config"]
    address = ipaddress.ip_address(GATEWAY_IP)
    assert address in ipaddress.ip_network(pool["subnet"])
    assert address not in ipaddress.ip_network(pool["ip_range"])


def test_gateway_also_has_a_normal_network_for_egress() -> None:
    """The gateway's other network is not internal: its way out, which no agent joins."""
    others = [n for n in _networks(SERVICES[GATEWAY]) if n != AGENT_NETWORK]
    assert others
    for name in others:
        assert not (COMPOSE["networks"][name] or {}).get("internal", False)
        assert not any(name in _networks(SERVICES[a]) for a in AGENTS)


def test_proxy_and_decision_api_listen_only_on_the_internal_address() -> None:
    """--listen and --api-listen are the gateway's internal address, not 0.0.0.0."""
    assert _gateway_flag("listen") == f"{GATEWAY_IP}:8080"
    assert _gateway_flag("api-listen") == f"{GATEWAY_IP}:8081"


def test_nothing_is_published_and_nothing_administrative_is_reachable() -> None:
    """No service publishes a port; the admin socket stays in the gateway's state volume."""
    for name, service in SERVICES.items():
        assert "ports" not in service, name
    command = " ".join(SERVICES[GATEWAY]["command"])
    assert "--admin-socket" not in command and "--api-socket" not in command
    assert "--state-dir" not in command  # the image's GATEWAY_STATE_DIR, on its own volume


# --- compose.yaml: the agents ----------------------------------------------------------


def _volumes(service: str) -> list[dict[str, Any]]:
    volumes = SERVICES[service].get("volumes", [])
    assert all(isinstance(v, dict) for v in volumes), f"{service}: use the long syntax"
    return volumes


def _mount(service: str, target: str) -> dict[str, Any]:
    found = [v for v in _volumes(service) if v["target"] == target]
    assert len(found) == 1, f"{service}: {len(found)} mounts at {target}"
    return found[0]


def _token_variable(agent: str) -> str:
    match = re.fullmatch(r"\$\{(\w+)\}", SERVICES[agent]["environment"]["GATEWAY_TOKEN"])
    assert match, "GATEWAY_TOKEN must come from a compose variable, never be written here"
    return match.group(1)


AGENT_SETTINGS = [
    ("cap_drop", lambda s: s.get("cap_drop") == ["ALL"]),
    ("read_only", lambda s: s.get("read_only") is True),
    ("no_new_privileges", lambda s: "no-new-privileges:true" in s.get("security_opt", [])),
    ("non_root_user", lambda s: str(s.get("user", "0")).split(":")[0] not in ("0", "root")),
    ("depends_on_healthy_gateway",
     lambda s: s["depends_on"][GATEWAY] == {"condition": "service_healthy"}),
    ("depends_on_published_shim",
     lambda s: s["depends_on"][SHIM_SERVICE] == {"condition": "service_completed_successfully"}),
    ("only_the_internal_network",
     lambda s: _networks(s) == [AGENT_NETWORK] and "network_mode" not in s),
    ("no_published_ports", lambda s: "ports" not in s and "expose" not in s),
    ("not_privileged", lambda s: not s.get("privileged") and "cap_add" not in s),
    ("tmpfs_noexec", lambda s: all("noexec" in t for t in s.get("tmpfs", []))),
]


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize(("setting", "holds"), AGENT_SETTINGS, ids=[c[0] for c in AGENT_SETTINGS])
def test_every_agent_is_confined(agent: str, setting: str, holds: Any) -> None:
    """Each agent: no capabilities, read-only root, no-new-privileges, a non-root user, after
    a healthy gateway and a published shim, on the internal network only, no ports."""
    assert holds(SERVICES[agent]), f"{agent}: {setting}"


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_environment_is_exactly_the_proxy_ca_and_credentials(agent: str) -> None:
    """The agent's variables are exactly the proxy, NO_PROXY, CA, PATH and credential ones."""
    assert set(SERVICES[agent]["environment"]) == AGENT_ENVIRONMENT


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_proxy_variables_carry_its_credentials_to_the_gateway(agent: str) -> None:
    """All four proxy variables are http://NAME:${TOKEN}@GATEWAY_IP:8080 (the first one
    failing when the token is unset); GATEWAY_AGENT/GATEWAY_TOKEN name the same agent."""
    env = SERVICES[agent]["environment"]
    token = _token_variable(agent)
    for name in PROXY_VARIABLES:
        value = re.sub(r"\$\{(\w+):\?[^}]*\}", r"${\1}", env[name])
        assert value == f"http://{agent}:${{{token}}}@{GATEWAY_IP}:8080", name
    assert env["HTTP_PROXY"].startswith(f"http://{agent}:${{{token}:?")
    assert env["GATEWAY_AGENT"] == agent


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_has_no_proxy_exceptions(agent: str) -> None:
    """NO_PROXY and no_proxy are set and empty: nothing bypasses the gateway."""
    env = SERVICES[agent]["environment"]
    assert env["NO_PROXY"] == "" and env["no_proxy"] == ""


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("variable", sorted(CA_VARIABLES))
def test_agent_trusts_the_gateway_ca_from_its_volume(agent: str, variable: str) -> None:
    """Each CA variable names a file of the CA volume, mounted read-only at /etc/gateway-ca."""
    assert SERVICES[agent]["environment"][variable] == f"{CA_DIR}/{CA_VARIABLES[variable]}"
    mount = _mount(agent, CA_DIR)
    assert mount["type"] == "volume" and mount["read_only"] is True


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash", "/bin/dash"])
def test_agent_shells_are_the_shim(agent: str, shell: str) -> None:
    """/bin/sh, /bin/bash and /bin/dash are the shim from the gateway-shim volume, read-only."""
    mount = _mount(agent, shell)
    assert mount["type"] == "volume" and mount["source"] == "gateway-shim"
    assert mount["read_only"] is True
    assert mount["volume"] == {"nocopy": True, "subpath": SHIM_SUBPATH}


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_has_the_shim_directory_first_on_path(agent: str) -> None:
    """The shim directory is mounted read-only where it was built and leads PATH."""
    mount = _mount(agent, SHIM_DIR)
    assert (mount["source"], mount["read_only"]) == ("gateway-shim", True)
    assert SERVICES[agent]["environment"]["PATH"].split(":")[0] == SHIM_PATH_DIR
    assert f"{SHIM_DIR}/{SHIM_SUBPATH}" == f"{SHIM_PATH_DIR}/gateway-shim"


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_shares_nothing_of_the_gateway_but_the_ca_shim_and_workspace(agent: str) -> None:
    """An agent mounts no state or audit volume, no host path, and the CA only read-only."""
    for mount in _volumes(agent):
        assert mount["type"] in ("volume", "tmpfs"), mount
        assert mount["source"] not in STATE_VOLUMES, mount
        assert mount["source"] in ("gateway-shim", "gateway-ca", "workspace"), mount
        if mount["source"] != "workspace":
            assert mount["read_only"] is True, mount


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_image_is_the_one_the_shim_was_built_for(agent: str) -> None:
    """The agent's AGENT_BASE is the shim's: the real programs match the agent's libc."""
    build = SERVICES[agent]["build"]
    assert build["target"] == "agent"
    shim_base = SERVICES[SHIM_SERVICE]["build"]["args"]["AGENT_BASE"]
    assert build["args"]["AGENT_BASE"] == shim_base == GLOBAL_ARGS["AGENT_BASE"]


def test_the_shim_asks_the_gateway_at_its_fixed_address() -> None:
    """The shim's API (a build argument) is tcp:GATEWAY_IP:PORT of --api-listen."""
    args = SERVICES[SHIM_SERVICE]["build"]["args"]
    assert args["GATEWAY_API"] == f"tcp:{_gateway_flag('api-listen')}"
    assert _stage_arg("shim-build", "GATEWAY_API") == args["GATEWAY_API"]
    assert (ROOT / args["SHIM_POLICY"]).is_file()
    assert f"/etc/gateway/{args['SHIM_POLICY']}" == _gateway_flag("policy")


def test_shim_publisher_has_no_network_and_no_privileges() -> None:
    """The shim service only copies into its volume: no network, no capabilities."""
    shim = SERVICES[SHIM_SERVICE]
    assert shim["network_mode"] == "none"
    assert shim["cap_drop"] == ["ALL"] and shim["read_only"] is True
    assert "no-new-privileges:true" in shim["security_opt"]
    assert [v["source"] for v in _volumes(SHIM_SERVICE)] == ["gateway-shim"]


def test_reviewer_sees_the_workspace_read_only_and_the_coder_may_write() -> None:
    """The workspace is writable for the coder only; it is mounted noexec for all."""
    assert _mount("reviewer", "/work")["read_only"] is True
    assert not _mount("coder", "/work").get("read_only", False)
    options = COMPOSE["volumes"]["workspace"]["driver_opts"]["o"].split(",")
    assert {"noexec", "nosuid", "nodev"} <= set(options)


# --- compose.yaml: the gateway ---------------------------------------------------------


def test_gateway_mounts_policies_and_agents_read_only() -> None:
    """./policies and ./docker/agents are bound read-only, as directories (edits that
    replace a file are seen), and are what --policy and --agents name."""
    policies = _mount(GATEWAY, "/etc/gateway/policies")
    agents = _mount(GATEWAY, "/etc/gateway/agents")
    for mount, source in ((policies, "./policies"), (agents, "./docker/agents")):
        assert (mount["type"], mount["source"], mount["read_only"]) == ("bind", source, True)
        assert mount["bind"]["create_host_path"] is False
    assert _gateway_flag("agents") == "/etc/gateway/agents/agents.yaml"
    assert (ROOT / "policies" / PurePosixPath(_gateway_flag("policy")).name).is_file()


@pytest.mark.parametrize("volume", STATE_VOLUMES)
def test_state_and_audit_volumes_are_the_gateways_alone(volume: str) -> None:
    """The state volume (CA key, admin socket) and the audit volume (log, key) are mounted
    by the gateway only."""
    users = {name for name, s in SERVICES.items()
             for v in s.get("volumes", []) if isinstance(v, dict) and v.get("source") == volume}
    assert users == {GATEWAY}


def test_audit_log_is_on_the_audit_volume() -> None:
    """--audit-log (and so its key and checkpoints beside it) is on the audit volume."""
    audit = _mount(GATEWAY, "/var/lib/gateway/audit")
    assert audit["source"] == "gateway-audit"
    assert PurePosixPath(_gateway_flag("audit-log")).parent == PurePosixPath(audit["target"])


def test_ca_volume_holds_only_the_public_certificate() -> None:
    """The gateway mounts the CA volume outside its state directory, and the entrypoint
    writes only ca-cert.pem and ca-bundle.pem there."""
    text = " ".join(i.args for i in _stage(GATEWAY) if i.keyword == "ENV")
    state = re.search(r"GATEWAY_STATE_DIR=(\S+)", text).group(1)  # type: ignore[union-attr]
    public = re.search(r"GATEWAY_CA_PUBLIC_DIR=(\S+)", text).group(1)  # type: ignore[union-attr]
    assert not PurePosixPath(public).is_relative_to(state)
    assert _mount(GATEWAY, public)["source"] == "gateway-ca"
    assert _mount(GATEWAY, state)["source"] == "gateway-state"
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    written = set(re.findall(r"\bpublish ([\w.-]+\.pem)\b", entrypoint))
    assert written == {"ca-cert.pem", "ca-bundle.pem"}
    assert re.findall(r'"\$public/([^"]*)"', entrypoint) == [".$1.tmp", "$1"]


def test_gateway_healthcheck_is_the_images() -> None:
    """compose's healthcheck runs what the image's does, with every timing set."""
    check = SERVICES[GATEWAY]["healthcheck"]
    _, command = _healthcheck()
    assert check["test"] == ["CMD", *command]
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


def test_gateway_is_confined_too() -> None:
    """The gateway itself: read-only root, no capabilities, no-new-privileges, an init."""
    gateway = SERVICES[GATEWAY]
    assert gateway["read_only"] is True and gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert gateway["init"] is True


def test_every_repository_path_in_compose_exists() -> None:
    """Each bind source and build context in compose.yaml exists in the repository."""
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"]).is_dir(), name
        for mount in service.get("volumes", []):
            if mount.get("type") == "bind":
                assert (ROOT / mount["source"]).exists(), (name, mount["source"])


def test_no_token_is_written_in_compose() -> None:
    """Tokens come only from compose variables (.env or the environment)."""
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"GATEWAY_TOKEN:\s*[^$\s]", text)
    assert not re.search(r"http://\w+:[^$@]+@", text)


# --- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", sorted(p.name for p in (ROOT / "policies").glob("*.yaml")))
def test_every_shipped_policy_loads(policy: str) -> None:
    """Every file in policies/ loads and compiles, as `gateway check` loads it."""
    assert load_policy(ROOT / "policies" / policy, project_dir="/work",
                       environ={"HOME": "/home/agent"}).rules


def test_team_policy_passes_gateway_check_without_warnings() -> None:
    """policies/team.yaml, the compose example's policy, is valid and draws no lint warning."""
    compiled = load_policy(ROOT / "policies" / "team.yaml", project_dir="/work",
                           environ={"HOME": "/home/agent"})
    assert lint_policy(compiled) == []


TEAM_CASES = [
    ("coder_installs_packages", "coder", "network", "pypi.org:443", None, "ALLOW"),
    ("reviewer_may_not_install", "reviewer", "network", "pypi.org:443", None, "DENY"),
    ("both_reach_the_llm_api", "reviewer", "network", "api.anthropic.com:443", None, "ALLOW"),
    ("reviewer_reads_github", "reviewer", "network", "https://github.com/a/b", "GET", "ALLOW"),
    ("reviewer_never_pushes", "reviewer", "network", "https://github.com/a/b/git-receive-pack",
     "POST", "DENY"),
    ("coder_not_on_github", "coder", "network", "https://github.com/a/b", "GET", "DENY"),
    ("coder_writes_the_workspace", "coder", "file_write", "/work/app.py", None, "ALLOW"),
    ("reviewer_may_not_write", "reviewer", "file_write", "/work/app.py", None, "DENY"),
    ("reviewer_reads_the_workspace", "reviewer", "file_read", "/work/app.py", None, "ALLOW"),
    ("nobody_reads_secrets", "coder", "file_read", "/work/.env", None, "DENY"),
    ("nothing_outside_the_workspace", "coder", "file_read", "/etc/passwd", None, "DENY"),
    ("coder_runs_pip", "coder", "shell_exec", "pip install requests", None, "ALLOW"),
    ("reviewer_no_pip", "reviewer", "shell_exec", "pip install requests", None, "DENY"),
    ("both_run_python", "reviewer", "shell_exec", "python3 -m pytest", None, "ALLOW"),
    ("nobody_deletes", "coder", "shell_exec", "rm -rf /work", None, "DENY"),
    ("anonymous_gets_nothing", None, "network", "api.openai.com:443", None, "DENY"),
    ("anonymous_runs_nothing", None, "shell_exec", "python3 x.py", None, "DENY"),
]


@pytest.mark.parametrize(("agent", "action", "target", "method", "verdict"),
                         [c[1:] for c in TEAM_CASES], ids=[c[0] for c in TEAM_CASES])
def test_team_policy_is_per_agent(agent: str | None, action: str, target: str,
                                  method: str | None, verdict: str) -> None:
    """policies/team.yaml gives each example agent its own rules, and anonymous nothing."""
    policy = load_policy(ROOT / "policies" / "team.yaml", project_dir="/work",
                         environ={"HOME": "/home/agent"})
    decision = decide(policy, make_request(action, target, agent=agent, method=method,
                                           cwd="/work"))
    assert decision.verdict.value == verdict, decision.reason


# --- the scripts ------------------------------------------------------------------------


SCRIPTS = sorted(p.name for p in (ROOT / "docker").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_posix_sh_with_set_eu(script: str) -> None:
    """Each docker/ script is `#!/bin/sh`, `set -eu`, executable, and parses."""
    path = ROOT / "docker" / script
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in lines
    assert os.access(path, os.X_OK)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0


def test_publish_shim_replaces_the_volume_contents(tmp_path: Path) -> None:
    """publish-shim copies shim/ and real/ into DEST and drops what an old build left."""
    source = tmp_path / "opt"
    for part, name in (("shim", "gateway-shim"), ("real", "bash")):
        (source / part).mkdir(parents=True)
        (source / part / name).write_text(part)
    script = (ROOT / "docker" / "publish-shim.sh").read_text().replace(
        "src=/opt/gateway", f"src={shlex.quote(str(source))}")
    (tmp_path / "publish").write_text(script)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "shim").mkdir()
    (dest / "shim" / "stale").write_text("old")
    subprocess.run(["sh", str(tmp_path / "publish"), str(dest)], check=True, capture_output=True)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "real", "real/bash", "shim", "shim/gateway-shim"]


@pytest.mark.slow
def test_entrypoint_publishes_the_ca_and_forwards_signals(tmp_path: Path) -> None:
    """The entrypoint runs `gateway up`, publishes ca-cert.pem and ca-bundle.pem (no key)
    once the proxy listens, the healthcheck then passes, and SIGTERM stops it cleanly."""
    if shutil.which("gateway") is None:
        pytest.skip("the gateway command is not on PATH (pip install -e .)")
    state, public, audit = tmp_path / "state", tmp_path / "public", tmp_path / "audit"
    public.mkdir()
    audit.mkdir()
    env = {**os.environ, "GATEWAY_STATE_DIR": str(state), "GATEWAY_CA_PUBLIC_DIR": str(public)}
    process = subprocess.Popen(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "up",
         f"--policy={ROOT / 'policies' / 'team.yaml'}", "--listen=127.0.0.1:0",
         f"--audit-log={audit / 'audit.jsonl'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (public / "ca-bundle.pem").exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.1)
        health = subprocess.run(["sh", str(ROOT / "docker" / "healthcheck.sh")], env=env,
                                capture_output=True, text=True)
        assert health.returncode == 0, health.stderr
        assert sorted(p.name for p in public.iterdir()) == ["ca-bundle.pem", "ca-cert.pem"]
        cert = (public / "ca-cert.pem").read_text()
        assert cert == (state / "ca-cert.pem").read_text()
        assert "PRIVATE KEY" not in cert + (public / "ca-bundle.pem").read_text()
        assert (public / "ca-bundle.pem").read_text() == (state / "ca-bundle.pem").read_text()
        assert (public / "ca-bundle.pem").read_text().startswith(cert.rstrip("\n"))
        assert (public / "ca-cert.pem").stat().st_mode & 0o777 == 0o644
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "audit log flushed" in err
    stopped = subprocess.run(["sh", str(ROOT / "docker" / "healthcheck.sh")], env=env,
                             capture_output=True)
    assert stopped.returncode != 0


def test_entrypoint_runs_other_commands_as_gateway_subcommands(tmp_path: Path) -> None:
    """`IMAGE check POLICY` runs `gateway check POLICY` (and `agents add` the same way)."""
    if shutil.which("gateway") is None:
        pytest.skip("the gateway command is not on PATH (pip install -e .)")
    result = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "check",
                             str(ROOT / "policies" / "team.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


# --- docs/deploy.md ----------------------------------------------------------------------


def test_deploy_guide_agent_snippet_is_confined_like_the_examples() -> None:
    """The guide's "your own agent" service, merged into compose.yaml, holds every agent
    invariant: its anchors bring the confinement, the environment and the shim mounts."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    section = guide.split("## Adding your own agent", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    text = (ROOT / "compose.yaml").read_text().replace("\nnetworks:\n", f"\n{snippet}\nnetworks:\n", 1)
    analyst = yaml.safe_load(text)["services"]["analyst"]
    for setting, holds in AGENT_SETTINGS:
        assert holds(analyst), setting
    assert set(analyst["environment"]) == AGENT_ENVIRONMENT
    targets = {v["target"]: v for v in analyst["volumes"]}
    assert {SHIM_DIR, "/bin/sh", "/bin/bash", "/bin/dash", CA_DIR} == set(targets)
    assert all(v["read_only"] for v in targets.values())


def test_deploy_guide_names_the_images_and_volumes_compose_makes() -> None:
    """The guide's `docker run` uses the gateway's image name, and it names every volume."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert f" {SERVICES[GATEWAY]['image']} agents add" in guide
    for volume in COMPOSE["volumes"]:
        assert f"`{volume}`" in guide, volume
