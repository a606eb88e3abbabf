from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.entities import extract_entities
from agent.nodes._common import incident_of, record
from agent.state import TriageState


def intake(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Validate the incident again (checkpoints may be resumed by newer code) and find its target."""
    incident = incident_of(state)
    entities = extract_entities(incident)
    record(runtime, state, "intake", f"incident {incident.id}: {incident.title[:120]}", {"entities": entities})
    return {"incident": incident.model_dump(mode="json"), "entities": entities}
