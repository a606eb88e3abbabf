"""What happens when a run's step meets a fault: it is recorded as a step, retried with backoff a bounded
number of times when doing it again is safe (tools/faults.py), and otherwise escalated with the reason
in the report — never a bare `failed`.

The escalation is written here, outside the graph, on purpose: the checkpoint stays at the step that
failed, so `mitigate runs retry ID` continues from exactly there (the verify of an executed action
with its baseline, the act of an approved one) once a human has fixed what was broken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.context import TriageContext
from agent.graph import build_graph
from agent.nodes._common import action_key
from agent.nodes.report import build_report
from api.runs import NotWaiting, RunOutcome
from store.recorder import StoreRecorder
from tools.escalation import build_escalation
from tools.faults import Fault, fault_of

log = logging.getLogger("mitigate.runs")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # attempts in all, the first included
    backoff_s: float = 5.0  # before the second attempt; doubled for each next one
    max_backoff_s: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempt - 1)))


def run_guarded(
    call: Callable[[], RunOutcome],
    run_id: str,
    *,
    recorder: StoreRecorder,
    context: TriageContext,
    checkpointer: Any,
    retry: RetryPolicy,
) -> RunOutcome:
    """Run one attempt; a fault becomes `retrying` (with the delay) or `escalated`, never an exception."""
    try:
        return call()
    except NotWaiting:
        raise
    except Exception as exc:
        return on_fault(run_id, exc, recorder=recorder, context=context, checkpointer=checkpointer, retry=retry)


def run_to_end(
    first: Callable[[], RunOutcome],
    then: Callable[[], RunOutcome],
    run_id: str,
    *,
    recorder: StoreRecorder,
    context: TriageContext,
    checkpointer: Any,
    retry: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> RunOutcome:
    """For the CLI, which has no worker: wait out each backoff in-process until the run ends or escalates."""
    outcome = run_guarded(first, run_id, recorder=recorder, context=context, checkpointer=checkpointer, retry=retry)
    while outcome.status == "retrying" and outcome.retry_in is not None:
        sleep(outcome.retry_in)
        outcome = run_guarded(then, run_id, recorder=recorder, context=context, checkpointer=checkpointer, retry=retry)
    return outcome


def on_fault(
    run_id: str,
    exc: BaseException,
    *,
    recorder: StoreRecorder,
    context: TriageContext,
    checkpointer: Any,
    retry: RetryPolicy,
) -> RunOutcome:
    fault = fault_of(exc)
    attempt = recorder.run_attempts(run_id) + 1
    data = {"attempt": attempt, "of": retry.attempts, "fault": fault.as_dict()}
    if fault.retryable and attempt < retry.attempts:
        delay = retry.delay(attempt)
        recorder.set_run_retry(run_id, attempt, datetime.now(UTC) + timedelta(seconds=delay))
        summary = f"attempt {attempt} of {retry.attempts}: {fault.describe()}; retrying in {delay:g} s"
        recorder.record_step(run_id, f"fault-{attempt}", summary, data | {"retry_in_s": delay})
        log.warning("run %s: %s", run_id, summary)
        return RunOutcome(run_id, "retrying", None, retry_in=delay)
    if fault.dependency == "mitigate":
        log.error("run %s stopped on an error of mitigate itself", run_id, exc_info=exc)
    recorder.set_run_retry(run_id, attempt, None)
    why = f"after {attempt} attempts" if fault.retryable else "(not safe to repeat automatically)"
    summary = f"attempt {attempt}: {fault.describe()} {why}; escalated"
    recorder.record_step(run_id, f"fault-{attempt}", summary, data)
    state = dict(build_graph(checkpointer).get_state({"configurable": {"thread_id": run_id}}).values)
    report = _escalate(run_id, state, fault, why, recorder, context)
    recorder.finish_run(run_id, status="escalated", report=report)
    return RunOutcome(run_id, "escalated", report)


def _escalate(
    run_id: str, state: dict[str, Any], fault: Fault, why: str, recorder: StoreRecorder, context: TriageContext
) -> dict[str, Any]:
    """The escalation and report of a run a fault ended: what it had decided so far, and the fault."""
    state.setdefault("run_id", run_id)
    escalation = build_escalation(state)
    escalation["reason"] = f"dependency fault {why}: {fault.describe()}"
    escalation["fault"] = fault.as_dict()
    step = state.get("plan") and _stopped_at(state)
    if step:
        escalation["reason"] += f" (stopped at {step}; `mitigate runs retry {run_id}` continues from there)"
    if context.notify is not None:
        try:
            context.notify(escalation)
            escalation["notified"] = True
        except Exception as exc:  # the record must survive a broken pager hook
            escalation |= {"notified": False, "notify_error": f"{type(exc).__name__}: {exc}"}
    recorder.record_step(run_id, "escalate", escalation["reason"], escalation)
    plan = state.get("plan")
    if plan and plan.get("touches_cluster") and (state.get("guard") or {}).get("verdict") in ("allowed", "approved"):
        key = action_key(state)  # type: ignore[arg-type]
        action = recorder.propose_action(run_id, key, plan)
        if action["status"] not in ("executed", "failed"):
            recorder.update_action(key, status="failed", reason=f"not executed: {escalation['reason']}")
    if state.get("classification") and plan:
        report = build_report({**state, "escalation": escalation}, context.rulebook.version, context.policy.version)  # type: ignore[typeddict-item]
    else:
        incident = state.get("incident") or {}
        report = {
            "incident_id": incident.get("id"),
            "run_id": run_id,
            "status": "escalated",
            "category": "unknown",
            "subcategory": "unknown",
            "confidence": 0.0,
            "engine": "none",
            "mitigation": "M1",
            "plan": {"mitigation": "M1", "operation": "escalate", "target": {}, "risk": "low", "rationale": ""},
            "escalation": escalation,
            "actions": [],
            "notes": [escalation["reason"]],
        }
    report["status"] = "escalated"
    return report


def _stopped_at(state: dict[str, Any]) -> str:
    if state.get("verification") is None and (state.get("action") or {}).get("status") == "executed":
        return "verify"
    if state.get("guard") and not state.get("action"):
        return "act"
    return "the step after the last one recorded"
