"""Approve or reject the action a paused run is waiting for; the run resumes on the worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import ServiceDep, client_of
from api.intake import submit_decision
from api.security import require_bearer

router = APIRouter(prefix="/runs", tags=["approvals"])


class Decision(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="who decides (recorded in the audit trail)")
    reason: str = Field(default="", max_length=2000)


async def _decide(run_id: str, decision: Decision, approved: bool, request: Request, service: Any) -> dict[str, Any]:
    service.limiter.check("rest", client_of(request))
    require_bearer(request, service.settings.api_token, "the REST API")
    if await run_in_threadpool(service.store.recorder.run, run_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    submitted = await run_in_threadpool(
        lambda: submit_decision(service, run_id, by=decision.by, approved=approved, reason=decision.reason)
    )
    if submitted == "not_waiting":
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {run_id} is not awaiting approval")
    return {"run_id": run_id, "accepted": True}


@router.post("/{run_id}/approve", status_code=status.HTTP_202_ACCEPTED)
async def approve(run_id: str, decision: Decision, request: Request, service: ServiceDep) -> dict[str, Any]:
    return await _decide(run_id, decision, True, request, service)


@router.post("/{run_id}/reject", status_code=status.HTTP_202_ACCEPTED)
async def reject(run_id: str, decision: Decision, request: Request, service: ServiceDep) -> dict[str, Any]:
    return await _decide(run_id, decision, False, request, service)
