"""Ways in for machines: Alertmanager, and the project's own signed incident format."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ValidationError

from agent.schemas import Incident
from api.alertmanager import AlertmanagerPayload, alert_fingerprint, incident_from_alert, incident_id_for
from api.app import Service
from api.deps import ServiceDep, read_body, store_write
from api.input_checks import parse_model
from api.intake import accept_alert, accept_incident
from api.openapi_bodies import json_body
from api.pagerduty import PagerDutyPayload, incident_from_event, raw_of, signature_ok
from api.security import require_bearer, require_signature

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _invalid(exc: ValidationError, service: Service, where: str) -> HTTPException:
    service.metrics.errors.labels(where, "invalid_payload").inc()
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, {"reason": "invalid payload", "errors": errors})


@router.post(
    "/alertmanager",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Alertmanager webhook (version 4); bearer token; deduplicated by fingerprint and start",
    openapi_extra=json_body(AlertmanagerPayload),
)
async def alertmanager(request: Request) -> dict[str, Any]:
    # The service straight from the app, not through a dependency: FastAPI's dependency solving was a
    # measurable share of this hot path's CPU (bench/webhook.py).
    service: Service = request.app.state.service
    # Never rate-limited: an authenticated alert is refused only when the database cannot keep up (503).
    require_bearer(request, service.settings.alertmanager_token, "the Alertmanager webhook")
    body = await read_body(request, service.settings.max_body_bytes)
    try:
        payload = parse_model(body, AlertmanagerPayload)
    except ValidationError as exc:
        raise _invalid(exc, service, "alertmanager") from None

    def store() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"accepted": [], "duplicates": [], "resolved": [], "correlated": []}
        for alert in payload.alerts:
            incident_id = incident_id_for(alert)
            if alert.status == "resolved":
                ends = alert.endsAt.isoformat() if alert.endsAt else None
                if service.queries.mark_resolved(incident_id, ends):
                    out["resolved"].append(incident_id)
                    continue
            outcome, stored_as = accept_alert(
                service,
                incident_from_alert(alert),
                alert.model_dump(mode="json") | {"groupKey": payload.groupKey},
                fingerprint=alert_fingerprint(alert),
                correlation_key=f"alertmanager:{payload.groupKey}"[:300],
            )
            out[{"accepted": "accepted", "duplicate": "duplicates", "correlated": "correlated"}[outcome]].append(
                stored_as
            )
        return out

    return await store_write(service, store)


@router.post(
    "/incident",
    status_code=status.HTTP_202_ACCEPTED,
    summary="The project's incident format (docs/datasets.md), HMAC-signed",
    openapi_extra=json_body(Incident),
)
async def incident_webhook(request: Request, service: ServiceDep) -> dict[str, Any]:
    body = await read_body(request, service.settings.max_body_bytes)
    require_signature(request, body, service.settings.incident_webhook_secret, service.settings.webhook_replay_window_s)
    try:
        incident = parse_model(body, Incident)
    except ValidationError as exc:
        raise _invalid(exc, service, "incident") from None
    run_id = await store_write(
        service, lambda: accept_incident(service, incident, "webhook", incident.model_dump(mode="json"))
    )
    return {"incident_id": incident.id, "run_id": run_id, "duplicate": run_id is None}


@router.post(
    "/pagerduty",
    status_code=status.HTTP_202_ACCEPTED,
    summary="PagerDuty v3 webhook (incident.* events), X-PagerDuty-Signature checked",
    openapi_extra=json_body(PagerDutyPayload),
)
async def pagerduty(request: Request, service: ServiceDep) -> dict[str, Any]:
    body = await read_body(request, service.settings.max_body_bytes)
    secret = service.settings.pagerduty_webhook_secret.get_secret_value()
    if not secret:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "PagerDuty webhook is closed: no secret configured")
    if not signature_ok(secret, body, request.headers.get("x-pagerduty-signature", "")):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or missing X-PagerDuty-Signature")
    try:
        payload = parse_model(body, PagerDutyPayload)
    except ValidationError as exc:
        raise _invalid(exc, service, "pagerduty") from None
    event = payload.event
    incident = incident_from_event(event)
    if event.event_type == "incident.resolved":
        ended = event.occurred_at.isoformat()
        found = await store_write(service, lambda: service.queries.mark_resolved(incident.id, ended))
        return {"incident_id": incident.id, "resolved": found}
    if event.event_type != "incident.triggered":
        return {"incident_id": incident.id, "ignored": event.event_type}
    run_id = await store_write(service, lambda: accept_incident(service, incident, "pagerduty", raw_of(payload)))
    return {"incident_id": incident.id, "run_id": run_id, "duplicate": run_id is None}
