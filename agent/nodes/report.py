from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.nodes._common import record
from agent.state import TriageState


def run_status(state: TriageState) -> str:
    """The run's outcome in one word, derived from what happened rather than stored separately."""
    action = state.get("action") or {}
    verification = state.get("verification") or {}
    if state.get("guard", {}).get("verdict") == "rejected":
        return "rejected"
    if state.get("escalation"):
        return "escalated"
    if state["plan"]["mitigation"] == "M5":
        return "no_action"
    if state.get("guard", {}).get("verdict") == "already_mitigated":
        return "already_mitigated"
    if action.get("status") == "executed" and verification.get("status") == "verified":
        return "mitigated"
    if action.get("status") == "executed" and verification.get("status") == "nothing_to_verify":
        return "nothing_to_verify"
    return "proposed"


def _honest_notes(state: TriageState) -> list[str]:
    """What was not done or not checked, said plainly."""
    notes = []
    if state.get("degraded"):
        notes.append(f"{state['degraded']} (its answers are not calibrated)")
    classification = state.get("classification") or {}
    if classification.get("needs_human"):
        notes.append(f"needs a human: {classification.get('needs_human_reason') or 'low confidence'}")
    unmapped = (state.get("signal_names") or {}).get("unmapped") or []
    if unmapped:
        notes.append(f"signals no rule reads: {', '.join(unmapped[:20])}")
    retrieval = state.get("retrieval") or {}
    if retrieval.get("status") != "ok":
        notes.append(retrieval.get("note", "no precedents"))
    action = state.get("action")
    if action and action.get("status") != "executed":
        notes.append(action.get("reason") or f"action {action.get('status')}")
    verification = state.get("verification")
    if verification:
        if verification.get("status") != "verified":
            notes.append(verification.get("reason") or f"SLA {verification.get('status')}")
    elif state["plan"].get("touches_cluster") or state["plan"]["mitigation"] == "M5":
        notes.append(
            "SLA not verified: nothing was executed"
            if state["plan"]["mitigation"] != "M5"
            else "SLA not verified automatically: a human confirms the no-action close-out"
        )
    guard = state.get("guard") or {}
    if guard.get("verdict") in ("already_mitigated", "unconfirmed"):
        notes.extend(guard.get("reasons") or [])
    for fallback in state.get("fallbacks", []):
        answered = "the rulebook" if state.get("degraded") else "the calibrated model"
        notes.append(f"LLM {fallback['stage']} fell back to {answered} ({fallback['kind']})")
    exploration = state.get("exploration") or {}
    if exploration.get("steps") and exploration.get("stop_reason") != "done":
        notes.append(f"LLM investigation stopped early ({exploration['stop_reason']})")
    for gap in (exploration.get("gaps") or [])[:5]:
        notes.append(f"not read ({gap['source']}): {gap['reason']}")
    escalation = state.get("escalation") or {}
    if escalation.get("fault"):
        notes.append(escalation["reason"])
    return notes


def build_report(state: TriageState, rulebook_version: str, policy_version: str) -> dict[str, Any]:
    """The report of a run from its state: by the report node, and by the run machinery when a
    dependency fault ended the run before the graph could (api/run_faults.py)."""
    classification, plan = state["classification"], state["plan"]
    status = run_status(state)
    action = state.get("action")
    preflight = state.get("preflight") or {}
    return {
        "incident_id": state["incident"]["id"],
        "run_id": state["run_id"],
        "status": status,
        "category": classification["category"],
        "subcategory": classification["subcategory"],
        "confidence": classification["confidence"],
        "needs_human": classification.get("needs_human", False),
        "needs_human_reason": classification.get("needs_human_reason", ""),
        "probabilities": classification.get("probabilities", {}),
        "engine": classification["engine"],
        "model": state.get("model"),
        "no_action": state.get("no_action"),
        "signal_names": state.get("signal_names"),
        "llm_verdict": state.get("llm_verdict"),
        "mitigation": plan["mitigation"],
        "plan": plan,
        "evidence": classification.get("evidence", []),
        "precedents": state.get("precedents", []),
        "cluster_evidence": state.get("cluster_evidence"),
        "investigation": state.get("investigation"),
        "exploration": state.get("exploration"),
        "localization": state.get("localization"),
        "guard": state.get("guard", {}),
        "risk": (state.get("guard") or {}).get("risk") or plan.get("risk"),
        "target_check": preflight.get("target"),
        "dry_run": preflight.get("dry_run"),
        "approvals": state.get("approvals", []),
        "actions": [action] if action else [],
        "verification": state.get("verification"),
        "escalation": state.get("escalation"),
        "fallbacks": state.get("fallbacks", []),
        "llm_usage": state.get("llm_usage", []),
        "notes": _honest_notes(state),
        "rulebook_version": rulebook_version,
        "policy_version": policy_version,
    }


def report(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    body = build_report(state, runtime.context.rulebook.version, runtime.context.policy.version)
    status, plan = body["status"], state["plan"]
    record(runtime, state, "report", f"{status}: {plan['mitigation']} {plan['operation']}", {"status": status})
    return {"report": body, "status": status}
