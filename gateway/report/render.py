"""The report, as text for people and as JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy.compiled import CompiledPolicy, CompiledRule
from gateway.policy.model import PolicyModel
from gateway.report.suggest import Outcome, Suggestion, suggest
from gateway.report.summary import Summary, Targets, many, summarise, unused_allow_rules

DEFAULT_TOP = 20
HINT = ("give --policy POLICY to show rule texts, allow rules never used and a suggested "
        "policy")


@dataclass(frozen=True)
class Report:
    """Everything `gateway report` shows; policy-dependent parts are None without one."""

    log: str
    summary: Summary
    policy: CompiledPolicy | None = None
    unused: list[CompiledRule] | None = None
    suggestion: Suggestion | None = None


def build_report(entries: Iterable[Mapping[str, object]], *, log: str,
                 model: PolicyModel | None = None, policy: CompiledPolicy | None = None,
                 environ: Mapping[str, str] | None = None) -> Report:
    """The report over `entries`; with the policy's model and compiled form, sections 4-5."""
    summary = summarise(entries)
    if model is None or policy is None:
        return Report(log, summary)
    return Report(log, summary, policy, unused_allow_rules(summary, policy),
                  suggest(summary, model, policy, log=log, environ=environ))


def _rules_in_order(summary: Summary) -> list[tuple[int | str, Counter[str]]]:
    """Rule indexes ascending, then "default" (and any other name)."""
    return sorted(summary.rules.items(), key=lambda kv: (1, kv[0], 0) if isinstance(kv[0], str)
                  else (0, "", kv[0]))


def _rule_text(policy: CompiledPolicy | None, key: int | str) -> str | None:
    if policy is None or not isinstance(key, int):
        return None
    return policy.rules[key].text if 0 <= key < len(policy.rules) else "(not in this policy)"


def _groups(groups: Mapping[str | None, Targets]) -> list[tuple[str | None, Targets]]:
    return sorted(groups.items(), key=lambda kv: (-kv[1].total(), kv[0] or ""))


def _outcome_json(o: Outcome) -> dict[str, object]:
    out: dict[str, object] = {"action": o.seen.action.value, "agent": o.seen.agent,
                              "target": o.seen.shown(), "count": o.count}
    if o.why is not None:
        out["reason"] = o.why
    return out


def _listed(outcomes: list[Outcome], top: int) -> dict[str, object]:
    return {"distinct": len(outcomes), "targets": [_outcome_json(o) for o in outcomes[:top]]}


def report_json(report: Report, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The report as one JSON object; every list of targets holds at most `top`."""
    s, policy, sg = report.summary, report.policy, report.suggestion

    def groups(of: Mapping[str | None, Targets]) -> list[dict[str, object]]:
        return [{"agent": agent, "decisions": targets.total(), "distinct": len(targets),
                 "targets": [{"action": a, "target": t, "count": n}
                             for (a, t), n in targets.most_common(top)]}
                for agent, targets in _groups(of)]

    suggestion = None
    if sg is not None:
        suggestion = {
            "policy": sg.text,
            "added": [r.model_dump(mode="json", exclude_none=True) for r in sg.added],
            "seen": len(s.seen), "covered": sg.covered,
            "explicit_denies": [{"rule": i, "text": _rule_text(policy, i),
                                 "decisions": sum(o.count for o in os), **_listed(os, top)}
                                for i, os in sg.explicit.items()],
            "not_covered": _listed(sg.not_covered, top),
            "differs": _listed(sg.differs, top),
        }
    return {
        "log": report.log,
        "policy": None if policy is None else policy.file,
        "totals": {"decisions": s.decisions, "allowed": s.allowed, "denied": s.denied,
                   "would_deny": s.would_deny, "by_source": dict(s.by_source.most_common())},
        "rules": [{"rule": k, "decisions": c.total(), "allow": c["ALLOW"], "deny": c["DENY"],
                   "text": _rule_text(policy, k)} for k, c in _rules_in_order(s)],
        "would_deny": groups(s.would_denied),
        "denied": groups(s.enforce_denied),
        "unused_allow_rules": None if report.unused is None else
        [{"rule": r.index, "text": r.text} for r in report.unused],
        "suggestion": suggestion,
        "hint": HINT if policy is None else None,
    }


def _line(text: str, width: int = 160) -> str:
    """One line for people: line breaks and tabs shown as escapes, long text cut."""
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text if len(text) <= width else text[: width - 3] + "..."


def _agent(agent: str | None) -> str:
    return "(no agent)" if agent is None else _line(agent, 60)


def _row(count: int, action: str, target: str, tail: str = "") -> str:
    return f"  {count:>7}  {action:<10}  {_line(target)}{tail}"


def _outcome_rows(outcomes: list[Outcome], top: int) -> list[str]:
    rows = []
    for o in outcomes[:top]:
        rows.append(_row(o.count, o.seen.action.value, o.seen.shown(),
                         f"  [{_agent(o.seen.agent)}]"))
        if o.why is not None:
            rows.append(f"{'':22}{_line(o.why)}")
    if len(outcomes) > top:
        rows.append(f"  ... and {len(outcomes) - top} more")
    return rows


def render_text(report: Report, top: int = DEFAULT_TOP) -> str:
    """The report for people: short, aligned sections."""
    s, policy, sg = report.summary, report.policy, report.suggestion
    head = f"report of {report.log}" + ("" if policy is None else f" against {policy.file}")
    sources = ", ".join(f"{n} {name}" for name, n in s.by_source.most_common()) or "none"
    out = [head, f"decisions: {s.decisions} ({s.allowed} allowed, {s.denied} denied, "
                 f"{s.would_deny} would-deny)", f"by source: {sources}", "", "rules that fired:"]
    out.append(f"  {'rule':<8} {'total':>7} {'allow':>7} {'deny':>7}")
    for key, c in _rules_in_order(s):
        text = _rule_text(policy, key)
        out.append(f"  {key!s:<8} {c.total():>7} {c['ALLOW']:>7} {c['DENY']:>7}"
                   + (f"  {_line(text)}" if text else ""))
    for title, groups in (("would-deny (simulate)", s.would_denied),
                          ("denied (enforce)", s.enforce_denied)):
        out += ["", f"{title}, by agent:"]
        if not groups:
            out.append("  none")
        for agent, targets in _groups(groups):
            out.append(f"  {_agent(agent)}: {many(targets.total(), 'decision')}, "
                       f"{many(len(targets), 'target')}")
            out += [_row(n, a, t) for (a, t), n in targets.most_common(top)]
            if len(targets) > top:
                out.append(f"  ... and {len(targets) - top} more")
    if sg is None or report.unused is None:
        return "\n".join([*out, "", HINT])
    out += ["", "allow rules never used:"]
    out += [f"  {r.index:<8} {_line(r.text)}" for r in report.unused] or ["  none"]
    out += ["", f"suggested policy: {len(sg.added)} allow rules added; it allows {sg.covered} "
                f"of {len(s.seen)} targets seen.",
            "It is printed for review, never written: read every rule before using it.",
            "", sg.text.rstrip("\n")]
    if sg.explicit:
        out += ["", "denied by explicit rules (deny overrides allow, so no allow is suggested):"]
        for index, outcomes in sg.explicit.items():
            out.append(f"  review rule {index} {_line(_rule_text(policy, index) or '')}")
            out += _outcome_rows(outcomes, top)
    if sg.not_covered:
        out += ["", "not covered by the suggestion:", *_outcome_rows(sg.not_covered, top)]
    if sg.differs:
        out += ["", "decided otherwise by the policy than the log says (another policy?):"]
        out += _outcome_rows(sg.differs, top)
    return "\n".join(out)
