"""Runs on PostgreSQL: one procrastinate job queue shared by every replica (docs/queue.md).

- A new run's job is written by procrastinate's own defer function inside the statement that stores the
  incident and the run, so the three commit together or not at all (`enqueuer`, `job_in_statement`).
- Any replica's worker claims it (procrastinate's `FOR UPDATE SKIP LOCKED` fetch). The job's `lock` is
  the run id: two jobs of one run (its triage, an approval) are never fetched at once.
- Workers send a heartbeat every `lease_s / 5`; a worker silent for `lease_s` is dead and every replica's
  sweeper puts its jobs back to `todo`, where any worker claims them and the run resumes from its
  checkpoint.
- While it executes a run, a worker holds a PostgreSQL advisory lock on the run id in a session of its
  own. A job handed back while its first worker is in fact alive (a long GC pause, a starved heartbeat)
  finds the lock taken and waits its turn: one worker at a time, ever, enforced by the database. A
  worker that dies ends its session, and PostgreSQL releases the lock at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from api.ingest_gate import IngestGate
from api.run_faults import RetryPolicy, run_guarded
from api.runs import NotWaiting, RunOutcome, execute_run, resume_run
from api.worker import Job, refuse_late
from store.ack_writes import JobInStatement
from store.recorder import StoreRecorder

log = logging.getLogger("mitigate.queue")

TASK = "mitigate.run"
QUEUE = "mitigate-runs"
# An approval someone is waiting on goes before the backlog of a storm's fresh triage.
APPROVAL_PRIORITY = 10
# The advisory lock's first key: mitigate's runs, apart from any other user of advisory locks.
LOCK_NAMESPACE = 0x6D697467  # "mitg"
BUSY_RETRY_S = 2.0
UNFINISHED = ("queued", "running", "retrying")


class RunBusy(RuntimeError):
    """Another live worker holds this run's advisory lock: try again shortly."""


def psycopg_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def defer_run(connection: Any, run_id: str, *, delay_s: float = 0.0, answer: dict[str, Any] | None = None) -> None:
    """Write a run's job with procrastinate's own query on this SQLAlchemy connection: it commits or
    rolls back with the caller's transaction (the incident and the run, or the approval)."""
    from procrastinate import sql, types
    from psycopg.types.json import Jsonb

    args: dict[str, Any] = {"run_id": run_id}
    if answer is not None:
        args["answer"] = answer
    job = types.JobToDefer(
        queue_name=QUEUE,
        task_name=TASK,
        priority=APPROVAL_PRIORITY if answer is not None else 0,
        lock=run_id,
        queueing_lock=None,
        args=Jsonb(args),  # type: ignore[arg-type]
        scheduled_at=datetime.now(UTC) + timedelta(seconds=delay_s) if delay_s > 0 else None,
    )
    raw = connection.connection.driver_connection  # psycopg's, inside SQLAlchemy's open transaction
    with raw.cursor() as cursor:
        cursor.execute(sql.queries["defer_jobs"], {"jobs": [job]})


# procrastinate's defer function, called by name in the incident's own statement (store/recorder.py);
# tests/test_pg_queue_job.py checks that procrastinate's query still calls this one.
DEFER_FUNCTION = "procrastinate_defer_jobs_v1"
_JOB_EXPRESSION = (
    f"{DEFER_FUNCTION}(ARRAY[ROW(:job_queue, :job_task, :job_priority, :job_lock, NULL, CAST(:job_args AS jsonb),"
    " CAST(:job_scheduled_at AS timestamptz))::procrastinate_job_to_defer_v1])"
)


def job_in_statement(run_id: str, *, delay_s: float = 0.0) -> JobInStatement:
    """A new run's job (what `defer_run` writes) as an expression the statement storing the incident
    evaluates: the webhook's ack then costs one round trip to the database, not two."""
    return JobInStatement(
        _JOB_EXPRESSION,
        {
            "job_queue": QUEUE,
            "job_task": TASK,
            "job_priority": 0,
            "job_lock": run_id,
            "job_args": json.dumps({"run_id": run_id}),
            "job_scheduled_at": datetime.now(UTC) + timedelta(seconds=delay_s) if delay_s > 0 else None,
        },
    )


@contextlib.contextmanager
def run_lease(database_url: str, run_id: str) -> Iterator[bool]:
    """Hold the run's advisory lock for as long as the block runs; yields False if another session has it.

    The session's TCP keepalives are short so that PostgreSQL also notices a worker whose machine
    vanished (no FIN) within about 11 s and releases its lock; a killed process closes its socket at once.
    """
    import psycopg

    with psycopg.connect(psycopg_url(database_url), autocommit=True, connect_timeout=10) as session:
        session.execute("SET tcp_keepalives_idle = 5")
        session.execute("SET tcp_keepalives_interval = 2")
        session.execute("SET tcp_keepalives_count = 3")
        row = session.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, run_id)).fetchone()
        yield bool(row and row[0])
    # Closing the session releases the lock, whatever happened in the block.


@contextlib.contextmanager
def exclusive_run(database_url: str, run_id: str) -> Iterator[bool]:
    """For the CLI, which executes a run in its own process (`approve`, `resume`, `runs retry`): on
    PostgreSQL it takes the run's lease like a worker, so it never executes a run a worker is executing."""
    if not database_url.startswith("postgresql"):
        yield True
        return
    with run_lease(database_url, run_id) as held:
        yield held


class PgRunQueue(IngestGate):
    """The PostgreSQL queue: the same interface as the in-process RunWorker, plus `run()` to work it."""

    def __init__(
        self,
        database_url: str,
        recorder: StoreRecorder,
        make_context: Callable[[], Any],
        checkpointer: Any,
        *,
        concurrency: int = 2,
        lease_s: float = 10.0,
        on_outcome: Callable[[RunOutcome, float], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        import procrastinate

        self.database_url = database_url
        self.lease_s = lease_s
        self.concurrency = concurrency
        self._recorder = recorder
        self._make_context = make_context
        self._checkpointer = checkpointer
        self._on_outcome = on_outcome
        self._retry = retry or RetryPolicy()
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=psycopg_url(database_url), min_size=1, max_size=concurrency + 3
            )
        )
        busy_retry = procrastinate.RetryStrategy(wait=int(BUSY_RETRY_S), retry_exceptions={RunBusy})

        @self.app.task(name=TASK, queue=QUEUE, retry=busy_retry)
        def run_job(run_id: str, answer: dict[str, Any] | None = None) -> None:
            self.execute(Job(run_id, answer))

    # ---- the interface intake and approvals use (same as RunWorker) ------------------------------
    def enqueuer(self, delay_s: float = 0.0) -> Callable[[str], JobInStatement]:
        """What writes a run's job in the statement that stores the run."""
        return lambda run_id: job_in_statement(run_id, delay_s=delay_s)

    def accepted(self, run_id: str, delay_s: float = 0.0) -> None:
        """Nothing to do after commit: the job committed with the run, and procrastinate's trigger has
        notified the listening workers."""

    def submit(self, job: Job) -> None:
        """An approval's answer, or a retry after a backoff: a job of its own, in a transaction of its own."""
        delay = max(0.0, job.not_before - time.monotonic()) if job.not_before else 0.0
        engine = self._recorder.sessions.kw["bind"]
        with engine.begin() as connection:
            defer_run(connection, job.run_id, delay_s=delay, answer=job.answer)

    # ---- executing a job (on one of procrastinate's worker threads) -------------------------------
    def execute(self, job: Job) -> None:
        with run_lease(self.database_url, job.run_id) as held:
            if not held:
                log.info("run %s is being executed by another worker; retrying in %g s", job.run_id, BUSY_RETRY_S)
                raise RunBusy(job.run_id)
            self._wait_for_quiet()
            self._attempt(job)

    def _attempt(self, job: Job) -> None:
        if job.answer is None and self._recorder.run_status(job.run_id) not in UNFINISHED:
            # A job handed back while its first worker was alive but silent, which has since finished
            # the run: nothing is left to do (and nothing is announced twice).
            log.info("run %s has finished already; nothing to do", job.run_id)
            return
        started = time.monotonic()
        try:
            context = self._make_context()
            outcome = run_guarded(
                lambda: self._call(job, context),
                job.run_id,
                recorder=self._recorder,
                context=context,
                checkpointer=self._checkpointer,
                retry=self._retry,
            )
        except NotWaiting as exc:
            refuse_late(self._recorder, job, exc)
            return
        if outcome.status == "retrying" and outcome.retry_in is not None:
            self.submit(Job(job.run_id, not_before=time.monotonic() + outcome.retry_in))
        elif self._on_outcome is not None:
            self._on_outcome(outcome, time.monotonic() - started)

    def _call(self, job: Job, context: Any) -> RunOutcome:
        if job.answer is None:
            return execute_run(job.run_id, recorder=self._recorder, context=context, checkpointer=self._checkpointer)
        try:
            return resume_run(
                job.run_id, recorder=self._recorder, context=context, checkpointer=self._checkpointer, answer=job.answer
            )
        except NotWaiting:
            if self._recorder.run_status(job.run_id) not in UNFINISHED:
                raise  # a second answer to a run that has moved on: audited as refused
            # The worker that took this answer died after the run had passed its approval (the run is
            # `running`): the job was handed back, and the run continues from its checkpoint.
            return execute_run(job.run_id, recorder=self._recorder, context=context, checkpointer=self._checkpointer)

    # ---- working the queue --------------------------------------------------------------------
    async def run(self) -> None:
        """Work the queue until cancelled; cancelling stops gracefully (runs in flight finish, 30 s at most)."""
        async with self.app.open_async():
            sweeper = asyncio.create_task(self._sweep(), name="mitigate-queue-sweeper")
            try:
                await self.app.run_worker_async(
                    queues=[QUEUE],
                    name=self.name,
                    concurrency=self.concurrency,
                    install_signal_handlers=False,
                    update_heartbeat_interval=self.lease_s / 5,
                    stalled_worker_timeout=self.lease_s,
                    fetch_job_polling_interval=1.0,
                    shutdown_graceful_timeout=30.0,
                )
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper

    async def _sweep(self) -> None:
        """Hand the jobs of workers silent for `lease_s` back to the queue (every replica does this; a
        job another sweeper handed back already is skipped)."""
        manager = self.app.job_manager
        while True:
            await asyncio.sleep(self.lease_s / 5)
            try:
                stalled = await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.lease_s)
                for job in stalled:
                    if job.id is None:
                        continue
                    try:
                        await manager.retry_job_by_id_async(job.id, retry_at=datetime.now(UTC))
                        log.warning("run %s: its worker stopped sending heartbeats; handed to another", job.lock)
                    except Exception:  # another replica's sweeper was first
                        log.debug("job %s was handed back already", job.id)
            except Exception:  # the database is briefly away: the next sweep tries again
                log.exception("the queue sweeper could not read stalled jobs")
