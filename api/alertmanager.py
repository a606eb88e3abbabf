"""Alertmanager webhook payloads (version 4) and how an alert becomes an incident."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.schemas import Alert, Incident


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=1000)


def alert_fingerprint(alert: AlertmanagerAlert) -> str:
    """Alertmanager's fingerprint names the label set; with the start time it names one firing."""
    labels = alert.fingerprint or hashlib.sha256(repr(sorted(alert.labels.items())).encode()).hexdigest()[:16]
    return f"{labels}@{alert.startsAt.isoformat()}"


def incident_id_for(alert: AlertmanagerAlert) -> str:
    return "am-" + hashlib.sha256(alert_fingerprint(alert).encode()).hexdigest()[:20]


def incident_from_alert(alert: AlertmanagerAlert) -> Incident:
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    return Incident(
        id=incident_id_for(alert),
        title=f"{name}: {summary}".strip(": ")[:2000],
        description=alert.annotations.get("description", ""),
        alert=Alert(
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
            startsAt=alert.startsAt,
            endsAt=alert.endsAt,
        ),
        started_at=alert.startsAt,
    )
