"""Writes a run's trail to the database: steps, actions, approvals, SLA checks and the final report.

Every write is its own short transaction so that a crash loses at most the step in flight, and
action rows are keyed by an idempotency key so that a resumed run never repeats a cluster action.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, String, Table, bindparam, func, insert, literal, select
from sqlalchemy.orm import Session, sessionmaker

from agent.schemas import Incident
from store.approval_audit import record_attempt
from store.models import ActionRow, ApprovalRow, IncidentKeyRow, IncidentRow, RunRow, RunStepRow, SlaCheckRow

# Statements of the webhook's ack path, built once against the tables (not the ORM classes: an
# ORM-enabled insert walks the mapper on every call) and executed with a parameter dict: building a
# statement per request, and its cache key, cost more CPU than the database did.
INCIDENTS: Table = IncidentRow.__table__  # type: ignore[assignment]
INCIDENT_KEYS: Table = IncidentKeyRow.__table__  # type: ignore[assignment]
RUNS: Table = RunRow.__table__  # type: ignore[assignment]
_INSERT_RUN = insert(RUNS)
_INSERT_KEYS = insert(INCIDENT_KEYS)


def insert_if_new(connection: Connection, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING the primary key, in the connection's dialect (SQLite and
    PostgreSQL both have it): the database, not a read before the write, decides who stored it first;
    the statement returns a row only to the one that did (rowcount is not reliable across drivers).
    Built once per dialect and table; execute it with the row as parameters."""
    return _insert_if_new(connection.dialect.name, getattr(table, "__table__", table))


def _pg_new_incident() -> Any:
    """PostgreSQL: the incident (ON CONFLICT DO NOTHING), its queued run and its cause keys in one
    statement, so one round trip instead of three; the run and the keys are written only when the
    incident was (they select from the insert's RETURNING, empty for a duplicate)."""
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    columns = "id source title status payload raw fingerprint correlation_key started_at received_at updated_at"
    incident = (
        pg_insert(INCIDENTS)
        .values({name: bindparam(name) for name in columns.split()})
        .on_conflict_do_nothing()
        .returning(INCIDENTS.c.id)
        .cte("new_incident")
    )
    now = bindparam("received_at", type_=DateTime(timezone=True))
    run = insert(RUNS).from_select(
        ["id", "incident_id", "engine", "status", "attempts", "created_at", "updated_at"],
        select(
            bindparam("run_id", type_=String),
            incident.c.id,
            bindparam("engine", type_=String),
            literal("queued"),
            literal(0),
            now,
            now,
        ),
    )
    keys = insert(INCIDENT_KEYS).from_select(
        ["incident_id", "key", "kind", "created_at"],
        select(incident.c.id, func.unnest(bindparam("cause_keys", type_=ARRAY(String))), literal("cause"), now),
    )
    return select(incident.c.id).add_cte(run.cte("new_run"), keys.cte("new_keys"))


_PG_NEW_INCIDENT = _pg_new_incident()


@functools.cache
def _insert_if_new(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing().returning(table.c.id)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing().returning(table.c.id)


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
        enqueue: Callable[[Connection], None] | None = None,
        cause_keys: Sequence[str] = (),
        connection: Connection | None = None,
    ) -> bool:
        """Store a new incident, its queued run, (`enqueue`, on PostgreSQL) the run's job and the keys of
        what it is about (`cause_keys`, for correlating later alerts) in one transaction — the caller's
        (`connection`, inside `transaction()`) or one of its own; False for an incident already stored,
        and then nothing is written.

        Core inserts with the primary key as the dedup check: this is the webhook hot path, and the ORM's
        unit of work cost more than the database here. The incident goes in with ON CONFLICT DO NOTHING,
        so two deliveries racing in are one incident and the loser is told "duplicate", not an error.
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
        with contextlib.nullcontext(connection) if connection is not None else self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                truncated = [key[:300] for key in cause_keys]
                params = incident_row | {"run_id": run_id, "engine": engine, "cause_keys": truncated}
                if conn.execute(_PG_NEW_INCIDENT, params).first() is None:
                    return False  # already stored: a repeated delivery, or the same one racing in
                if enqueue is not None:
                    enqueue(conn)
                return True
            stored = conn.execute(insert_if_new(conn, INCIDENTS), incident_row).first()
            if stored is None:  # already stored: a repeated delivery, or the same one racing in
                return False
            conn.execute(_INSERT_RUN, run_row)
            if cause_keys:  # the incident is new, so none of its keys can be stored yet
                keys = [
                    {"incident_id": incident.id, "key": k[:300], "kind": "cause", "created_at": now} for k in cause_keys
                ]
                conn.execute(_INSERT_KEYS, keys)
            if enqueue is not None:
                enqueue(conn)
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
        with self._sessions.begin() as session:
            step = session.scalar(select(RunStepRow).where(RunStepRow.run_id == run_id, RunStepRow.node == node))
            if step is None:
                seq = session.scalar(select(func.count()).where(RunStepRow.run_id == run_id)) or 0
                session.add(RunStepRow(run_id=run_id, node=node, seq=seq, summary=summary, data=data))
            else:
                step.summary, step.data = summary, data
            if node in ("classify", "plan"):  # the gap report counts a run still in flight by these
                run = session.get(RunRow, run_id)
                if run is not None and node == "classify":
                    run.category, run.subcategory = data.get("category"), data.get("subcategory")
                elif run is not None:
                    run.mitigation = data.get("mitigation")

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
