"""The dashboard's default gap report (the last 30 days), served from memory and refreshed behind.

Aggregated in SQL it costs O(incidents in the window) per computation: ~0.6 s at 20k incidents and
seconds at 100k on SQLite (bench/history.py). It is a monthly report; a minute old is as good as new.
So the default view is computed once, served for `FRESH_S`, and when older it is still served while
one background thread recomputes it (stale-while-revalidate): a page view never waits for the
aggregation except the first one after start. A chosen `since` is computed on demand, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

FRESH_S = 60.0
WINDOW = timedelta(days=30)


class GapCache:
    def __init__(self, compute: Callable[[datetime], dict[str, Any]], fresh_s: float = FRESH_S) -> None:
        self._compute = compute
        self._fresh_s = fresh_s
        self._lock = threading.Lock()
        self._report: dict[str, Any] | None = None
        self._at = 0.0
        self._refreshing = False

    def report(self) -> tuple[dict[str, Any], float]:
        """The report of the last 30 days and its age in seconds."""
        with self._lock:
            report, age = self._report, time.monotonic() - self._at
            stale = report is not None and age > self._fresh_s and not self._refreshing
            if stale:
                self._refreshing = True
        if report is None:
            return self._refresh(), 0.0
        if stale:
            threading.Thread(target=self._refresh, name="mitigate-gap-report", daemon=True).start()
        return report, age

    def _refresh(self) -> dict[str, Any]:
        try:
            report = self._compute(datetime.now(UTC) - WINDOW)
            with self._lock:
                self._report, self._at = report, time.monotonic()
            return report
        finally:
            with self._lock:
                self._refreshing = False


_caches: dict[int, tuple[Any, GapCache]] = {}
_caches_lock = threading.Lock()


def default_report(sessions: Any) -> tuple[dict[str, Any], float]:
    """The cached default report of this database (keyed by its session factory, held while cached)."""
    from evals.gaps_store import store_gap_report

    with _caches_lock:
        entry = _caches.get(id(sessions))
        if entry is None or entry[0] is not sessions:
            if len(_caches) >= 4:  # tests open many services in turn
                _caches.pop(next(iter(_caches)))
            entry = _caches[id(sessions)] = (sessions, GapCache(lambda since: store_gap_report(sessions, since)))
    report, age = entry[1].report()
    return {**report, "mitigate": dict(report["mitigate"])}, age
