"""What every way in does once it has an incident or a human decision: store it, hand it to the worker.

Webhooks, REST, Slack and Teams differ in how they authenticate and talk; none has its own logic past
this point.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from agent.schemas import Incident
from api.approvals_flow import Identity, Result, decide
from api.runs import create_run
from api.worker import Job
from store.correlation import cause_keys


def accept_incident(
    service: Any, incident: Incident, source: str, raw: dict[str, Any], fingerprint: str | None = None
) -> str | None:
    """Commit the incident and a queued run (with its job, on PostgreSQL), then tell the worker; None for
    a repeated delivery."""
    engine = "llm" if service.settings.use_llm() else "rulebook"
    run_id = create_run(
        incident,
        source=source,
        payload=raw,
        recorder=service.store.recorder,
        engine=engine,
        fingerprint=fingerprint,
        enqueue=service.worker.enqueuer(),
    )
    if run_id is None:
        service.metrics.duplicates.labels(source).inc()
        return None
    service.metrics.incidents.labels(source).inc()
    service.worker.accepted(run_id)
    return run_id


AlertOutcome = Literal["accepted", "duplicate", "correlated"]


def _joins(service: Any, incident: Incident, correlation_key: str) -> tuple[str, str] | None:
    """The open incident this alert belongs to, and why: its Alertmanager group, a shared cause (node,
    deployment, region-wide) within the correlation window, or an action of a run shortly before."""
    settings, correlator = service.settings, service.correlator
    now = datetime.now(UTC)
    if settings.alert_correlation_window_s > 0:
        since = now - timedelta(seconds=settings.alert_correlation_window_s)
        primary = correlator.open_incident_for(correlation_key, since)
        if primary is not None and primary != incident.id:
            return primary, f"same Alertmanager group as open incident {primary}"
    if settings.correlation_window_s > 0 or settings.own_action_window_s > 0:
        _own, wanted = cause_keys(incident)
        found: tuple[str, str] | None = correlator.sharing_cause(
            wanted,
            now - timedelta(seconds=settings.correlation_window_s),
            now - timedelta(seconds=settings.own_action_window_s),
        )
        if found is not None and found[0] != incident.id:
            return found
    return None


def accept_alert(
    service: Any, incident: Incident, raw: dict[str, Any], *, fingerprint: str, correlation_key: str
) -> tuple[AlertOutcome, str]:
    """An alert from Alertmanager: a new incident with a queued run, unless it belongs to an open one
    (then it is stored as correlated with it, with the reason, and starts nothing). The run waits
    `alert_settle_s` before triage, so a blip that heals itself is seen healed."""
    settings = service.settings
    joined = _joins(service, incident, correlation_key)
    if joined is not None:
        primary, reason = joined
        stored = service.correlator.save_correlated(
            incident,
            primary_id=primary,
            reason=reason,
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
        enqueue=service.worker.enqueuer(settings.alert_settle_s),
    )
    if run_id is None:
        service.metrics.duplicates.labels("alertmanager").inc()
        return "duplicate", incident.id
    service.correlator.remember(incident.id, cause_keys(incident)[0])
    service.metrics.incidents.labels("alertmanager").inc()
    service.worker.accepted(run_id, settings.alert_settle_s)
    return "accepted", incident.id


def submit_decision(service: Any, run_id: str, identity: Identity, *, approved: bool, reason: str = "") -> Result:
    """One person's answer from any door: checked, audited, and (when it may count) handed to the worker,
    where the guard node judges it again (count, roles, expiry, reason)."""
    return decide(
        recorder=service.store.recorder,
        approvers=service.approvers,
        approval_ttl_s=service.policy.approval_ttl_seconds,
        submit=lambda rid, answer: service.worker.submit(Job(rid, answer)),
        run_id=run_id,
        identity=identity,
        approved=approved,
        reason=reason,
    )
