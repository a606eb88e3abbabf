"""Automatic retention in `mitigate serve`: store/retention.py's prune, hourly, in a daemon thread; each
pass also brings the gap report's facts up to date (store/facts.py), so their change notes stay few.

Every replica may run it: pruning is idempotent and goes in small batches, so two replicas pruning at
once only share the work."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import Engine

from store.facts import refresh_facts
from store.retention import prune

log = logging.getLogger("mitigate.retention")


class RetentionLoop:
    def __init__(self, engine: Engine, older_than_days: float, every_s: float = 3600.0, first_after_s: float = 60.0):
        self._engine = engine
        self._older_than = timedelta(days=older_than_days)
        self._every_s, self._first_after_s = every_s, first_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        if self._older_than <= timedelta(0):  # retention off: keep everything
            return
        self._thread = threading.Thread(target=self._loop, name="mitigate-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        wait = self._first_after_s  # not during start-up, when the worker picks up what was left
        while not self._stop.wait(wait):
            wait = self._every_s
            try:  # the gap report's facts, so their change notes never pile up; apart from pruning,
                refresh_facts(self._engine)  # so that one failing never stops the other
            except Exception:
                log.warning("retention: refreshing the gap report's facts failed; retrying in %.0f s", self._every_s)
            try:
                report = prune(self._engine, self._older_than)
                if report.runs:
                    log.info("retention: %s", report.describe())
            except Exception:  # a busy or restarting database: try again next time, never stop serving
                log.warning("retention: pruning failed; retrying in %.0f s", self._every_s, exc_info=True)
            self.passes += 1
