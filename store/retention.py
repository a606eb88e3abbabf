"""Retention: what only a live run needs goes once its run is long finished.

A finished run's LangGraph checkpoints (85 % of the database, ~46 KB an incident) and its per-node step
rows are working state: they let a paused or faulted run continue. Once a run has been finished for
longer than the retention, they are deleted. The audit trail stays whole: the incident as it arrived, the
run with its final report and labels, every action with its dry run and result, every approval and
approval attempt, every SLA check. Runs still queued, running, retrying or waiting for an approval are
never touched, whatever their age. Deletion goes in small batches so ingest keeps its write turn.
On PostgreSQL the job queue's finished jobs (and their events) go after the same retention: a job is a
delivery receipt, the run row is the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Delete, Engine, column, delete, inspect, select, table, text, update
from sqlalchemy.orm import Session, sessionmaker

from store.models import RunRow, RunStepRow

ALIVE = ("queued", "running", "retrying", "awaiting_approval")
# LangGraph's checkpointer tables per dialect (langgraph-checkpoint-sqlite / -postgres), keyed by thread id
# (a thread is a run: api/runs.py).
CHECKPOINT_TABLES = {
    "sqlite": ("writes", "checkpoints"),
    "postgresql": ("checkpoint_writes", "checkpoint_blobs", "checkpoints"),
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `3600s`: a duration as the CLI and settings take it."""
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"not a duration: {text!r} (a number and a unit s, m, h, d or w, e.g. 30d)")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


@dataclass
class PruneReport:
    runs: int = 0
    checkpoint_rows: int = 0
    step_rows: int = 0
    queue_jobs: int = 0

    def describe(self) -> str:
        jobs = f", {self.queue_jobs} finished queue jobs" if self.queue_jobs else ""
        return (
            f"pruned {self.runs} finished runs: {self.checkpoint_rows} checkpoint rows and {self.step_rows} step "
            f"rows deleted{jobs} (incidents, reports, actions, approvals and SLA checks kept)"
        )


def prune(
    engine: Engine, older_than: timedelta, *, now: datetime | None = None, batch: int = 200, max_runs: int | None = None
) -> PruneReport:
    """Delete checkpoints and step rows of runs finished before `now - older_than`; the rest stays."""
    cutoff = (now or datetime.now(UTC)) - older_than
    sessions = sessionmaker(engine)
    present = set(inspect(engine).get_table_names())
    tables = [t for t in CHECKPOINT_TABLES.get(engine.dialect.name, ()) if t in present]
    report = PruneReport()
    while max_runs is None or report.runs < max_runs:
        with sessions.begin() as session:
            run_ids = _next_batch(session, cutoff, batch)
            if not run_ids:
                break
            for name in tables:
                found = session.execute(_delete_threads(name, run_ids))
                report.checkpoint_rows += max(found.rowcount or 0, 0)  # type: ignore[attr-defined]
            steps = session.execute(delete(RunStepRow).where(RunStepRow.run_id.in_(run_ids)))
            report.step_rows += max(steps.rowcount or 0, 0)  # type: ignore[attr-defined]
            session.execute(
                update(RunRow)
                .where(RunRow.id.in_(run_ids))
                .values(pruned_at=datetime.now(UTC), updated_at=RunRow.updated_at)  # keep when it finished
            )
            report.runs += len(run_ids)
    if "procrastinate_jobs" in present and (max_runs is None or report.runs < max_runs):
        report.queue_jobs = _prune_finished_jobs(engine, older_than)
    return report


# procrastinate's own `delete_old_jobs` query (procrastinate/sql/queries.sql): a job whose latest event is
# final and older than the retention; its events go with it (ON DELETE CASCADE).
_FINISHED_JOBS = text(
    """
    DELETE FROM procrastinate_jobs WHERE id IN (
        SELECT job.id FROM (
            SELECT DISTINCT ON (job.id) job.id, job.status, event.at AS latest_at
            FROM procrastinate_jobs job JOIN procrastinate_events event ON job.id = event.job_id
            ORDER BY job.id, event.at DESC
        ) AS job
        WHERE job.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
          AND job.latest_at < NOW() - make_interval(secs => :seconds)
    )
    """
)


def _prune_finished_jobs(engine: Engine, older_than: timedelta) -> int:
    with engine.begin() as connection:
        found = connection.execute(_FINISHED_JOBS, {"seconds": older_than.total_seconds()})
        return max(found.rowcount or 0, 0)


def _next_batch(session: Session, cutoff: datetime, batch: int) -> list[str]:
    query = (
        select(RunRow.id)
        .where(RunRow.updated_at < cutoff, RunRow.pruned_at.is_(None), RunRow.status.not_in(ALIVE))
        .order_by(RunRow.updated_at)
        .limit(batch)
    )
    return list(session.scalars(query))


def _delete_threads(name: str, run_ids: list[str]) -> Delete:
    return delete(table(name, column("thread_id"))).where(column("thread_id").in_(run_ids))


def vacuum(engine: Engine) -> None:
    """Give the freed space back to the file system (SQLite rewrites the file; PostgreSQL marks it reusable
    and truncates empty tails). Without it the freed pages are reused by new rows, so the files stop
    growing rather than shrink."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM")
