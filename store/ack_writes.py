"""The webhook's hot path into the database: a new incident, its queued run, its cause keys and (on
PostgreSQL) its job, written in the caller's transaction with statements built once.

Core inserts with the primary key as the dedup check: the ORM's unit of work cost more than the
database here. The incident goes in with ON CONFLICT DO NOTHING, so two deliveries racing in are one
incident and the loser is told "duplicate", not an error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, String, Table, bindparam, func, insert, literal, select, text

from agent.schemas import Incident
from store.models import IncidentKeyRow, IncidentRow, RunRow

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


@dataclass(frozen=True)
class JobInStatement:
    """A run's job as one SQL expression (the queue's own defer function) and its parameters. PostgreSQL
    evaluates it inside the statement that stores the incident, once, and only when the incident is new:
    the job commits with the incident and its run, one round trip fewer per alert than a write of its own."""

    expression: str
    params: dict[str, Any]


@functools.cache
def _pg_new_incident(job_expression: str | None = None) -> Any:
    """PostgreSQL: the incident (ON CONFLICT DO NOTHING), its queued run, its cause keys and (with
    `job_expression`) the run's job in one statement, so one round trip instead of four; the run, the
    keys and the job are written only when the incident was (they select from the insert's RETURNING,
    which is empty for a duplicate: a select-list expression over no rows is never evaluated)."""
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
    statement = select(incident.c.id)
    if job_expression is not None:
        statement = statement.add_columns(text(job_expression))
    return statement.add_cte(run.cte("new_run"), keys.cte("new_keys"))


@functools.cache
def _insert_if_new(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing().returning(table.c.id)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing().returning(table.c.id)


def incident_values(
    incident: Incident,
    *,
    source: str,
    status: str,
    payload: dict[str, Any],
    fingerprint: str | None,
    correlation_key: str | None,
    received_at: datetime,
) -> dict[str, Any]:
    """An incident's row for the insert statements of this module (and store/correlation.py's)."""
    return {
        "id": incident.id,
        "source": source,
        "title": incident.title,
        "status": status,
        "payload": incident.model_dump(mode="json"),
        "raw": payload,
        "fingerprint": fingerprint,
        "correlation_key": correlation_key,
        "started_at": incident.started_at,
        "received_at": received_at,
        "updated_at": received_at,
    }


def store_new_incident(
    conn: Connection,
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
) -> bool:
    """A new incident, its queued run, its cause keys and (`job`, PostgreSQL only) the run's job, on
    `conn`; False, with nothing written, for an incident already stored."""
    now = datetime.now(UTC)
    incident_row = incident_values(
        incident,
        source=source,
        status="open",
        payload=payload,
        fingerprint=fingerprint,
        correlation_key=correlation_key,
        received_at=now,
    )
    run_row = {
        "id": run_id,
        "incident_id": incident.id,
        "engine": engine,
        "status": "queued",
        "created_at": now,
        "updated_at": now,
    }
    if conn.dialect.name == "postgresql":
        truncated = [key[:300] for key in cause_keys]
        params = incident_row | {"run_id": run_id, "engine": engine, "cause_keys": truncated}
        statement = _pg_new_incident(None if job is None else job.expression)
        # None when already stored: a repeated delivery, or the same one racing in.
        return conn.execute(statement, params | (job.params if job is not None else {})).first() is not None
    if job is not None:
        raise ValueError("a run's job in the incident's statement needs PostgreSQL (its queue lives there)")
    stored = conn.execute(insert_if_new(conn, INCIDENTS), incident_row).first()
    if stored is None:  # already stored: a repeated delivery, or the same one racing in
        return False
    conn.execute(_INSERT_RUN, run_row)
    if cause_keys:  # the incident is new, so none of its keys can be stored yet
        keys = [{"incident_id": incident.id, "key": k[:300], "kind": "cause", "created_at": now} for k in cause_keys]
        conn.execute(_INSERT_KEYS, keys)
    return True
