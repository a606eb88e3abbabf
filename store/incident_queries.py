"""Read side for the service: incident timelines, and updates from resolved alerts (the lists, with
cursors and filters, are api/lookup.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, Row, String, bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from agent.no_action import HISTORY_BOUND
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

    def recent_occurrences(self, incident: Incident, since: datetime, limit: int = HISTORY_BOUND) -> list[str]:
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
    target = next((labels[k] for k in TARGET_LABELS if labels.get(k)), "")
    return str(alertname), str(target)


TARGET_LABELS = ("deployment", "node", "pod", "service", "endpoint")  # recurrence_key's, in its order


def _target_of_labels() -> Any:
    """recurrence_key's target in SQL: the first of TARGET_LABELS present and non-empty, else ''."""
    values = [func.nullif(IncidentRow.payload[("alert", "labels", k)].as_string(), "") for k in TARGET_LABELS]
    return func.coalesce(*values, "")


# The recurrence lookups run on every triage (the investigation's history, the recurrence veto's
# fallback): built once with bound parameters, as building the select per call cost more than the
# database's own work (0.4 of 0.7 ms on a 156-incident SQLite store).
_WINDOW = (
    select(IncidentRow.id)
    .where(IncidentRow.received_at >= bindparam("since"), IncidentRow.id != bindparam("exclude_id"))
    .where(IncidentRow.status != "correlated")
    .order_by(IncidentRow.received_at.desc(), IncidentRow.id.desc())
    .limit(bindparam("limit", type_=Integer))
    .subquery()
)
_RECURRENCES = (
    select(
        IncidentRow.id,
        IncidentRow.received_at,
        IncidentRow.status,
        IncidentRow.title,
        IncidentRow.payload[("alert", "labels")].label("labels"),
    )
    .where(IncidentRow.id.in_(select(_WINDOW.c.id)))
    .where(IncidentRow.payload[("alert", "labels", "alertname")].as_string() == bindparam("alertname", type_=String))
    .where(_target_of_labels() == bindparam("target", type_=String))
    .order_by(IncidentRow.received_at.desc(), IncidentRow.id.desc())
)
_FLOOR = (
    select(IncidentRow.received_at)
    .where(IncidentRow.received_at >= bindparam("since"))
    .order_by(IncidentRow.received_at.desc(), IncidentRow.id.desc())
    .offset(bindparam("offset", type_=Integer))
    .limit(1)
)


def recurrences(
    session: Session | Connection, key: tuple[str, str], *, since: datetime, exclude_id: str, limit: int
) -> list[Row[Any]]:
    """Earlier incidents (not correlated duplicates) with recurrence key `key` among the `limit` newest
    received since `since` (the window), newest first, as rows of (id, received_at, status, title,
    labels).

    The same answer as matching `recurrence_key` over those `limit` whole rows in Python, but the
    database picks them by alert name and target (JSON paths, on SQLite and PostgreSQL alike: the
    target is the first of `TARGET_LABELS` present and non-empty, as COALESCE(NULLIF(...))) and only
    their labels are read: loading and decoding every payload in the window was most of the
    investigate step's cost (docs/investigation.md), and an alert that fires on many targets made
    every candidate of its name a row to decode. The window stays "the `limit` newest", not "the
    `limit` newest of this alert", so a bound hit answers as it always did. Python checks the key
    again on the matches (label values that are not strings compare as Python's `str` does)."""
    alertname, target = key
    params = {"since": since, "exclude_id": exclude_id, "limit": limit, "alertname": alertname, "target": target}
    rows = _core(session).execute(_RECURRENCES, params).all()
    return [r for r in rows if recurrence_key({"alert": {"labels": r.labels}}) == key]


def window_floor(session: Session | Connection, *, since: datetime, limit: int) -> datetime | None:
    """How far back the window of `recurrences` (any `exclude_id`) is sure to reach: every incident it
    would look at that was received strictly after the returned time is in it; None when it holds every
    incident since `since`. It is the received time of the `limit`-th newest incident since `since`,
    the incident itself and correlated duplicates counted too: at most `limit` - 1 incidents are newer,
    so none of them can have been cut, and the received-time index alone answers (no row is read;
    filtering like the window would read every row in it)."""
    floor: datetime | None = _core(session).scalar(_FLOOR, {"since": since, "offset": limit - 1})
    return floor


def _core(session: Session | Connection) -> Connection:
    """The session's connection: these statements return plain rows, and the session's ORM execution
    path (its result processing) cost as much again as the statement on SQLite."""
    return session.connection() if isinstance(session, Session) else session
