"""Writes a run's trail to the database: steps, actions, approvals, SLA checks and the final report.

Every write is its own short transaction so that a crash loses at most the step in flight, and
action rows are keyed by an idempotency key so that a resumed run never repeats a cluster action.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, Table, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.schemas import Incident
from store.ack_writes import RUNS, JobInStatement, store_new_incident
from store.approval_audit import record_attempt
from store.models import ActionRow, ApprovalRow, IncidentKeyRow, IncidentRow, RunRow, RunStepRow, SlaCheckRow

# A run's step record, written by every node of every triage: the same, built once (an ORM read, count
# and flush per step cost ~0.4 ms of Python more than these statements).
STEPS: Table = RunStepRow.__table__  # type: ignore[assignment]
_STEP_PARAMS = {"run": bindparam("b_run", type_=String), "node": bindparam("b_node", type_=String)}
_STEP_OF = (STEPS.c.run_id == _STEP_PARAMS["run"], STEPS.c.node == _STEP_PARAMS["node"])
_REPLACE_STEP = update(STEPS).where(*_STEP_OF).values(summary=bindparam("b_summary"), data=bindparam("b_data"))
_STEPS_SO_FAR = select(func.count()).select_from(STEPS).where(STEPS.c.run_id == _STEP_PARAMS["run"])
_INSERT_STEP = insert(STEPS)
_RUN_CLASSIFIED = (
    update(RUNS)
    .where(RUNS.c.id == _STEP_PARAMS["run"])
    .where(
        or_(
            RUNS.c.category.is_distinct_from(bindparam("b_category")),
            RUNS.c.subcategory.is_distinct_from(bindparam("b_subcategory")),
        )
    )
    .values(category=bindparam("b_category"), subcategory=bindparam("b_subcategory"))
)
_RUN_PLANNED = (
    update(RUNS)
    .where(RUNS.c.id == _STEP_PARAMS["run"], RUNS.c.mitigation.is_distinct_from(bindparam("b_mitigation")))
    .values(mitigation=bindparam("b_mitigation"))
)


# Incidents in these states are over: a new alert of their group is a new incident (a recurrence).
CLOSED_STATUSES = ("mitigated", "no_action", "rejected", "correlated", "alert_resolved", "already_mitigated")


class StoreRecorder:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._engine = sessions.kw["bind"]

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    # ---- incidents and runs -------------------------------------------------------------
    def save_incident(
        self, incident: Incident, *, source: str, payload: dict[str, Any], fingerprint: str | None = None
    ) -> bool:
        """Store an incident; False when one with this id is already stored (nothing changes)."""
        with self._sessions.begin() as session:
            if session.get(IncidentRow, incident.id) is not None:
                return False
            session.add(
                IncidentRow(
                    id=incident.id,
                    source=source,
                    title=incident.title,
                    payload=incident.model_dump(mode="json"),
                    raw=payload,
                    fingerprint=fingerprint,
                    started_at=incident.started_at,
                )
            )
            return True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One connection and one transaction for an alert's whole ack (its correlation lookups, the
        incident, its run, its job, its cause keys): one pool checkout and one commit per alert."""
        with self._engine.begin() as connection:
            yield connection

    def save_incident_with_run(
        self,
        incident: Incident,
        run_id: str,
        *,
        source: str,
        payload: dict[str, Any],
        engine: str,
        fingerprint: str | None = None,
        correlation_key: str | None = None,
        job: JobInStatement | None = None,
        cause_keys: Sequence[str] = (),
        connection: Connection | None = None,
    ) -> bool:
        """Store a new incident, its queued run, (`job`, on PostgreSQL) the run's job and the keys of
        what it is about (`cause_keys`, for correlating later alerts) in one transaction — the caller's
        (`connection`, inside `transaction()`) or one of its own; False for an incident already stored,
        and then nothing is written.

        The writes themselves are store/ack_writes.py's (the webhook's hot path).
        """
        with contextlib.nullcontext(connection) if connection is not None else self._engine.begin() as conn:
            return store_new_incident(
                conn,
                incident,
                run_id,
                source=source,
                payload=payload,
                engine=engine,
                fingerprint=fingerprint,
                correlation_key=correlation_key,
                job=job,
                cause_keys=cause_keys,
            )

    def start_run(self, run_id: str, incident_id: str, engine: str, status: str = "running") -> None:
        with self._sessions.begin() as session:
            if session.get(RunRow, run_id) is None:
                session.add(RunRow(id=run_id, incident_id=incident_id, engine=engine, status=status))

    def incident_for_run(self, run_id: str) -> Incident:
        """The incident as stored now (a `resolved` update that arrived while queued is included)."""
        with self._sessions() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise LookupError(f"no run {run_id}")
            return Incident.model_validate(run.incident.payload)

    def run_status(self, run_id: str) -> str | None:
        with self._sessions() as session:
            return session.scalar(select(RunRow.status).where(RunRow.id == run_id))

    def set_run_status(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        """A run's status; a paused run also stores what it waits on (category, plan, risk, dry run)
        in its report column, so every place that shows a run can show that."""
        with self._sessions.begin() as session:
            run = session.get(RunRow, run_id)
            if run is not None:
                run.status = status
                if summary is not None:
                    run.report = summary
                    run.category, run.subcategory = summary.get("category"), summary.get("subcategory")
                    run.confidence, run.mitigation = summary.get("confidence"), summary.get("mitigation")
                incident = session.get(IncidentRow, run.incident_id)
                if summary is not None and incident is not None and incident.status == "open":
                    incident.status = status

    def set_run_retry(self, run_id: str, attempts: int, next_attempt_at: datetime | None) -> None:
        with self._sessions.begin() as session:
            run = session.get(RunRow, run_id)
            if run is not None:
                run.attempts, run.next_attempt_at = attempts, next_attempt_at
                run.status = "retrying" if next_attempt_at is not None else run.status

    def run_attempts(self, run_id: str) -> int:
        with self._sessions() as session:
            run = session.get(RunRow, run_id)
            return 0 if run is None else int(run.attempts or 0)

    def runs_due(self) -> list[tuple[str, datetime | None]]:
        """Runs a previous process left unfinished: queued, running, or waiting for a retry (with when)."""
        with self._sessions() as session:
            rows = session.execute(
                select(RunRow.id, RunRow.next_attempt_at).where(RunRow.status.in_(("queued", "running", "retrying")))
            )
            return [(run_id, _aware(at) if at else None) for run_id, at in rows]

    def finish_run(self, run_id: str, *, status: str, report: dict[str, Any]) -> None:
        with self._sessions.begin() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                return
            run.status = status
            run.report = report
            run.category = report.get("category")
            run.subcategory = report.get("subcategory")
            run.confidence = report.get("confidence")
            run.mitigation = report.get("mitigation")
            run.closed_at, run.closed_without_human = _closure(session, run)
            incident = session.get(IncidentRow, run.incident_id)
            if incident is not None:
                incident.status = status

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                return None
            return {
                "id": run.id,
                "incident_id": run.incident_id,
                "status": run.status,
                "engine": run.engine,
                "category": run.category,
                "subcategory": run.subcategory,
                "mitigation": run.mitigation,
                "attempts": run.attempts,
                "report": run.report,
                "steps": [{"node": s.node, "summary": s.summary} for s in run.steps],
            }

    def pending_approval(self, run_id: str) -> dict[str, Any] | None:
        """The action a run waits to have approved, with who approved it so far (for the doors' checks)."""
        with self._sessions() as session:
            row = session.scalar(
                select(ActionRow).where(ActionRow.run_id == run_id, ActionRow.status == "approval_required")
            )
            if row is None:
                return None
            approved = [a.approver for a in row.approvals if a.decision == "approve"]
            return action_dict(row) | {"approved_by": approved}

    def latest_run_of(self, incident_id: str) -> dict[str, Any] | None:
        """The newest run of an incident (its id, status and report), or None for an unknown incident."""
        with self._sessions() as session:
            run = session.scalars(
                select(RunRow).where(RunRow.incident_id == incident_id).order_by(RunRow.created_at.desc()).limit(1)
            ).first()
            return None if run is None else {"id": run.id, "status": run.status, "report": run.report}

    def raw_for_run(self, run_id: str) -> dict[str, Any] | None:
        """What arrived for the run's incident (alert payload, chat message coordinates)."""
        with self._sessions() as session:
            run = session.get(RunRow, run_id)
            return None if run is None else run.incident.raw

    def runs_with_status(self, *statuses: str) -> list[str]:
        with self._sessions() as session:
            return list(session.scalars(select(RunRow.id).where(RunRow.status.in_(statuses))))

    # ---- steps --------------------------------------------------------------------------
    def record_step(self, run_id: str, node: str, summary: str, data: dict[str, Any]) -> None:
        """The node's row in the run's timeline; a node run again (on resume) replaces its row, keeping
        its place. Classify and plan also label the run (the gap report counts a run in flight by them);
        the run is written only when a label changes, as the ORM did (its `updated_at`, its triggers)."""
        params = {"b_run": run_id, "b_node": node, "b_summary": summary, "b_data": data}
        with self._engine.begin() as connection:
            if connection.execute(_REPLACE_STEP, params).rowcount == 0:
                seq = connection.execute(_STEPS_SO_FAR, params).scalar_one()
                row = {"run_id": run_id, "node": node, "seq": seq, "summary": summary, "data": data}
                connection.execute(_INSERT_STEP, row)
            if node == "classify":
                labels = {"b_category": data.get("category"), "b_subcategory": data.get("subcategory")}
                connection.execute(_RUN_CLASSIFIED, params | labels)
            elif node == "plan":
                connection.execute(_RUN_PLANNED, params | {"b_mitigation": data.get("mitigation")})

    # ---- actions and approvals ----------------------------------------------------------
    def propose_action(self, run_id: str, key: str, plan: dict[str, Any]) -> dict[str, Any]:
        """Create the action row for this key once; later calls return the stored row."""
        with self._sessions.begin() as session:
            row = session.scalar(select(ActionRow).where(ActionRow.idempotency_key == key))
            if row is None:
                row = ActionRow(
                    run_id=run_id,
                    idempotency_key=key,
                    mitigation=plan["mitigation"],
                    operation=plan["operation"],
                    target=plan.get("target", {}),
                    parameters=plan.get("parameters", {}),
                    risk=plan.get("risk", "low"),
                )
                session.add(row)
                session.flush()
            return action_dict(row)

    def update_action(self, key: str, **changes: Any) -> dict[str, Any]:
        with self._sessions.begin() as session:
            row = session.scalar(select(ActionRow).where(ActionRow.idempotency_key == key))
            if row is None:
                raise KeyError(key)
            for name, value in changes.items():
                setattr(row, name, value)
            session.flush()
            return action_dict(row)

    def record_approval(self, key: str, approver: str, decision: str, reason: str = "") -> None:
        with self._sessions.begin() as session:
            row = session.scalar(select(ActionRow).where(ActionRow.idempotency_key == key))
            if row is None:
                raise KeyError(key)
            exists = session.scalar(
                select(ApprovalRow).where(ApprovalRow.action_id == row.id, ApprovalRow.approver == approver)
            )
            if exists is None:
                session.add(ApprovalRow(action_id=row.id, approver=approver, decision=decision, reason=reason))

    def record_approval_attempt(self, run_id: str, key: str | None, attempt: dict[str, Any]) -> None:
        record_attempt(self._sessions, run_id, key, attempt)

    def recent_action(self, operation: str, target_name: str, since: datetime) -> str | None:
        """The run that executed this operation on this target since a moment, if any (for cooldowns)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ActionRow)
                .where(
                    ActionRow.operation == operation,
                    ActionRow.status == "executed",
                    ActionRow.updated_at >= since,
                )
                .order_by(ActionRow.updated_at.desc())
            )
            return next((r.run_id for r in rows if r.target.get("name") == target_name), None)

    def record_touched(self, run_id: str, keys: list[str]) -> None:
        """What an executed action of this run changed (tools: `touched_keys`), for correlating the
        alerts that action itself causes with this run's incident."""
        with self._sessions.begin() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                return
            for key in keys:
                session.add(IncidentKeyRow(incident_id=run.incident_id, key=key[:300], kind="touched", run_id=run_id))

    # ---- verification -------------------------------------------------------------------
    def record_sla_check(self, run_id: str, status: str, details: dict[str, Any]) -> None:
        with self._sessions.begin() as session:
            session.add(SlaCheckRow(run_id=run_id, status=status, details=details))


def _closure(session: Session, run: RunRow) -> tuple[datetime | None, bool | None]:
    """When a finished run ended the impact, and whether it did so with no human approving: the verify
    step of an executed and verified action, or the report of a "no action" decision. Anything else was
    not mitigated by mitigate (None, None)."""
    wanted = {"mitigated": "verify", "no_action": "report"}.get(run.status)
    if wanted is None:
        return None, None
    closed = session.scalar(
        select(RunStepRow.finished_at).where(RunStepRow.run_id == run.id, RunStepRow.node == wanted)
    )
    if closed is None:
        return None, None
    approved = session.scalar(
        select(func.count()).select_from(ApprovalRow).join(ActionRow).where(ActionRow.run_id == run.id)
    )
    return closed, run.status == "no_action" or not approved


def action_dict(row: ActionRow) -> dict[str, Any]:
    """An action row as the graph, the API and the timeline show it."""
    return {
        "key": row.idempotency_key,
        "mitigation": row.mitigation,
        "operation": row.operation,
        "target": row.target,
        "parameters": row.parameters,
        "risk": row.risk,
        "status": row.status,
        "reason": row.reason,
        "dry_run": row.dry_run,
        "result": row.result,
        "baseline": row.baseline,
        "requested_at": _aware(row.created_at).isoformat(),
    }


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time mitigate stores is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
