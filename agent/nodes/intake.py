from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.canonical import canonicalise
from agent.context import TriageContext
from agent.entities import entities_with_sources
from agent.nodes._common import incident_of, record
from agent.nodes.investigate import look
from agent.state import TriageState


def intake(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Read the incident (`read_incident`); without a cluster or Prometheus to look at, also look at the
    store's history (agent/nodes/investigate.py `look`), recorded as the investigate step."""
    update = read_incident(state, runtime)
    investigator = runtime.context.investigator
    if investigator is None or investigator.local_only:
        # A bounded local read costs less than the checkpointed step of its own it would get, and is
        # safe to repeat after a crash: it is done here and the graph routes past investigate.
        update |= look(TriageState(**{**state, **update}), runtime)  # type: ignore[typeddict-item]
    return update


def read_incident(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Validate the incident again (checkpoints may be resumed by newer code), find its target, and
    read the live serving signals when telemetry is configured: an alert says something crossed a
    line; the signals say how far, and whether it is still there."""
    incident = incident_of(state)
    entities, sources = entities_with_sources(incident)
    data: dict[str, Any] = {"entities": entities, "entity_sources": sources}
    telemetry = runtime.context.telemetry
    if telemetry is not None:
        try:
            live = telemetry.signals(incident)
            incident = incident.model_copy(update={"signals": {**incident.signals, **live}})
            data["live_signals"] = live
        except Exception as exc:  # telemetry is advisory: triage goes on with what the incident says
            data["telemetry_error"] = f"{type(exc).__name__}: {exc}"
    # Exporter names (vllm:*, DCGM_*, success_rate, *_ms) become the canonical signals every rule reads;
    # the incident's own readings win, and names nothing reads stay listed.
    canonical = canonicalise(incident.signals)
    incident = incident.model_copy(update={"signals": {**incident.signals, **canonical.signals}})
    names = {"converted": canonical.converted, "unmapped": canonical.unmapped}
    data["signal_names"] = names
    record(runtime, state, "intake", f"incident {incident.id}: {incident.title[:120]}", data)
    return {
        "incident": incident.model_dump(mode="json"),
        "entities": entities,
        "entity_sources": sources,
        "signal_names": names,
    }
