"""Ingest first: while webhook requests are in flight, the next run waits a little, so that storing and
acknowledging alerts during a storm does not compete with triage for the interpreter. Shared by the
in-process worker (SQLite) and the PostgreSQL queue's workers inside `mitigate serve`."""

from __future__ import annotations

import threading
import time


class IngestGate:
    def __init__(self) -> None:
        # While webhook requests are in flight, the next run waits (at most max_ingest_wait_s).
        # Accepted runs are already durable in the database. The cap is a few seconds, not one: a burst
        # of several hundred alerts takes 2-4 s to acknowledge on 2 cores, and triage started half way
        # through it halves the ack rate (bench/webhook.py, rounds of 600: 0.46x with a 1 s cap), while
        # a run held 5 s is nothing against a time to mitigate in minutes. A stream that never pauses
        # still gets each worker thread's next run every 5 s, and all of them once it pauses.
        self._ingesting = 0
        self._last_ingest = 0.0
        self._ingest_quiet = threading.Condition(threading.Lock())
        self.max_ingest_wait_s = 5.0
        # "Quiet" means no webhook for this long, not just none at this instant: between two requests
        # of a storm there is always a moment with none in flight.
        self.quiet_period_s = 0.05

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
