"""What mounts cannot enforce of a policy, said from the policy alone (docs/mounts.md),
and how the mount plan reads the policy: the engine's answers for a path and its host
source (`Judge`), and the literal start of a path pattern.
"""

from __future__ import annotations

from gateway.engine import Decision, Request, Trace, Verdict, decide
from gateway.matching.paths import PathGlob, compile_path_glob
from gateway.policy.compiled import CompiledPolicy, CompiledRule
from gateway.policy.model import Action, Effect, Mode

FILE_ACTIONS = (Action.FILE_READ, Action.FILE_WRITE)


class Judge:
    """The engine's answers, for a path as the agent sees it and its host source."""

    def __init__(self, policy: CompiledPolicy, agent: str | None) -> None:
        self.policy = policy
        self.agent = agent

    def decide(self, action: Action, path: str) -> Decision:
        return decide(self.policy, Request(action, path, agent=self.agent))

    def check(self, action: Action, target: str, source: str) -> Decision:
        """ALLOW only when both paths are allowed (as the engine requires of a path and
        what it resolves to); otherwise the denying decision."""
        first = self.decide(action, target)
        if first.verdict is Verdict.DENY or source == target:
            return first
        second = self.decide(action, source)
        return second if second.verdict is Verdict.DENY else first

    def write_allows(self, target: str, source: str) -> list[CompiledRule]:
        """The file_write allow rules that match a path (or its source), the deciding
        one included."""
        rules: list[CompiledRule] = []
        for path in {target, source}:
            trace = Trace()
            decision = decide(self.policy, Request(Action.FILE_WRITE, path, agent=self.agent),
                              trace=trace)
            rules += [c.rule for _, found in trace.candidates for c in found
                      if c.counts and c.rule.effect is Effect.ALLOW]
            if decision.rule is not None:
                rules.append(self.policy.rules[decision.rule])
        return rules


def mount_notes(policy: CompiledPolicy, *, agent: str | None = None) -> list[str]:
    """What mounts will and will not enforce of `policy`, one sentence each, from the
    policy alone (no filesystem): patterns mounts cannot follow, patterns expanded only
    at plan time, deny rules that writable trees can outgrow."""
    notes: list[str] = []
    if policy.mode is Mode.SIMULATE:
        notes.append("the policy's mode is simulate, but mounts cannot record and allow: "
                     "the plan enforces the policy")
    judge = Judge(policy, agent)
    writable: list[str] = []
    denies: list[tuple[CompiledRule, str, PathGlob]] = []
    for rule in policy.rules:
        if rule.action not in FILE_ACTIONS:
            continue
        where = f"rule {rule.index}" + (f" (line {rule.line})" if rule.line else "")
        if not rule.applies_to(agent):
            notes.append(f"{where} applies to agents {', '.join(sorted(rule.agents or ()))} "
                         f"only; this plan is for {agent or 'an agent without a name'}")
            continue
        what = rule.action.value
        for selector in rule.selectors:
            glob = compile_path_glob(selector)
            if rule.effect is Effect.DENY:
                if not rule.sets_default:  # a catch-all deny is only the default
                    denies.append((rule, selector, glob))
            elif not glob.segments:
                notes.append(f"{where}: allows {what} of every path: the whole host file "
                             "system is mounted")
            elif not glob.anchored:
                notes.append(f"{where}: {what} allow of {selector!r} matches at any depth; "
                             "mounts cannot follow it, so it makes nothing visible (the "
                             "engine applies it where other rules' mounts show the path)")
            elif literal_count(glob) < len(glob.segments):
                notes.append(f"{where}: {what} allow of {selector!r} is finer than a mount: "
                             "the paths it matches when the plan is made are mounted one by "
                             "one; paths created later are not visible")
            elif rule.action is Action.FILE_WRITE:
                root = literal_prefix(glob, len(glob.segments))
                if judge.decide(Action.FILE_WRITE, root).verdict is Verdict.ALLOW:
                    writable.append(root)
                    read = judge.decide(Action.FILE_READ, root)
                    if read.verdict is Verdict.DENY:
                        notes.append(write_only_note(root, read))
    for rule, selector, glob in denies:
        where = f"rule {rule.index}" + (f" (line {rule.line})" if rule.line else "")
        what = rule.action.value
        if not glob.anchored or not glob.segments:
            later = (f"; a matching path created later in a writable tree "
                     f"({', '.join(writable)}) is judged only by the engine and the watcher"
                     if writable else "")
            notes.append(f"{where}: {what} deny of {selector!r} matches at any depth: mounts "
                         f"mask only the matching paths that exist when the plan is made{later}")
            continue
        prefix = literal_prefix(glob, literal_count(glob))
        inside = [w for w in writable if within(prefix, w) or within(w, prefix)]
        if inside:
            notes.append(f"{where}: {what} deny of {selector!r} lies in the writable tree "
                         f"{', '.join(inside)}: mounts mask the paths that exist when the plan "
                         "is made; one created there later is judged only by the engine and "
                         "the watcher")
    return list(dict.fromkeys(notes))


def write_only_note(target: str, read: Decision) -> str:
    return (f"{target} may be written but not read ({read.reason}); its writable mount "
            "shows it to the agent, so mounts cannot keep it unread")


# --- patterns and paths -----------------------------------------------------------------


def literal_count(glob: PathGlob) -> int:
    count = 0
    while count < len(glob.segments) and glob.segments[count].literal is not None:
        count += 1
    return count


def literal_prefix(glob: PathGlob, count: int) -> str:
    return "/" + "/".join(s.literal for s in glob.segments[:count])  # type: ignore[misc]


def within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


__all__ = ["FILE_ACTIONS", "Judge", "literal_count", "literal_prefix", "mount_notes",
           "within", "write_only_note"]
