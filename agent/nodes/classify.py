from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.llm import LLMFailure
from agent.nodes._common import incident_of, record
from agent.precedents import combine
from agent.state import TriageState


def classify(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Rulebook first (it is also the fallback); the LLM's answer wins only when it is valid."""
    ctx = runtime.context
    incident = incident_of(state)
    result = combine(ctx.rulebook, ctx.rulebook.classify(incident), state.get("precedents", []))
    update: dict[str, Any] = {}
    if ctx.llm is not None:
        try:
            llm_result, usage = ctx.llm.classify(incident, state.get("precedents", []))
            update["llm_usage"] = [{"stage": "classify", **usage.as_dict()}]
            result = llm_result
        except LLMFailure as failure:
            update["fallbacks"] = [{"stage": "classify", "kind": failure.kind, "detail": failure.detail[:500]}]
            update["llm_usage"] = [{"stage": "classify", **failure.usage.as_dict()}]
    update["classification"] = result.model_dump(mode="json")
    record(
        runtime,
        state,
        "classify",
        f"{result.category}/{result.subcategory} at {result.confidence:.2f} by {result.engine}",
        update["classification"],
    )
    return update
