"""What every node shares: reading typed values out of the JSON state and recording the step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.schemas import Classification, Incident
from agent.state import TriageState


def incident_of(state: TriageState) -> Incident:
    return Incident.model_validate(state["incident"])


def classification_of(state: TriageState) -> Classification:
    return Classification.model_validate(state["classification"])


def record(
    runtime: Runtime[TriageContext], state: TriageState, node: str, summary: str, data: dict[str, Any] | None = None
) -> None:
    runtime.context.recorder.record_step(state["run_id"], node, summary, data or {})


def observer(ctx: TriageContext, plan: dict[str, Any], owners: list[str]) -> Callable[[], dict[str, float]] | None:
    """The cluster's own view of an action's symptoms (a drain's pods), when there is one to read."""
    cluster = ctx.cluster
    if cluster is None or plan.get("operation") != "cordon_and_evict":
        return None
    return lambda: cluster.observe(plan, owners)


def action_key(state: TriageState) -> str:
    """One key per run and planned change: the audit row and the exactly-once guarantee hang on it."""
    plan = state["plan"]
    target = plan.get("target") or {}
    return f"{state['run_id']}:{plan['operation']}:{target.get('namespace') or '-'}/{target.get('name') or '-'}"
