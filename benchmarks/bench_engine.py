"""Decision speed per action at 10 to 10,000 rules, beside a naive fnmatch loop.

Run: python benchmarks/bench_engine.py [--sizes 10,100,1000,10000] [--samples 3000]

Prints one markdown table: for each action and rule count, decisions per second and
p50/p99 latency of the compiled engine (`decide`, parse included for commands) and of
the baseline (a loop of `fnmatch` over every rule, deny overriding allow), measured in
the same run on the same targets.
"""

from __future__ import annotations

import argparse
import fnmatch
import random
import statistics
import time
from collections.abc import Callable

from gateway.engine import Request, decide
from gateway.policy.compiled import CompiledPolicy, compile_policy_text
from gateway.policy.model import Action

ENV = {"HOME": "/home/user"}
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "zeta", "iota"]


def host_rules(n: int, rng: random.Random) -> list[tuple[str, str]]:
    rules = []
    for i in range(n):
        kind = rng.random()
        word = rng.choice(WORDS)
        if kind < 0.6:
            rules.append((f"api{i}.{word}.com", "allow"))
        elif kind < 0.85:
            rules.append((f"*.{word}{i}.net", "deny" if i % 5 == 0 else "allow"))
        elif kind < 0.9:
            rules.append((f"svc-*.{word}{i}.io", "allow"))
        else:
            rules.append((f"203.{i % 250}.{i // 250 % 250}.0/24", "deny"))
    return rules


def path_rules(n: int, rng: random.Random) -> list[tuple[str, str]]:
    rules = []
    for i in range(n):
        kind = rng.random()
        word = rng.choice(WORDS)
        if kind < 0.5:
            rules.append((f"/srv/{word}{i}/**", "allow"))
        elif kind < 0.7:
            rules.append((f"*.ext{i}", "deny"))
        elif kind < 0.85:
            rules.append((f".secret{i}", "deny"))
        else:
            rules.append((f"/data/{word}/*/f{i}.csv", "allow"))
    return rules


def command_rules(n: int, rng: random.Random) -> list[tuple[str, str]]:
    rules = [("python*", "allow"), ("rm -rf /*", "deny")]
    for i in range(n - 2):
        kind = rng.random()
        if kind < 0.5:
            rules.append((f"tool{i}*", "allow"))
        elif kind < 0.8:
            rules.append((f"tool{i} sub *", "allow"))
        else:
            rules.append((f"tool{i} --danger*", "deny"))
    return rules


def targets(action: Action, n: int, rng: random.Random) -> list[str]:
    if action is Action.NETWORK:
        return ([f"api{rng.randrange(n)}.{rng.choice(WORDS)}.com:443" for _ in range(5)]
                + [f"x.y.{rng.choice(WORDS)}{rng.randrange(n)}.net" for _ in range(5)]
                + ["unknown.example.org:443", "203.0.113.9", "svc-a.alpha3.io"])
    if action is Action.FILE_READ:
        return ([f"/srv/{rng.choice(WORDS)}{rng.randrange(n)}/src/main.py" for _ in range(5)]
                + [f"/home/user/project/key.ext{rng.randrange(n)}" for _ in range(3)]
                + ["/etc/passwd", "/data/alpha/x/f3.csv", "/home/user/.secret2/x"])
    return ["python workspace/analyze.py", f"tool{rng.randrange(n)} sub build --fast",
            "cd /project && python -m pytest -q tests/ | tee out.txt",
            "sudo -u root env PATH=/bin nice -n 5 rm -rf /", "git status"]


def policy_text(action: Action, rules: list[tuple[str, str]]) -> str:
    key = action.selector
    lines = [f"- {{action: {action.value}, {key}: '{sel}', effect: {eff}}}" for sel, eff in rules]
    return "version: 1\ndefault: deny\nrules:\n" + "\n".join(lines) + "\n"


def naive(action: Action, rules: list[tuple[str, str]]) -> Callable[[str], str]:
    """The baseline: fnmatch every rule's selector against the raw target."""

    def decide_naive(target: str) -> str:
        allowed = False
        for selector, effect in rules:
            if fnmatch.fnmatchcase(target, selector):
                if effect == "deny":
                    return "DENY"
                allowed = True
        return "ALLOW" if allowed else "DENY"

    return decide_naive


def measure(fn: Callable[[str], object], inputs: list[str], samples: int) -> tuple[float, float,
                                                                                      float]:
    for target in inputs:
        fn(target)  # warm caches and lazily built parsers
    times = []
    for i in range(samples):
        target = inputs[i % len(inputs)]
        t0 = time.perf_counter_ns()
        fn(target)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    p50 = times[len(times) // 2] / 1000
    p99 = times[int(len(times) * 0.99)] / 1000
    rate = 1e9 / statistics.fmean(times)
    return rate, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--samples", type=int, default=3000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    builders = {Action.NETWORK: host_rules, Action.FILE_READ: path_rules,
                Action.SHELL_EXEC: command_rules}
    print("| action | rules | engine decisions/s | engine p50 µs | engine p99 µs "
          "| fnmatch loop decisions/s | fnmatch p50 µs | fnmatch p99 µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for action, build in builders.items():
        for n in sizes:
            rng = random.Random(n)
            rules = build(n, rng)
            policy: CompiledPolicy = compile_policy_text(policy_text(action, rules),
                                                         project_dir="/project", environ=ENV)
            inputs = targets(action, n, rng)

            def engine(target: str, policy: CompiledPolicy = policy,
                       action: Action = action) -> object:
                return decide(policy, Request(action, target))

            e_rate, e50, e99 = measure(engine, inputs, args.samples)
            base_samples = max(50, min(args.samples, 2_000_000 // max(n, 1) // 10))
            b_rate, b50, b99 = measure(naive(action, rules), inputs, base_samples)
            print(f"| {action.value} | {n:,} | {e_rate:,.0f} | {e50:.1f} | {e99:.1f} "
                  f"| {b_rate:,.0f} | {b50:.1f} | {b99:.1f} |", flush=True)
    per_command_line(args.samples)


def per_command_line(samples: int) -> None:
    """Each typical line on its own, at 1,000 command rules: parse, analysis and decision."""
    rng = random.Random(7)
    policy = compile_policy_text(policy_text(Action.SHELL_EXEC, command_rules(1000, rng)),
                                 project_dir="/project", environ=ENV)
    print()
    print("| command line (1,000 rules) | p50 µs | p99 µs |")
    print("|---|---:|---:|")
    for line in targets(Action.SHELL_EXEC, 1000, rng):
        request = Request(Action.SHELL_EXEC, line)
        _, p50, p99 = measure(lambda _t, r=request: decide(policy, r), [line], samples)
        shown = line.replace("|", "\\|")
        print(f"| `{shown}` | {p50:.1f} | {p99:.1f} |", flush=True)


if __name__ == "__main__":
    main()
