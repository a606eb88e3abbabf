"""One closed-loop scenario's outcome, read from the incident timeline mitigate serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class ScenarioResult:
    scenario: str
    injected_at: datetime
    injected_target: str = ""  # the model, region, node or pod the fault went to
    incident_id: str | None = None
    status: str = "no incident"
    category: str | None = None
    subcategory: str | None = None
    confidence: float | None = None
    mitigation: str | None = None
    operation: str | None = None
    action_status: str | None = None
    verification: dict[str, Any] = field(default_factory=dict)
    alert_started_at: datetime | None = None
    ttm_s: float | None = None
    timeline: list[tuple[float, str]] = field(default_factory=list)  # seconds after injection, event
    sla_before: float | None = None  # at triage (live signals) or at the action (verification baseline)
    sla_after: float | None = None  # when verified, or when the run ended
    report: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    others: list[str] = field(default_factory=list)  # other incidents opened while it ran: "id status title"

    def as_row(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "status": self.status,
            "class": f"{self.category}/{self.subcategory}",
            "action": f"{self.mitigation} {self.operation}",
            "sla_before": self.sla_before,
            "sla_after": self.sla_after,
            "ttm_s": self.ttm_s,
        }

    def explain(self) -> str:
        """What the run decided and why, in a few lines: a failed end-to-end check says what happened
        instead of only which field was unexpected."""
        report, plan = self.report, self.report.get("plan") or {}
        lines = [
            f"{self.scenario}: incident {self.incident_id} {self.title[:120]!r} -> {self.status}",
            f"classified {self.category}/{self.subcategory} at {self.confidence} "
            f"(needs human: {report.get('needs_human')} {report.get('needs_human_reason') or ''})",
            f"plan {self.mitigation} {self.operation}: {str(plan.get('rationale'))[:300]}",
            f"no action: {(report.get('no_action') or {}).get('why')}",
            *(f"  {at:>6.1f}s {event}" for at, event in self.timeline),
            *(f"also opened meanwhile: {other}" for other in self.others),
        ]
        return "\n".join(lines)


def fill_from_timeline(result: ScenarioResult, timeline: dict[str, Any]) -> None:
    """What the incident's timeline (GET /incidents/{id}) says about the scenario's run."""
    run = timeline["runs"][-1]
    report = run.get("report") or {}
    result.report = report
    result.status = run["status"]
    result.category, result.subcategory = report.get("category"), report.get("subcategory")
    result.confidence = report.get("confidence")
    plan = report.get("plan") or {}
    result.mitigation, result.operation = plan.get("mitigation"), plan.get("operation")
    actions = run.get("actions") or []
    result.action_status = actions[-1]["status"] if actions else None
    result.verification = report.get("verification") or {}
    intake = next((st for st in run["steps"] if st["node"] == "intake"), None)
    live = (intake or {}).get("data", {}).get("live_signals") or {}
    result.sla_before = result.verification.get("baseline_sla", live.get("sla"))
    result.sla_after = result.verification.get("sla")
    result.title = str(timeline.get("title") or "")
    alert = timeline["incident"].get("alert") or {}
    result.alert_started_at = _ts(alert.get("startsAt"))

    def offset(moment: datetime | None) -> float:
        return round((moment - result.injected_at).total_seconds(), 1) if moment else float("nan")

    events = [(0.0, f"fault injected: {result.scenario}")]
    if result.alert_started_at:
        events.append((offset(result.alert_started_at), f"alert fired: {timeline['title'][:100]}"))
    events.append((offset(_ts(timeline["received_at"])), "alert received by mitigate"))
    for step in run["steps"]:
        at = offset(_ts(step["at"]))
        if step["node"] == "plan" and report.get("localization"):
            events.append((at, f"localise: {_localization(report['localization'])}"))
        if step["node"] in ("classify", "plan", "act", "verify", "escalate", "report"):
            events.append((at, f"{step['node']}: {step['summary'][:110]}"))
    result.timeline = events
    if result.verification.get("ttm_s") is not None:
        result.ttm_s = float(result.verification["ttm_s"])


def _localization(found: dict[str, Any]) -> str:
    """The ranking in one line: the demo shows which pod fault localisation blamed, and on what."""
    ranked = [f"{c['pod']} ({c['metric']} {c['score']:.1f})" for c in found.get("candidates", [])[:2]]
    if not ranked:
        return found.get("reason") or "no candidates"
    verdict = "decisive: restart it" if found.get("decisive") else "not decisive: the playbook's target stands"
    return f"{' ahead of '.join(ranked)}; {verdict}"
