"""REST for people and tools: create incidents, list them, read an incident's whole timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from agent.schemas import Incident
from api.deps import ServiceDep, read_body, store_write
from api.input_checks import parse_model
from api.intake import accept_incident
from api.lookup import BadCursor, incidents_page
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


@router.get("", summary="Recent incidents, newest first, a page at a time (bearer token)")
async def list_incidents(
    request: Request,
    response: Response,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    status_: Annotated[str | None, Query(alias="status", max_length=40, description="e.g. open, waiting")] = None,
    source: Annotated[str | None, Query(max_length=40, description="alertmanager, slack, rest, ...")] = None,
    since: Annotated[datetime | None, Query(description="received at or after (ISO; UTC unless given)")] = None,
    cursor: Annotated[str | None, Query(max_length=400, description="from the previous page's Link")] = None,
) -> list[dict[str, Any]]:
    """A page of incidents. When there are more, the `Link` header (rel="next") and `X-Next-Cursor` give
    the next page; the body stays a plain list."""
    require_reader(request, service)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    filters: dict[str, Any] = {"status": status_, "source": source, "since": since, "cursor": cursor, "limit": limit}
    try:
        page = await run_in_threadpool(lambda: incidents_page(service.store.sessions, **filters))
    except BadCursor as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if page.next_cursor:
        params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items() if v is not None}
        following = urlencode(params | {"cursor": page.next_cursor})
        response.headers["Link"] = f'<{request.url.path}?{following}>; rel="next"'
        response.headers["X-Next-Cursor"] = page.next_cursor
    return page.rows


@router.get("/{incident_id}", summary="An incident's timeline: steps, evidence, actions, approvals, SLA checks")
async def get_incident(incident_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    require_reader(request, service)
    timeline = await run_in_threadpool(service.queries.timeline, incident_id)
    if timeline is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return timeline
