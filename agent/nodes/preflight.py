from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import TriageContext
from agent.entities import target_source
from agent.nodes._common import record
from agent.state import TriageState
from tools.faults import DependencyFault, Fault
from tools.guard import evaluate


def preflight(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Everything the guard and the approvers need to know before anyone is asked, in its own
    checkpointed step (so a resumed approval never reads the cluster again): the policy's verdict,
    whether the target exists in the cluster, and the server-side dry run of the exact request.

    Reads only. A fault of the API server raises DependencyFault: the run is retried, then escalated.
    """
    ctx = runtime.context
    plan = state["plan"]
    source = target_source(plan.get("target") or {}, state.get("entities", {}), state.get("entity_sources", {}))
    decision = evaluate(
        ctx.policy,
        plan,
        now=ctx.clock(),
        recent_run=ctx.recorder.recent_action,
        target_source=source,  # type: ignore[arg-type]
    ).as_dict()
    out: dict[str, Any] = {"decision": decision, "target_source": source}
    acts = plan.get("touches_cluster") and ctx.cluster is not None and not ctx.propose_only
    if acts and ctx.cluster is not None and decision["verdict"] in ("allowed", "approval_required"):
        found = ctx.cluster.lookup(plan.get("target") or {})
        out["target"] = {**found, "source": source}
        if found.get("exists"):
            dry = ctx.cluster.dry_run(plan)
            if dry.status == "unavailable":
                raise DependencyFault(Fault(**dry.details["fault"]))
            out["dry_run"] = dry.model_dump(mode="json")
            out["dry_run_at"] = ctx.clock().isoformat()
    summary = f"{decision['verdict']}; target from {source}"
    if "target" in out:
        summary += f", {'exists' if out['target']['exists'] else 'NOT FOUND'} ({out['target']['detail']})"
    if "dry_run" in out:
        summary += f"; dry run {out['dry_run']['status']}: {out['dry_run']['reason']}"
    record(runtime, state, "preflight", summary, out)
    return {"preflight": out}
