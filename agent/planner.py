"""Algorithm 1 (taxonomy-triggered mitigation), extended from A3 to every category.

The planner turns a classification into one plan: an action M1-M6, an operation from the guard
policy's catalogue, a target, parameters, a risk tier and a rationale. "No action" (M5) is a
first-class outcome with its own evidence, and it is conservative: it needs positive evidence that
the impact has ended and no sign that it is ongoing or recurring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from agent.precedents import mitigation_vote, precedent_note
from agent.rulebook import Alternative, Rulebook, SignalRule
from agent.schemas import UNKNOWN, Classification, Incident, Plan, Target
from tools.guard import Policy

PRECEDENT_SHARE = 0.6  # precedents pick a playbook alternative only when they agree this strongly
PRECEDENTS_NEVER_CHOOSE = frozenset({"M5", "M6"})  # "no action" and deletion need their own evidence

# Signals where a high value is bad, and the level above which impact is ongoing. Only used to read
# "<metric>" against "<metric>_peak" for recovery; classification thresholds live in the rulebook.
_BAD_ABOVE = {
    "http_408_rate": 0.003,
    "http_429_rate": 0.02,
    "http_5xx_rate": 0.01,
    "error_rate": 0.01,
    "http_4xx_rate": 0.05,
    "ttft_p95_s": 3.0,
    "tpot_p95_s": 0.15,
    "e2e_p95_s": 30.0,
    "queue_depth": 50.0,
    "pod_restarts": 3.0,
    "nodes_not_ready": 1.0,
    "pods_pending": 1.0,
}


@dataclass
class NoActionAssessment:
    recovered: float = 0.0
    ongoing: float = 0.0
    evidence: list[str] = field(default_factory=list)
    against: list[str] = field(default_factory=list)

    def decides_m5(self, minimum: float) -> bool:
        return self.ongoing == 0 and self.recovered >= minimum


def assess_no_action(rulebook: Rulebook, incident: Incident) -> NoActionAssessment:
    out = NoActionAssessment()
    text = incident.text()
    for phrase in rulebook.recovered:
        if match := phrase.pattern.search(text):
            out.recovered += phrase.weight
            out.evidence.append(f"text says {match.group(0)!r}")
    for phrase in rulebook.ongoing:
        if match := phrase.pattern.search(text):
            out.ongoing += phrase.weight
            out.against.append(f"text says {match.group(0)!r}")
    if incident.alert is not None and incident.alert.status == "resolved":
        out.recovered += 3.0
        out.evidence.append("the alert is already resolved")
    signals = incident.signals
    for metric, limit in _BAD_ABOVE.items():
        if metric not in signals:
            continue
        now, peak = signals[metric], signals.get(f"{metric}_peak")
        if now >= limit:
            out.ongoing += 2.0
            out.against.append(f"{metric}={now:g} still at or above {limit:g}")
        elif peak is not None and peak >= limit:
            out.recovered += 2.5
            out.evidence.append(f"{metric} back to {now:g} (peak {peak:g}, threshold {limit:g})")
    if "sla" in signals and "sla_target" in signals:
        if signals["sla"] >= signals["sla_target"]:
            out.recovered += 1.5
            out.evidence.append(f"SLA {signals['sla']:g} meets target {signals['sla_target']:g}")
        else:
            out.ongoing += 2.0
            out.against.append(f"SLA {signals['sla']:g} below target {signals['sla_target']:g}")
    return out


def _alternative_applies(alt: Alternative, incident: Incident) -> bool:
    text = incident.text()
    if any(p.search(text) for p in alt.phrases):
        return True
    return any(rule.holds(incident.signals) is not None for rule in alt.signals)


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


def plan(
    rulebook: Rulebook,
    policy: Policy,
    incident: Incident,
    classification: Classification,
    entities: dict[str, str],
    precedents: list[dict[str, Any]] | None = None,
) -> Plan:
    """Algorithm 1. Precedents (similar past incidents) choose between the playbook's own alternatives
    when the incident's text and signals do not; they never choose "no action" or a deletion."""
    precedents = precedents or []
    assessment = assess_no_action(rulebook, incident)
    sub = rulebook.subcategories.get(classification.subcategory)

    if assessment.decides_m5(rulebook.no_action_min_evidence) and classification.category != UNKNOWN:
        return Plan(
            mitigation="M5",
            operation="no_action",
            target=Target(kind="none"),
            risk="none",
            rationale=(
                "No action needed: the impact has already ended and nothing suggests it is ongoing "
                f"({'; '.join(assessment.evidence)}). Keep watching the SLA; a human confirms the close-out."
                f"{precedent_note(precedents, classification.subcategory)}"
            ),
            no_action_evidence=assessment.evidence,
        )

    if sub is None:
        return Plan(
            mitigation="M1",
            operation="escalate",
            risk="low",
            rationale=(
                "The evidence does not support any rulebook category with enough confidence, so no automated "
                "action is safe: escalate to the DRI for diagnosis and a hotfix if needed."
            ),
        )

    rule = sub.plan
    action, operation = rule.default, rule.operation
    chosen_by = "the rulebook's playbook"
    for alt in rule.alternatives:
        if _alternative_applies(alt, incident):
            action, operation = alt.action, alt.operation
            break
    else:
        shares = mitigation_vote(precedents, classification.subcategory)
        for alt in rule.alternatives:
            if alt.action not in PRECEDENTS_NEVER_CHOOSE and shares.get(alt.action, 0.0) >= PRECEDENT_SHARE:
                action, operation = alt.action, alt.operation
                chosen_by = f"precedents ({shares[alt.action]:.0%} of similar incidents' fixes)"
                break
    if action == "M5" and assessment.ongoing > 0:
        # A detection/alerting problem with live impact still needs a human.
        action, operation = "M1", "escalate"
    why_not_m5 = (
        f" Not M5: {'; '.join(assessment.against)}."
        if assessment.against
        else " Not M5: no evidence that the impact has ended."
    )
    rationale = (
        f"Classified {classification.category}/{classification.subcategory}; by {chosen_by} the action is "
        f"{action} ({operation.replace('_', ' ')}).{why_not_m5}"
        f"{precedent_note(precedents, classification.subcategory)}"
    )
    return build_plan(policy, incident, entities, action, operation, rule.target, rationale)


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
    )


__all__ = ["NoActionAssessment", "SignalRule", "assess_no_action", "build_plan", "operation_for", "plan"]
