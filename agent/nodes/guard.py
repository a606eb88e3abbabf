from __future__ import annotations

from datetime import datetime
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.context import TriageContext
from agent.nodes._common import action_key, record
from agent.state import TriageState
from tools.guard import evaluate


def _valid_answer(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get("by"), str) or not answer["by"].strip():
        raise ValueError(f"an approval answer needs {{'approved': bool, 'by': name}}, got {answer!r}")
    return {
        "approved": answer.get("approved") is True,
        "by": answer["by"].strip(),
        "reason": str(answer.get("reason") or ""),
    }


def _collect_approvals(
    ctx: TriageContext, state: TriageState, key: str, decision: dict[str, Any], requested_at: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pause until enough *different* people approved in time; any rejection, a late approval, or a
    deletion approved without a reason ends it. Each pause resumes with one person's answer."""
    plan = state["plan"]
    needed = int(decision["approvals_required"])
    approvers: set[str] = set()
    answers: list[dict[str, Any]] = []

    def refuse(reason: str, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        ctx.recorder.update_action(key, status="rejected", reason=reason)
        return {**decision, "verdict": "rejected", "reasons": [reason], "refusal": kind}, answers

    while len(approvers) < needed:
        request = {
            "type": "approval",
            "run_id": state["run_id"],
            "action": plan,
            "guard": decision,
            "approvals_so_far": sorted(approvers),
            "approvals_required": needed,
            "requested_at": requested_at.isoformat(),
        }
        answer = _valid_answer(interrupt(request))
        answers.append(answer)
        age = (ctx.clock() - requested_at).total_seconds()
        if answer["approved"] and age > ctx.policy.approval_ttl_seconds:
            ctx.recorder.record_approval(key, answer["by"], "expired", answer["reason"])
            return refuse(
                f"approval by {answer['by']} came {age:.0f}s after the request, past the "
                f"{ctx.policy.approval_ttl_seconds}s limit",
                "expired",
            )
        ctx.recorder.record_approval(key, answer["by"], "approve" if answer["approved"] else "reject", answer["reason"])
        if not answer["approved"]:
            return refuse(f"rejected by {answer['by']}", "rejected")
        if plan["mitigation"] == "M6" and not answer["reason"]:
            return refuse(f"approval by {answer['by']} has no reason; a deletion needs one", "no_reason")
        approvers.add(answer["by"])  # the same person approving twice still counts once
    ctx.recorder.update_action(key, status="approved", reason=f"approved by {', '.join(sorted(approvers))}")
    return {**decision, "verdict": "approved", "reasons": [f"approved by {', '.join(sorted(approvers))}"]}, answers


def guard(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Judge the plan by policy; pause for human approval when the policy demands it.

    Everything before `interrupt()` runs again on resume, so it only does idempotent work.
    """
    ctx = runtime.context
    plan = state["plan"]
    decision = evaluate(ctx.policy, plan, now=ctx.clock(), recent_count=ctx.recorder.recent_actions).as_dict()
    approvals: list[dict[str, Any]] = []
    if plan.get("touches_cluster"):
        key = action_key(state)
        stored = ctx.recorder.propose_action(state["run_id"], key, plan)
        status = {"denied": "denied", "approval_required": "approval_required"}.get(decision["verdict"], "proposed")
        if stored["status"] not in ("approved", "rejected", "executed", "executing", "failed"):
            ctx.recorder.update_action(key, status=status, reason="; ".join(decision["reasons"]))
        waits_for_humans = not ctx.propose_only and ctx.cluster is not None
        if decision["verdict"] == "approval_required" and waits_for_humans:
            requested_at = datetime.fromisoformat(stored["requested_at"])
            decision, approvals = _collect_approvals(ctx, state, key, decision, requested_at)
    record(runtime, state, "guard", f"{decision['verdict']}: {'; '.join(decision['reasons'])}", decision)
    return {"guard": decision, "approvals": approvals}
