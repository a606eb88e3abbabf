"""Algorithm 1 (taxonomy-triggered mitigation), extended from A3 to every category.

The planner turns a classification into one plan: an action M1-M6, an operation from the guard
policy's catalogue, a target, parameters, a risk tier and a rationale. "No action" (M5) is a
first-class outcome decided before any playbook is read (agent/verdicts.py: `no_action_decision`):
typed evidence, hard vetoes and, with the learned model, a calibrated probability over its threshold.
"""

from __future__ import annotations

import math
from typing import Any

from agent.no_action import assess
from agent.precedents import mitigation_vote, precedent_note
from agent.rulebook import Alternative, Rulebook
from agent.schemas import Classification, Incident, Plan, Target
from agent.verdicts import no_action_decision
from tools.guard import Policy

PRECEDENT_SHARE = 0.6  # precedents pick a playbook alternative only when they agree this strongly
PRECEDENTS_NEVER_CHOOSE = frozenset({"M5", "M6"})  # "no action" and deletion need their own evidence


def _alternative_applies(alt: Alternative, incident: Incident) -> bool:
    return alt.applies(incident.text(), incident.signals)


def _target(kind: str, entities: dict[str, str]) -> Target:
    namespace = entities.get("namespace")
    if kind == "node" and entities.get("node"):
        return Target(kind="node", name=entities["node"], region=entities.get("region"))
    if kind == "pod" and entities.get("pod"):
        return Target(kind="pod", namespace=namespace, name=entities["pod"], region=entities.get("region"))
    if kind == "route":
        name = entities.get("endpoint") or entities.get("deployment")
        return Target(kind="route", namespace=namespace, name=name, region=entities.get("region"))
    if entities.get("deployment"):
        return Target(
            kind="deployment", namespace=namespace, name=entities["deployment"], region=entities.get("region")
        )
    return Target(kind="none", namespace=namespace, region=entities.get("region"))


def _parameters(operation: str, incident: Incident, entities: dict[str, str]) -> dict[str, object]:
    signals = incident.signals
    if operation == "scale_out":
        current = int(signals.get("replicas_desired") or signals.get("replicas_available") or 0)
        # Grow by half again, at least one replica; the guard bounds the result.
        return {"current_replicas": current, "replicas": max(current + 1, math.ceil(current * 1.5)) if current else 0}
    if operation == "shift_traffic":
        return {"away_from": entities.get("region") or entities.get("endpoint"), "shift_percent": 100}
    if operation == "apply_connection_liveness_template":
        return {"template": "connection-liveness", "template_version": "v1"}
    if operation == "restart_pod" and entities.get("pod"):
        return {"pod": entities["pod"], "pods_affected": 1}
    if operation == "delete_deployment":
        return {"requires_reason": True}
    return {}


def _no_action_plan(no_action: dict[str, Any], precedents: list[dict[str, Any]], subcategory: str) -> Plan:
    lines = no_action.get("evidence_lines", [])
    return Plan(
        mitigation="M5",
        operation="no_action",
        target=Target(kind="none"),
        risk="none",
        rationale=(
            f"No action needed: {'; '.join(lines)}. Decided because {no_action['why']}; every veto was checked "
            f"({'; '.join(no_action.get('checked', []))}). Keep watching the SLA; a human confirms the close-out."
            f"{precedent_note(precedents, subcategory)}"
        ),
        no_action_evidence=lines,
        no_action_checks=no_action.get("checked", []),
    )


def plan(
    rulebook: Rulebook,
    policy: Policy,
    incident: Incident,
    classification: Classification,
    entities: dict[str, str],
    precedents: list[dict[str, Any]] | None = None,
    no_action: dict[str, Any] | None = None,
) -> Plan:
    """Algorithm 1. "No action" first, as decided from its own evidence (`no_action`, from the classify
    step; assessed here from the incident alone when not given). An answer that needs a human is
    escalated with the playbook's suggestion in the rationale. Otherwise the subcategory's playbook,
    whose alternatives are chosen by their own evidence; precedents choose between alternatives when
    the incident does not, and never choose "no action" or a deletion."""
    precedents = precedents or []
    if no_action is None:
        no_action = no_action_decision(assess(rulebook.no_action, incident), None, None)
    if no_action["decided"]:
        return _no_action_plan(no_action, precedents, classification.subcategory)
    checks = no_action.get("checked", [])
    why_not_m5 = f" Not M5: {no_action['why']}."
    sub = rulebook.subcategories.get(classification.subcategory)

    if sub is None or classification.needs_human:
        suggestion = (
            f" The playbook for the best guess ({classification.category}/{classification.subcategory}) would be "
            f"{sub.plan.default} ({sub.plan.operation.replace('_', ' ')})."
            if sub is not None
            else ""
        )
        reason = classification.needs_human_reason or "the evidence does not support any category"
        return Plan(
            mitigation="M1",
            operation="escalate",
            risk="low",
            rationale=f"Needs a human: {reason}, so no automated action is safe.{suggestion}{why_not_m5}",
            no_action_checks=checks,
        )

    rule = sub.plan
    action, operation, target = rule.default, rule.operation, rule.target
    chosen_by = "the rulebook's playbook"
    shared = [a for a in rulebook.shared_alternatives if sub.category in a.categories]
    for alt in (*rule.alternatives, *shared):
        if _alternative_applies(alt, incident):
            action, operation, target = alt.action, alt.operation, alt.target or rule.target
            chosen_by = "the playbook's alternative for what the incident shows"
            break
    else:
        shares = mitigation_vote(precedents, classification.subcategory)
        for alt in rule.alternatives:
            if alt.action not in PRECEDENTS_NEVER_CHOOSE and shares.get(alt.action, 0.0) >= PRECEDENT_SHARE:
                action, operation = alt.action, alt.operation
                chosen_by = f"precedents ({shares[alt.action]:.0%} of similar incidents' fixes)"
                break
    if action == "M5":
        # The playbook expects nothing to need doing here, but "no action" was not decided: a human looks.
        action, operation = "M1", "escalate"
    rationale = (
        f"Classified {classification.category}/{classification.subcategory}; by {chosen_by} the action is "
        f"{action} ({operation.replace('_', ' ')}).{why_not_m5}"
        f"{precedent_note(precedents, classification.subcategory)}"
    )
    return build_plan(policy, incident, entities, action, operation, target, rationale, no_action_checks=checks)


# The operation used when something other than the rulebook (the LLM) picks only the action.
DEFAULT_OPERATION = {
    "M1": "escalate",
    "M2": "scale_out",
    "M3": "shift_traffic",
    "M4": "rollout_restart",
    "M5": "no_action",
    "M6": "delete_deployment",
}


def operation_for(rulebook: Rulebook, subcategory: str, action: str) -> tuple[str, str | None]:
    """The operation (and target kind) the rulebook pairs with this action for this subcategory."""
    sub = rulebook.subcategories.get(subcategory)
    if sub is not None:
        if sub.plan.default == action:
            return sub.plan.operation, sub.plan.target
        for alt in sub.plan.alternatives:
            if alt.action == action:
                return alt.operation, sub.plan.target
    return DEFAULT_OPERATION[action], None


def build_plan(
    policy: Policy,
    incident: Incident,
    entities: dict[str, str],
    action: str,
    operation: str,
    target_kind: str | None,
    rationale: str,
    no_action_evidence: list[str] | None = None,
    no_action_checks: list[str] | None = None,
) -> Plan:
    if operation == "restart_pod" and not entities.get("pod"):
        operation = "rollout_restart"
    kind = "pod" if operation == "restart_pod" else (target_kind or "deployment")
    op = policy.operation(operation)
    target = _target(kind, entities) if op.touches_cluster else _target("deployment", entities)
    return Plan(
        mitigation=action,  # type: ignore[arg-type]
        operation=operation,
        target=target,
        parameters=_parameters(operation, incident, entities),
        risk=op.risk,  # type: ignore[arg-type]
        touches_cluster=op.touches_cluster,
        rationale=rationale,
        no_action_evidence=no_action_evidence or [],
        no_action_checks=no_action_checks or [],
    )


__all__ = ["build_plan", "operation_for", "plan"]
