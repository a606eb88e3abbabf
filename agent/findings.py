"""What investigation found, in one shape for every source: a Finding says what was seen and exactly
where (the API object and its resourceVersion, the PromQL query and range, the store rows, the
postmortem); a Gap says which source could not be read and why ("Prometheus unreachable: no trend").

Both are plain JSON dicts so they live in the graph's checkpointed state. The deterministic
`investigate` step and the LLM tool loop (`explore`) both produce them; classify and the report read
them. Their text comes from the cluster and the store (which incident text reaches), so it is data.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

SourceType = Literal["kubernetes", "prometheus", "incident_store", "postmortems"]
SOURCE_TYPES: tuple[str, ...] = ("kubernetes", "prometheus", "incident_store", "postmortems")


class Source(TypedDict):
    """Where a finding was read; `type` plus whatever detail locates it."""

    type: SourceType
    object: NotRequired[str]
    resourceVersion: NotRequired[str]
    query: NotRequired[str]
    range: NotRequired[str]
    incident_ids: NotRequired[list[str]]
    postmortem_id: NotRequired[str]


class Finding(TypedDict):
    kind: str
    summary: str  # one line
    source: Source
    at: str | None  # ISO time of what was seen, when known
    data: dict[str, Any]


class Gap(TypedDict):
    source: str
    reason: str


def finding(
    kind: str, summary: str, source: Source, *, at: str | None = None, data: dict[str, Any] | None = None
) -> Finding:
    """A finding with its summary kept to one line of at most 300 characters."""
    if source["type"] not in SOURCE_TYPES:
        raise ValueError(f"unknown finding source type {source['type']!r}")
    line = " ".join(summary.split())[:300]
    return {"kind": kind, "summary": line, "source": source, "at": at, "data": data or {}}


def gap(source: str, reason: str) -> Gap:
    return {"source": source, "reason": " ".join(reason.split())[:500]}


Findings = tuple[list[Finding], list[Gap]]
