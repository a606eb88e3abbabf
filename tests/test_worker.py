"""The worker's ingest-first rule: while webhook requests are in flight, new runs wait (bounded)."""

from __future__ import annotations

import time
from typing import Any

from agent.context import MemoryRecorder
from api.runs import RunOutcome
from api.worker import Job, RunWorker


class _Recorder(MemoryRecorder):
    def runs_due(self) -> list[tuple[str, Any]]:
        return []

    def set_run_status(self, run_id: str, status: str) -> None:
        pass


def _worker(started: list[float]) -> RunWorker:
    def execute(run_id: str, **_: Any) -> RunOutcome:
        started.append(time.monotonic())
        return RunOutcome(run_id, "proposed", None)

    worker = RunWorker(_Recorder(), lambda: None, None, threads=1, execute=execute)  # type: ignore[arg-type]
    worker.start()
    return worker


def test_runs_wait_while_alerts_are_being_ingested_and_start_when_it_is_quiet():
    started: list[float] = []
    worker = _worker(started)
    worker.max_ingest_wait_s = 30
    worker.ingest_started()
    worker.submit(Job("r1"))
    assert not worker.wait_idle(timeout=0.3) and started == []  # held back while a webhook is in flight
    released = time.monotonic()
    worker.ingest_finished()
    assert worker.wait_idle(timeout=10) and len(started) == 1 and started[0] >= released
    worker.stop()


def test_a_storm_cannot_starve_triage_forever():
    started: list[float] = []
    worker = _worker(started)
    worker.max_ingest_wait_s = 0.2
    worker.ingest_started()  # never finishes
    began = time.monotonic()
    worker.submit(Job("r1"))
    assert worker.wait_idle(timeout=10) and started[0] - began >= 0.2
    worker.stop()
