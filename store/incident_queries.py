"""Read side for the service: incident timelines, and updates from resolved alerts (the lists, with
cursors and filters, are api/lookup.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session, sessionmaker

from agent.schemas import Incident
from store.approval_audit import attempts_for
from store.models import IncidentRow, SlaCheckRow
from store.recorder import action_dict


class IncidentQueries:
    """Read side for the service: incident lists and timelines, and updates from resolved alerts."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def mark_resolved(self, incident_id: str, ends_at: str | None) -> bool:
        """Record that the incident's alert resolved. Queued runs will see it as evidence for M5."""
        with self._sessions.begin() as session:
            incident = session.get(IncidentRow, incident_id)
            if incident is None:
                return False
            payload = dict(incident.payload)
            alert = dict(payload.get("alert") or {})
            alert["status"], alert["endsAt"] = "resolved", ends_at
            payload["alert"] = alert
            incident.payload = payload
            if incident.status in ("open", "proposed", "escalated", "awaiting_approval"):
                incident.status = f"{incident.status}+alert_resolved" if incident.status != "open" else "alert_resolved"
            return True

    def recent_occurrences(self, incident: Incident, since: datetime, limit: int = 2000) -> list[str]:
        """Earlier incidents (not correlated duplicates) of the same alert on the same target since
        `since`: the recurrence veto of "no action". Without an alert name nothing is matched."""
        key = recurrence_key(incident.model_dump(mode="json"))
        if key is None:
            return []
        with self._sessions() as session:
            return [r.id for r in recurrences(session, key, since=since, exclude_id=incident.id, limit=limit)]

    def timeline(self, incident_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            incident = session.get(IncidentRow, incident_id)
            if incident is None:
                return None
            runs = []
            for run in incident.runs:
                checks = session.scalars(select(SlaCheckRow).where(SlaCheckRow.run_id == run.id)).all()
                runs.append(
                    {
                        "id": run.id,
                        "status": run.status,
                        "engine": run.engine,
                        "steps": [
                            {"node": s.node, "summary": s.summary, "data": s.data, "at": s.finished_at.isoformat()}
                            for s in run.steps
                        ],
                        "actions": [
                            action_dict(a)
                            | {
                                "approvals": [
                                    {"by": p.approver, "decision": p.decision, "reason": p.reason} for p in a.approvals
                                ]
                            }
                            for a in run.actions
                        ],
                        "sla_checks": [{"status": c.status, "details": c.details} for c in checks],
                        "approval_attempts": attempts_for(self._sessions, run.id),
                        "report": run.report,
                    }
                )
            correlated = session.scalars(
                select(IncidentRow).where(IncidentRow.correlated_with == incident.id).order_by(IncidentRow.received_at)
            )
            return {
                "id": incident.id,
                "title": incident.title,
                "source": incident.source,
                "status": incident.status,
                "incident": incident.payload,
                "received_at": incident.received_at.isoformat(),
                "correlated_with": incident.correlated_with,
                "correlation_reason": incident.correlation_reason,
                "correlated": [
                    {"id": c.id, "title": c.title, "reason": c.correlation_reason or ""} for c in correlated
                ],
                "runs": runs,
            }


def recurrence_key(payload: dict[str, Any]) -> tuple[str, str] | None:
    labels = (payload.get("alert") or {}).get("labels") or {}
    alertname = labels.get("alertname")
    if not alertname:
        return None
    target = next((labels[k] for k in ("deployment", "node", "pod", "service", "endpoint") if labels.get(k)), "")
    return str(alertname), str(target)


def recurrences(
    session: Session, key: tuple[str, str], *, since: datetime, exclude_id: str, limit: int
) -> list[Row[Any]]:
    """Earlier incidents (not correlated duplicates) with recurrence key `key` among the `limit` newest
    received since `since`, newest first, as rows of (id, received_at, status, title, labels).

    The same answer as matching `recurrence_key` over those `limit` whole rows in Python, but the
    database picks the candidates by alert name (a JSON path, on SQLite and PostgreSQL alike) and only
    their labels are read: loading and decoding every payload in the window was most of the
    investigate step's cost (docs/investigation.md). The window stays "the `limit` newest", not "the
    `limit` newest of this alert", so a bound hit answers as it always did. The target (the first of
    several labels present) is matched in Python, on the candidates only."""
    alertname, _ = key
    window = (
        select(IncidentRow.id)
        .where(IncidentRow.received_at >= since, IncidentRow.id != exclude_id)
        .where(IncidentRow.status != "correlated")
        .order_by(IncidentRow.received_at.desc(), IncidentRow.id.desc())
        .limit(limit)
        .subquery()
    )
    labels = IncidentRow.payload[("alert", "labels")]
    rows = session.execute(
        select(IncidentRow.id, IncidentRow.received_at, IncidentRow.status, IncidentRow.title, labels.label("labels"))
        .where(IncidentRow.id.in_(select(window.c.id)))
        .where(IncidentRow.payload[("alert", "labels", "alertname")].as_string() == alertname)
        .order_by(IncidentRow.received_at.desc(), IncidentRow.id.desc())
    ).all()
    return [r for r in rows if recurrence_key({"alert": {"labels": r.labels}}) == key]
