"""What investigation found, in one shape for every source: a Finding says what was seen and exactly
where (the API object and its resourceVersion, the PromQL query and range, the store rows, the
postmortem); a Gap says which source could not be read and why ("Prometheus unreachable: no trend").

Both are plain JSON dicts so they live in the graph's checkpointed state, reports and chat messages
unchanged. The deterministic `investigate` step (tools/investigate/) and the LLM tool loop (`explore`)
both produce them; classify and the report read them. Their text comes from the cluster and the store
(which incident text reaches), so it is data, never instructions.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

SourceType = Literal["kubernetes", "prometheus", "incident_store", "postmortems"]
SOURCE_TYPES: tuple[str, ...] = ("kubernetes", "prometheus", "incident_store", "postmortems")


class Finding(TypedDict):
    kind: str  # recent_change, rollout, restarts, pending, node_condition, log_tail, metric_trend, history, ...
    summary: str  # one line a DRI reads
    # {"type": SourceType, plus what locates it: object + resourceVersion | query + range | incident_ids |
    # postmortem_id}
    source: dict[str, Any]
    at: str | None  # ISO time of what was seen (a change, a termination), when known
    data: dict[str, Any]  # small structured detail


class Gap(TypedDict):
    source: str  # kubernetes, prometheus, incident_store, postmortems
    reason: str  # "Prometheus unreachable: no trend"


def finding(
    kind: str, summary: str, source: dict[str, Any], at: str | None = None, data: dict[str, Any] | None = None
) -> Finding:
    """A finding with its summary kept to one line of at most 300 characters."""
    if source.get("type") not in SOURCE_TYPES:
        raise ValueError(f"unknown finding source type {source.get('type')!r}")
    line = " ".join(summary.split())[:300]
    return {"kind": kind, "summary": line, "source": source, "at": at, "data": data or {}}


def gap(source: str, reason: str) -> Gap:
    return {"source": source, "reason": " ".join(reason.split())[:500]}


def empty_investigation() -> dict[str, Any]:
    return {"findings": [], "gaps": [], "elapsed_ms": 0.0}


Findings = tuple[list[Finding], list[Gap]]
