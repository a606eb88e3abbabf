"""A run's state, and approving or rejecting the action a paused run is waiting for.

Approvals are made by people, not by a shared secret: the bearer token must be one person's own token
(its SHA-256 is in the approvers file, tools/approvers.py). There is no `by` field: who approves is
who the token belongs to. Every attempt, refused ones included, is an audit row.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.approvals_flow import Identity, audit_refusal
from api.deps import ServiceDep, client_of, read_body
from api.input_checks import parse_model
from api.intake import submit_decision
from api.openapi_bodies import json_body
from api.security import bearer_token, require_reader

router = APIRouter(prefix="/runs", tags=["approvals"])

_STATUS = {
    "unknown_run": status.HTTP_404_NOT_FOUND,
    "unauthenticated": status.HTTP_401_UNAUTHORIZED,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "repeat": status.HTTP_409_CONFLICT,
    "not_waiting": status.HTTP_409_CONFLICT,
    "expired": status.HTTP_409_CONFLICT,
}


class Decision(BaseModel):
    # `extra=forbid`: a client still sending `by` learns that a name in the body decides nothing.
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000, description="why (required to approve a deletion)")


async def _decision(request: Request, service: Any) -> Decision:
    body = await read_body(request, service.settings.max_body_bytes)
    try:
        return parse_model(body or b"{}", Decision)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def _decide(run_id: str, approved: bool, request: Request, service: Any) -> dict[str, Any]:
    token = bearer_token(request)
    person = service.approvers.by_token(token) if token else None
    identity = Identity(person.id if person else None, "rest", person.id if person else "", client_of(request))
    if person is None:  # refused before the body is parsed: the audit row keeps no reason it would hold
        message = "approvals need a personal API token from the approvers file; this one is not one"
        await run_in_threadpool(audit_refusal, service.store.recorder, run_id, identity, approved, message, "")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})
    service.limiter.check("approvals", f"approver:{person.id}")
    decision = await _decision(request, service)
    result = await run_in_threadpool(
        lambda: submit_decision(service, run_id, identity, approved=approved, reason=decision.reason)
    )
    if result.outcome != "submitted":
        raise HTTPException(_STATUS[result.outcome], result.message)
    return {"run_id": run_id, "accepted": True, "by": person.id, "message": result.message}


@router.get("/{run_id}", summary="A run: status, and for a paused run its category, plan, risk and dry run")
async def get_run(run_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    require_reader(request, service)
    run = await run_in_threadpool(service.store.recorder.run, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    return dict(run)


@router.post("/{run_id}/approve", status_code=status.HTTP_202_ACCEPTED, openapi_extra=json_body(Decision))
async def approve(run_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    return await _decide(run_id, True, request, service)


@router.post("/{run_id}/reject", status_code=status.HTTP_202_ACCEPTED, openapi_extra=json_body(Decision))
async def reject(run_id: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    return await _decide(run_id, False, request, service)
