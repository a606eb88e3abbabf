"""mitigate's own Prometheus metrics, on a registry per app so that several apps (tests) can coexist.

Counters and histograms are this process's; the queue (queued and running runs, the oldest queued run's
age, runs by status) is read from the database at scrape time, so every replica reports the same
truth, and worker heartbeats are reported per replica (deploy/prometheus/alerts.yml pages on them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from api.runs import RunOutcome
from store.models import RunRow

DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.incidents = Counter(
            "mitigate_incidents_received_total", "Incidents accepted, by way in", ["source"], registry=self.registry
        )
        self.duplicates = Counter(
            "mitigate_alerts_deduplicated_total",
            "Repeated deliveries that started no run",
            ["source"],
            registry=self.registry,
        )
        self.runs = Counter("mitigate_runs_total", "Finished runs by outcome", ["status"], registry=self.registry)
        self.actions = Counter(
            "mitigate_actions_total", "Actions by operation and status", ["operation", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mitigate_triage_seconds",
            "Time from run start to its report or pause",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.llm_calls = Counter("mitigate_llm_calls_total", "LLM calls", ["stage"], registry=self.registry)
        self.llm_tokens = Counter("mitigate_llm_tokens_total", "LLM tokens", ["kind"], registry=self.registry)
        self.fallbacks = Counter(
            "mitigate_llm_fallbacks_total",
            "LLM answers replaced by the rulebook",
            ["stage", "kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mitigate_errors_total", "Requests refused or runs failed", ["where", "reason"], registry=self.registry
        )
        self.rejected = Counter(
            "mitigate_requests_rejected_total",
            "Requests refused, by door (alertmanager, pagerduty, incident, rest, approvals, slack, teams, "
            "dashboard, other) and HTTP status code",
            ["door", "code"],
            registry=self.registry,
        )
        self.database = Histogram(
            "mitigate_database_seconds",
            "Database round trips: an alert's commit before its 202 (ingest), the scrape's queue queries (scrape)",
            ["operation"],
            registry=self.registry,
            buckets=DB_BUCKETS,
        )
        self.queue_wait = Histogram(
            "mitigate_queue_wait_seconds",
            "Time a run waited in the queue before a worker started it",
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self._heartbeats: dict[str, float] = {}
        self._heartbeat_lock = threading.Lock()
        self.heartbeat_source: Callable[[], dict[str, float]] | None = None

    def heartbeat(self, replica: str, at: float | None = None) -> None:
        """A worker of `replica` is alive (unix seconds, default now): exported as
        mitigate_worker_last_heartbeat_timestamp_seconds{replica=...}. A queue that keeps heartbeats in
        the database sets `heartbeat_source` instead, so every replica exports every replica's."""
        with self._heartbeat_lock:
            self._heartbeats[replica] = time.time() if at is None else at

    def heartbeats(self) -> dict[str, float]:
        with self._heartbeat_lock:
            known = dict(self._heartbeats)
        if self.heartbeat_source is not None:
            known |= self.heartbeat_source()
        return known

    def watch_database(self, engine: Engine) -> None:
        """Export the queue and runs by status, read from `engine` at each scrape."""
        self.registry.register(_QueueCollector(engine, self))

    def observe(self, outcome: RunOutcome, seconds: float) -> None:
        self.runs.labels(outcome.status).inc()
        self.latency.observe(seconds)
        report: dict[str, Any] = outcome.report or {}
        for action in report.get("actions", []):
            self.actions.labels(action.get("operation", "?"), action.get("status", "?")).inc()
        for usage in report.get("llm_usage", []):
            self.llm_calls.labels(usage.get("stage", "?")).inc(usage.get("calls", 0))
            self.llm_tokens.labels("prompt").inc(usage.get("prompt_tokens", 0))
            self.llm_tokens.labels("completion").inc(usage.get("completion_tokens", 0))
        for fallback in report.get("fallbacks", []):
            self.fallbacks.labels(fallback.get("stage", "?"), fallback.get("kind", "?")).inc()


class _QueueCollector(Collector):
    """Cheap indexed queries at scrape time (runs.status is indexed): right across replicas."""

    def __init__(self, engine: Engine, metrics: ServiceMetrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # collected only on scrape, never at registration

    def collect(self) -> Iterator[Any]:
        by_status = GaugeMetricFamily(
            "mitigate_runs", "Runs in the database by status (queued, running, failed, ...)", labels=["status"]
        )
        oldest = GaugeMetricFamily(
            "mitigate_queue_oldest_age_seconds", "Age of the oldest queued run (0 when none is queued)"
        )
        up = GaugeMetricFamily("mitigate_database_up", "1 when the scrape could read the database")
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                counts = dict(conn.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all())
                first = conn.execute(select(func.min(RunRow.created_at)).where(RunRow.status == "queued")).scalar()
        except Exception:  # a scrape reports the database down; it never fails the scrape
            up.add_metric([], 0)
            yield up
            return
        finally:
            self.metrics.database.labels("scrape").observe(time.perf_counter() - started)
        for status in ("queued", "running", "failed"):
            counts.setdefault(status, 0)
        for status, count in sorted(counts.items()):
            by_status.add_metric([str(status)], float(count))
        age = 0.0
        if first is not None:
            first = first if first.tzinfo else first.replace(tzinfo=UTC)  # SQLite keeps no zone
            age = max(0.0, (datetime.now(UTC) - first).total_seconds())
        oldest.add_metric([], age)
        up.add_metric([], 1)
        beats = GaugeMetricFamily(
            "mitigate_worker_last_heartbeat_timestamp_seconds",
            "Unix time of each replica's last worker heartbeat",
            labels=["replica"],
        )
        for replica, at in sorted(self.metrics.heartbeats().items()):
            beats.add_metric([replica], at)
        yield from (by_status, oldest, up, beats)
