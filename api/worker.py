"""The background worker of `mitigate serve`: executes stored runs off the request path.

Work lives in the database, not in this queue: a run is committed as `queued` before its webhook is
acknowledged, so runs that were queued or running when a process died are found again at start-up
and continue from their checkpoints.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.runs import RunOutcome, execute_run, resume_run
from store.recorder import StoreRecorder

log = logging.getLogger("mitigate.worker")


@dataclass(frozen=True)
class Job:
    run_id: str
    answer: dict[str, Any] | None = None  # an approval answer resumes a paused run
    not_before: float = 0.0  # time.monotonic() before which the run must not start (alert settle time)


class RunWorker:
    def __init__(
        self,
        recorder: StoreRecorder,
        make_context: Callable[[], Any],
        checkpointer: Any,
        threads: int = 2,
        on_outcome: Callable[[RunOutcome, float], None] | None = None,
        execute: Callable[..., RunOutcome] = execute_run,
    ) -> None:
        self._execute = execute
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
        # Ingest first: while webhook requests are in flight, the next run waits (at most
        # max_ingest_wait_s) so that storing and acknowledging alerts does not compete with triage
        # for the interpreter during a storm. Accepted runs are already durable in the database.
        self._ingesting = 0
        self._last_ingest = 0.0
        self._ingest_quiet = threading.Condition(threading.Lock())
        self.max_ingest_wait_s = 1.0
        # "Quiet" means no webhook for this long, not just none at this instant: between two requests
        # of a storm there is always a moment with none in flight.
        self.quiet_period_s = 0.05

    def start(self) -> int:
        """Start the threads and pick up runs a previous process left unfinished."""
        for thread in self._threads:
            thread.start()
        pending = self._recorder.runs_with_status("queued", "running")
        for run_id in pending:
            self.submit(Job(run_id))
        return len(pending)

    def submit(self, job: Job) -> None:
        with self._lock:
            self._busy += 1
        self._jobs.put(job)

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
            self._busy -= len(pending)
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def ingest_started(self) -> None:
        with self._ingest_quiet:
            self._ingesting += 1

    def ingest_finished(self) -> None:
        with self._ingest_quiet:
            self._ingesting -= 1
            self._last_ingest = time.monotonic()

    def _wait_for_quiet(self) -> None:
        deadline = time.monotonic() + self.max_ingest_wait_s
        while (now := time.monotonic()) < deadline:
            with self._ingest_quiet:
                quiet_for = now - self._last_ingest
                if self._ingesting == 0 and quiet_for >= self.quiet_period_s:
                    return
            # Poll at the quiet period's grain; a condition variable cannot express "quiet for 50 ms".
            time.sleep(min(self.quiet_period_s, max(0.0, deadline - now)))

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            if (wait := job.not_before - time.monotonic()) > 0:
                time.sleep(wait)
            self._wait_for_quiet()
            started = time.monotonic()
            try:
                context = self._make_context()
                if job.answer is None:
                    outcome = self._execute(
                        job.run_id, recorder=self._recorder, context=context, checkpointer=self._checkpointer
                    )
                else:
                    outcome = resume_run(
                        job.run_id,
                        recorder=self._recorder,
                        context=context,
                        checkpointer=self._checkpointer,
                        answer=job.answer,
                    )
                if self._on_outcome is not None:
                    self._on_outcome(outcome, time.monotonic() - started)
            except Exception:  # one broken run must not stop the worker; it stays resumable
                log.exception("run %s failed", job.run_id)
                self._recorder.set_run_status(job.run_id, "failed")
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()
