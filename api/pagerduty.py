"""PagerDuty v3 webhooks: signature check and how an incident event becomes an incident."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.schemas import Incident


class PagerDutyService(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = ""
    summary: str = ""


class PagerDutyIncidentData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=100)
    type: Literal["incident"] = "incident"
    title: str = Field(default="", max_length=2000)
    status: str = ""
    urgency: str = ""
    html_url: str = ""
    service: PagerDutyService = Field(default_factory=PagerDutyService)


class PagerDutyEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    event_type: str = Field(pattern=r"^incident\.[a-z_]+$")
    resource_type: Literal["incident"]
    occurred_at: datetime
    data: PagerDutyIncidentData


class PagerDutyPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event: PagerDutyEvent


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    """`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]` (several while a secret rotates)."""
    expected = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), candidate.strip().encode()) for candidate in header.split(","))


def incident_from_event(event: PagerDutyEvent) -> Incident:
    data = event.data
    service = f" on {data.service.summary}" if data.service.summary else ""
    return Incident(
        id=f"pd-{data.id}",
        title=data.title,
        started_at=event.occurred_at,
        description=f"PagerDuty incident {data.id} ({data.urgency or 'unknown'} urgency){service}: {data.title}",
    )


def raw_of(payload: PagerDutyPayload) -> dict[str, Any]:
    return payload.model_dump(mode="json")
