"""REST for people and tools: create incidents, list them, read an incident's whole timeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from agent.schemas import Incident
from api.deps import ServiceDep, read_body, store_write
from api.input_checks import parse_model
from api.intake import accept_incident
from api.openapi_bodies import json_body
from api.security import credential_of, require_reader

router = APIRouter(prefix="/incidents", tags=["incidents"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Triage an incident (bearer token)",
    openapi_extra=json_body(Incident),
)
async def create_incident(request: Request, service: ServiceDep) -> dict[str, Any]:
    require_reader(request, service)  # authenticate, then limit, then read and parse
    service.limiter.check("rest", credential_of(request, service))
    body = await read_body(request, service.settings.max_body_bytes)
    try:
        incident = parse_model(body, Incident)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    raw = incident.model_dump(mode="json")
    run_id = await store_write(service, lambda: accept_incident(service, incident, "rest", raw))
    return {"incident_id": incident.id, "run_id": run_id, "duplicate": run_id is None}


@router.get("", summary="Recent incidents (bearer token)")
async def list_incidents(
    request: Request, service: ServiceDep, limit: int = Query(50, ge=1, le=500)
) -> list[dict[str, Any]]:
    require_reader(request, service)
    return await run_in_threadpool(service.queries.list_incidents, limit)


@router.get("/{incident_id}", summary="An incident's timeline: steps, evidence, actions, approvals, SLA checks")
async def get_incident(incident_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    require_reader(request, service)
    timeline = await run_in_threadpool(service.queries.timeline, incident_id)
    if timeline is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return timeline
