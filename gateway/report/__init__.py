"""`gateway report`: what a run did, from its audit log, and a policy that would have let it.

Pure functions over entries as `iter_entries` yields them; the CLI reads and prints.
Only decisions count: an entry is one when its action is one of the four and its
verdict ALLOW or DENY, so the log's own events, gateway events and completion
entries pass by. `summary` counts and groups them, `suggest` proposes and checks a
policy, `render` shows the report.
"""

from gateway.report.render import DEFAULT_TOP, Report, build_report, render_text, report_json
from gateway.report.suggest import suggest
from gateway.report.summary import Summary, is_decision, shown_target, summarise

__all__ = ["DEFAULT_TOP", "Report", "Summary", "build_report", "is_decision", "render_text",
           "report_json", "shown_target", "suggest", "summarise"]
