"""What every way in does once it has an incident or a human decision: store it, hand it to the worker.

Webhooks, REST, Slack and Teams differ in how they authenticate and talk; none has its own logic past
this point.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from agent.schemas import Incident
from api.runs import create_run
from api.worker import Job


def accept_incident(
    service: Any, incident: Incident, source: str, raw: dict[str, Any], fingerprint: str | None = None
) -> str | None:
    """Commit the incident and a queued run, then queue it; None for a repeated delivery."""
    engine = "llm" if service.settings.use_llm() else "rulebook"
    run_id = create_run(
        incident, source=source, payload=raw, recorder=service.store.recorder, engine=engine, fingerprint=fingerprint
    )
    if run_id is None:
        service.metrics.duplicates.labels(source).inc()
        return None
    service.metrics.incidents.labels(source).inc()
    service.worker.submit(Job(run_id))
    return run_id


AlertOutcome = Literal["accepted", "duplicate", "correlated"]


def accept_alert(
    service: Any, incident: Incident, raw: dict[str, Any], *, fingerprint: str, correlation_key: str
) -> tuple[AlertOutcome, str]:
    """An alert from Alertmanager: a new incident with a queued run, unless an incident of its group is
    still open (then it is stored as correlated with that one, and starts nothing). The run waits
    `alert_settle_s` before triage, so a blip that heals itself is seen healed."""
    settings = service.settings
    if settings.alert_correlation_window_s > 0:
        since = datetime.now(UTC) - timedelta(seconds=settings.alert_correlation_window_s)
        primary = service.store.recorder.open_incident_for(correlation_key, since)
        if primary is not None and primary != incident.id:
            stored = service.store.recorder.save_correlated(
                incident,
                primary_id=primary,
                source="alertmanager",
                payload=raw,
                fingerprint=fingerprint,
                correlation_key=correlation_key,
            )
            if not stored:
                service.metrics.duplicates.labels("alertmanager").inc()
            return ("correlated" if stored else "duplicate"), primary
    engine = "llm" if settings.use_llm() else "rulebook"
    run_id = create_run(
        incident,
        source="alertmanager",
        payload=raw,
        recorder=service.store.recorder,
        engine=engine,
        fingerprint=fingerprint,
        correlation_key=correlation_key,
    )
    if run_id is None:
        service.metrics.duplicates.labels("alertmanager").inc()
        return "duplicate", incident.id
    service.metrics.incidents.labels("alertmanager").inc()
    service.worker.submit(Job(run_id, not_before=time.monotonic() + settings.alert_settle_s))
    return "accepted", incident.id


def submit_decision(
    service: Any, run_id: str, *, by: str, approved: bool, reason: str = ""
) -> Literal["submitted", "not_waiting"]:
    """Resume a paused run with one person's answer; the guard node judges it (count, expiry, reason)."""
    run = service.store.recorder.run(run_id)
    if run is None or run["status"] != "awaiting_approval":
        return "not_waiting"
    service.worker.submit(Job(run_id, {"approved": approved, "by": by, "reason": reason}))
    return "submitted"
