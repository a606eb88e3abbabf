from __future__ import annotations

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
        ctx.recorder.propose_action(state["run_id"], key, plan)
        status = {"denied": "denied", "approval_required": "approval_required"}.get(decision["verdict"], "proposed")
        ctx.recorder.update_action(key, status=status, reason="; ".join(decision["reasons"]))
        waits_for_humans = not ctx.propose_only and ctx.cluster is not None
        if decision["verdict"] == "approval_required" and waits_for_humans:
            needed = int(decision["approvals_required"])
            approvers: set[str] = set()
            while len(approvers) < needed:
                answer = _valid_answer(
                    interrupt(
                        {
                            "type": "approval",
                            "run_id": state["run_id"],
                            "action": plan,
                            "guard": decision,
                            "approvals_so_far": sorted(approvers),
                            "approvals_required": needed,
                        }
                    )
                )
                ctx.recorder.record_approval(
                    key, answer["by"], "approve" if answer["approved"] else "reject", answer["reason"]
                )
                approvals.append(answer)
                if not answer["approved"]:
                    decision = {**decision, "verdict": "rejected", "reasons": [f"rejected by {answer['by']}"]}
                    ctx.recorder.update_action(key, status="rejected", reason=f"rejected by {answer['by']}")
                    break
                if plan["mitigation"] == "M6" and not answer["reason"]:
                    decision = {
                        **decision,
                        "verdict": "rejected",
                        "reasons": [f"approval by {answer['by']} has no reason; deletion needs one"],
                    }
                    ctx.recorder.update_action(key, status="rejected", reason="approval without a reason")
                    break
                approvers.add(answer["by"])  # the same person approving twice still counts once
            else:
                approved_by = ", ".join(sorted(approvers))
                decision = {**decision, "verdict": "approved", "reasons": [f"approved by {approved_by}"]}
                ctx.recorder.update_action(key, status="approved", reason=decision["reasons"][0])
    record(runtime, state, "guard", f"{decision['verdict']}: {'; '.join(decision['reasons'])}", decision)
    return {"guard": decision, "approvals": approvals}
