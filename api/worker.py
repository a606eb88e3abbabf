"""The background worker of `mitigate serve` on SQLite: executes stored runs off the request path (on
PostgreSQL, replicas share a job queue instead: api/pg_queue.py).

Work lives in the database, not in this queue: a run is committed as `queued` before its webhook is
acknowledged, so runs that were queued or running when a process died are found again at start-up
and continue from their checkpoints.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.ingest_gate import IngestGate
from api.run_faults import RetryPolicy, run_guarded
from api.runs import NotWaiting, RunOutcome, execute_run, resume_run
from store.recorder import StoreRecorder

log = logging.getLogger("mitigate.worker")


@dataclass(frozen=True)
class Job:
    run_id: str
    answer: dict[str, Any] | None = None  # an approval answer resumes a paused run
    not_before: float = 0.0  # time.monotonic() before which the run must not start (alert settle time)


class RunWorker(IngestGate):
    """The in-process worker of the single-machine set-up (SQLite): one process owns every run."""

    def __init__(
        self,
        recorder: StoreRecorder,
        make_context: Callable[[], Any],
        checkpointer: Any,
        threads: int = 2,
        on_outcome: Callable[[RunOutcome, float], None] | None = None,
        execute: Callable[..., RunOutcome] = execute_run,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self._execute = execute
        self._retry = retry or RetryPolicy()
        # One run at a time per run id: two approvals of one run arriving together must not resume
        # its checkpoint twice in parallel.
        self._run_locks: dict[str, threading.Lock] = {}
        self._timers: list[threading.Timer] = []
        self._recorder = recorder
        self._make_context = make_context
        self._checkpointer = checkpointer
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"mitigate-run-{i}", daemon=True) for i in range(threads)
        ]
        self._on_outcome = on_outcome
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def start(self) -> int:
        """Start the threads and pick up runs a previous process left unfinished."""
        for thread in self._threads:
            thread.start()
        pending = self._recorder.runs_due()
        now = datetime.now(UTC)
        for run_id, due in pending:
            wait = max(0.0, (due - now).total_seconds()) if due is not None else 0.0
            self.submit(Job(run_id, not_before=time.monotonic() + wait))
        return len(pending)

    def submit(self, job: Job) -> None:
        """Queue a job; one that must wait (a settle time, a retry's backoff) waits on a timer, not on a
        worker thread, so a backlog of retries never blocks fresh incidents."""
        with self._lock:
            self._busy += 1
        wait = job.not_before - time.monotonic()
        if wait <= 0:
            self._jobs.put(job)
            return
        timer = threading.Timer(wait, self._jobs.put, args=(job,))
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def enqueuer(self, delay_s: float = 0.0) -> None:
        """Nothing to add to the transaction that stores a run: this worker learns of it after commit."""
        return None

    def accepted(self, run_id: str, delay_s: float = 0.0) -> None:
        """A run committed as `queued`: hand it to the threads (after its settle time)."""
        self.submit(Job(run_id, not_before=time.monotonic() + delay_s))

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the runs in flight; queued ones stay `queued` in the database for the next start."""
        pending: list[Job] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                pending.append(job)
        with self._lock:
            waiting = [t for t in self._timers if t.is_alive()]
            for timer in waiting:
                timer.cancel()  # their runs stay queued/retrying in the database for the next start
            self._busy -= len(pending) + len(waiting)
            self._timers = []
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _run_lock(self, run_id: str) -> threading.Lock:
        with self._lock:
            return self._run_locks.setdefault(run_id, threading.Lock())

    def _attempt(self, job: Job, context: Any) -> RunOutcome:
        if job.answer is None:
            return self._execute(job.run_id, recorder=self._recorder, context=context, checkpointer=self._checkpointer)
        return resume_run(
            job.run_id, recorder=self._recorder, context=context, checkpointer=self._checkpointer, answer=job.answer
        )

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._wait_for_quiet()
            started = time.monotonic()
            try:
                context = self._make_context()
                with self._run_lock(job.run_id):
                    outcome = run_guarded(
                        lambda job=job, context=context: self._attempt(job, context),  # type: ignore[misc]
                        job.run_id,
                        recorder=self._recorder,
                        context=context,
                        checkpointer=self._checkpointer,
                        retry=self._retry,
                    )
                if outcome.status == "retrying" and outcome.retry_in is not None:
                    self.submit(Job(job.run_id, not_before=time.monotonic() + outcome.retry_in))
                elif self._on_outcome is not None:
                    self._on_outcome(outcome, time.monotonic() - started)
            except NotWaiting as exc:
                refuse_late(self._recorder, job, exc)
            except Exception:  # e.g. the database itself is gone: the run stays resumable at start-up
                log.exception("run %s: the worker could not record its outcome", job.run_id)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()


def refuse_late(recorder: StoreRecorder, job: Job, error: NotWaiting) -> None:
    """An approval that reached a run no longer waiting (a second click racing the first): audited."""
    answer = job.answer or {}
    attempt = {**(answer.get("identity") or {}), "decision": "approve" if answer.get("approved") else "reject"}
    attempt |= {
        "outcome": "refused",
        "message": str(error),
        "attempt_id": answer.get("attempt_id") or uuid.uuid4().hex,
    }
    recorder.record_approval_attempt(job.run_id, None, attempt)
