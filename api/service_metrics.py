"""mitigate's own Prometheus metrics, on a registry per app so that several apps (tests) can coexist."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from api.runs import RunOutcome


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
