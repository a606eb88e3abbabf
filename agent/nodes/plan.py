from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent import planner
from agent.context import TriageContext
from agent.llm import LLMFailure
from agent.nodes._common import classification_of, incident_of, record
from agent.state import TriageState


def plan(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Algorithm 1 by the rulebook; an LLM may pick the action, but never talk its way into M5."""
    ctx = runtime.context
    incident, classification = incident_of(state), classification_of(state)
    entities = state.get("entities", {})
    result = planner.plan(ctx.rulebook, ctx.policy, incident, classification, entities, state.get("precedents", []))
    update: dict[str, Any] = {}
    if ctx.llm is not None and classification.engine == "llm":
        try:
            choice, usage = ctx.llm.plan(incident, classification)
            update["llm_usage"] = [{"stage": "plan", **usage.as_dict()}]
            assessment = planner.assess_no_action(ctx.rulebook, incident)
            if choice.mitigation == "M5" and assessment.ongoing > 0:
                update["fallbacks"] = [
                    {
                        "stage": "plan",
                        "kind": "vetoed",
                        "detail": f"LLM chose M5 but impact looks ongoing: {'; '.join(assessment.against)}",
                    }
                ]
            else:
                operation, target_kind = planner.operation_for(
                    ctx.rulebook, classification.subcategory, choice.mitigation
                )
                result = planner.build_plan(
                    ctx.policy,
                    incident,
                    entities,
                    choice.mitigation,
                    operation,
                    target_kind,
                    choice.rationale,
                    choice.no_action_evidence,
                )
        except LLMFailure as failure:
            update["fallbacks"] = [{"stage": "plan", "kind": failure.kind, "detail": failure.detail[:500]}]
            update["llm_usage"] = [{"stage": "plan", "calls": 1, "prompt_tokens": 0, "completion_tokens": 0}]
    update["plan"] = result.model_dump(mode="json")
    target = result.target
    record(
        runtime,
        state,
        "plan",
        f"{result.mitigation} {result.operation} on {target.kind} {target.namespace or ''}/{target.name or ''}",
        update["plan"],
    )
    return update
