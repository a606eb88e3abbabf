"""Has this happened before? Earlier incidents of the same alert on the same target in the incident
store: how often, what the last one was classified as, how it ended and what was done. It is the
evidence behind the recurrence veto of "no action"; one bounded read, a failure is a gap."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.findings import Finding, Gap, finding, gap
from agent.schemas import Incident
from store.incident_queries import recurrence_key, recurrences
from store.models import ActionRow, RunRow
from tools.investigate.bounds import Bounds, iso


def incident_history(
    sessions: sessionmaker[Session], incident: Incident, *, now: datetime, bounds: Bounds | None = None
) -> tuple[list[Finding], list[Gap]]:
    bounds = bounds or Bounds()
    key = recurrence_key(incident.model_dump(mode="json"))
    if key is None:
        return [], []
    since = now - timedelta(days=bounds.history_days)
    try:
        with sessions() as session:
            same = recurrences(session, key, since=since, exclude_id=incident.id, limit=bounds.max_items * 20)[
                : bounds.max_items
            ]
            if not same:
                return [], []
            last = same[0]
            run = session.scalars(
                select(RunRow).where(RunRow.incident_id == last.id).order_by(RunRow.created_at.desc()).limit(1)
            ).first()
            action = None
            if run is not None:
                action = session.scalars(
                    select(ActionRow).where(ActionRow.run_id == run.id).order_by(ActionRow.created_at.desc()).limit(1)
                ).first()
            data: dict[str, Any] = {
                "count": len(same),
                "days": bounds.history_days,
                "last": {
                    "incident": last.id,
                    "title": last.title[:200],
                    "received_at": iso(last.received_at),
                    "status": last.status,
                    "classified": f"{run.category}/{run.subcategory}" if run is not None and run.category else None,
                    "mitigation": run.mitigation if run is not None else None,
                    "action": f"{action.operation} {action.status}" if action is not None else None,
                },
            }
    except Exception as exc:  # the store is advisory here; the veto itself reads it again in classify
        return [], [
            gap("incident_store", f"incident history unreadable ({type(exc).__name__}): no recurrence evidence")
        ]
    alertname, target = key
    last_info = data["last"]
    what = (
        f"; last {last_info['received_at'][:16]} ({last_info['status']}"
        + (f", {last_info['classified']} {last_info['mitigation']}" if last_info["classified"] else "")
        + (f", action {last_info['action']}" if last_info["action"] else "")
        + ")"
    )
    summary = (
        f"{alertname} on {target or 'the same target'} seen {len(same)} time(s) in {bounds.history_days} days{what}"
    )
    source = {"type": "incident_store", "incident_ids": [r.id for r in same]}
    return [finding("history", summary, source, last_info["received_at"], data)], []
