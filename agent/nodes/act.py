from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.nodes._common import action_key, record
from agent.state import TriageState


def act(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Carry out an allowed or approved plan: dry run first, then execute, exactly once per run."""
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
        action = ctx.recorder.update_action(
            key, status="proposed", reason=f"proposed, not executed: guard verdict {verdict}"
        )
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
        dry = ctx.cluster.dry_run(plan)
        action = ctx.recorder.update_action(key, dry_run=dry.model_dump(mode="json"))
        if dry.status != "dry-run-ok":
            refusal = f"dry run refused: {dry.reason}" + (f": {dry.api_error}" if dry.api_error else "")
            action = ctx.recorder.update_action(key, status="failed", reason=refusal)
        else:
            ctx.recorder.update_action(key, status="executing")
            result = ctx.cluster.execute(plan)
            reason = result.reason + (f": {result.api_error}" if result.api_error else "")
            action = ctx.recorder.update_action(
                key, status=result.status, reason=reason, result=result.model_dump(mode="json")
            )
    record(runtime, state, "act", f"{action['status']}: {action['reason']}", action)
    return {"action": action}
