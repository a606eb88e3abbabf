from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.change_signals import change_signals, impact_start
from agent.context import TriageContext
from agent.explore import skipped, why_not_explored
from agent.findings import gap
from agent.nodes._common import incident_of, record
from agent.state import TriageState

NOT_CONFIGURED = [
    gap("kubernetes", "no cluster configured: no recent changes or workload state"),
    gap("prometheus", "no Prometheus configured: no trend"),
]


def investigate(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """The graph's step when there is a cluster or Prometheus to look at (else intake looks, inline)."""
    return look(state, runtime)


def look(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Look before classifying: what changed just before the impact, how the workload is, whether the
    key series are still moving, whether this happened before. Read-only; what cannot be read is a
    stated gap, never a failed run."""
    investigator = runtime.context.investigator
    if investigator is None:
        investigation: dict[str, Any] = {"findings": [], "gaps": list(NOT_CONFIGURED), "elapsed_ms": 0.0, "sources": []}
    else:
        try:
            investigation = investigator.investigate(incident_of(state), state.get("entities", {}))
        except Exception as exc:  # the port promises not to raise; a broken one still must not stop triage
            investigation = {
                "findings": [],
                "gaps": [gap("investigation", f"{type(exc).__name__}: {exc}")],
                "elapsed_ms": 0.0,
            }
    findings, gaps = investigation["findings"], investigation["gaps"]
    incident = incident_of(state)
    # What the cluster showed, as readings the rulebook's rules are written in; the incident's own win.
    entities = state.get("entities", {})
    target = (
        f"{entities['namespace']}/{entities['deployment']}"
        if entities.get("namespace") and entities.get("deployment")
        else None
    )
    readings = change_signals(findings, impact_start(incident, runtime.context.clock()), target)
    added = {k: v for k, v in readings.items() if k not in incident.signals}
    update: dict[str, Any] = {"investigation": {**investigation, "signals": added}}
    if added:
        update["incident"] = incident.model_copy(update={"signals": {**incident.signals, **added}}).model_dump(
            mode="json"
        )
    if (reason := why_not_explored(runtime.context.llm, runtime.context.explorer)) is not None:
        # Said here, so the graph routes past explore (route_after_investigate): a checkpointed step
        # that could only record "skipped" cost every triage without an LLM a superstep.
        update["exploration"] = skipped(reason)
    summary = f"{len(findings)} findings, {len(gaps)} gaps" + (f": {findings[0]['summary'][:140]}" if findings else "")
    if investigation.get("sources", True):
        # A step in the run's timeline when something was looked at; with no source configured the
        # report states the gaps and the run is spared a write (triage latency stays as it was).
        record(runtime, state, "investigate", summary, update["investigation"])
    return update
