from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.nodes._common import incident_of, observer, record
from agent.state import TriageState
from tools.faults import DependencyFault, fault_of


def verify(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Check that the action fixed its symptom, against the baseline taken before it (kept on the action
    row, so a resumed run compares with the same "before"). No data is never success: `unverified`.
    Prometheus or the API server failing mid-check raises DependencyFault: the run retries this step."""
    ctx = runtime.context
    plan, action = state["plan"], state.get("action") or {}
    if ctx.sla is None:
        verification: dict[str, Any] = {"status": "unverified", "reason": "SLA unverified: no Prometheus configured"}
    else:
        owners = list(((action.get("result") or {}).get("details") or {}).get("owners") or [])
        try:
            verification = ctx.sla.verify(plan, incident_of(state), action.get("baseline"), observer(ctx, plan, owners))
        except Exception as exc:  # a verifier's own error ends in escalation, not a crash
            fault = fault_of(exc)
            if fault.retryable:
                raise DependencyFault(fault) from exc
            verification = {"status": "unverified", "reason": f"SLA unverified: {fault.describe()}"}
    ctx.recorder.record_sla_check(state["run_id"], verification["status"], verification)
    record(runtime, state, "verify", verification.get("reason") or verification["status"], verification)
    return {"verification": verification}
