"""Writes a run's trail to the database: steps, actions, approvals, SLA checks and the final report.

Every write is its own short transaction so that a crash loses at most the step in flight, and
action rows are keyed by an idempotency key so that a resumed run never repeats a cluster action.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agent.schemas import Incident
from store.models import ActionRow, ApprovalRow, IncidentRow, RunRow, RunStepRow, SlaCheckRow

_INSERT_INCIDENT = insert(IncidentRow)
_INSERT_RUN = insert(RunRow)


# Incidents in these states are over: a new alert of their group is a new incident (a recurrence).
CLOSED_STATUSES = ("mitigated", "no_action", "rejected", "correlated", "alert_resolved")


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
    ) -> bool:
        """Store a new incident and its queued run in one transaction; False for an incident already stored.

        Core inserts with the primary key as the dedup check: this is the webhook hot path, and the ORM's
        unit of work cost more than the database here.
        """
        now = datetime.now(UTC)
        incident_row = {
            "id": incident.id,
            "source": source,
            "title": incident.title,
            "status": "open",
            "payload": incident.model_dump(mode="json"),
            "raw": payload,
            "fingerprint": fingerprint,
            "correlation_key": correlation_key,
            "started_at": incident.started_at,
            "received_at": now,
            "updated_at": now,
        }
        run_row = {
            "id": run_id,
            "incident_id": incident.id,
            "engine": engine,
            "status": "queued",
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(_INSERT_INCIDENT, incident_row)
                connection.execute(_INSERT_RUN, run_row)
            return True
        except IntegrityError:  # already stored: a repeated delivery, or the same one racing in
            return False

    def open_incident_for(self, correlation_key: str, since: datetime) -> str | None:
        """The first incident of this correlation group received since `since` that is still open."""
        with self._sessions() as session:
            return session.scalar(
                select(IncidentRow.id)
                .where(
                    IncidentRow.correlation_key == correlation_key,
                    IncidentRow.received_at >= since,
                    IncidentRow.status.not_in(CLOSED_STATUSES),
                    IncidentRow.status.not_like("%alert_resolved"),
                )
                .order_by(IncidentRow.received_at)
                .limit(1)
            )

    def save_correlated(
        self,
        incident: Incident,
        *,
        primary_id: str,
        source: str,
        payload: dict[str, Any],
        fingerprint: str | None,
        correlation_key: str,
    ) -> bool:
        """Store an alert that belongs to an open incident: kept for the record, no run of its own.
        False when it was stored already (a repeated delivery)."""
        with self._sessions.begin() as session:
            if session.get(IncidentRow, incident.id) is not None:
                return False
            primary = session.get(IncidentRow, primary_id)
            if primary is not None:
                # The open incident gathers what its group's later alerts say; a triage still waiting
                # (queued, or in its settle time) reads it when it starts.
                primary.payload = _with_related(primary.payload, incident)
            session.add(
                IncidentRow(
                    id=incident.id,
                    source=source,
                    title=incident.title,
                    status="correlated",
                    payload=incident.model_dump(mode="json"),
                    raw=payload | {"correlated_with": primary_id},
                    fingerprint=fingerprint,
                    correlation_key=correlation_key,
                    started_at=incident.started_at,
                )
            )
            return True

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

    def set_run_status(self, run_id: str, status: str) -> None:
        with self._sessions.begin() as session:
            run = session.get(RunRow, run_id)
            if run is not None:
                run.status = status

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
                "report": run.report,
                "steps": [{"node": s.node, "summary": s.summary} for s in run.steps],
            }

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
        with self._sessions.begin() as session:
            step = session.scalar(select(RunStepRow).where(RunStepRow.run_id == run_id, RunStepRow.node == node))
            if step is None:
                seq = session.scalar(select(func.count()).where(RunStepRow.run_id == run_id)) or 0
                session.add(RunStepRow(run_id=run_id, node=node, seq=seq, summary=summary, data=data))
            else:
                step.summary, step.data = summary, data

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

    def recent_actions(self, operation: str, target_name: str, since: datetime) -> int:
        """How many times this operation ran on this target since a moment (for cooldowns)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ActionRow).where(
                    ActionRow.operation == operation,
                    ActionRow.status == "executed",
                    ActionRow.updated_at >= since,
                )
            )
            return sum(1 for r in rows if r.target.get("name") == target_name)

    # ---- verification -------------------------------------------------------------------
    def record_sla_check(self, run_id: str, status: str, details: dict[str, Any]) -> None:
        with self._sessions.begin() as session:
            session.add(SlaCheckRow(run_id=run_id, status=status, details=details))


def _with_related(payload: dict[str, Any], related: Incident) -> dict[str, Any]:
    """The incident with a correlated alert's text appended and its labels added where missing."""
    merged = dict(payload)
    line = f"Also firing: {related.title}"
    if line not in (merged.get("description") or ""):
        merged["description"] = "\n".join(part for part in (merged.get("description"), line) if part)
    if related.alert is not None and merged.get("alert"):
        alert = dict(merged["alert"])
        alert["labels"] = {**related.alert.labels, **(alert.get("labels") or {})}
        merged["alert"] = alert
    return merged


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
        "requested_at": _aware(row.created_at).isoformat(),
    }


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time mitigate stores is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
