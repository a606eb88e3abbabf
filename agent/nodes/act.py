from __future__ import annotations

from datetime import datetime
from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.entities import touched_keys
from agent.nodes._common import action_key, incident_of, observer, record
from agent.schemas import ToolResult
from agent.state import TriageState
from tools.faults import DependencyFault, Fault

FRESH_DRY_RUN_S = 60.0  # a preflight dry run younger than this stands for an allowed plan's write


def _fault(result: ToolResult) -> Fault:
    return Fault(**result.details["fault"])


def _baseline(ctx: TriageContext, state: TriageState, owners: list[str]) -> dict[str, Any] | None:
    """The symptoms before the write, kept on the action row so that a resumed verify uses them. A
    Prometheus that is down must not hold back the mitigation: the baseline then says why it is missing."""
    if ctx.sla is None:
        return None
    try:
        return ctx.sla.baseline(state["plan"], incident_of(state), observer(ctx, state["plan"], owners))
    except Exception as exc:  # verification will check every symptom instead
        return {"error": f"{type(exc).__name__}: {exc}"[:500], "values": {}}


def _recent_dry_run(ctx: TriageContext, state: TriageState) -> ToolResult | None:
    preflight = state.get("preflight") or {}
    if not preflight.get("dry_run") or not preflight.get("dry_run_at"):
        return None
    age = (ctx.clock() - datetime.fromisoformat(preflight["dry_run_at"])).total_seconds()
    return ToolResult(**preflight["dry_run"]) if age < FRESH_DRY_RUN_S else None


def act(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Carry out an allowed or approved plan: dry run first, then execute, exactly once per run.

    A fault of the API server before the write (the dry run, or an execute that never reached the
    server) raises DependencyFault with the action row back as it was: the run is retried later. A
    write whose answer was lost is never repeated: the action fails with "outcome unknown"."""
    ctx = runtime.context
    plan, verdict = state["plan"], state["guard"]["verdict"]
    key = action_key(state)
    stored = ctx.recorder.propose_action(state["run_id"], key, plan)
    if ctx.propose_only:
        action = ctx.recorder.update_action(key, status="proposed", reason="proposed, not executed: propose-only mode")
    elif ctx.cluster is None:
        action = ctx.recorder.update_action(
            key, status="proposed", reason="proposed, not executed: no cluster configured"
        )
    elif verdict not in ("allowed", "approved"):
        why = "; ".join(state["guard"].get("reasons") or []) or f"guard verdict {verdict}"
        action = ctx.recorder.update_action(key, status="proposed", reason=f"proposed, not executed: {why}")
    elif stored["status"] in ("executed", "executing"):
        # A resumed run reaches here again after a crash: never repeat the write. "executing" means we
        # died mid-call and cannot know the outcome, so a human must look.
        action = (
            stored
            if stored["status"] == "executed"
            else ctx.recorder.update_action(
                key, status="failed", reason="interrupted while executing; outcome unknown, not repeated"
            )
        )
    else:
        # Allowed without a human wait: the preflight's dry run was a moment ago, it stands. After an
        # approval, or a retry (minutes or hours later), the request is dry-run again before the write.
        dry = _recent_dry_run(ctx, state) if verdict == "allowed" else None
        dry = dry or ctx.cluster.dry_run(plan)
        if dry.status == "unavailable":
            ctx.recorder.update_action(key, reason=f"not executed yet: dry run met {dry.reason}")
            raise DependencyFault(_fault(dry))
        action = ctx.recorder.update_action(key, dry_run=dry.model_dump(mode="json"))
        if dry.status != "dry-run-ok":
            refusal = f"dry run refused: {dry.reason}" + (f": {dry.api_error}" if dry.api_error else "")
            action = ctx.recorder.update_action(key, status="failed", reason=refusal)
        else:
            baseline = _baseline(ctx, state, list(dry.details.get("owners") or []))
            ctx.recorder.update_action(key, status="executing", baseline=baseline)
            result = ctx.cluster.execute(plan)
            reason = result.reason + (f": {result.api_error}" if result.api_error else "")
            if result.status == "unavailable" and _fault(result).retryable:
                # Nothing reached the API server: the action is as it was before this attempt.
                ctx.recorder.update_action(key, status=stored["status"], reason=f"not executed yet: {reason}")
                raise DependencyFault(_fault(result))
            if result.status == "unavailable":
                reason = f"outcome unknown, not repeated; check the cluster: {reason}"
            status = "failed" if result.status == "unavailable" else result.status
            action = ctx.recorder.update_action(
                key, status=status, reason=reason, result=result.model_dump(mode="json")
            )
            if status == "executed":
                ctx.recorder.record_touched(state["run_id"], touched_keys(plan, action["result"]))
    record(runtime, state, "act", f"{action['status']}: {action['reason']}", action)
    return {"action": action}
