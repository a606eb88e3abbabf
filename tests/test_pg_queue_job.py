"""A new run's job is written by the statement that stores its incident (api/pg_queue.job_in_statement,
store/recorder.py): with procrastinate's own function, once, only for a new incident, with its delay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from procrastinate import sql
from sqlalchemy import text

from agent.schemas import Incident
from api.pg_queue import DEFER_FUNCTION, QUEUE, TASK, job_in_statement
from store.db import make_engine, migrate, session_factory
from store.recorder import StoreRecorder
from tests.db_urls import postgres_schema_url


def test_the_statement_calls_the_function_procrastinates_own_defer_query_calls():
    # An upgrade of procrastinate that renames its defer function must fail here, not in production.
    assert f"{DEFER_FUNCTION}(" in sql.queries["defer_jobs"]


@pytest.fixture
def pg_recorder() -> Iterator[StoreRecorder]:
    with postgres_schema_url() as url:
        engine = make_engine(url)
        migrate(engine)
        yield StoreRecorder(session_factory(engine))
        engine.dispose()


@pytest.mark.postgres
def test_a_new_incident_gets_its_runs_job_with_its_delay_and_a_duplicate_gets_none(pg_recorder):
    incident = Incident(id="am-job", title="KVCacheUsageHigh on mixtral")
    before = datetime.now(UTC)
    first = pg_recorder.save_incident_with_run(
        incident,
        "run-1",
        source="alertmanager",
        payload={},
        engine="rulebook",
        job=job_in_statement("run-1", delay_s=30),
    )
    again = pg_recorder.save_incident_with_run(
        incident, "run-2", source="alertmanager", payload={}, engine="rulebook", job=job_in_statement("run-2")
    )
    with pg_recorder.sessions() as session:
        jobs = session.execute(
            text("SELECT queue_name, task_name, lock, args, status, scheduled_at FROM procrastinate_jobs")
        ).all()
    assert (first, again) == (True, False)
    assert len(jobs) == 1
    queue, task, lock, args, status, scheduled_at = jobs[0]
    assert (queue, task, lock, args, status) == (QUEUE, TASK, "run-1", {"run_id": "run-1"}, "todo")
    assert 29 <= (scheduled_at - before).total_seconds() <= 31 + (datetime.now(UTC) - before).total_seconds()


def test_sqlite_refuses_a_job_in_the_statement_and_stores_nothing(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path}/jobs.db")
    migrate(engine)
    recorder = StoreRecorder(session_factory(engine))
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        recorder.save_incident_with_run(
            Incident(id="am-x", title="t"),
            "run-x",
            source="alertmanager",
            payload={},
            engine="rulebook",
            job=job_in_statement("run-x"),
        )
    assert recorder.latest_run_of("am-x") is None
