"""What a chat message about a run says, the same in Slack and in Teams: enough for a DRI to act on it
alone at 3 a.m. — the incident and where it is, what is happening now, the category with its calibrated
probability in words and numbers, why a human is needed, the plan and its risk, the dry run, precedents
and what fixed them, what was not done or verified, a dashboard link, and whether approving destroys.

Plain data: `api/slack_blocks.py` and `api/teams_card.py` render it. Fields marked *incident text* come
from the incident (anyone who can raise one wrote them); renderers show them as inert text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

CONFIRM_RISKS = ("high", "critical")
DESTRUCTIVE_OPERATIONS = ("delete_deployment",)
SIGNAL_ORDER = ("sla", "error_rate", "http_5xx_rate", "http_408_rate", "http_429_rate", "ttft_p95_s", "queue_depth")


def confidence_words(probability: float | None) -> str:
    if probability is None:
        return "not scored"
    if probability >= 0.9:
        return "very likely"
    if probability >= 0.7:
        return "likely"
    if probability >= 0.5:
        return "more likely than not"
    return "uncertain"


@dataclass
class ChatSummary:
    run_id: str
    incident_id: str
    headline: str  # ours: what state the run is in, one line
    title: str  # incident text
    where: str  # incident text (labels)
    now: list[str]  # incident text (signals)
    classification: str
    needs_human: str
    plan: str
    risk: str
    dry_run: str  # the cluster's answer to the dry run
    precedents: list[str]  # postmortem text
    not_done: list[str]
    outcome: list[str]  # approvals, execution, verification with SLA numbers, escalation
    link: str | None
    waiting: bool
    confirm: str | None  # set: approving needs a confirmation, and this says what it does
    approvals: str = ""
    findings: list[str] = field(default_factory=list)  # what investigation found (cluster, Prometheus, store)
    gaps: list[str] = field(default_factory=list)  # what it could not look at
    # What the LLM's own read-only investigation (the tool loop) found and concluded: LLM text over data
    # that incident text reaches, so shown like incident text (inert), and never a decision.
    explored: list[str] = field(default_factory=list)
    conclusion: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _signals(incident: Any) -> list[str]:
    signals: dict[str, float] = dict(getattr(incident, "signals", {}) or {})
    plain = [n for n in signals if not n.endswith("_peak")]
    names = [n for n in SIGNAL_ORDER if n in plain] + sorted(n for n in plain if n not in SIGNAL_ORDER)
    out = []
    for name in names[:5]:
        peak = signals.get(f"{name}_peak")
        out.append(f"{name} {_fmt(signals[name])}" + (f" (peak {_fmt(peak)})" if peak is not None else ""))
    return out


def _where(incident: Any, plan: dict[str, Any]) -> str:
    labels = dict(getattr(getattr(incident, "alert", None), "labels", {}) or {})
    target = plan.get("target") or {}
    parts = []
    for key in ("deployment", "service", "model", "node", "namespace", "region"):
        value = labels.get(key) or (target.get("name") if key == target.get("kind") else None)
        if key == "namespace":
            value = value or target.get("namespace")
        if value:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "not named by the incident"


def _classification(source: dict[str, Any]) -> str:
    category, sub = source.get("category"), source.get("subcategory")
    confidence = source.get("confidence")
    number = f"{confidence:.2f}" if isinstance(confidence, int | float) else "n/a"
    text = f"{category}/{sub}: {confidence_words(confidence)} ({number}"
    others = sorted((source.get("probabilities") or {}).items(), key=lambda kv: -kv[1])
    runner = next(((c, p) for c, p in others if c != category), None)
    if runner is not None:
        text += f"; next {runner[0]} {runner[1]:.2f}"
    return text + f", {source.get('engine') or 'rulebook'})"


def _plan(plan: dict[str, Any]) -> str:
    target = plan.get("target") or {}
    on = f" on {target.get('kind')} {target.get('namespace') or ''}/{target.get('name')}" if target.get("name") else ""
    return f"{plan.get('mitigation')} {plan.get('operation')}{on}"


def _dry_run(dry: dict[str, Any] | None) -> str:
    if not dry:
        return "not run (no cluster configured, or nothing to write)"
    details = dry.get("details")
    said = f"{dry.get('status')}: {dry.get('reason') or ''}".strip(": ")
    if isinstance(details, dict) and details:
        changes = ", ".join(f"{k}={v}" for k, v in list(details.items())[:6])
        said += f" — would change {changes}"
    return said


def _precedents(items: list[dict[str, Any]]) -> list[str]:
    return [f"{p.get('id')}: {p.get('title')} — fixed by {p.get('mitigation')}" for p in items[:3]]


def _source(source: dict[str, Any]) -> str:
    if source.get("type") == "kubernetes":
        version = f"@{source['resourceVersion']}" if source.get("resourceVersion") else ""
        return f"{source.get('object', 'kubernetes')}{version}"
    if source.get("type") == "prometheus":
        return "Prometheus range query"
    if source.get("type") == "incident_store":
        return "incident store: " + ", ".join(str(i) for i in (source.get("incident_ids") or [])[:3])
    if source.get("type") == "postmortems":
        return f"postmortem {source.get('postmortem_id')}"
    return str(source.get("type") or "?")


def investigation_lines(investigation: dict[str, Any] | None, limit: int = 5) -> tuple[list[str], list[str]]:
    """Findings as "summary (source)" lines, most telling first (changes come first), and the gaps."""
    if not investigation:
        return [], []
    findings = [f"{f['summary']} ({_source(f.get('source') or {})})" for f in investigation.get("findings") or []]
    gaps = [f"{g['source']}: {g['reason']}" for g in investigation.get("gaps") or []]
    return findings[:limit], gaps[:limit]


CONCLUSION_MAX = 600  # of the model's answer, in a chat message (the dashboard shows it whole)
# The loop's own "did not run" reasons: nothing to show, not even a line.
NOT_RUN = ("no LLM configured", "tool loop not configured", "no read-only source configured")


def exploration_lines(exploration: dict[str, Any] | None, limit: int = 5) -> tuple[str, list[str]]:
    """The LLM tool loop's conclusion (cut to CONCLUSION_MAX, with why it stopped when it did not simply
    answer) and its findings as "summary (source)" lines. Nothing when the loop did not run."""
    if not exploration or (exploration.get("stop_reason") in NOT_RUN and not exploration.get("findings")):
        return "", []
    conclusion = " ".join(str(exploration.get("conclusion") or "").split())
    if len(conclusion) > CONCLUSION_MAX:
        conclusion = conclusion[: CONCLUSION_MAX - 1] + "…"
    stop = str(exploration.get("stop_reason") or "")
    if stop and stop != "done":
        conclusion = f"{conclusion} (stopped: {stop})".strip()
    found = [f"{f['summary']} ({_source(f.get('source') or {})})" for f in exploration.get("findings") or []]
    return conclusion, found[:limit]


def _outcome(report: dict[str, Any]) -> list[str]:
    lines = []
    for approval in report.get("approvals") or []:
        lines.append(f"{'approved' if approval.get('approved') else 'rejected'} by {approval.get('by')}")
    for action in report.get("actions") or []:
        lines.append(f"action {action.get('operation')}: {action.get('status')}")
    verification = report.get("verification") or {}
    if verification:
        lines.append(f"SLA {verification.get('status')}: {verification.get('reason', '')}")
    escalation = report.get("escalation") or {}
    if escalation:
        lines.append(f"escalated: {escalation.get('reason', '')}")
    return lines


def _confirm(plan: dict[str, Any], risk: str, guard: dict[str, Any]) -> str | None:
    destructive = plan.get("operation") in DESTRUCTIVE_OPERATIONS or bool(guard.get("destructive"))
    if not destructive and risk not in CONFIRM_RISKS:
        return None
    target = plan.get("target") or {}
    what = f"{plan.get('operation')} on {target.get('kind')} {target.get('namespace') or ''}/{target.get('name')}"
    if destructive:
        return f"This DELETES: {what}. It cannot be undone by mitigate."
    return f"This runs {what} ({risk} risk) on the cluster."


def dashboard_link(public_url: str, incident_id: str) -> str | None:
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/dashboard/incidents/{quote(incident_id, safe='')}"


def summarize(outcome: Any, incident: Any, public_url: str = "") -> ChatSummary:
    """A run's outcome (`api.runs.RunOutcome`) and its incident, as what a chat message says."""
    waiting = outcome.report is None
    if waiting:
        request = outcome.waiting_for or {}
        source = request.get("summary") or {}
        plan = request.get("action") or source.get("plan") or {}
        guard = request.get("guard") or source.get("guard") or {}
        needed, so_far = request.get("approvals_required"), request.get("approvals_so_far") or []
        approvals = f"{len(so_far)} of {needed} approval(s)" + (f" so far: {', '.join(so_far)}" if so_far else "")
        not_done = ["nothing executed yet: waiting for approval"]
        headline, outcome_lines = "Approval needed", []
    else:
        source = outcome.report
        plan, guard = source.get("plan") or {}, source.get("guard") or {}
        approvals, not_done = "", list(source.get("notes") or [])
        headline, outcome_lines = f"Run {source.get('status')}", _outcome(source)
    risk = str(source.get("risk") or plan.get("risk") or "none")
    needs_human = source.get("needs_human_reason") or ("yes" if source.get("needs_human") else "")
    title = getattr(incident, "title", "") or getattr(incident, "id", "") or outcome.run_id
    findings, gaps = investigation_lines(source.get("investigation"))
    conclusion, explored = exploration_lines(source.get("exploration"))
    return ChatSummary(
        run_id=outcome.run_id,
        incident_id=str(getattr(incident, "id", "") or source.get("incident_id") or ""),
        headline=headline,
        title=title,
        where=_where(incident, plan),
        now=_signals(incident),
        classification=_classification(source),
        needs_human=str(needs_human),
        plan=_plan(plan),
        risk=risk,
        dry_run=_dry_run(source.get("dry_run")),
        precedents=_precedents(source.get("precedents") or []),
        not_done=not_done,
        outcome=outcome_lines,
        link=dashboard_link(public_url, str(getattr(incident, "id", "") or source.get("incident_id") or "")),
        waiting=waiting,
        confirm=_confirm(plan, risk, guard) if waiting else None,
        approvals=approvals,
        findings=findings,
        gaps=gaps,
        explored=explored,
        conclusion=conclusion,
    )


def decided(summary: ChatSummary, verdict: str, who: str) -> ChatSummary:
    """The same message after someone answered it: no buttons any more, and who did what."""
    summary.waiting, summary.confirm = False, None
    summary.headline = f"{verdict.capitalize()} by {who}; resuming"
    summary.outcome = [*summary.outcome, f"{verdict} by {who}"]
    return summary
