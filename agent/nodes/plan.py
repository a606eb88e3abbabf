from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent import planner
from agent.context import TriageContext
from agent.llm import LLMFailure
from agent.nodes._common import classification_of, incident_of, record
from agent.state import TriageState

RESTARTS = ("restart_pod", "rollout_restart")


def _localized(ctx: TriageContext, incident: Any, entities: dict[str, str], result: Any) -> tuple[Any, dict[str, Any]]:
    """A restart goes to the pod fault localisation ranks first, when its ranking is decisive; else the
    plan stays as it was, and says why."""
    try:
        assert ctx.localizer is not None
        found = ctx.localizer.rank(incident)
    except Exception as exc:  # localisation is advisory: the playbook's plan still stands
        return result, {"error": f"{type(exc).__name__}: {exc}"}
    top = found.get("top")
    if not top:
        return result, found
    best = found["candidates"][0]
    why = (
        f"{result.rationale} Localised to pod {top} by the {found.get('method', 'serving-aware')} method: "
        f"{best['metric']} deviated {best['score']:g} (robust scale) from before the incident, "
        "more than any other pod."
    )
    return (
        planner.build_plan(ctx.policy, incident, {**entities, "pod": top}, "M4", "restart_pod", None, why),
        found,
    )


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
            update["llm_usage"] = [{"stage": "plan", **failure.usage.as_dict()}]
    if ctx.localizer is not None and result.mitigation == "M4" and result.operation in RESTARTS:
        result, update["localization"] = _localized(ctx, incident, entities, result)
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
