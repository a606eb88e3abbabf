"""M1 escalation records: why automation stopped and what a human should do next. No cluster access."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def escalation_reason(state: Mapping[str, Any]) -> str:
    plan = state.get("plan", {})
    guard = state.get("guard", {})
    action = state.get("action") or {}
    verification = state.get("verification") or {}
    if verification and verification.get("status") != "verified":
        return f"SLA not restored after {plan.get('operation')}: {verification.get('reason') or verification['status']}"
    if action.get("status") == "failed":
        return f"{plan.get('operation')} failed: {action.get('reason')}"
    if guard.get("verdict") in ("denied", "rejected"):
        return f"guard {guard['verdict']} {plan.get('operation')}: {'; '.join(guard.get('reasons', []))}"
    if plan.get("mitigation") == "M2":
        return "capacity must be requested by a human (M2): no automated capacity source"
    return f"playbook calls for a human fix (M1, {plan.get('operation', 'escalate')})"


def build_escalation(state: Mapping[str, Any]) -> dict[str, Any]:
    incident = state.get("incident", {})
    plan = state.get("plan", {})
    return {
        "mitigation": "M1",
        "run_id": state.get("run_id"),
        "incident_id": incident.get("id"),
        "title": incident.get("title"),
        "reason": escalation_reason(state),
        "classification": {
            k: state.get("classification", {}).get(k) for k in ("category", "subcategory", "confidence")
        },
        "proposed": {
            "mitigation": plan.get("mitigation"),
            "operation": plan.get("operation"),
            "target": plan.get("target"),
        },
        "created_at": datetime.now(UTC).isoformat(),
    }
