from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.nodes._common import incident_of, record
from agent.state import TriageState


def retrieve(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Find similar past postmortems to cite; say plainly when there is no index to search."""
    retriever = runtime.context.retriever
    if retriever is None:
        retrieval: dict[str, str] = {
            "status": "not_configured",
            "note": "no postmortem index configured: no precedents cited",
        }
        precedents: list[dict[str, Any]] = []
    else:
        try:
            precedents = retriever.search(incident_of(state), runtime.context.precedents_k)
            retrieval = {"status": "ok", "note": f"{len(precedents)} precedents"}
        except Exception as exc:  # retrieval is advisory: a broken index must not stop triage
            precedents = []
            retrieval = {"status": "failed", "note": f"postmortem search failed: {type(exc).__name__}: {exc}"}
    update: dict[str, Any] = {"precedents": precedents, "retrieval": retrieval}
    if runtime.context.cluster is not None:
        # Read-only facts about the target, attached to the run for the DRI and the report.
        update["cluster_evidence"] = runtime.context.cluster.evidence(state.get("entities", {}))
    record(runtime, state, "retrieve", retrieval.get("note") or f"{len(precedents)} precedents", update)
    return update
