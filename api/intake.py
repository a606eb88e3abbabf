"""What every way in does once it has an incident or a human decision: store it, hand it to the worker.

Webhooks, REST, Slack and Teams differ in how they authenticate and talk; none has its own logic past
this point.
"""

from __future__ import annotations

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


def submit_decision(
    service: Any, run_id: str, *, by: str, approved: bool, reason: str = ""
) -> Literal["submitted", "not_waiting"]:
    """Resume a paused run with one person's answer; the guard node judges it (count, expiry, reason)."""
    run = service.store.recorder.run(run_id)
    if run is None or run["status"] != "awaiting_approval":
        return "not_waiting"
    service.worker.submit(Job(run_id, {"approved": approved, "by": by, "reason": reason}))
    return "submitted"
