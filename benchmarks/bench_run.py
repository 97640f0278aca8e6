"""`gateway run` costs: starting a confined command, and a proxied request through the
run's relay compared with the same request from the host.

Run (as root): python benchmarks/bench_run.py [--starts 5] [--requests 300]

Start-up rows time the whole command, wall clock, each `--starts` times:
- `unshare --net --mount --pid --fork true`: the namespaces alone (the baseline);
- `gateway run --gateway STATE -- true`: against a running gateway (plan, shim install
  and check, namespace, self-test, stage, root, summary);
- `gateway run -- true`: with a gateway started for the run.

Request rows run one client script (urllib, a new connection per request, sequential)
against a loopback HTTP server through the same running gateway: once on the host with
the proxy variables set, once inside `gateway run --gateway STATE`, where the proxy is
reached through the relay. The script prints each request's latency; p50 and p95 are
shown. Every request must answer 200, and the audit log must hold one ALLOW per
request for the client's agent, or the benchmark stops with a non-zero status. Only
loopback; everything lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procs import stop, tail
from gateway.agents import add_agent
from gateway.audit.reader import iter_entries

POLICY = """version: 1
default: deny
rules:
- {action: network, host: "localhost", effect: allow}
- {action: shell_exec, command: "python*", effect: allow}
- {action: shell_exec, command: "true", effect: allow}
- {action: file_read, path: "${PROJECT_DIR}/**", effect: allow}
"""
CLIENT = """
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
out = []
for _ in range(n):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
        assert r.status == 200
    out.append((time.perf_counter() - t) * 1e6)
print(json.dumps(out))
"""


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"x" * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                            check=False)
    elapsed = time.perf_counter() - t
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({result.returncode}): {result.stderr}")
    return elapsed * 1000


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: gateway run needs namespaces and mounts")
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        (project / "client.py").write_text(CLIENT)
        (base / "policy.yaml").write_text(POLICY)
        token = add_agent(base / "agents.yaml", "bench")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://localhost:{server.server_address[1]}/"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway", "up", "--policy", str(base / "policy.yaml"),
             "--listen", "127.0.0.1:0", "--state-dir", str(base / "state"), "--agents",
             str(base / "agents.yaml"), "--project-dir", str(project)],
            stdout=subprocess.DEVNULL, stderr=open(base / "gateway.err", "wb"))  # noqa: SIM115
        try:
            deadline = time.monotonic() + 30
            while not (base / "state" / "gateway.json").exists():
                if time.monotonic() > deadline or gateway.poll() is not None:
                    raise SystemExit("gateway did not start:\n" + tail(base / "gateway.err"))
                time.sleep(0.05)
            info = json.loads((base / "state" / "gateway.json").read_text())
            env = {**os.environ, "GATEWAY_TOKEN": token}
            run = [sys.executable, "-m", "gateway", "run", "--policy", str(base / "policy.yaml"),
                   "--workspace", str(project), "--agent", "bench", "--no-summary",
                   "--overlay-dir", str(base / "overlay")]
            own_log = ["--audit-log", str(base / "own.jsonl")]
            rows = {"unshare --net --mount --pid --fork true":
                    ["unshare", "--net", "--mount", "--pid", "--fork", "true"],
                    "gateway run --gateway STATE -- true":
                    [*run, "--gateway", str(base / "state"), "--", "true"],
                    "gateway run -- true (own gateway)": [*run, *own_log, "--", "true"]}
            print(f"start-up, {args.starts} runs each (ms, wall)")
            print(f"{'':44} {'p50':>8} {'min':>8} {'max':>8}")
            for name, argv in rows.items():
                times = [_timed(argv, env, project) for _ in range(args.starts)]
                print(f"{name:44} {statistics.median(times):8.0f} {min(times):8.0f} "
                      f"{max(times):8.0f}")

            proxy = info["proxy"].replace("http://", f"http://bench:{token}@")
            host_env = {**env, "http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "",
                        "NO_PROXY": ""}
            client = ["python3", "client.py", url, str(args.requests)]
            direct = subprocess.run(client, env=host_env, cwd=project, capture_output=True,
                                    text=True, timeout=300, check=True)
            inside = subprocess.run([*run, "--gateway", str(base / "state"), "--", *client],
                                    env=env, cwd=project, capture_output=True, text=True,
                                    timeout=300, check=True)
            print(f"\nproxied GET, {args.requests} sequential, new connection each (us)")
            print(f"{'':44} {'p50':>8} {'p95':>8}")
            for name, result in (("host -> proxy", direct),
                                 ("gateway run -> relay -> proxy", inside)):
                p50, p95 = _percentiles(json.loads(result.stdout.strip().splitlines()[-1]))
                print(f"{name:44} {p50:8.0f} {p95:8.0f}")
        finally:
            stop(gateway)
            server.shutdown()
        allowed = sum(1 for e in iter_entries(info["audit_log"])
                      if e.get("agent") == "bench" and e.get("source") == "proxy"
                      and e.get("verdict") == "ALLOW")
        if allowed != 2 * args.requests:
            raise SystemExit(f"expected {2 * args.requests} proxy ALLOW entries, got {allowed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
