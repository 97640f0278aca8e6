"""The command shim: building it, installing it, and the compiled shim's behaviour end to
end against a fake decision API (a thread that records each request line and answers a
canned reply). No gateway daemon is involved."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import shim as shim_cli
from gateway.policy.compiled import compile_policy_text
from gateway.shim.install import (
    CFLAGS,
    CONFIG_NAME,
    SHIM_NAME,
    ShimBuildError,
    ShimConfig,
    ShimConfigError,
    ShimInstallError,
    build_shim,
    check_shims,
    install_shims,
    parse_config,
    policy_programs,
)

if shutil.which("gcc") is None and not os.environ.get("CC"):
    pytest.skip("no C compiler: the shim cannot be built", allow_module_level=True)

DENIED = 126
ALLOW = {"verdict": "ALLOW", "blocks": False, "reason": "allowed by rule 0"}
BASH = shutil.which("bash")
REAL = {name: shutil.which(name) for name in ("bash", "sh", "cat", "touch")}
if not all(REAL.values()):
    pytest.skip(f"needs {', '.join(REAL)} on PATH", allow_module_level=True)


# --- a fake decision API --------------------------------------------------------------

Reply = Callable[[dict[str, Any]], bytes | None]


class FakeGateway:
    """Records each request line and answers `reply(request)` (None: close without a
    reply), after `delay` seconds."""

    def __init__(self, address: str, reply: Reply | dict[str, Any] | bytes = ALLOW,
                 delay: float = 0.0) -> None:
        self.address = address
        self.reply = reply
        self.delay = delay
        self.lines: list[bytes] = []
        self.connections = 0
        if address.startswith("tcp:"):
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.address = f"tcp:127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(address.removeprefix("unix:"))
            self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def _answer(self, request: dict[str, Any]) -> bytes | None:
        if callable(self.reply):
            return self.reply(request)
        if isinstance(self.reply, bytes):
            return self.reply
        return json.dumps(self.reply).encode()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self.lines.append(line)
                    time.sleep(self.delay)
                    answer = self._answer(json.loads(line))
                    if answer is None:
                        return
                    try:
                        conn.sendall(answer + b"\n")
                    except OSError:
                        return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory for Unix sockets (their paths are limited to 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="gwshim", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def gateway(sockdir: Path) -> Iterator[FakeGateway]:
    server = FakeGateway(f"unix:{sockdir / 'api.sock'}")
    yield server
    server.close()


@pytest.fixture(scope="module")
def shim_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shim, built once for the module."""
    return build_shim(tmp_path_factory.mktemp("build") / SHIM_NAME).path


def make_shims(root: Path, binary: Path, api: str, *, names: tuple[str, ...] = tuple(REAL),
               **settings: Any) -> Path:
    """A shim directory as `install_shims` writes it, from the prebuilt binary."""
    d = root / "shims"
    d.mkdir()
    shutil.copy2(binary, d / SHIM_NAME)
    real = {n: REAL[n] for n in names if n in REAL}
    (d / CONFIG_NAME).write_text(ShimConfig(api, real=real, **settings).render())
    for name in names:
        (d / name).symlink_to(SHIM_NAME)
    return d


def run(argv: list[str], *, executable: Path | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None, stdin: bytes | None = None,
        timeout: float = 10) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    return subprocess.run(argv, executable=executable, cwd=cwd, env=env if env is not None
                          else base, input=stdin.decode() if stdin is not None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def shims(tmp_path: Path, shim_binary: Path, gateway: FakeGateway) -> Path:
    return make_shims(tmp_path, shim_binary, gateway.address)


def deny(part: str, reason: str) -> dict[str, Any]:
    return {"verdict": "DENY", "blocks": True, "part": part, "reason": reason}


# --- building ---------------------------------------------------------------------------


def test_build_compiles_warning_free(tmp_path: Path) -> None:
    """shim.c compiles with -O2 -Wall -Wextra -Werror into an executable, mode 0755."""
    assert {"-Wall", "-Wextra", "-Werror"} <= set(CFLAGS)
    build = build_shim(tmp_path / SHIM_NAME)
    assert build.path == tmp_path / SHIM_NAME
    assert stat.S_IMODE(build.path.stat().st_mode) == 0o755
    assert os.path.isabs(build.compiler)
    assert [p.name for p in tmp_path.iterdir()] == [SHIM_NAME]  # no temporary left


def test_build_without_a_compiler_says_so(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No $CC, no `cc` and no gcc on PATH: a ShimBuildError naming what was tried."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ShimBuildError, match=r"no C compiler found \(tried nocc, gcc\)"):
        build_shim(tmp_path / SHIM_NAME, cc="nocc")


def test_build_failure_quotes_the_compiler(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that fails: the error quotes its stderr and nothing is left behind."""
    fake = tmp_path / "badcc"
    fake.write_text("#!/bin/sh\necho 'shim.c:1: error: broken on purpose' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ShimBuildError, match="broken on purpose"):
        build_shim(out / SHIM_NAME)
    assert list(out.iterdir()) == []


# --- installing -------------------------------------------------------------------------


def fake_program(directory: Path, name: str, executable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\necho fake\n")
    path.chmod(0o755 if executable else 0o644)
    return path


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    """A PATH directory with the real shells (linked, keeping their names) and fakes."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("sh", "bash"):
        (d / name).symlink_to(REAL[name])
    for name in ("python3", "python3.11", "pytest"):
        fake_program(d, name)
    fake_program(d, "pythonista", executable=False)
    return d


def test_install_links_every_name_and_writes_the_config(tmp_path: Path, bindir: Path) -> None:
    """Each name is a symlink to gateway-shim; the config records the real program as
    found on PATH (the link's own path, so multi-call binaries keep their name), never
    one in DIR, even with DIR first on PATH."""
    d = tmp_path / "shims"
    result = install_shims(d, api=str(tmp_path / "api.sock"), names=["pytest"],
                           path=f"{d}:{bindir}")
    assert dict(result.installed) == {"bash": str(bindir / "bash"), "pytest": str(bindir / "pytest"),
                                      "sh": str(bindir / "sh")}
    for name in result.installed:
        assert os.readlink(d / name) == SHIM_NAME
    assert stat.S_IMODE((d / SHIM_NAME).stat().st_mode) == 0o755
    assert stat.S_IMODE((d / CONFIG_NAME).stat().st_mode) == 0o644
    config = parse_config((d / CONFIG_NAME).read_text())
    assert config.api == f"unix:{tmp_path / 'api.sock'}"
    assert (config.timeout_ms, config.fail_open, config.spool) == (2000, False, None)
    assert dict(config.real) == dict(result.installed)
    assert not any(p.startswith(str(d)) for p in config.real.values())
    assert result.missing == () and result.unmatched == ()
    assert check_shims(d).problems == ()


def test_install_takes_program_names_from_a_policy(tmp_path: Path, bindir: Path) -> None:
    """A policy's shell_exec rules name programs: a literal word one program, a glob every
    matching executable on PATH, `*` alone none; a program not on PATH is reported."""
    policy = compile_policy_text(
        "version: 1\ndefault: deny\nrules:\n"
        "- {action: shell_exec, command: ['python* -m pytest*', 'pytest -q'], effect: allow}\n"
        "- {action: shell_exec, command: ['nosuchprogram-x1 *', 'zz*'], effect: deny}\n"
        "- {action: shell_exec, command: '*', effect: deny}\n"
        "- {action: network, host: 'pytest', effect: allow}\n",
        project_dir=str(tmp_path), environ={"HOME": str(tmp_path)})
    assert policy_programs(policy) == ["python*", "pytest", "nosuchprogram-x1", "zz*"]
    result = install_shims(tmp_path / "shims", api="tcp:127.0.0.1:7000", policy=policy,
                           path=str(bindir))
    assert sorted(result.installed) == ["bash", "pytest", "python3", "python3.11", "sh"]
    assert result.missing == ("nosuchprogram-x1",)
    assert result.unmatched == ("zz*",)
    assert not (tmp_path / "shims" / "pythonista").exists()  # not executable
    assert parse_config((tmp_path / "shims" / CONFIG_NAME).read_text()).api == "tcp:127.0.0.1:7000"


def test_install_copies_real_programs_to_real_dir(tmp_path: Path, bindir: Path) -> None:
    """With real_dir, each real program is copied there and the copy is recorded."""
    real_dir = tmp_path / "real"
    result = install_shims(tmp_path / "shims", api="/run/api.sock", names=["python3"],
                           real_dir=real_dir, path=str(bindir), fail_open=True,
                           spool=tmp_path / "spool.jsonl", timeout_ms=500)
    assert dict(result.installed) == {n: str(real_dir / n) for n in ("bash", "python3", "sh")}
    assert (real_dir / "bash").read_bytes() == Path(REAL["bash"]).read_bytes()
    assert os.access(real_dir / "python3", os.X_OK)
    config = parse_config((tmp_path / "shims" / CONFIG_NAME).read_text())
    assert (config.timeout_ms, config.fail_open, config.spool) == (500, True,
                                                                   str(tmp_path / "spool.jsonl"))


@pytest.mark.parametrize(("case", "kwargs", "message"), [
    ("bad_api", {"api": "tcp:gateway:7000"}, "an address, not a name"),
    ("bad_name", {"names": ["../x"]}, "cannot shim"),
    ("shim_name", {"names": [SHIM_NAME]}, "cannot shim"),
    ("bad_timeout", {"timeout_ms": 0}, "timeout_ms must be"),
    ("real_dir_inside", {"real_dir": "SHIMS/real"}, "inside"),
])
def test_install_refuses(tmp_path: Path, bindir: Path, case: str, kwargs: dict[str, Any],
                         message: str) -> None:
    """Unusable arguments are refused before anything is written."""
    d = tmp_path / "shims"
    kwargs = {k: (v.replace("SHIMS", str(d)) if isinstance(v, str) else v)
              for k, v in kwargs.items()}
    kwargs.setdefault("api", "/run/api.sock")
    with pytest.raises(ShimInstallError, match=message):
        install_shims(d, path=str(bindir), **kwargs)
    assert not d.exists()


@pytest.mark.parametrize(("case", "link_to", "message"), [
    ("inside_dir", "shims/sub/bash", "is inside it"),
    ("another_shim", "other/gateway-shim", "is a gateway shim"),
])
def test_install_refuses_a_real_program_that_would_recurse(
        tmp_path: Path, bindir: Path, case: str, link_to: str, message: str) -> None:
    """A real program found inside DIR (a link into it, a subdirectory on PATH) or that
    is a shim itself would make the shim run itself: refused."""
    target = fake_program((tmp_path / link_to).parent, (tmp_path / link_to).name)
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "bash").symlink_to(target)
    with pytest.raises(ShimInstallError, match=message):
        install_shims(tmp_path / "shims", api="/run/api.sock", path=f"{loop}:{bindir}")
    assert not (tmp_path / "shims" / SHIM_NAME).exists()


def test_install_never_replaces_a_real_program(tmp_path: Path, bindir: Path) -> None:
    """A file in DIR that is not a shim link (here a real bash) is left alone."""
    d = tmp_path / "shims"
    own = fake_program(d, "bash")
    with pytest.raises(ShimInstallError, match="refusing to replace"):
        install_shims(d, api="/run/api.sock", path=f"{d}:{bindir}")
    assert own.read_text() == "#!/bin/sh\necho fake\n"
    assert sorted(p.name for p in d.iterdir()) == ["bash"]


def test_reinstall_replaces_links_and_removes_stale_ones(tmp_path: Path, bindir: Path) -> None:
    """Installing again is idempotent, and a name no longer shimmed loses its link."""
    d = tmp_path / "shims"
    install_shims(d, api="/run/api.sock", names=["pytest"], path=str(bindir))
    install_shims(d, api="/run/api.sock", path=str(bindir))
    assert sorted(p.name for p in d.iterdir()) == sorted(["bash", CONFIG_NAME, SHIM_NAME, "sh"])


# --- configuration and check ----------------------------------------------------------


@pytest.mark.parametrize(("case", "text", "message"), [
    ("no_api", "timeout_ms 5\n", "no 'api' line"),
    ("unknown", "api /a.sock\nverbose 1\n", ":2: unknown setting 'verbose'"),
    ("relative_real", "api /a.sock\nreal sh bin/sh\n", "needs an absolute path"),
    ("timeout_range", "api /a.sock\ntimeout_ms 0\n", "bad timeout_ms"),
    ("fail_open_range", "api /a.sock\nfail_open 2\n", "bad fail_open"),
    ("relative_api", "api run/a.sock\n", "absolute path"),
    ("dns_name", "api tcp:gateway:1\n", "resolves no names"),
])
def test_config_errors_name_the_line(case: str, text: str, message: str) -> None:
    """The Python reader refuses what the shim refuses, naming file and line."""
    with pytest.raises(ShimConfigError, match=message):
        parse_config(text, "shim.conf")


def test_config_comments_and_round_trip() -> None:
    """`#` starts a comment at the start of a line or after white space; render() is
    read back as written."""
    config = parse_config("# hi\napi unix:/a.sock   # the socket\nreal sh /x#y/sh\n")
    assert config.api == "unix:/a.sock" and dict(config.real) == {"sh": "/x#y/sh"}
    again = ShimConfig("tcp:[::1]:7", 9, True, "/s", {"a": "/b"})
    assert parse_config(again.render()) == again


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    shim_cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    code: int = args.run(args)
    return code


def test_cli_install_warns_on_fail_open_and_check_passes(
        tmp_path: Path, bindir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`shim install --fail-open` says it is dangerous; `shim check` then exits 0."""
    d = tmp_path / "shims"
    assert cli("shim", "install", str(d), "--api", "/run/api.sock", "--fail-open",
               "--path", str(bindir)) == 0
    out, err = capsys.readouterr()
    assert "WARNING: --fail-open" in err
    assert f"export PATH={d}:$PATH" in out
    assert f"bash -> {bindir / 'bash'}" in out
    assert cli("shim", "check", str(d)) == 0
    out, err = capsys.readouterr()
    assert out.startswith("OK: 2 programs") and "fail_open 1" in err


def test_cli_check_reports_problems(tmp_path: Path, bindir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A link without a real entry and a real program that vanished: exit 2, both named."""
    d = tmp_path / "shims"
    install_shims(d, api="/run/api.sock", names=["pytest"], path=str(bindir))
    (bindir / "pytest").unlink()
    (d / "orphan").symlink_to(SHIM_NAME)
    assert cli("shim", "check", str(d)) == 2
    err = capsys.readouterr().err
    assert "pytest, " in err and "missing or not executable" in err
    assert "orphan links to the shim" in err


# --- the shim at work -----------------------------------------------------------------


def test_request_carries_argv_cwd_env_names_and_credentials(
        tmp_path: Path, shims: Path, gateway: FakeGateway) -> None:
    """One line per run: argv exactly as invoked, cwd, the environment's names (never
    values), agent and token, source shim, the pid; a shell's script and its path."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "run.sh").write_text("echo ran \"$1\"\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/home/x", "BASH_ENV": "/dev/null",
           "GATEWAY_AGENT": "coder", "GATEWAY_TOKEN": "s3cret", "SECRET_VALUE": "hunter2"}
    result = run(["bash", "run.sh", "ü arg"], executable=shims / "bash", cwd=work, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran ü arg\n", "")
    [request] = gateway.requests
    details = request.pop("details")
    assert sorted(request.pop("env")) == sorted(env)
    assert request == {"action": "shell_exec", "argv": ["bash", "run.sh", "ü arg"],
                       "cwd": str(work), "source": "shim", "agent": "coder", "token": "s3cret",
                       "script": "echo ran \"$1\"\n", "script_path": "run.sh"}
    assert set(details) == {"pid"} and isinstance(details["pid"], int)
    assert "hunter2" not in gateway.lines[0].decode()


def test_request_without_credentials_omits_them(shims: Path, gateway: FakeGateway) -> None:
    """No GATEWAY_AGENT/GATEWAY_TOKEN: no agent or token member; a -c string sends no
    script."""
    assert run([str(shims / "bash"), "-c", "true"]).returncode == 0
    [request] = gateway.requests
    assert request["argv"] == [str(shims / "bash"), "-c", "true"]
    assert not {"agent", "token", "script", "script_path"} & set(request)


@pytest.mark.parametrize(("case", "args", "script_path"), [
    ("operand", ["s.sh", "-c"], "s.sh"),
    ("dash_c", ["-c", "echo s.sh"], None),
    ("cluster_lc", ["-lc", "echo"], None),
    ("cluster_ec", ["-ec", "echo"], None),
    ("o_takes_a_value", ["-o", "errexit", "s.sh"], "s.sh"),
    ("plus_o_takes_a_value", ["+o", "errexit", "s.sh"], "s.sh"),
    ("cluster_with_o", ["-eo", "pipefail", "s.sh"], "s.sh"),
    ("bash_O_takes_a_value", ["-O", "extglob", "s.sh"], "s.sh"),
    ("rcfile_takes_a_value", ["--rcfile", "rc", "s.sh"], "s.sh"),
    ("long_flags", ["--norc", "--noprofile", "-x", "s.sh"], "s.sh"),
    ("double_dash", ["--", "-c"], "-c"),
    ("lone_dash_ends_options", ["-", "s.sh"], "s.sh"),
    ("lone_dash_is_stdin", ["-"], None),
    ("dash_s_reads_stdin", ["-s", "s.sh"], None),
    ("no_operand", ["-x"], None),
])
def test_script_operand(tmp_path: Path, shims: Path, gateway: FakeGateway, case: str,
                        args: list[str], script_path: str | None) -> None:
    """Which operand of a shell is its script (read and sent), per the shell's options."""
    gateway.reply = deny("x", "no")
    (tmp_path / "s.sh").write_text("echo s\n")
    (tmp_path / "-c").write_text("echo c\n")
    assert run(["bash", *args], executable=shims / "bash", cwd=tmp_path).returncode == DENIED
    [request] = gateway.requests
    assert request.get("script_path") == script_path
    if script_path is not None:
        assert request["script"] == (tmp_path / script_path).read_text()
    else:
        assert "script" not in request


def test_unsendable_scripts_are_left_out(tmp_path: Path, shims: Path,
                                         gateway: FakeGateway) -> None:
    """A script over 64 KiB, missing, or not UTF-8 is not sent (its path is), so the
    gateway decides without it; a program that is not a shell sends no script."""
    gateway.reply = deny("x", "no")
    (tmp_path / "big.sh").write_text("#" * (64 * 1024 + 1))
    (tmp_path / "latin1.sh").write_bytes(b"echo \xe9\n")
    for args in (["big.sh"], ["absent.sh"], ["latin1.sh"]):
        run(["sh", *args], executable=shims / "sh", cwd=tmp_path)
    run(["cat", "big.sh"], executable=shims / "cat", cwd=tmp_path)
    assert [(r.get("script_path"), "script" in r) for r in gateway.requests] == [
        ("big.sh", False), ("absent.sh", False), ("latin1.sh", False), (None, False)]


def test_allowed_commands_keep_output_status_and_stdin(shims: Path) -> None:
    """Allowed, the real program runs with the caller's stdio and its exit status."""
    assert run([str(shims / "bash"), "-c", "echo hi"]).stdout == "hi\n"
    assert run([str(shims / "bash"), "-c", "exit 3"]).returncode == 3
    piped = run([BASH, "-c", f"echo data | {shims / 'cat'}"])
    assert (piped.returncode, piped.stdout) == (0, "data\n")
    assert run([str(shims / "cat")], stdin=b"direct\n").stdout == "direct\n"
    out = shims.parent / "fd3"
    assert run([BASH, "-c", f"{shims / 'bash'} -c 'echo via fd 3 >&3' 3>{out}"]).returncode == 0
    assert out.read_text() == "via fd 3\n"


def test_login_shell_name_finds_the_real_shell(shims: Path, gateway: FakeGateway) -> None:
    """argv[0] `-bash` (a login shell) is shimmed name bash and is sent as written."""
    result = run(["-bash", "-c", "echo $0"], executable=shims / "bash")
    assert result.stdout == "-bash\n"
    assert gateway.requests[0]["argv"][0] == "-bash"


def test_denied_command_does_not_run(tmp_path: Path, shims: Path,
                                     gateway: FakeGateway) -> None:
    """A deny: exit 126, one line naming the part and the reason, nothing runs."""
    gateway.reply = deny("touch victim", "no \"touching\"\nhere")
    result = run([str(shims / "touch"), str(tmp_path / "victim")])
    assert result.returncode == DENIED
    assert result.stderr == 'gateway: denied: touch victim (no "touching"\\nhere)\n'
    assert not (tmp_path / "victim").exists()


@pytest.mark.parametrize(("case", "reply", "runs"), [
    ("allow", b'{"blocks":false}', True),
    ("allow_spaced", b'{ "verdict" : "ALLOW" , "blocks" : false }', True),
    ("nested_blocks_ignored", b'{"x":{"blocks":true,"e":[1,"]"]},"blocks":false}', True),
    ("blocks_true", b'{"blocks":true}', False),
    ("no_blocks", b'{"verdict":"ALLOW"}', False),
    ("empty_object", b"{}", False),
    ("error_member", b'{"blocks":false,"error":"bad request"}', False),
    ("blocks_string", b'{"blocks":"false"}', False),
    ("blocks_twice", b'{"blocks":false,"blocks":true}', False),
    ("blocks_in_a_string", b'{"reason":"\\"blocks\\":false"}', False),
    ("escaped_key", b'{"bl\\u006fcks":true,"blocks":false}', False),
    ("array", b'[{"blocks":false}]', False),
    ("trailing_garbage", b'{"blocks":false} x', False),
    ("not_json", b"blocks:false", False),
    ("unterminated", b'{"blocks":false', False),
])
def test_only_blocks_false_runs(tmp_path: Path, shims: Path, gateway: FakeGateway,
                                case: str, reply: bytes, runs: bool) -> None:
    """The real program runs only on a reply that is an object with "blocks": false and
    no "error"; anything else is a deny."""
    gateway.reply = reply
    result = run([str(shims / "touch"), str(tmp_path / "made")])
    assert (tmp_path / "made").exists() is runs
    assert result.returncode == (0 if runs else DENIED)
    if not runs:
        assert result.stderr.startswith("gateway: denied: ")


def test_error_reply_is_shown(shims: Path, gateway: FakeGateway) -> None:
    """An error reply's text is the reason; a garbled reply says so."""
    gateway.reply = {"error": "'env' must be a list", "blocks": True}
    assert run([str(shims / "cat"), "/dev/null"]).stderr == \
        "gateway: denied: cat ('env' must be a list)\n"
    gateway.reply = b"\x00garbage"
    assert "sent a garbled reply; nothing was run" in run([str(shims / "cat")]).stderr


def test_closed_connection_denies(tmp_path: Path, shims: Path, gateway: FakeGateway) -> None:
    """The gateway closes without a reply: deny, saying it did not answer."""
    gateway.reply = lambda request: None
    result = run([str(shims / "touch"), str(tmp_path / "made")])
    assert result.returncode == DENIED
    assert result.stderr == (f"gateway: denied: the gateway at {gateway.address} did not "
                             "answer (the connection closed before a reply); nothing was run\n")
    assert not (tmp_path / "made").exists()


def test_no_gateway_denies(tmp_path: Path, shim_binary: Path, sockdir: Path) -> None:
    """Nothing listens at the address: deny, naming the address and the reason."""
    d = make_shims(tmp_path, shim_binary, f"unix:{sockdir / 'none.sock'}")
    result = run([str(d / "touch"), str(tmp_path / "made")])
    assert result.returncode == DENIED
    assert "did not answer (cannot connect: No such file or directory); nothing was run" \
        in result.stderr
    assert not (tmp_path / "made").exists()


def test_slow_gateway_denies_at_the_deadline(tmp_path: Path, shim_binary: Path,
                                             sockdir: Path) -> None:
    """No reply within timeout_ms: deny at about that time, not when the reply comes."""
    server = FakeGateway(f"unix:{sockdir / 'slow.sock'}", delay=3)
    try:
        d = make_shims(tmp_path, shim_binary, server.address, timeout_ms=300)
        started = time.monotonic()
        result = run([str(d / "touch"), str(tmp_path / "made")])
        took = time.monotonic() - started
    finally:
        server.close()
    assert result.returncode == DENIED
    assert "did not answer (no reply within 300 ms)" in result.stderr
    assert 0.25 < took < 1.5
    assert not (tmp_path / "made").exists()


def test_tcp_address(tmp_path: Path, shim_binary: Path) -> None:
    """The API over TCP (tcp:IPV4:PORT) works the same."""
    server = FakeGateway("tcp:", reply=ALLOW)
    try:
        d = make_shims(tmp_path, shim_binary, server.address)
        result = run([str(d / "bash"), "-c", "echo over tcp"])
    finally:
        server.close()
    assert result.stdout == "over tcp\n"
    assert server.requests[0]["argv"][1:] == ["-c", "echo over tcp"]


def test_fail_open_runs_spools_and_replays(tmp_path: Path, shim_binary: Path,
                                           sockdir: Path) -> None:
    """fail_open: an unreachable gateway lets the command run with a warning and spools
    its request; the next run that reaches the gateway sends the spooled line first and
    empties the spool."""
    address = f"unix:{sockdir / 'later.sock'}"
    spool = tmp_path / "spool.jsonl"
    d = make_shims(tmp_path, shim_binary, address, fail_open=True, spool=str(spool))
    before = int(time.time())
    result = run([str(d / "touch"), str(tmp_path / "made")])
    assert result.returncode == 0 and (tmp_path / "made").exists()
    assert result.stderr == (f"gateway: WARNING: the gateway at {address} did not answer; "
                             "running unchecked (fail_open)\n")
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    [spooled] = [json.loads(line) for line in spool.read_text().splitlines()]
    assert spooled["argv"] == [str(d / "touch"), str(tmp_path / "made")]
    assert spooled["details"]["failed_open"] is True
    assert before <= spooled["details"]["at"] <= time.time() + 1

    server = FakeGateway(address, reply=ALLOW)
    try:
        assert run([str(d / "bash"), "-c", "echo back"]).stdout == "back\n"
    finally:
        server.close()
    assert [r["argv"][1:] for r in server.requests] == [[str(tmp_path / "made")],
                                                       ["-c", "echo back"]]
    assert server.requests[0]["details"]["failed_open"] is True
    assert "failed_open" not in server.requests[1]["details"]
    assert spool.read_text() == ""


def test_spool_replay_skips_unsendable_lines_and_keeps_a_partial_one(
        tmp_path: Path, shim_binary: Path, gateway: FakeGateway) -> None:
    """Blank lines and lines over the API's limit are dropped from the spool, complete
    lines are sent in order before the request, and an unended last line (an append in
    progress) stays."""
    spool = tmp_path / "spool.jsonl"
    first, second = (json.dumps({"action": "shell_exec", "argv": [n]}) for n in ("a", "b"))
    spool.write_text(f"{first}\n\n   \n{'x' * (256 * 1024 + 1)}\n{second}\n{{\"part")
    d = make_shims(tmp_path, shim_binary, gateway.address, fail_open=True, spool=str(spool))
    assert run([str(d / "bash"), "-c", "true"]).returncode == 0
    assert [r["argv"][-1] for r in gateway.requests] == ["a", "b", "true"]
    assert spool.read_text() == '{"part'


def test_fail_closed_by_default_spools_nothing(tmp_path: Path, shim_binary: Path,
                                               sockdir: Path) -> None:
    """Without fail_open a spool setting changes nothing: deny, nothing spooled."""
    spool = tmp_path / "spool.jsonl"
    d = make_shims(tmp_path, shim_binary, f"unix:{sockdir / 'x.sock'}", spool=str(spool))
    assert run([str(d / "bash"), "-c", "true"]).returncode == DENIED
    assert not spool.exists()


def test_config_is_never_read_from_the_environment(tmp_path: Path, shim_binary: Path,
                                                   gateway: FakeGateway) -> None:
    """Variables naming another config, API or fail-open change nothing: the request goes
    to the configured gateway and its deny holds."""
    d = make_shims(tmp_path, shim_binary, gateway.address)
    other = tmp_path / "other.conf"
    other.write_text(f"api /nonexistent\nfail_open 1\nreal touch {REAL['touch']}\n")
    gateway.reply = deny("touch", "no")
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_SHIM_CONF": str(other), "GATEWAY_API": "/x",
           "GATEWAY_FAIL_OPEN": "1", "GATEWAY_SHIM_CONFIG": str(other)}
    result = run([str(d / "touch"), str(tmp_path / "made")], env=env)
    assert result.returncode == DENIED and len(gateway.requests) == 1
    assert not (tmp_path / "made").exists()


@pytest.mark.skipif(os.path.exists("/etc/gateway/shim.conf"),
                    reason="/etc/gateway/shim.conf exists here: it is the fallback")
def test_no_config_denies(tmp_path: Path, shim_binary: Path) -> None:
    """No config beside the shim nor in /etc/gateway: deny, whatever the environment."""
    d = make_shims(tmp_path, shim_binary, "/x.sock")
    (d / CONFIG_NAME).unlink()
    result = run([str(d / "bash"), "-c", "true"],
                 env={"PATH": "/bin", "GATEWAY_SHIM_CONF": str(tmp_path)})
    assert result.returncode == DENIED
    assert "no shim configuration" in result.stderr


def test_name_without_real_entry_denies(tmp_path: Path, shims: Path,
                                        gateway: FakeGateway) -> None:
    """A link whose name has no `real` entry is denied without asking."""
    (shims / "python3").symlink_to(SHIM_NAME)
    result = run([str(shims / "python3"), "-c", "pass"])
    assert result.returncode == DENIED
    assert f"no real program is configured for 'python3' in {shims / CONFIG_NAME}" \
        in result.stderr
    assert gateway.requests == []


def test_real_program_that_is_the_shim_denies(tmp_path: Path, shim_binary: Path,
                                              gateway: FakeGateway) -> None:
    """A `real` entry that leads back to the shim would recurse: deny."""
    d = make_shims(tmp_path, shim_binary, gateway.address, names=())
    (d / "loop").symlink_to(SHIM_NAME)
    (d / CONFIG_NAME).write_text(f"api {gateway.address}\nreal loop {d / 'loop'}\n")
    result = run([str(d / "loop")])
    assert result.returncode == DENIED and "is the shim itself" in result.stderr


def test_invalid_utf8_argument_or_cwd_denies_locally(tmp_path: Path, shims: Path,
                                              gateway: FakeGateway) -> None:
    """An argument or working directory that is not UTF-8 cannot be judged: deny
    without asking."""
    result = subprocess.run([os.fsencode(shims / "touch"), os.fsencode(tmp_path) + b"/\xff"],
                            capture_output=True, timeout=10, check=False)
    assert result.returncode == DENIED
    assert result.stderr == b"gateway: denied: argument is not valid UTF-8\n"
    assert gateway.requests == [] and list(tmp_path.glob("*\udcff")) == []
    odd = os.fsencode(tmp_path) + b"/\xfe"
    os.mkdir(odd)
    result = subprocess.run([os.fsencode(shims / "bash"), b"-c", b"true"], cwd=odd,
                            capture_output=True, timeout=10, check=False)
    assert result.returncode == DENIED
    assert result.stderr == b"gateway: denied: the working directory is not valid UTF-8\n"
    assert gateway.requests == []


def test_large_argv(shims: Path, gateway: FakeGateway) -> None:
    """An argv of about 200 KiB is sent whole; one over the API's 256 KiB line limit is
    denied without asking."""
    chunk = "x" * (100 * 1024)
    result = run([str(shims / "bash"), "-c", "echo ${#1}${#2}", "_", chunk, chunk])
    assert result.stdout == "102400102400\n"
    assert gateway.requests[0]["argv"][-1] == chunk
    result = run([str(shims / "bash"), "-c", "true", "_", chunk, chunk, chunk])
    assert result.returncode == DENIED and "over the gateway's limit" in result.stderr
    assert len(gateway.requests) == 1
