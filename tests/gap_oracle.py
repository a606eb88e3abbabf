"""The gap report the slow way, as it was computed before the SQL aggregation: every incident since a date
loaded with its runs, steps and approvals. The oracle the SQL version (evals/gaps_store.py) must match."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.schemas import Incident
from evals.dataset import Case
from store.models import IncidentRow

AUTOMATIC_SOURCES = frozenset({"alertmanager", "pagerduty", "webhook"})  # an alert, not a person, opened it


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _aware(moment).isoformat().replace("+00:00", "Z")


def _closed_at(run: Any) -> datetime | None:
    """When the run ended the impact: the verify step of an executed and verified action, or the
    report of a "no action" decision. Anything else is not mitigated by mitigate."""
    wanted = {"mitigated": "verify", "no_action": "report"}.get(run.status)
    steps = [s for s in run.steps if s.node == wanted]
    return steps[-1].finished_at if steps else None


def _closed_without_human(run: Any) -> bool:
    if run.status == "no_action":
        return True
    return run.status == "mitigated" and not any(action.approvals for action in run.actions)


def _labels(run: Any) -> dict[str, str | None]:
    """The run's classification and plan: from the finished run, or from its classify and plan steps
    while it is still waiting (for an approval, say)."""
    if run is None:
        return {"category": None, "subcategory": None, "mitigation": None}
    steps = {s.node: s.data for s in run.steps}
    category = run.category or steps.get("classify", {}).get("category")
    subcategory = run.subcategory or steps.get("classify", {}).get("subcategory")
    mitigation = run.mitigation or steps.get("plan", {}).get("mitigation")
    known = category not in (None, "unknown")
    return {
        "category": category if known else None,
        "subcategory": subcategory if known else None,
        "mitigation": mitigation,
    }


def store_cases(sessions: sessionmaker[Session], since: datetime) -> tuple[list[Case], dict[str, Any]]:
    """Cases for `gap_report` (one per incident, its latest run's labels) and the automation outcome:
    how many incidents mitigate closed without a human, and their time to mitigate."""
    cases: list[Case] = []
    closed_hours: list[float] = []
    by_status: dict[str, int] = {}
    with sessions() as session:
        rows = session.scalars(
            select(IncidentRow).where(IncidentRow.received_at >= since).order_by(IncidentRow.received_at)
        ).all()
        for row in rows:
            runs = sorted(row.runs, key=lambda r: _aware(r.created_at))
            run = runs[-1] if runs else None
            started = _aware(row.started_at or row.received_at)
            closed = _closed_at(run) if run is not None else None
            timeline = {
                "started_at": _iso(started),
                "detected_at": _iso(row.received_at),
                "engaged_at": _iso(runs[0].created_at) if runs else None,
                "mitigated_at": _iso(closed),
                "auto_detected": row.source in AUTOMATIC_SOURCES,
            }
            labels = _labels(run)
            incident = Incident.model_validate(row.payload)
            cases.append(Case(incident=incident, labels=labels, timeline=timeline, raw=dict(row.payload)))
            status = run.status if run is not None else "no_run"
            by_status[status] = by_status.get(status, 0) + 1
            if run is not None and closed is not None and _closed_without_human(run):
                closed_hours.append((_aware(closed) - started).total_seconds() / 3600)
    n = len(cases)
    outcome = {
        "incidents": n,
        "by_status": by_status,
        "closed_without_human": len(closed_hours),
        "closed_without_human_share": len(closed_hours) / n if n else None,
        "closed_without_human_ttm_hours_p50": statistics.median(closed_hours) if closed_hours else None,
        "closed_without_human_ttm_hours_max": max(closed_hours) if closed_hours else None,
    }
    return cases, outcome
