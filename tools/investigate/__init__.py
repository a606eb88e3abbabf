"""Read-only investigation of an incident: what changed, how the workload is, what Prometheus shows
over the last hour, and what the incident store remembers. One module per source (changes, workload,
trends, history), each callable on its own and returning (findings, gaps); `Investigator` runs them
side by side within one time budget for the graph's `investigate` step (the store's history alone, the
one source every installation has, in the calling thread: see `Investigator.investigate`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.findings import Finding, Gap, gap
from agent.schemas import Incident
from tools.investigate.bounds import Bounds
from tools.investigate.kube import KubeSource

if TYPE_CHECKING:
    from tools.investigate.history import RecurrenceRead

Source = Callable[[], tuple[list[Finding], list[Gap]]]
# Sources that read the incident store only: local, and bounded by their own queries' limits.
LOCAL_SOURCES = frozenset({"history"})


class _History:
    """The history source of one investigation: keeps what it read for the recurrence veto."""

    def __init__(self, sessions: Any, incident: Incident, now: datetime, bounds: Bounds) -> None:
        self.sessions, self.incident, self.now, self.bounds = sessions, incident, now, bounds
        self.read: RecurrenceRead | None = None

    def __call__(self) -> tuple[list[Finding], list[Gap]]:
        from tools.investigate.history import read_history  # the sources' modules load on first use

        findings, gaps, self.read = read_history(self.sessions, self.incident, now=self.now, bounds=self.bounds)
        return findings, gaps


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

    @property
    def local_only(self) -> bool:
        """No cluster and no Prometheus: at most the store's history, a bounded local read."""
        return self.kube is None and (self.prometheus_url is None or self.trend_queries is None)

    def sources(self, incident: Incident, entities: dict[str, str]) -> tuple[dict[str, Source], list[Gap]]:
        from store.incident_queries import recurrence_key
        from tools.investigate.changes import recent_changes
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
            chosen["history"] = _History(self.sessions, incident, now, bounds)
        return chosen, gaps

    def investigate(self, incident: Incident, entities: dict[str, str]) -> dict[str, Any]:
        """{"findings", "gaps", "elapsed_ms", "sources"}, and "recurrences" (a `RecurrenceRead`) when the
        store's history was read: classify's recurrence veto answers from it instead of a second read."""
        started = time.perf_counter()
        chosen, gaps = self.sources(incident, entities)
        if not chosen:  # nothing configured to look at: the gaps say so, without a thread hop
            return {"findings": [], "gaps": gaps, "elapsed_ms": 0.0, "sources": []}
        if chosen.keys() <= LOCAL_SOURCES:
            # The store's history alone (no cluster, no Prometheus: what every installation has) runs in
            # the calling thread: a pool's thread hop cost ~2.5 ms of a ~40 ms triage, and its time budget
            # buys nothing here. The read is bounded by its queries (a window of `max_items` × 20 incidents
            # by the received-time index, their labels; one run and one action), and the run reads and
            # writes the same store right after (the step's record, classify's veto) without a budget, so
            # a store that stalls holds the run whether or not this read is on a pool.
            outcomes: dict[str, Any] = {name: _outcome(run) for name, run in chosen.items()}
        else:
            # One pool per investigation (the service builds a context per run): its threads end with their
            # reads, and a source still running past the budget is left to its own deadline, not waited for.
            pool = ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="mitigate-investigate")
            futures = {name: pool.submit(_outcome, run) for name, run in chosen.items()}
            wait(list(futures.values()), timeout=self.budget_s, return_when=ALL_COMPLETED)
            pool.shutdown(wait=False)
            outcomes = {name: future.result() if future.done() else None for name, future in futures.items()}
        findings: list[Finding] = []
        for name, outcome in outcomes.items():
            if outcome is None:
                gaps.append(gap(name, f"{name} took longer than the {self.budget_s:g} s budget: left out"))
            elif isinstance(outcome, Exception):  # a bug in one source must not cost the run the others
                gaps.append(gap(name, f"{name} failed: {type(outcome).__name__}: {str(outcome)[:160]}"))
            else:
                findings += outcome[0]
                gaps += outcome[1]
        findings.sort(key=lambda f: (f["kind"] != "recent_change", f["at"] is None, f["at"] or ""))
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        result: dict[str, Any] = {"findings": findings, "gaps": gaps, "elapsed_ms": elapsed, "sources": sorted(chosen)}
        history = chosen.get("history")
        # Only a read that finished in time counts (a late one is a gap above, and the veto asks the store).
        if isinstance(history, _History) and history.read is not None and outcomes.get("history") is not None:
            result["recurrences"] = history.read
        return result


def _outcome(run: Source) -> tuple[list[Finding], list[Gap]] | Exception:
    """A source's answer, or the exception it raised (reported as a gap, not raised)."""
    try:
        return run()
    except Exception as exc:
        return exc


__all__ = ["Bounds", "Investigator", "KubeSource"]
