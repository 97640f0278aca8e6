"""Command shim overhead: `bash -c true` and friends with and without the shim, in one run.

Run: python benchmarks/bench_shim.py [--runs 500] [--rounds 25] [--warmup 20] [--quick]

Starts `gateway up` (proxy on 127.0.0.1:0, decision API on a Unix socket and on
127.0.0.1:0) with a policy that allows `true`, `echo*` and `python*` commands, and
installs the shim twice with the library (`install_shims`): once asking the Unix
socket, once asking `tcp:127.0.0.1:PORT`, each shimming sh, bash, dash, true and echo.

Every measured run is a fresh process: `os.posix_spawn` and `waitpid`, timed with
`time.perf_counter_ns` around both, the same way for every row. The baselines run the
very programs the shim execs (the absolute paths it recorded); the shimmed rows run
DIR/bash and so on with the same argv, environment and working directory. Rows:

- `bash -c true`, `sh -c true` and `true` (a program shim): real, shim over the Unix
  socket, shim over TCP;
- `bash -c 'rm x'` through the shim, denied (exit 126): nothing runs, so its whole
  time is what the shim costs;
- where the time goes, measured beside them: the decision API round trip alone (this
  process connects, sends the shim's request line, reads the reply), an `fdatasync`
  of a 300-byte append on the state directory's disk (what the durable audit entry
  waits for), and a Python interpreter started per command (`python3 -c pass`, with
  and without `-S`).

After warm-up every row runs in interleaved rounds, the row order rotating each round,
so that drift in machine load falls on all rows alike. Every run is checked: exit 0
(126 for the denied one), a reply with `"blocks":false` for the round trips. After the
run the audit log must hold exactly one `shim` decision per shimmed run (ALLOW and DENY
counted apart) and one `sdk` decision per round trip; anything else, a failed run or a
run over its timeout stops the benchmark with a non-zero exit status. Everything lives
in a temporary directory that is removed at the end; only loopback and Unix sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from procs import stop, tail

from gateway.audit.reader import iter_entries
from gateway.shim.install import InstallResult, check_shims, install_shims

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
TARGET_MS = 5.0  # the shim's budget per command, added p50
START_TIMEOUT_S = 60.0  # the gateway to write gateway.json
RUN_TIMEOUT_S = 10.0  # one measured run
CALL_TIMEOUT_S = 60.0  # `gateway status`, a checking run, the gateway's stop
SOCKET_TIMEOUT_S = 5.0
REAL_PATH = "/usr/local/bin:/usr/bin:/bin"  # where the real programs are looked up
SHIMMED = ("bash", "sh", "true", "echo")
AUDIT_ENTRY = b"x" * 299 + b"\n"  # about the size of one audit entry
EXIT_DENIED = 126
POLICY = """\
version: 1
default: deny
rules:
  - {action: shell_exec, command: ["true", "echo*", "python*"], effect: allow}
"""


class BenchFailure(Exception):
    """A run that failed, timed out or was not audited as expected."""


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


# -- the gateway --------------------------------------------------------------------------


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    log: Path
    state: Path
    info: dict[str, object] = field(default_factory=dict)

    def failed(self, what: str) -> BenchFailure:
        return BenchFailure(f"gateway {what}; its output ends:\n{tail(self.log)}")

    def stop(self) -> int | None:
        return stop(self.process, CALL_TIMEOUT_S)

    @property
    def unix_api(self) -> str:
        return f"unix:{self.info['api_socket']}"

    @property
    def tcp_address(self) -> tuple[str, int]:
        host, port = self.info["api_tcp"]  # type: ignore[misc]
        return str(host), int(port)


def start_gateway(work: Path, stack: contextlib.ExitStack) -> Gateway:
    state, policy, log = work / "state", work / "policy.yaml", work / "gateway.log"
    policy.write_text(POLICY)
    argv = [sys.executable, "-m", "gateway", "up", "--policy", os.fspath(policy),
            "--listen", f"{LOOPBACK}:0", "--api-listen", f"{LOOPBACK}:0",
            "--state-dir", os.fspath(state)]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
    gateway = Gateway(process, log, state)
    stack.callback(gateway.stop)
    info_path = state / "gateway.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(OSError, ValueError):
            gateway.info = json.loads(info_path.read_text())
            break
        if process.poll() is not None:
            raise gateway.failed(f"exited with status {process.returncode} at start")
        if time.monotonic() > deadline:
            raise gateway.failed(f"wrote no {info_path.name} within {START_TIMEOUT_S:g} s")
        time.sleep(0.05)
    if not gateway.info.get("api_tcp") or not gateway.info.get("api_socket"):
        raise gateway.failed(f"gateway.json names no API socket and TCP port: {gateway.info}")
    return gateway


def gateway_status(gateway: Gateway) -> dict[str, object]:
    argv = [sys.executable, "-m", "gateway", "status", "--state-dir",
            os.fspath(gateway.state), "--json"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                                timeout=CALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"`gateway status` gave no answer within {CALL_TIMEOUT_S:g} s") \
            from None
    try:
        status = json.loads(result.stdout)
    except ValueError:
        status = None
    if result.returncode != 0 or not isinstance(status, dict):
        raise BenchFailure(f"`gateway status` exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[:500]}")
    return status


# -- what is measured ---------------------------------------------------------------------


class Probe:
    """One kind of run; calling it does one run and returns its wall time in ns."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.calls = 0  # runs done, checking and warm-up ones included

    def __call__(self) -> int:
        raise NotImplementedError

    def check(self) -> str:
        """One run outside the measurement, its output checked; a line describing it."""
        self()
        return ""

    def close(self) -> None:
        pass


class Spawn(Probe):
    """A fresh process: posix_spawn + waitpid, stdio on /dev/null, the exit status checked."""

    def __init__(self, label: str, path: str, argv: list[str], env: dict[str, str],
                 devnull: int, expect: int = 0, output: str | None = None) -> None:
        super().__init__(label)
        self.path, self.argv, self.env, self.expect = path, argv, env, expect
        self.output = output  # what `check` wants on stdout (exit 0) or stderr (a deny)
        self.actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]

    def __call__(self) -> int:
        self.calls += 1
        pid = 0
        signal.setitimer(signal.ITIMER_REAL, RUN_TIMEOUT_S)
        try:
            start = time.perf_counter_ns()
            pid = os.posix_spawn(self.path, self.argv, self.env, file_actions=self.actions)
            _, status = os.waitpid(pid, 0)
            elapsed = time.perf_counter_ns() - start
        except _Timeout:
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            raise BenchFailure(f"{self.label}: still running after {RUN_TIMEOUT_S:g} s, "
                               "killed") from None
        except OSError as e:
            raise BenchFailure(f"{self.label}: cannot start {self.path}: {e}") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != self.expect:
            raise BenchFailure(f"{self.label}: exit status {code}, expected {self.expect}"
                               f"{self._explain()}")
        return elapsed

    def _run_captured(self) -> subprocess.CompletedProcess[str]:
        self.calls += 1
        try:
            return subprocess.run(self.argv, executable=self.path, env=self.env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=RUN_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise BenchFailure(f"{self.label}: still running after {RUN_TIMEOUT_S:g} s, "
                               "killed") from None

    def _explain(self) -> str:
        try:
            result = self._run_captured()
        except BenchFailure:
            return ""
        said = (result.stderr + result.stdout).strip()
        return f"; run again it exits {result.returncode} saying: {said[:500]!r}" \
            if said else f"; run again it exits {result.returncode}, silently"

    def check(self) -> str:
        result = self._run_captured()
        stream = result.stdout if self.expect == 0 else result.stderr
        if result.returncode != self.expect or \
                (self.output is not None and self.output not in stream):
            want = f" and {self.output!r} in its output" if self.output is not None else ""
            raise BenchFailure(f"{self.label}: exit status {result.returncode}, expected "
                               f"{self.expect}{want}; it said: "
                               f"{(result.stderr + result.stdout).strip()[:500]!r}")
        said = stream.strip().splitlines()
        return f"exit {result.returncode}" + (f", {said[0][:160]!r}" if said else "")


class RoundTrip(Probe):
    """The decision API alone: a new connection, one request line, its reply read."""

    def __init__(self, label: str, family: socket.AddressFamily, address: str | tuple[str, int],
                 line: bytes) -> None:
        super().__init__(label)
        self.family, self.address, self.line = family, address, line

    def __call__(self) -> int:
        self.calls += 1
        start = time.perf_counter_ns()
        try:
            with socket.socket(self.family, socket.SOCK_STREAM) as sock:
                sock.settimeout(SOCKET_TIMEOUT_S)
                sock.connect(self.address)
                sock.sendall(self.line)
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise BenchFailure(f"{self.label}: the connection closed before a "
                                           f"whole reply (got {reply[:200]!r})")
                    reply += chunk
        except OSError as e:
            raise BenchFailure(f"{self.label}: {e}") from None
        elapsed = time.perf_counter_ns() - start
        if b'"blocks":false' not in reply:
            raise BenchFailure(f"{self.label}: not allowed: {reply[:500]!r}")
        return elapsed

    def check(self) -> str:
        self()
        return "blocks false"


class Fsync(Probe):
    """A 300-byte append and `fdatasync` on a file beside the audit log."""

    def __init__(self, label: str, path: Path) -> None:
        super().__init__(label)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __call__(self) -> int:
        self.calls += 1
        start = time.perf_counter_ns()
        os.write(self.fd, AUDIT_ENTRY)
        os.fdatasync(self.fd)
        return time.perf_counter_ns() - start

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Row:
    command: str
    route: str
    probe: Probe
    baseline: Row | None = None  # None in the main table: the row is a baseline
    nothing_runs: bool = False  # a denied command: its whole time is the shim's
    audit: tuple[str, str] | None = None  # (source, verdict) of the entry each run adds
    main: bool = True  # the shim table, else "where the time goes"
    samples: list[int] = field(default_factory=list)

    def ms(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6

    def mean_ms(self) -> float:
        return sum(self.samples) / len(self.samples) / 1e6

    def added_ms(self) -> float | None:
        if self.nothing_runs:
            return self.ms(0.5)
        if self.baseline is None:
            return None
        return self.ms(0.5) - self.baseline.ms(0.5)


def build_rows(work: Path, gateway: Gateway, unix: InstallResult, tcp: InstallResult,
               devnull: int) -> list[Row]:
    env = {"PATH": REAL_PATH, "HOME": os.fspath(work), "LANG": "C.UTF-8"}
    real = dict(unix.installed)
    for name in SHIMMED:
        if name not in real or tcp.installed.get(name) != real[name]:
            raise BenchFailure(f"the shim was not installed for {name} in both directories "
                               f"(Unix: {real.get(name)}, TCP: {tcp.installed.get(name)})")
    rows: list[Row] = []
    routes = (("shim, Unix socket", unix.directory), ("shim, TCP", tcp.directory))
    for command, argv in (("bash -c true", ["bash", "-c", "true"]),
                          ("sh -c true", ["sh", "-c", "true"]),
                          ("true", ["true"])):
        name = argv[0]
        base = Row(command, f"real {real[name]}",
                   Spawn(f"`{command}` by {real[name]}", real[name], argv, env, devnull))
        rows.append(base)
        for route, directory in routes:
            rows.append(Row(command, route,
                            Spawn(f"`{command}` through {directory / name}",
                                  os.fspath(directory / name), argv, env, devnull),
                            baseline=base, audit=("shim", "ALLOW")))
    deny = ["bash", "-c", "rm x"]
    for route, directory in routes:
        rows.append(Row("bash -c 'rm x'", f"{route}, denied", Spawn(
            f"`bash -c 'rm x'` through {directory / 'bash'}", os.fspath(directory / "bash"),
            deny, env, devnull, expect=EXIT_DENIED, output="gateway: denied: "),
            nothing_runs=True, audit=("shim", "DENY")))

    # The line the shim sends for `bash -c true` (argv, cwd, env names), as source sdk.
    request = {"action": "shell_exec", "argv": ["bash", "-c", "true"], "cwd": os.fspath(work),
               "source": "sdk", "env": sorted(env), "details": {"pid": os.getpid()}}
    line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
    sock_path = str(gateway.info["api_socket"])
    rows += [
        Row("decision API round trip", "Unix socket",
            RoundTrip("the decision API round trip over the Unix socket", socket.AF_UNIX,
                      sock_path, line), audit=("sdk", "ALLOW"), main=False),
        Row("decision API round trip", "TCP",
            RoundTrip("the decision API round trip over TCP", socket.AF_INET,
                      gateway.tcp_address, line), audit=("sdk", "ALLOW"), main=False),
        Row("300-byte append + fdatasync", "the state directory's disk",
            Fsync("fdatasync", gateway.state / "bench-fsync.bin"), main=False),
    ]
    # By absolute path, argv[0] included: a bare `python3` would make the interpreter
    # look itself up on PATH and could start another installation's.
    for flags in ([], ["-S"]):
        command = " ".join(["python3", *flags, "-c", "pass"])
        rows.append(Row(command, sys.executable, Spawn(
            f"`{command}`", sys.executable, [sys.executable, *flags, "-c", "pass"], env,
            devnull), main=False))
    return rows


@dataclass(frozen=True)
class Settings:
    runs: int
    rounds: int
    warmup: int


def _rounds(settings: Settings, rows: list[Row]) -> Iterator[tuple[Row, int]]:
    """(row, runs) in interleaved rounds, the row order rotating each round."""
    for r in range(settings.rounds):
        count = settings.runs // settings.rounds + (r < settings.runs % settings.rounds)
        shift = r % len(rows)
        for row in rows[shift:] + rows[:shift]:
            if count:
                yield row, count


@contextlib.contextmanager
def _quiet_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def measure(rows: list[Row], settings: Settings) -> dict[str, str]:
    """Check every row once, warm up, then measure; what each check saw, by label."""
    checks = {row.probe.label: row.probe.check() for row in rows}
    with _quiet_collector():
        for row in rows:
            for _ in range(settings.warmup):
                row.probe()
        for row, count in _rounds(settings, rows):
            probe, samples = row.probe, row.samples
            for _ in range(count):
                samples.append(probe())
    return checks


# -- checking the audit log ---------------------------------------------------------------


def audit_counts(log: Path) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for entry in iter_entries(log):
        source = entry.get("source")
        if source in ("shim", "sdk"):
            counts[(str(source), str(entry.get("verdict")))] += 1
    return counts


def expected_counts(rows: list[Row]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if row.audit is not None:
            counts[row.audit] += row.probe.calls
    return counts


# -- reporting ----------------------------------------------------------------------------


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding `path`, from /proc/self/mounts."""
    best, kind = "", "unknown"
    target = os.path.realpath(path)
    with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = fields[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


def _bash_version(bash: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([bash, "-c", "echo $BASH_VERSION"], capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        return out or "?"
    return "?"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_header(settings: Settings, work: Path, unix: InstallResult) -> None:
    cores = len(os.sched_getaffinity(0))
    real = dict(unix.installed)
    sh_target = os.path.realpath(real["sh"])
    sh_is = f" (-> {sh_target})" if sh_target != real["sh"] else ""
    print(f"Machine: {cores} cores (nproc), {platform.system()} {platform.release()} "
          f"{platform.machine()}, Python {platform.python_version()}, bash "
          f"{_bash_version(real['bash'])}, sh {real['sh']}{sh_is}; "
          f"temporary directory on {_filesystem(work)}.")
    linked = "statically" if unix.static else "dynamically"
    print(f"Shim: {unix.shim.name} built with {unix.compiler}, {linked} linked; "
          f"shims {', '.join(sorted(unix.installed))}.")
    print(f"Per row: {settings.warmup} warm-up runs, then {settings.runs:,} measured runs in "
          f"{settings.rounds} interleaved rounds (row order rotating); each run a fresh "
          "process (posix_spawn + waitpid, stdio on /dev/null), timed around both.")
    print()


def _cell(value: float) -> str:
    return f"{value:.2f}"


def print_main(rows: list[Row], checks: dict[str, str]) -> None:
    print("### Per command, with and without the shim")
    print()
    print(f"| command | route | runs | p50 ms | p99 ms | mean ms | added p50 ms "
          f"| added p50 <= {TARGET_MS:g} ms |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        if not row.main:
            continue
        added = row.added_ms()
        if added is None:
            shown, met = "— (baseline)", "—"
        else:
            note = " (all of it: nothing runs)" if row.nothing_runs else ""
            shown = f"{added:+.2f}{note}"
            met = "met" if added <= TARGET_MS else "MISSED"
        print(f"| `{row.command}` | {row.route} | {len(row.samples):,} | {_cell(row.ms(0.5))} "
              f"| {_cell(row.ms(0.99))} | {_cell(row.mean_ms())} | {shown} | {met} |")
    print()
    print("Added p50: the row's p50 minus its baseline's (the real program, same argv, same "
          "run). The denied command never starts bash: the shim asks, gets the deny, prints "
          "one line and exits 126, so its whole time is the shim's own cost.")
    for row in rows:
        if row.nothing_runs and checks.get(row.probe.label):
            print(f"Checked before measuring ({row.route}): {checks[row.probe.label]}.")
            break
    print(flush=True)


def print_breakdown(rows: list[Row]) -> None:
    print("### Where the time goes (measured in the same rounds)")
    print()
    print("| measurement | route | runs | p50 ms | p99 ms | mean ms |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        if row.main:
            continue
        print(f"| {row.command} | {row.route} | {len(row.samples):,} | {_cell(row.ms(0.5))} "
              f"| {_cell(row.ms(0.99))} | {_cell(row.mean_ms())} |")
    print()
    print("The round trip is this Python process doing what the shim does on the wire (a "
          "new connection, the shim's request line for `bash -c true` as source `sdk`, the "
          "reply read to its newline): connect, the gateway's decision, the durable audit "
          "entry, the reply. The `fdatasync` row is the sync an audit entry waits for, on "
          "the disk of the state directory. The Python rows are the floor for any shim "
          "written in Python: the interpreter alone, by absolute path.")
    print(flush=True)


def _us(value: object) -> str:
    return "—" if value is None else f"{value}"


def print_status(status: dict[str, object]) -> None:
    wall = status.get("decision_us") or {}
    cpu = status.get("decision_cpu_us") or {}
    decisions = status.get("decisions") or {}
    assert isinstance(wall, dict) and isinstance(cpu, dict) and isinstance(decisions, dict)
    print("### Inside the gateway (`gateway status --json` after the run)")
    print()
    print("| decisions timed | wall p50 µs | wall p99 µs | wall max µs | CPU p50 µs "
          "| CPU p99 µs | CPU max µs |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {wall.get('count', 0):,} | {_us(wall.get('p50'))} | {_us(wall.get('p99'))} "
          f"| {_us(wall.get('max'))} | {_us(cpu.get('p50'))} | {_us(cpu.get('p99'))} "
          f"| {_us(cpu.get('max'))} |")
    print()
    by_source = decisions.get("by_source") or {}
    shown = ", ".join(f"{k} {v:,}" for k, v in sorted(by_source.items())) or "none"
    print(f"Decisions by source: {shown}. The decision is the engine's work on the shim's "
          "argv (the `-c` string parsed and every part matched; never cached, as commands "
          "may name files); the wall time also holds moments the OS gave the core to "
          "another process.")
    print(flush=True)


def print_audit(found: Counter[tuple[str, str]], wanted: Counter[tuple[str, str]]) -> bool:
    print("### Audit log")
    print()
    print("| source | verdict | entries in the log | runs that asked | match |")
    print("|---|---|---:|---:|---|")
    ok = True
    for key in sorted(set(found) | set(wanted)):
        match = found[key] == wanted[key]
        ok = ok and match
        print(f"| {key[0]} | {key[1]} | {found[key]:,} | {wanted[key]:,} "
              f"| {'yes' if match else 'NO'} |")
    print()
    print("Runs that asked include the checking run and the warm-up runs of each row.")
    print(flush=True)
    return ok


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int,
                        help="measured runs per row (default 500; --quick: 50)")
    parser.add_argument("--rounds", type=int,
                        help="interleaved rounds (default 25; --quick: 5)")
    parser.add_argument("--warmup", type=int,
                        help="warm-up runs per row (default 20; --quick: 5)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    settings = Settings(
        runs=args.runs or (50 if args.quick else 500),
        rounds=args.rounds or (5 if args.quick else 25),
        warmup=args.warmup if args.warmup is not None else (5 if args.quick else 20))
    if settings.runs < 1 or settings.rounds < 1 or settings.warmup < 0:
        parser.error("--runs and --rounds must be at least 1, --warmup at least 0")
    return settings


def run(settings: Settings, work: Path, stack: contextlib.ExitStack) -> bool:
    gateway = start_gateway(work, stack)
    host, port = gateway.tcp_address
    installs = {}
    for name, api in (("shims", gateway.unix_api), ("shims-tcp", f"tcp:{host}:{port}")):
        installs[name] = install_shims(work / name, api=api, names=["true", "echo"],
                                       path=REAL_PATH)
        report = check_shims(work / name)
        if report.problems:
            raise BenchFailure(f"`gateway shim check {work / name}`: "
                               + "; ".join(report.problems))
    unix, tcp = installs["shims"], installs["shims-tcp"]
    print_header(settings, work, unix)

    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    stack.callback(os.close, devnull)
    rows = build_rows(work, gateway, unix, tcp, devnull)
    for row in rows:
        stack.callback(row.probe.close)
    echo = [Spawn(f"`echo ok` through {d / 'echo'}", os.fspath(d / "echo"), ["echo", "ok"],
                  {"PATH": REAL_PATH, "LANG": "C.UTF-8"}, devnull, output="ok")
            for d in (unix.directory, tcp.directory)]

    previous = os.getcwd()
    os.chdir(work)  # the working directory every run reports
    try:
        for probe in echo:
            probe.check()
        checks = measure(rows, settings)
    finally:
        os.chdir(previous)
    status = gateway_status(gateway)

    code = gateway.stop()
    if code != 0:
        raise gateway.failed(f"exited with status {code} on SIGTERM")
    wanted = expected_counts(rows)
    wanted[("shim", "ALLOW")] += sum(p.calls for p in echo)
    found = audit_counts(Path(str(gateway.info["audit_log"])))

    print_main(rows, checks)
    print_breakdown(rows)
    print_status(status)
    return print_audit(found, wanted)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear down on SIGTERM too
    signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    print(f"Load average {load()} at start.")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-shim-") as tmp, \
                contextlib.ExitStack() as stack:
            ok = run(settings, Path(tmp), stack)
    except BenchFailure as e:
        print(f"bench_shim: FAILED: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the shim's build or install, an unexpected error
        print(f"bench_shim: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"Done in {time.perf_counter() - started:.0f} s; load average {load()} at the end.")
    if not ok:
        print("bench_shim: FAILED: the audit log does not hold one decision per run that "
              "asked (see the table above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
