"""Read-only investigation of an incident: what changed, how the workload is, what Prometheus shows
over the last hour, and what the incident store remembers. One module per source (changes, workload,
trends, history), each callable on its own and returning (findings, gaps); `Investigator` runs them
side by side within one time budget for the graph's `investigate` step."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from agent.findings import Finding, Gap, gap
from agent.schemas import Incident
from tools.investigate.bounds import Bounds
from tools.investigate.kube import KubeSource

Source = Callable[[], tuple[list[Finding], list[Gap]]]


class Investigator:
    """The `Investigator` port of the graph on real clients; any of them may be missing (a gap says so)."""

    def __init__(
        self,
        kube: KubeSource | None = None,
        prometheus_url: str | None = None,
        trend_queries: Callable[[Incident], dict[str, str]] | None = None,
        sessions: Any = None,
        *,
        bounds: Bounds | None = None,
        budget_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.prometheus_url, self.trend_queries, self.sessions = (
            kube,
            prometheus_url,
            trend_queries,
            sessions,
        )
        self.bounds = bounds or Bounds()
        self.budget_s = budget_s
        self.clock = clock

    def sources(self, incident: Incident, entities: dict[str, str]) -> tuple[dict[str, Source], list[Gap]]:
        from store.incident_queries import recurrence_key
        from tools.investigate.changes import recent_changes
        from tools.investigate.history import incident_history
        from tools.investigate.trends import metric_trends
        from tools.investigate.workload import workload_state

        now = self.clock()
        impact = incident.started_at if incident.started_at is not None else now
        if impact.tzinfo is None:
            impact = impact.replace(tzinfo=UTC)
        chosen: dict[str, Source] = {}
        gaps: list[Gap] = []
        kube, bounds = self.kube, self.bounds
        if kube is None:
            gaps.append(gap("kubernetes", "no cluster configured: no recent changes or workload state"))
        elif not (entities.get("namespace") and entities.get("deployment")) and not entities.get("node"):
            gaps.append(gap("kubernetes", "the incident names no deployment or node to look at"))
        else:
            chosen["changes"] = lambda: recent_changes(kube, entities, now=now, impact=impact, bounds=bounds)
            chosen["workload"] = lambda: workload_state(kube, entities, bounds=bounds)
        if self.prometheus_url is None or self.trend_queries is None:
            gaps.append(gap("prometheus", "no Prometheus configured: no trend"))
        else:
            url, queries = self.prometheus_url, self.trend_queries(incident)
            chosen["trends"] = lambda: metric_trends(url, queries, now=now, bounds=bounds)
        if self.sessions is not None and recurrence_key(incident.model_dump(mode="json")) is not None:
            sessions = self.sessions
            chosen["history"] = lambda: incident_history(sessions, incident, now=now, bounds=bounds)
        return chosen, gaps

    def investigate(self, incident: Incident, entities: dict[str, str]) -> dict[str, Any]:
        started = time.perf_counter()
        chosen, gaps = self.sources(incident, entities)
        if not chosen:  # nothing configured to look at: the gaps say so, without a thread hop
            return {"findings": [], "gaps": gaps, "elapsed_ms": 0.0, "sources": []}
        findings: list[Finding] = []
        # One pool per investigation (the service builds a context per run): its threads end with their
        # reads, and a source still running past the budget is left to its own deadline, not waited for.
        pool = ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="mitigate-investigate")
        futures = {name: pool.submit(run) for name, run in chosen.items()}
        wait(list(futures.values()), timeout=self.budget_s, return_when=ALL_COMPLETED)
        pool.shutdown(wait=False)
        for name, future in futures.items():
            if not future.done():
                gaps.append(gap(name, f"{name} took longer than the {self.budget_s:g} s budget: left out"))
                continue
            try:
                found, missing = future.result()
            except Exception as exc:  # a bug in one source must not cost the run the others
                gaps.append(gap(name, f"{name} failed: {type(exc).__name__}: {str(exc)[:160]}"))
                continue
            findings += found
            gaps += missing
        findings.sort(key=lambda f: (f["kind"] != "recent_change", f["at"] is None, f["at"] or ""))
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return {"findings": findings, "gaps": gaps, "elapsed_ms": elapsed, "sources": sorted(chosen)}


__all__ = ["Bounds", "Investigator", "KubeSource"]
