"""The registry: one small entry per tool (name, pydantic arguments model, description, callable), the
OpenAI function specs made from it, and `call`, which refuses unknown names and invalid arguments
before anything runs and turns any failure of a source into a stated gap."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError, ValidationInfo
from sqlalchemy.orm import Session, sessionmaker

from agent.findings import Finding, Findings, Gap, gap
from tools.investigate.bounds import Bounds
from tools.investigate.kube import KubeSource

# A label value or Kubernetes name a tool will put into a query or an API path; never quoted, refused.
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]{0,198}[A-Za-z0-9])?$")


class ClusterReader(Protocol):
    def evidence(self, target: dict[str, Any]) -> dict[str, Any]: ...


class MetricsReader(Protocol):
    def instant(self, names: list[str], where: str) -> list[tuple[str, str, float | None]]: ...


class TrendReader(Protocol):
    """Prometheus as the investigation's trend reads it: its URL and the PromQL of named signals."""

    url: str

    def series(self, names: list[str], where: str) -> dict[str, str]: ...


class Searcher(Protocol):
    def search(self, text: str, limit: int = 5) -> list[dict[str, Any]]: ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ReadSources:
    """What the tools may read; a missing source hides the tools that need it. `kube`, `trends` and
    `store` are the deterministic investigation's own handles (tools/investigate/), so the LLM's
    `recent_changes`, `workload_state`, `metric_trend` and `incident_history` run its functions,
    within its `bounds`. `incident_id` and `impact` are the run's (set per run by the Explorer)."""

    namespaces: frozenset[str]
    cluster: ClusterReader | None = None
    metrics: MetricsReader | None = None
    postmortems: Searcher | None = None
    incidents: Searcher | None = None
    kube: KubeSource | None = None
    trends: TrendReader | None = None
    store: sessionmaker[Session] | None = None
    bounds: Bounds = field(default_factory=Bounds)
    incident_id: str | None = None
    impact: datetime | None = None  # when the incident began: "changed N min before impact"
    clock: Callable[[], datetime] = _now

    def has(self, name: str) -> bool:
        return getattr(self, name) is not None


def allowed_namespace(value: str, info: ValidationInfo) -> str:
    """A field validator: the namespace must be one the guard policy allows (passed as context)."""
    allowed: Collection[str] = (info.context or {}).get("namespaces") or ()
    if value not in allowed:
        raise ValueError(f"namespace {value!r} is not allowed (allowed: {', '.join(sorted(allowed))})")
    return value


def label_value(value: str) -> str:
    if not LABEL_VALUE.match(value):
        raise ValueError(f"{value[:60]!r} is not a plain name or label value")
    return value


@dataclass(frozen=True)
class ReadTool:
    name: str
    args: type[BaseModel]
    description: str
    call: Callable[[Any, ReadSources], Findings]
    needs: str  # the ReadSources field it reads


@dataclass
class CallOutcome:
    """One tool call as the loop records it and as the model is told."""

    tool: str
    args: dict[str, Any] | str
    ok: bool
    error: str | None
    findings: list[Finding] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    latency_ms: float = 0.0

    def for_model(self) -> dict[str, Any]:
        if not self.ok:
            return {"refused": self.error}
        return {
            "findings": [{k: f[k] for k in ("kind", "summary", "source", "at", "data")} for f in self.findings],
            "gaps": self.gaps,
        }


class Registry:
    def __init__(self, tools: Iterable[ReadTool]) -> None:
        self.tools = {tool.name: tool for tool in tools}

    def available(self, sources: ReadSources) -> list[ReadTool]:
        return [tool for tool in self.tools.values() if sources.has(tool.needs)]

    def specs(self, sources: ReadSources) -> list[dict[str, Any]]:
        """The OpenAI `tools=[...]` list for what these sources can answer."""
        return [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.args.model_json_schema(),
                },
            }
            for tool in self.available(sources)
        ]

    def call(self, name: str, arguments: str, sources: ReadSources) -> CallOutcome:
        """Run one call. Unknown (or unavailable) tools and arguments that do not validate are refused
        without calling anything; a source that fails is a gap, never an exception."""
        started = time.perf_counter()
        tool = self.tools.get(name)
        if tool is None or not sources.has(tool.needs):
            allowed = ", ".join(t.name for t in self.available(sources))
            return CallOutcome(name[:80], arguments[:500], False, f"{name[:80]!r} is not an allowed tool ({allowed})")
        try:
            args = tool.args.model_validate_json(arguments or "{}", context={"namespaces": sources.namespaces})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            return CallOutcome(name, arguments[:500], False, f"invalid arguments: {problems}"[:500])
        try:
            findings, gaps = tool.call(args, sources)
        except Exception as exc:  # a source down or refusing is a gap in the report, never a crash
            findings, gaps = [], [gap(tool.needs, f"{type(exc).__name__}: {str(exc)[:300]}")]
        elapsed = (time.perf_counter() - started) * 1000
        return CallOutcome(name, args.model_dump(mode="json"), True, None, findings, gaps, round(elapsed, 2))


def parse_arguments(raw: str) -> dict[str, Any] | str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw[:500]
    return value if isinstance(value, dict) else raw[:500]
