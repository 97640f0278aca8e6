"""`gateway run` end to end: the example scenario played by a real agent process that
does not cooperate, under policies/autogen.yaml, with a test host of our own (its own
network namespace) standing for the outside world.

Every test runs `gateway run` as a user would, in a subprocess, as root.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.reader import iter_entries
from tests.support.gateway import have_namespaces
from tests.support.netns import OutsideHost
from tests.support.upstreams import HttpUpstream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_namespaces(), reason="gateway run needs root and namespaces"),
]

ROOT = Path(__file__).resolve().parents[2]
AUTOGEN = ROOT / "policies" / "autogen.yaml"

AGENT = r"""
import errno, json, os, socket, subprocess, sys, urllib.error, urllib.request
outside, outside6, api_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {}
with open("workspace/analyze.py", "w") as f:
    f.write("rows = [1, 2, 3]\nprint('rows', len(rows))\n")
try:
    open(os.path.expanduser("~/.ssh/id_rsa")).read()
    seen["read_direct"] = "read"
except OSError as e:
    seen["read_direct"] = errno.errorcode[e.errno]
r = subprocess.run("cat ~/.ssh/id_rsa", shell=True, capture_output=True, text=True)
seen["read_shell"] = [r.returncode, r.stdout]
r = subprocess.run(["python3", "workspace/analyze.py"], capture_output=True, text=True)
seen["run"] = [r.returncode, r.stdout.strip()]
r = subprocess.run("pip install cryptography", shell=True, capture_output=True, text=True)
seen["pip"] = [r.returncode, r.stderr.strip()]
try:
    urllib.request.urlopen(urllib.request.Request("http://unlisted.invalid/upload",
                                                  data=b"secret", method="POST"), timeout=10)
    seen["post"] = 200
except urllib.error.HTTPError as e:
    seen["post"] = e.code
with urllib.request.urlopen(f"http://localhost:{api_port}/api/status", timeout=10) as resp:
    seen["api"] = resp.status
s = socket.socket()
s.settimeout(5)
try:
    s.connect((outside, 8080))
    seen["raw_tcp"] = "connected"
except OSError as e:
    seen["raw_tcp"] = errno.errorcode.get(e.errno, str(e))
try:  # the allowed API, ignoring the proxy: the host's loopback is not the agent's
    socket.create_connection(("127.0.0.1", api_port), timeout=5).close()
    seen["direct_api"] = "connected"
except OSError as e:
    seen["direct_api"] = errno.errorcode.get(e.errno, str(e))
try:
    socket.create_connection((outside6, 8080), timeout=5).close()
    seen["raw_tcp6"] = "connected"
except OSError as e:
    seen["raw_tcp6"] = errno.errorcode.get(e.errno, str(e))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
query = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
try:
    u.sendto(query, (outside, 53))
    u.recv(512)
    seen["dns"] = "answered"
except OSError as e:
    seen["dns"] = errno.errorcode.get(e.errno, str(e))
try:
    socket.getaddrinfo("example.com", 443)
    seen["resolve"] = "resolved"
except socket.gaierror as e:
    seen["resolve"] = "failed"
print(json.dumps(seen))
"""


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    project = tmp_path / "project"
    for d in ("workspace", "data", "output"):
        (project / d).mkdir(parents=True)
    home = tmp_path / "home" / "user"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    env = {**os.environ, "HOME": str(home)}
    return project, env


def gateway_run(tmp_path: Path, project: Path, env: dict[str, str], *command: str,
                policy: Path = AUTOGEN, options: tuple[str, ...] = (), timeout: float = 120,
                **kwargs: object) -> subprocess.CompletedProcess[str]:
    log = () if "--gateway" in options else ("--audit-log", str(tmp_path / "audit.jsonl"))
    argv = [sys.executable, "-m", "gateway", "run", "--policy", str(policy), "--workspace",
            str(project), *log, "--overlay-dir", str(tmp_path / "overlays"), *options, "--",
            *command]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False, **kwargs)  # type: ignore[call-overload]


def decisions(log: Path, agent: str) -> list[dict[str, object]]:
    return [e for e in iter_entries(log) if "verdict" in e and e.get("agent") == agent]


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[OutsideHost]:
    host = OutsideHost(tmp_path)
    yield host
    host.close()


def test_the_example_scenario_is_confined_and_audited(tmp_path: Path, outside: OutsideHost) -> None:
    """The agent's write, read, commands, requests, raw sockets (IPv4, IPv6, and the
    allowed API without the proxy) and DNS query meet the mounts, the shim, the proxy
    and the network namespace; the log holds exactly the six
    verdicts, for one agent, from the proxy, the shim and the watcher, and verifies."""
    project, env = _project(tmp_path)
    (project / "data" / "agent.py").write_text(AGENT)
    # The outside host answers from here: what fails inside is the sandbox's doing.
    for address in (outside.address, outside.address6):
        with socket.create_connection((address, outside.port), timeout=5):
            pass
    assert len(outside.received(at_least=2)) == 2
    with HttpUpstream() as api:
        result = gateway_run(tmp_path, project, env, "python3", "data/agent.py",
                             outside.address, outside.address6, str(api.address[1]),
                             options=("--agent", "analyst"))
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert [r.path for r in api.requests] == ["/api/status"]  # once: through the proxy

    assert (project / "workspace" / "analyze.py").exists()
    assert seen["read_direct"] == "ENOENT"                 # not in the agent's root at all
    assert seen["read_shell"][0] == 126 and seen["read_shell"][1] == ""
    assert seen["run"] == [0, "rows 3"]
    assert seen["pip"][0] == 126 and "denied by rule 7" in seen["pip"][1]
    assert seen["post"] == 403
    assert seen["api"] == 200
    assert seen["raw_tcp"] == "ENETUNREACH"
    assert seen["direct_api"] == "ECONNREFUSED"           # the proxy is the only way to it
    assert seen["raw_tcp6"] in ("ENETUNREACH", "EADDRNOTAVAIL", "EAFNOSUPPORT")
    assert seen["raw_tcp"] != "connected" and seen["raw_tcp6"] != "connected"
    assert seen["dns"] == "ENETUNREACH"
    assert seen["resolve"] == "failed"
    assert len(outside.received()) == 2                    # nothing more arrived outside

    log = tmp_path / "audit.jsonl"
    got = sorted((str(e["source"]), str(e["action"]), str(e["verdict"]),
                  str(e.get("command") or e.get("path") or e.get("host")))
                 for e in decisions(log, "analyst"))
    workspace = str(project / "workspace" / "analyze.py")
    assert got == sorted([
        ("fs", "file_write", "ALLOW", workspace),
        ("shim", "shell_exec", "DENY", "/bin/sh -c 'cat ~/.ssh/id_rsa'"),
        ("shim", "shell_exec", "ALLOW", "python3 workspace/analyze.py"),
        ("shim", "shell_exec", "DENY", "/bin/sh -c 'pip install cryptography'"),
        ("proxy", "network", "DENY", "unlisted.invalid"),
        ("proxy", "network", "ALLOW", "localhost"),
    ])
    agents = {e.get("agent") for e in iter_entries(log) if "verdict" in e}
    assert agents == {"analyst", "gateway-selftest"}       # the self-test's probe is its own
    verify = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", str(log)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "analyst exited with status 0" in result.stderr
    assert "6: 3 allowed, 3 denied" in result.stderr


PROBE = r"""
import errno, json, os, subprocess
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
out = {name: status[name].strip() for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb",
                                               "NoNewPrivs", "Uid")}
out["pid"] = os.getpid()
out["proc_sys"] = attempt(lambda: open("/proc/sys/kernel/hostname", "w").write("x"))
out["sysrq"] = attempt(lambda: open("/proc/sysrq-trigger", "w").write("h"))
out["usr"] = attempt(lambda: open("/usr/gateway-test", "w").write("x"))
out["root"] = attempt(lambda: os.mkdir("/escape"))
out["etc_shadow"] = os.path.exists("/etc/shadow")
out["init_environ"] = attempt(lambda: open("/proc/1/environ").read())
out["key_in_env"] = "GATEWAY_AUDIT_KEY" in os.environ
out["init_mem"] = attempt(lambda: open("/proc/1/mem", "rb").read(1))
out["unshare_user"] = attempt(lambda: os.unshare(0x10000000)) if hasattr(os, "unshare") else "n/a"
r = subprocess.run(["/bin/bash", "-c", "rm -rf workspace"], capture_output=True, text=True)
out["bash_by_path"] = r.returncode
out["workspace_kept"] = os.path.isdir("workspace")
print(json.dumps(out))
"""


def test_the_agent_has_no_privilege_and_no_way_around_the_shim(tmp_path: Path) -> None:
    """The agent runs as PID 2 of its own namespace with every capability set empty and
    no_new_privs; /proc/sys, sysrq and the base are read-only; its init's memory and
    environment are closed to it; /bin/bash by path is the shim."""
    project, env = _project(tmp_path)
    (project / "data" / "probe.py").write_text(PROBE)
    result = gateway_run(tmp_path, project, {**env, "GATEWAY_AUDIT_KEY": "00" * 32},
                         "python3", "data/probe.py")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(out[name], 16) == 0, (name, out[name])
    assert out["NoNewPrivs"] == "1"
    assert out["Uid"].split()[0] == "0"           # the workspace's owner: root, powerless
    assert out["pid"] == 2                        # under the namespace's own init
    assert out["proc_sys"] == "EROFS"
    assert out["sysrq"] in ("EROFS", "EACCES", "ENOENT")  # ENOENT: a kernel without sysrq
    assert out["usr"] in ("EROFS", "EACCES")
    assert out["root"] in ("EROFS", "EACCES")
    assert out["etc_shadow"] is False
    assert out["init_environ"] == "EACCES"        # the namespace's init is not dumpable
    assert out["init_mem"] == "EACCES"
    assert out["key_in_env"] is False             # the caller's audit key is withheld
    assert out["bash_by_path"] == 126
    assert out["workspace_kept"] is True


def test_exit_status_stdio_and_user_pass_through(tmp_path: Path) -> None:
    """CMD's stdin, stdout, stderr and exit status are the caller's; --user picks who
    it runs as; a signal that kills CMD gives 128+N."""
    project, env = _project(tmp_path)
    os.chmod(project / "workspace", 0o777)
    script = ("import os, sys; data = sys.stdin.read(); print(data.upper(), os.getuid()); "
              "print('to stderr', file=sys.stderr); sys.exit(7)")
    result = gateway_run(tmp_path, project, env, "python3", "-c", script,
                         options=("--user", "65534", "--no-summary"), input="hello")
    assert result.returncode == 7
    assert result.stdout == "HELLO 65534\n"
    assert result.stderr.endswith("to stderr\n")
    killed = gateway_run(tmp_path, project, env, "python3", "-c",
                         "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
                         options=("--no-summary",))
    assert killed.returncode == 128 + signal.SIGKILL


def test_sigterm_reaches_the_agent(tmp_path: Path) -> None:
    """SIGTERM to `gateway run` is passed to CMD, which can shut down cleanly; its exit
    status comes back, and the summary is printed."""
    project, env = _project(tmp_path)
    marker = project / "workspace" / "stopped"
    script = ("import signal, sys, time, pathlib\n"
              "def stop(*_):\n"
              f"    pathlib.Path({str(marker)!r}).write_text('stopped')\n"
              "    sys.exit(3)\n"
              "signal.signal(signal.SIGTERM, stop)\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    argv = [sys.executable, "-m", "gateway", "run", "--policy", str(AUTOGEN), "--workspace",
            str(project), "--audit-log", str(tmp_path / "audit.jsonl"), "--overlay-dir",
            str(tmp_path / "overlays"), "--", "python3", "-c", script]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert marker.read_text() == "stopped"
    assert "exited with status 3" in err


def test_a_failed_self_test_runs_nothing(tmp_path: Path) -> None:
    """A policy that would let the self-test's denied host through: the run stops with
    125 and a clear message before CMD starts."""
    project, env = _project(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(AUTOGEN.read_text() + '- {action: network, host: "192.0.2.1", '
                                            'effect: allow}\n')
    marker = project / "workspace" / "ran"
    result = gateway_run(tmp_path, project, env, "python3", "-c",
                         f"open({str(marker)!r}, 'w').write('x')", policy=policy)
    assert result.returncode == 125
    assert "the policy allows 192.0.2.1" in result.stderr
    assert "the command was not run" in result.stderr
    assert "exited with status" not in result.stderr   # no summary of a run that never was
    assert not marker.exists()


def test_simulate_records_what_would_be_denied(tmp_path: Path) -> None:
    """--simulate: a denied command runs and is logged as DENY in mode simulate; the
    summary counts it as a would-deny."""
    project, env = _project(tmp_path)
    (project / "workspace" / "old").mkdir()
    result = gateway_run(tmp_path, project, env, "python3", "-c",
                         "import subprocess; subprocess.run('rm -rf workspace/old', shell=True)",
                         options=("--simulate",))
    assert result.returncode == 0, result.stderr
    assert not (project / "workspace" / "old").exists()
    # Once as the shell's line, once as rm itself (a shimmed program): nothing blocked.
    shim = [(e["command"], e["verdict"], e["mode"])
            for e in decisions(tmp_path / "audit.jsonl", "agent") if e["source"] == "shim"]
    assert shim == [("/bin/sh -c 'rm -rf workspace/old'", "DENY", "simulate"),
                    ("rm -rf workspace/old", "DENY", "simulate")]
    assert "2 would be denied (simulate)" in result.stderr


@pytest.mark.parametrize(("options", "command", "message"), [
    pytest.param((), (), "no command given", id="no-command"),
    pytest.param(("--policy", "/nonexistent.yaml"), ("true",), "/nonexistent.yaml",
                 id="missing-policy"),
    pytest.param(("--workspace", "/nonexistent"), ("true",), "not a directory",
                 id="missing-workspace"),
    pytest.param((), ("no-such-program-here",), "command not found in the agent's root",
                 id="unknown-command"),
    pytest.param(("--audit-log", "{project}/data/audit.jsonl"), ("true",),
                 "would be visible to the agent", id="log-the-agent-could-read"),
    pytest.param(("--gateway", "127.0.0.1:9"), ("true",),
                 "needs --gateway-api and --gateway-ca", id="address-without-api"),
    pytest.param(("--gateway", "nowhere:x", "--gateway-api", "tcp:127.0.0.1:9",
                  "--gateway-ca", "/etc/hostname"), ("true",),
                 "expected a state directory or the proxy's HOST:PORT", id="bad-address"),
])
def test_bad_input_is_one_line_and_runs_nothing(tmp_path: Path, options: tuple[str, ...],
                                                 command: tuple[str, ...], message: str) -> None:
    """Bad options or commands: a one-line message, no traceback, a non-zero exit."""
    project, env = _project(tmp_path)
    result = gateway_run(tmp_path, project, env, *command,
                         options=(*(o.format(project=project) for o in options), "--no-summary"))
    assert result.returncode in (125, 127)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def _as_nobody(base: Path, argv: list[str]) -> list[str]:
    """`argv` (python arguments) run by this interpreter as nobody (65534). The
    interpreter and this checkout may sit where nobody cannot look (under /root): a
    private mount namespace shows them at paths inside `base`."""
    prefix = Path(sys.prefix)
    view, repo = base / "python", base / "repo"
    view.mkdir(exist_ok=True)
    repo.mkdir(exist_ok=True)
    python = view / Path(sys.executable).relative_to(prefix)
    script = (f"mount --bind {prefix} {view} && mount --bind {ROOT} {repo} && exec setpriv "
              f"--reuid 65534 --regid 65534 --clear-groups env LD_LIBRARY_PATH={view}/lib "
              f'PYTHONPATH={repo} {python} "$@"')
    return ["unshare", "--mount", "sh", "-c", script, "sh", *argv]


UNPRIVILEGED_PROBE = r"""
import json, os, socket, subprocess, sys, urllib.request
out = {"uid_map": open("/proc/self/uid_map").read().split(), "uid": os.getuid()}
out["CapBnd"] = open("/proc/self/status").read().split("CapBnd:")[1].split()[0]
try:
    open("/proc/1/environ").read()
    out["init_environ"] = "read"
except OSError as e:
    out["init_environ"] = e.errno
open("workspace/notes.txt", "w").write("x")
out["pip"] = subprocess.run("pip install x", shell=True, capture_output=True).returncode
with urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/api", timeout=10) as r:
    out["api"] = r.status
try:  # the API the proxy reached, directly: the host's loopback is not the agent's
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    out["raw"] = "connected"
except OSError as e:
    out["raw"] = e.errno
print(json.dumps(out))
"""


def test_without_root_a_user_namespace_confines_the_agent() -> None:
    """Run by an unprivileged user (nobody), gateway run makes a user namespace in which
    that user is root: the agent has no capability, no network but the relays; the
    shim, the watcher and an overlay workspace work; the log (the user's) verifies.
    --user needs root."""
    base = Path(tempfile.mkdtemp(prefix="gateway-run-unprivileged-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        project = base / "project"
        for d in ("workspace", "data", "output"):
            (project / d).mkdir(parents=True)
        (project / "data" / "probe.py").write_text(UNPRIVILEGED_PROBE)
        overlay = AUTOGEN.read_text().replace(
            '{action: file_write, path: "${PROJECT_DIR}/workspace/**", effect: allow',
            '{action: file_write, path: "${PROJECT_DIR}/workspace/**", overlay: true, '
            'effect: allow')
        assert "overlay: true" in overlay
        (base / "policy.yaml").write_text(overlay)
        state = base / "state"
        state.mkdir()
        for path in (project, *project.iterdir(), project / "data" / "probe.py", state):
            os.chown(path, 65534, 65534)
        env = {**os.environ, "HOME": str(base), "GATEWAY_STATE_DIR": str(state)}
        run = ["-m", "gateway", "run", "--policy", str(base / "policy.yaml"), "--workspace",
               str(project), "--agent", "solo"]
        with HttpUpstream() as api:
            result = subprocess.run(_as_nobody(base, [*run, "--", "python3", "data/probe.py",
                                                      str(api.address[1])]),
                                    capture_output=True, text=True, env=env, timeout=180,
                                    check=False)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["uid_map"] == ["0", "65534", "1"] and out["uid"] == 0
        assert int(out["CapBnd"], 16) == 0
        assert out["init_environ"] == errno.EACCES
        assert out["pip"] == 126
        assert out["api"] == 200
        assert out["raw"] == errno.ECONNREFUSED
        # The workspace was an overlay: the host's tree is unchanged, the write reviewable.
        assert not (project / "workspace" / "notes.txt").exists()
        [workspace] = (state / "overlay").iterdir()
        diff = subprocess.run([sys.executable, "-m", "gateway", "fs", "diff", str(workspace)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert diff.stdout.splitlines() == ["A notes.txt (1 bytes)"], diff.stdout + diff.stderr
        log = state / "audit.jsonl"
        got = sorted((e["source"], e["verdict"]) for e in decisions(log, "solo"))
        assert got == [("fs", "ALLOW"), ("proxy", "ALLOW"), ("shim", "DENY")]
        verify = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", str(log)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        refused = subprocess.run(_as_nobody(base, [*run, "--user", "0", "--", "true"]),
                                 capture_output=True, text=True, env=env, timeout=60,
                                 check=False)
        assert refused.returncode == 125
        assert "--user needs root" in refused.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_running_gateway_can_serve_the_run(tmp_path: Path) -> None:
    """--gateway STATE_DIR, or --gateway HOST:PORT with --gateway-api and --gateway-ca:
    the run uses that gateway (its proxy, its decision API, its log) with the agent's
    token from $GATEWAY_TOKEN; the agent is named in its log."""
    from gateway.agents import add_agent
    from tests.support.gateway import RunningGateway

    project, env = _project(tmp_path)
    agents = tmp_path / "agents.yaml"
    token = add_agent(agents, "coder")
    gateway = RunningGateway(tmp_path / "gw", AUTOGEN.read_text(), agents=agents.read_text(),
                             extra=["--project-dir", str(project)])
    try:
        with HttpUpstream() as api:
            script = ("import subprocess, urllib.request\n"
                      "subprocess.run('pip install x', shell=True)\n"
                      f"print(urllib.request.urlopen('http://localhost:{api.address[1]}/x')"
                      ".status)\n")
            result = gateway_run(tmp_path, project, {**env, "GATEWAY_TOKEN": token},
                                 "python3", "-c", script,
                                 options=("--gateway", str(gateway.state), "--agent", "coder"))
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "200"
            assert "gateway up --watch" in result.stderr  # its writes are the gateway's to watch
            # The same gateway by address, as from another machine: its proxy, its API
            # over TCP and its CA; the decisions are in its log, not read here.
            assert gateway.api_tcp is not None
            by_address = gateway_run(
                tmp_path, project, {**env, "GATEWAY_TOKEN": token}, "python3", "-c", script,
                options=("--gateway", f"{gateway.proxy_host}:{gateway.proxy_port}",
                         "--gateway-api", f"tcp:{gateway.api_tcp[0]}:{gateway.api_tcp[1]}",
                         "--gateway-ca", str(gateway.ca_cert), "--agent", "coder"))
            assert by_address.returncode == 0, by_address.stderr
            assert by_address.stdout.strip() == "200"
            assert "in the gateway's own audit log" in by_address.stderr
        got = [(e["source"], e["verdict"]) for e in decisions(gateway.audit_log, "coder")]
        assert got == [("shim", "DENY"), ("proxy", "ALLOW")] * 2
    finally:
        assert gateway.stop() == 0


def test_a_terminal_stays_a_terminal_and_no_other_is_reachable(tmp_path: Path) -> None:
    """Run on a pseudo-terminal (here made by script(1)), the agent's stdio is that
    terminal by name, and /dev/pts inside holds it alone."""
    project, env = _project(tmp_path)
    probe = ("import os; print('TTY', os.isatty(0), os.ttyname(0) == os.ttyname(1), "
             "len(os.listdir('/dev/pts')))")
    command = " ".join([sys.executable, "-m", "gateway", "run", "--policy", str(AUTOGEN),
                        "--workspace", str(project), "--audit-log", str(tmp_path / "audit.jsonl"),
                        "--overlay-dir", str(tmp_path / "overlays"), "--no-summary", "--",
                        "python3", "-c", f'"{probe}"'])
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                            text=True, env=env, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("TTY")]
    assert line.strip() == "TTY True True 1"
