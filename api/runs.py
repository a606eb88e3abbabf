"""Start and resume triage runs: store the incident first, then run the graph on a checkpointed thread.

Every way in (CLI now, REST/webhooks/chat later) goes through here, so none has its own logic.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.types import Command

from agent.context import TriageContext
from agent.graph import build_graph
from agent.schemas import Incident
from store.ack_writes import JobInStatement
from store.recorder import StoreRecorder


@dataclass
class RunOutcome:
    run_id: str
    status: str
    report: dict[str, Any] | None
    waiting_for: dict[str, Any] | None = None
    retry_in: float | None = None  # status `retrying`: seconds until the next attempt

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "report": self.report, "waiting_for": self.waiting_for}


class NotWaiting(ValueError):
    """An approval answer for a run that is not (or no longer) waiting for one."""


def _finish(recorder: StoreRecorder, run_id: str, result: dict[str, Any]) -> RunOutcome:
    interrupts = result.get("__interrupt__")
    if interrupts:
        waiting = interrupts[0].value
        recorder.set_run_status(run_id, "awaiting_approval", waiting.get("summary"))
        return RunOutcome(run_id, "awaiting_approval", None, waiting)
    report = result["report"]
    recorder.finish_run(run_id, status=report["status"], report=report)
    return RunOutcome(run_id, report["status"], report)


def create_run(
    incident: Incident,
    *,
    source: str,
    payload: dict[str, Any],
    recorder: StoreRecorder,
    engine: str,
    fingerprint: str | None = None,
    correlation_key: str | None = None,
    enqueue: Callable[[str], JobInStatement] | None = None,
    cause_keys: Sequence[str] = (),
    connection: Any = None,
) -> str | None:
    """Store the incident and a queued run, committed before anyone is told "accepted"; `enqueue` gives
    the run's job, written by the same statement (the PostgreSQL queue), `cause_keys` what the incident
    is about (correlation). With `connection`, all of it joins the caller's transaction.

    Returns the run id, or None when the incident was already stored (a duplicate delivery).
    """
    run_id = uuid.uuid4().hex
    stored = recorder.save_incident_with_run(
        incident,
        run_id,
        source=source,
        payload=payload,
        engine=engine,
        fingerprint=fingerprint,
        correlation_key=correlation_key,
        job=None if enqueue is None else enqueue(run_id),
        cause_keys=cause_keys,
        connection=connection,
    )
    return run_id if stored else None


def execute_run(run_id: str, *, recorder: StoreRecorder, context: TriageContext, checkpointer: Any) -> RunOutcome:
    """Run (or continue) a stored run. Safe to call again after a crash: it resumes from the checkpoint."""
    config: dict[str, Any] = {"configurable": {"thread_id": run_id}}
    graph = build_graph(checkpointer)
    snapshot = graph.get_state(config)
    if snapshot.values:
        return resume_run(run_id, recorder=recorder, context=context, checkpointer=checkpointer)
    incident = recorder.incident_for_run(run_id)
    recorder.set_run_status(run_id, "running")
    result = graph.invoke(
        {"run_id": run_id, "incident": incident.model_dump(mode="json")},
        config=config,
        context=context,
        durability="sync",
    )
    return _finish(recorder, run_id, result)


def start_run(
    incident: Incident,
    *,
    source: str,
    payload: dict[str, Any],
    recorder: StoreRecorder,
    context: TriageContext,
    checkpointer: Any,
) -> RunOutcome:
    """Store and run at once (the CLI). A repeated incident id gets a new run on the stored incident."""
    run_id = create_run(
        incident, source=source, payload=payload, recorder=recorder, engine="llm" if context.llm else "rulebook"
    )
    if run_id is None:
        run_id = uuid.uuid4().hex
        recorder.start_run(run_id, incident.id, "llm" if context.llm else "rulebook", status="queued")
    return execute_run(run_id, recorder=recorder, context=context, checkpointer=checkpointer)


def resume_run(
    run_id: str,
    *,
    recorder: StoreRecorder,
    context: TriageContext,
    checkpointer: Any,
    answer: dict[str, Any] | None = None,
) -> RunOutcome:
    """Continue a run from its last checkpoint: after a crash (answer None) or with an approval answer."""
    config: dict[str, Any] = {"configurable": {"thread_id": run_id}}
    graph = build_graph(checkpointer)
    snapshot = graph.get_state(config)
    if not snapshot.values:
        raise LookupError(f"no checkpoint for run {run_id}")
    if not snapshot.next:
        if answer is not None:
            raise NotWaiting(f"run {run_id} has finished; it is not waiting for an approval")
        report = snapshot.values.get("report")
        if report and recorder.run_status(run_id) in ("queued", "running", "retrying"):
            # The graph ended but the process died before recording it (between the last checkpoint and
            # finish_run): record it now, or the run would stay `running` for ever.
            return _finish(recorder, run_id, dict(snapshot.values))
        return RunOutcome(run_id, snapshot.values.get("status", "unknown"), report)
    waiting = any(task.interrupts for task in snapshot.tasks)
    if waiting and answer is None:
        return RunOutcome(run_id, "awaiting_approval", None, snapshot.tasks[0].interrupts[0].value)
    if not waiting and answer is not None:
        raise NotWaiting(f"run {run_id} is not waiting for an approval")
    command: Any = Command(resume=answer) if answer is not None else None
    recorder.set_run_status(run_id, "running")
    result = graph.invoke(command, config=config, context=context, durability="sync")
    return _finish(recorder, run_id, result)
