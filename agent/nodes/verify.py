from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.nodes._common import incident_of, record
from agent.state import TriageState


def verify(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Check the SLA after an executed action. No data is never success: it is `unverified`."""
    ctx = runtime.context
    if ctx.sla is None:
        verification: dict[str, Any] = {"status": "unverified", "reason": "SLA unverified: no Prometheus configured"}
    else:
        try:
            verification = ctx.sla.verify(state["plan"], incident_of(state))
        except Exception as exc:  # an unreachable Prometheus must end in escalation, not a crash
            verification = {"status": "unverified", "reason": f"SLA unverified: {type(exc).__name__}: {exc}"}
    ctx.recorder.record_sla_check(state["run_id"], verification["status"], verification)
    record(runtime, state, "verify", verification.get("reason") or verification["status"], verification)
    return {"verification": verification}
