"""What investigation found, and what it could not look at: the two shapes every investigation source
returns (tools/investigate/) and the graph keeps in `state["investigation"]`.

A `Finding` is one fact a DRI reads in a line, with where it was read (an API object and its
resourceVersion, a PromQL query and its range, incident-store rows) so that it can be checked. A `Gap`
is a source that could not answer (down, forbidden, missing, too slow, malformed): stated, never raised.
Both are plain JSON so that they live in checkpoints, reports and chat messages unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

SourceType = Literal["kubernetes", "prometheus", "incident_store"]


class Finding(TypedDict):
    kind: str  # recent_change, rollout, restarts, pending, node_condition, log_tail, metric_trend, history
    summary: str  # one line a DRI reads
    source: dict[str, Any]  # {"type": SourceType, ...: object+resourceVersion | query+range | incident_ids}
    at: str | None  # ISO time the fact happened (a change, a termination), when known
    data: dict[str, Any]  # small structured detail


class Gap(TypedDict):
    source: str  # kubernetes, prometheus, incident_store
    reason: str  # "Prometheus unreachable: no trend"


def finding(
    kind: str, summary: str, source: dict[str, Any], at: str | None = None, data: dict[str, Any] | None = None
) -> Finding:
    return Finding(kind=kind, summary=summary[:300], source=source, at=at, data=data or {})


def gap(source: str, reason: str) -> Gap:
    return Gap(source=source, reason=reason[:300])


def empty_investigation() -> dict[str, Any]:
    return {"findings": [], "gaps": [], "elapsed_ms": 0.0}
