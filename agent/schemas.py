"""The typed values that flow through the graph and out of it.

They are pydantic models at the edges (validation of incidents and of LLM output) and plain dicts
inside the graph state, so that checkpoints hold nothing but JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CATEGORIES: tuple[str, ...] = ("A1", "A2", "A3", "A4")
ACTIONS: tuple[str, ...] = ("M1", "M2", "M3", "M4", "M5", "M6")
UNKNOWN = "unknown"

Category = Literal["A1", "A2", "A3", "A4", "unknown"]
Action = Literal["M1", "M2", "M3", "M4", "M5", "M6"]
RiskTier = Literal["none", "low", "medium", "high", "critical"]


class Alert(BaseModel):
    """An Alertmanager-style alert; only what triage may read."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items() if v is not None}
        return value


class Incident(BaseModel):
    """What the agent is allowed to see of an incident.

    Unknown keys are dropped on purpose: labels, resolutions and postmortems in a dataset line must
    never reach the agent during replay.
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(default="", max_length=2_000)
    description: str = Field(default="", max_length=50_000)
    alert: Alert | None = None
    signals: dict[str, float] = Field(default_factory=dict)
    started_at: datetime | None = None

    @field_validator("signals", mode="before")
    @classmethod
    def _numeric_signals(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("signals must be an object of metric name to number")
        out: dict[str, float] = {}
        for key, raw in value.items():
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"signal {key!r} must be a number, got {raw!r}")
            out[str(key)] = float(raw)
        return out

    def text(self) -> str:
        """All free text a rule may match, alert text included, and the English readings of trade words
        written in other languages (agent/glossary.yaml), so English rules read them too."""
        from agent.glossary import english_readings

        parts = [self.title, self.description]
        if self.alert is not None:
            parts.extend(self.alert.annotations.values())
            parts.append(self.alert.labels.get("alertname", ""))
        text = "\n".join(p for p in parts if p)
        readings = english_readings(text)
        return f"{text}\n[in English: {readings}]" if readings else text


class Evidence(BaseModel):
    source: Literal["text", "alert", "signal", "precedent", "llm", "status", "model"]
    detail: str
    weight: float = 0.0
    points_to: str = ""


class Classification(BaseModel):
    category: Category
    subcategory: str
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(default_factory=list)
    # rulebook: its scores alone; model: the calibrated model over the rulebook's evidence; llm: an LLM.
    engine: Literal["rulebook", "model", "llm"] = "rulebook"
    rationale: str = ""
    # Below the operating threshold the answer is still the best guess, and a human must decide.
    needs_human: bool = False
    needs_human_reason: str = ""
    probabilities: dict[str, float] = Field(default_factory=dict)  # per category, calibrated (model only)


class Target(BaseModel):
    kind: Literal["none", "deployment", "pod", "node", "route", "alert"] = "none"
    namespace: str | None = None
    name: str | None = None
    region: str | None = None


class Plan(BaseModel):
    mitigation: Action
    operation: str = Field(description="What to do, e.g. scale_out, rollout_restart, cordon_and_evict")
    target: Target = Field(default_factory=Target)
    parameters: dict[str, Any] = Field(default_factory=dict)
    risk: RiskTier = "low"
    rationale: str = ""
    no_action_evidence: list[str] = Field(default_factory=list)
    # Every "no action" veto with its verdict, for M5 plans and for plans where M5 was refused.
    no_action_checks: list[str] = Field(default_factory=list)
    touches_cluster: bool = False


# `unavailable`: the dependency (the API server) failed, not the request; details["fault"] says how and
# whether doing it again is safe (tools/faults.py).
ToolStatus = Literal["executed", "dry-run-ok", "denied", "approval-required", "failed", "not-configured", "unavailable"]


class ToolResult(BaseModel):
    """What every cluster tool returns: a status, the reason, and the API's own error when it failed."""

    status: ToolStatus
    reason: str = ""
    api_error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
