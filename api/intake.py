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


def _joins(
    service: Any, incident: Incident, correlation_key: str, wanted: list[str], connection: Any
) -> tuple[str, str] | None:
    """The open incident this alert belongs to, and why: its Alertmanager group, a shared cause (node,
    deployment, region-wide) within the correlation window, or an action of a run shortly before.
    One database round trip (Correlator.join_for), on the connection that then stores the alert: it is
    on every alert's way to its 202."""
    settings = service.settings
    group = settings.alert_correlation_window_s > 0
    if not settings.correlation_window_s > 0 and not settings.own_action_window_s > 0:
        wanted = []
    if not group and not wanted:
        return None
    now = datetime.now(UTC)
    found = service.correlator.join_for(
        correlation_key if group else None,
        now - timedelta(seconds=settings.alert_correlation_window_s),
        wanted,
        now - timedelta(seconds=settings.correlation_window_s),
        now - timedelta(seconds=settings.own_action_window_s),
        connection,
    )
    if found is None or found[0] == incident.id:
        if found is not None and found[1] == "group" and wanted:  # its own group: look for a shared cause
            return _cause_only(service, incident, wanted, connection)
        return None
    return found[0], found[2]


def _cause_only(service: Any, incident: Incident, wanted: list[str], connection: Any) -> tuple[str, str] | None:
    settings, now = service.settings, datetime.now(UTC)
    found = service.correlator.join_for(
        None,
        now,
        wanted,
        now - timedelta(seconds=settings.correlation_window_s),
        now - timedelta(seconds=settings.own_action_window_s),
        connection,
    )
    return (found[0], found[2]) if found is not None and found[0] != incident.id else None


def accept_alert(
    service: Any, incident: Incident, raw: dict[str, Any], *, fingerprint: str, correlation_key: str
) -> tuple[AlertOutcome, str]:
    """An alert from Alertmanager: a new incident with a queued run, unless it belongs to an open one
    (then it is stored as correlated with it, with the reason, and starts nothing). The run waits
    `alert_settle_s` before triage, so a blip that heals itself is seen healed.

    One connection and one commit for all of it (the lookups, the incident, its run, its job on
    PostgreSQL, its cause keys): the ack's cost is mostly database round trips and commits."""
    settings = service.settings
    own, wanted = cause_keys(incident)  # once: the lookup and the record use the same keys
    run_id: str | None = None
    with service.store.recorder.transaction() as connection:
        joined = _joins(service, incident, correlation_key, wanted, connection)
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
                connection=connection,
            )
        else:
            run_id = create_run(
                incident,
                source="alertmanager",
                payload=raw,
                recorder=service.store.recorder,
                engine="llm" if settings.use_llm() else "rulebook",
                fingerprint=fingerprint,
                correlation_key=correlation_key,
                enqueue=service.worker.enqueuer(settings.alert_settle_s),
                cause_keys=own,
                connection=connection,
            )
    # Committed: only now may the worker hear of the run.
    if joined is not None:
        if not stored:
            service.metrics.duplicates.labels("alertmanager").inc()
        return ("correlated" if stored else "duplicate"), primary
    if run_id is None:
        service.metrics.duplicates.labels("alertmanager").inc()
        return "duplicate", incident.id
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
