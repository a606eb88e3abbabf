"""The database schema: what mitigate remembers about incidents, runs, actions and evals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class IncidentRow(Base):
    __tablename__ = "incidents"
    # Every list is newest first with keyset pagination on (received_at, id), optionally by status or
    # source (store/migrations/versions/0007).
    __table_args__ = (
        Index("ix_incidents_received_id", "received_at", "id"),
        Index("ix_incidents_status_received_id", "status", "received_at", "id"),
        Index("ix_incidents_source_received_id", "source", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(40), default="cli")
    title: Mapped[str] = mapped_column(Text, default="")
    # The incident as the agent sees it; `raw` keeps what arrived (alert payload, ticket) for audit.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fingerprint: Mapped[str | None] = mapped_column(String(200), index=True)
    # Alerts of one group (Alertmanager's groupKey) while an incident of it is still open are one
    # problem: the later ones are stored as `correlated` with the first, and start no run.
    correlation_key: Mapped[str | None] = mapped_column(String(300), index=True)
    # A correlated alert: the open incident it joined, and why (a shared node, deployment, region, or
    # an action of that incident's run that caused it).
    correlated_with: Mapped[str | None] = mapped_column(String(200), index=True)
    correlation_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(40), default="open")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    # Oldest first, always: "the latest run" is runs[-1] on every database (PostgreSQL returns rows in
    # no set order without ORDER BY, and an UPDATE can move them).
    runs: Mapped[list[RunRow]] = relationship(
        back_populates="incident", order_by=lambda: (RunRow.created_at, RunRow.id)
    )


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_created_id", "created_at", "id"),
        Index("ix_runs_status_created_id", "status", "created_at", "id"),
        Index("ix_runs_incident_created", "incident_id", "created_at"),
        Index("ix_runs_unpruned", "pruned_at", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    status: Mapped[str] = mapped_column(String(40), default="running", index=True)
    engine: Mapped[str] = mapped_column(String(20), default="rulebook")
    category: Mapped[str | None] = mapped_column(String(10))
    subcategory: Mapped[str | None] = mapped_column(String(60))
    confidence: Mapped[float | None] = mapped_column(Float)
    mitigation: Mapped[str | None] = mapped_column(String(4))
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Infrastructure faults: how many attempts the run has had, and when the next one is due (status
    # `retrying`); a run past its bounded attempts is escalated with the fault (api/run_faults.py).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the run finishes, for the gap report's GROUP BY: when it ended the impact (the verify
    # step of a verified action, the report of a "no action"), and whether no human had to approve.
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_without_human: Mapped[bool | None] = mapped_column(Boolean)
    # When retention removed this finished run's checkpoints and step rows (store/retention.py).
    pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    incident: Mapped[IncidentRow] = relationship(back_populates="runs")
    steps: Mapped[list[RunStepRow]] = relationship(back_populates="run", order_by="RunStepRow.seq")
    actions: Mapped[list[ActionRow]] = relationship(back_populates="run", order_by="ActionRow.id")


class IncidentFactRow(Base):
    """What the gap report needs of one incident, recomputed for the incidents that database triggers
    noted as changed before a report reads it (store/facts.py, migrations 0008-0009): its latest run's labels and
    status, whether an alert opened it, the month its impact started and its lifecycle in hours. A
    report over any window reads an index range of this table (evals/gaps_store.py)."""

    __tablename__ = "incident_facts"
    __table_args__ = (
        Index("ix_incident_facts_received", "received_at"),
        Index("ix_incident_facts_group", "group_key", "received_at"),
        Index("ix_incident_facts_ttd", "month", "ttd", "received_at"),
        Index("ix_incident_facts_tte", "month", "tte", "received_at"),
        Index("ix_incident_facts_ttm", "month", "ttm", "received_at"),
        Index("ix_incident_facts_closed_ttm", "closed_ttm", "received_at"),
    )

    incident_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    month: Mapped[str] = mapped_column(String(7))  # of the impact's start (or of receipt), UTC
    auto: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str | None] = mapped_column(String(10))  # None when unknown
    subcategory: Mapped[str | None] = mapped_column(String(60))
    mitigation: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(40))  # the latest run's, `no_run` without one
    ttd: Mapped[float] = mapped_column(Float)
    tte: Mapped[float | None] = mapped_column(Float)
    ttm: Mapped[float | None] = mapped_column(Float)
    closed_ttm: Mapped[float | None] = mapped_column(Float)  # ttm when no human had to approve
    # category, subcategory, mitigation, auto and status in one column (unit separator, '' for none),
    # so SQLite counts each group by an index range instead of sorting the window to group it.
    group_key: Mapped[str] = mapped_column(String(400))


class RunStepRow(Base):
    """One node's outcome in a run; re-running a node on resume replaces its row."""

    __tablename__ = "run_steps"
    __table_args__ = (UniqueConstraint("run_id", "node", name="uq_run_step_node"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    node: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[RunRow] = relationship(back_populates="steps")


class ActionRow(Base):
    """A proposed, approved or executed action. `idempotency_key` makes execution happen once."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    mitigation: Mapped[str] = mapped_column(String(4))
    operation: Mapped[str] = mapped_column(String(60))
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    risk: Mapped[str] = mapped_column(String(20), default="low")
    status: Mapped[str] = mapped_column(String(30), default="proposed", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    dry_run: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The symptoms and SLA right before the write; verification (and a resumed one) compares with it.
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    run: Mapped[RunRow] = relationship(back_populates="actions")
    approvals: Mapped[list[ApprovalRow]] = relationship(back_populates="action", order_by="ApprovalRow.id")


class ApprovalRow(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("action_id", "approver", name="uq_approval_per_person"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    approver: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    action: Mapped[ActionRow] = relationship(back_populates="approvals")


class ApprovalAttemptRow(Base):
    """Every approval attempt, accepted or not: who (the person, if the door could tell; the way in and
    the identity it authenticated), from where, what they asked, what happened and why. `attempt_id`
    makes the write idempotent: the guard re-runs its answers on every resume."""

    __tablename__ = "approval_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    action_key: Mapped[str | None] = mapped_column(String(200))
    person: Mapped[str | None] = mapped_column(String(100))
    via: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    decision: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IncidentKeyRow(Base):
    """What an incident is about, as keys another alert can share: `node:N`, `deployment:NS/D`,
    `region:R` (a region-wide alert). `touched` keys are what one of its runs' actions changed (a
    drained node's deployments), so alerts that action causes join it rather than paging again."""

    __tablename__ = "incident_keys"
    __table_args__ = (UniqueConstraint("incident_id", "key", "kind", name="uq_incident_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    key: Mapped[str] = mapped_column(String(300), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="cause")
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class SlaCheckRow(Base):
    __tablename__ = "sla_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    status: Mapped[str] = mapped_column(String(30))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalRunRow(Base):
    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    dataset: Mapped[str] = mapped_column(Text)
    dataset_hash: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    cases: Mapped[list[EvalCaseRow]] = relationship(back_populates="eval_run")


class EvalCaseRow(Base):
    __tablename__ = "eval_cases"
    __table_args__ = (
        UniqueConstraint("eval_run_id", "case_id", name="uq_eval_case"),
        Index("ix_eval_cases_run", "eval_run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    eval_run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id"))
    case_id: Mapped[str] = mapped_column(String(200))
    expected: Mapped[dict[str, Any]] = mapped_column(JSON)
    predicted: Mapped[dict[str, Any]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)

    eval_run: Mapped[EvalRunRow] = relationship(back_populates="cases")
