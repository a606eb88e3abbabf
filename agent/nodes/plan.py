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


def _llm_plan(
    ctx: TriageContext, state: TriageState, incident: Any, classification: Any, entities: dict[str, str], result: Any
) -> tuple[Any, dict[str, Any]]:
    """The LLM may choose among actions, by a stated rule: its "no action" stands only where the
    no-action decision itself allows it (evidence, no veto, the calibrated threshold), and an answer
    that needs a human stays an escalation. Any other choice of action is taken."""
    update: dict[str, Any] = {}
    no_action = state.get("no_action") or {}
    try:
        choice, usage = ctx.llm.plan(incident, classification, state.get("no_action"))  # type: ignore[union-attr]
    except LLMFailure as failure:
        update["fallbacks"] = [{"stage": "plan", "kind": failure.kind, "detail": failure.detail[:500]}]
        update["llm_usage"] = [{"stage": "plan", **failure.usage.as_dict()}]
        return result, update
    update["llm_usage"] = [{"stage": "plan", **usage.as_dict()}]
    if choice.mitigation == "M5" and not no_action.get("decided"):
        kind = "vetoed" if no_action.get("vetoes") else "not_supported"
        update["fallbacks"] = [
            {"stage": "plan", "kind": kind, "detail": f"LLM chose M5, refused: {no_action.get('why', 'no decision')}"}
        ]
        return result, update
    if classification.needs_human or choice.mitigation == result.mitigation:
        return result, update
    if choice.mitigation == "M5":
        return result, update  # the decided M5 plan already carries its evidence and checks
    operation, target_kind = planner.operation_for(ctx.rulebook, classification.subcategory, choice.mitigation)
    chosen = planner.build_plan(
        ctx.policy,
        incident,
        entities,
        choice.mitigation,
        operation,
        target_kind,
        choice.rationale,
        no_action_checks=no_action.get("checked", []),
    )
    return chosen, update


def plan(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Algorithm 1 by the rulebook, after the "no action" decision; an LLM may pick the action, but
    never talk its way into M5."""
    ctx = runtime.context
    incident, classification = incident_of(state), classification_of(state)
    entities = state.get("entities", {})
    result = planner.plan(
        ctx.rulebook,
        ctx.policy,
        incident,
        classification,
        entities,
        state.get("precedents", []),
        state.get("no_action"),
    )
    update: dict[str, Any] = {}
    if ctx.llm is not None and classification.engine == "llm":
        result, update = _llm_plan(ctx, state, incident, classification, entities, result)
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
