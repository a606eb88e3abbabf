from __future__ import annotations

from datetime import datetime
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.context import TriageContext
from agent.nodes._common import action_key, record
from agent.state import TriageState

# What the action row says while the guard's verdict stands.
_ROW_STATUS = {
    "denied": "denied",
    "approval_required": "approval_required",
    "already_mitigated": "already_mitigated",
}
_SETTLED = ("approved", "rejected", "executed", "executing", "failed")


def _valid_answer(answer: Any) -> dict[str, Any]:
    """An approval answer carries the identity a door authenticated (api/approvals_flow.py); a bare
    name is refused, so nothing can be approved by typing someone's name."""
    identity = answer.get("identity") if isinstance(answer, dict) else None
    if not isinstance(identity, dict) or not all(isinstance(identity.get(k), str) for k in ("person", "via")):
        raise ValueError(
            f"an approval answer needs {{'approved': bool, 'identity': {{person, via, ...}}}}, got {answer!r}"
        )
    return {
        "approved": answer.get("approved") is True,
        "reason": str(answer.get("reason") or ""),
        "attempt_id": str(answer.get("attempt_id") or ""),
        "identity": {k: str(identity.get(k) or "") for k in ("person", "via", "subject", "address")},
    }


def _explored(exploration: dict[str, Any] | None) -> dict[str, Any] | None:
    """The LLM tool loop's answer and findings for the approval message, without what only the
    dashboard shows (its calls, each finding's raw data such as a log tail): the request stays small."""
    if not exploration:
        return None
    kept = {k: v for k, v in exploration.items() if k not in ("calls", "findings")}
    kept["findings"] = [{k: v for k, v in f.items() if k != "data"} for f in exploration.get("findings") or []]
    return kept


def waiting_summary(state: TriageState, decision: dict[str, Any]) -> dict[str, Any]:
    """What a paused run shows wherever it is shown (CLI --json, store, bots): the classification, the
    plan, its risk, whether the target exists and what the dry run said."""
    classification, plan = state.get("classification") or {}, state["plan"]
    preflight = state.get("preflight") or {}
    return {
        "status": "awaiting_approval",
        "run_id": state["run_id"],
        "incident_id": state["incident"]["id"],
        **{k: classification.get(k) for k in ("category", "subcategory", "confidence", "engine")},
        # Enough for a DRI to decide from the chat message alone: how sure, why a human, what history says.
        **{k: classification.get(k) for k in ("needs_human", "needs_human_reason", "probabilities")},
        "evidence": (classification.get("evidence") or [])[:6],
        "precedents": (state.get("precedents") or [])[:3],
        "investigation": state.get("investigation"),
        "exploration": _explored(state.get("exploration")),
        "mitigation": plan["mitigation"],
        "plan": plan,
        "risk": decision.get("risk") or plan.get("risk"),
        "guard": decision,
        "target_check": preflight.get("target"),
        "dry_run": preflight.get("dry_run"),
    }


def _collect_approvals(
    ctx: TriageContext, state: TriageState, key: str, decision: dict[str, Any], requested_at: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pause until enough *different* authorised people approved in time. A rejection, a late approval,
    or a deletion approved without a reason ends it; an unknown person, a person whose roles do not
    cover this risk tier, or a second approval by the same person is refused and the run keeps waiting.
    Every answer is an audit row (idempotent by attempt id: this code re-runs on every resume)."""
    plan, run_id = state["plan"], state["run_id"]
    needed, risk = int(decision["approvals_required"]), str(decision.get("risk") or plan.get("risk"))
    approvers: list[str] = []
    answers: list[dict[str, Any]] = []

    def refuse(reason: str, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        ctx.recorder.update_action(key, status="rejected", reason=reason)
        return {**decision, "verdict": "rejected", "reasons": [reason], "refusal": kind}, answers

    while len(approvers) < needed:
        request = {
            "type": "approval",
            "run_id": run_id,
            "action": plan,
            "guard": decision,
            "approvals_so_far": list(approvers),
            "approvals_required": needed,
            "requested_at": requested_at.isoformat(),
            "summary": waiting_summary(state, decision),
        }
        answer = _valid_answer(interrupt(request))
        who = answer["identity"]
        person = ctx.approvers.get(who["person"])
        verb = "approve" if answer["approved"] else "reject"

        def audit(outcome: str, message: str, answer: dict[str, Any] = answer, verb: str = verb) -> None:
            attempt = {**answer["identity"], "decision": verb, "reason": answer["reason"]}
            attempt |= {"outcome": outcome, "message": message, "attempt_id": answer["attempt_id"]}
            ctx.recorder.record_approval_attempt(run_id, key, attempt)

        age = (ctx.clock() - requested_at).total_seconds()
        if person is None:
            audit("refused", f"{who['person']} is not a configured approver")
            continue
        answers.append({"by": person.id, **answer})
        if not answer["approved"]:
            audit("accepted", f"rejected by {person.id}")
            ctx.recorder.record_approval(key, person.id, "reject", answer["reason"])
            return refuse(f"rejected by {person.id}", "rejected")
        if age > ctx.policy.approval_ttl_seconds:
            message = (
                f"approval by {person.id} came {age:.0f}s after the request, past the "
                f"{ctx.policy.approval_ttl_seconds}s limit"
            )
            audit("expired", message)
            return refuse(message, "expired")
        if not person.may_approve(risk):
            audit(
                "refused", f"{person.id} may not approve {risk}-risk actions (roles: {', '.join(sorted(person.roles))})"
            )
            continue
        if person.id in approvers:
            audit("refused", f"{person.id} already approved this action; the next approval must be someone else's")
            continue
        if plan["mitigation"] == "M6" and not answer["reason"]:
            audit("refused", "a deletion needs a reason")
            return refuse(f"approval by {person.id} has no reason; a deletion needs one", "no_reason")
        approvers.append(person.id)
        audit("accepted", f"approval {len(approvers)} of {needed}")
        ctx.recorder.record_approval(key, person.id, "approve", answer["reason"])
    ctx.recorder.update_action(key, status="approved", reason=f"approved by {', '.join(approvers)}")
    return {**decision, "verdict": "approved", "reasons": [f"approved by {', '.join(approvers)}"]}, answers


def _verdict(preflight: dict[str, Any]) -> dict[str, Any]:
    """The policy's verdict, narrowed by what the cluster said: a target that does not exist makes the
    plan a proposal for a human (`unconfirmed`); a refused dry run is a denial with the API's reason."""
    decision = dict(preflight["decision"])
    target, dry = preflight.get("target"), preflight.get("dry_run")
    if target is not None and not target.get("exists"):
        reason = (
            f"target not confirmed: {target.get('detail')} was not found in the cluster "
            f"(named by {target.get('source')}); a proposal for a human, nothing is written"
        )
        return {**decision, "verdict": "unconfirmed", "reasons": [reason]}
    if dry is not None and dry.get("status") != "dry-run-ok":
        detail = f": {dry['api_error']}" if dry.get("api_error") else ""
        return {**decision, "verdict": "denied", "reasons": [f"dry run refused: {dry.get('reason')}{detail}"]}
    return decision


def guard(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """The guard's verdict (policy, target, dry run: see preflight), and human approval when it demands one.

    Everything before `interrupt()` runs again on resume, so it only does idempotent work.
    """
    ctx = runtime.context
    plan = state["plan"]
    decision = _verdict(state["preflight"])
    approvals: list[dict[str, Any]] = []
    if plan.get("touches_cluster"):
        key = action_key(state)
        stored = ctx.recorder.propose_action(state["run_id"], key, plan)
        if stored["status"] not in _SETTLED:
            changes: dict[str, Any] = {"status": _ROW_STATUS.get(decision["verdict"], "proposed")}
            changes["reason"] = "; ".join(decision["reasons"])
            if state["preflight"].get("dry_run") is not None:
                changes["dry_run"] = state["preflight"]["dry_run"]
            ctx.recorder.update_action(key, **changes)
        waits_for_humans = not ctx.propose_only and ctx.cluster is not None
        if decision["verdict"] == "approval_required" and waits_for_humans:
            requested_at = datetime.fromisoformat(stored["requested_at"])
            decision, approvals = _collect_approvals(ctx, state, key, decision, requested_at)
    record(runtime, state, "guard", f"{decision['verdict']}: {'; '.join(decision['reasons'])}", decision)
    return {"guard": decision, "approvals": approvals}
