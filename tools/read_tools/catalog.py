"""The tools the LLM may call today, one entry each. Adding a tool is one more `ReadTool(...)` here:
its arguments model (validated before the call), a description the model reads, a function that
returns (findings, gaps), and the source it needs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from agent.findings import Findings, finding, gap
from tools.read_tools.registry import ReadSources, ReadTool, Registry, allowed_namespace, label_value

Namespace = Annotated[str, AfterValidator(label_value), AfterValidator(allowed_namespace)]
Name = Annotated[str, Field(max_length=200), AfterValidator(label_value)]
Signal = Literal[
    "sla",
    "http_408_rate",
    "http_429_rate",
    "http_5xx_rate",
    "ttft_p95_s",
    "tpot_p95_s",
    "queue_depth",
    "kv_cache_usage",
    "gpu_util",
    "pod_restarts",
    "pod_cpu_skew",
    "pod_memory_skew",
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentArgs(_Args):
    namespace: Namespace
    name: Name


class NodeArgs(_Args):
    name: Name


class MetricsArgs(_Args):
    namespace: Namespace
    deployment: Name | None = None
    model: Name | None = None
    signals: list[Signal] = Field(min_length=1, max_length=12)

    @model_validator(mode="after")
    def _one_service(self) -> MetricsArgs:
        if not (self.deployment or self.model):
            raise ValueError("name the service: deployment or model")
        return self


class SearchArgs(_Args):
    text: str = Field(min_length=3, max_length=500)
    limit: int = Field(default=5, ge=1, le=10)


def _cluster_error(where: str, out: dict[str, Any]) -> Findings:
    error = out["error"]
    return [], [gap("kubernetes", f"{where}: {error.get('reason')} {error.get('api_error') or ''}".strip())]


def deployment_state(args: DeploymentArgs, sources: ReadSources) -> Findings:
    assert sources.cluster is not None
    where = f"deployment {args.namespace}/{args.name}"
    out = sources.cluster.evidence({"namespace": args.namespace, "deployment": args.name})
    if "error" in out:
        return _cluster_error(where, out)
    deployment = out.get("deployment") or {}
    pods = out.get("pods") or []
    phases: dict[str, int] = {}
    for pod in pods:
        phases[str(pod.get("phase"))] = phases.get(str(pod.get("phase")), 0) + 1
    summary = (
        f"{where}: {deployment.get('available', '?')}/{deployment.get('replicas', '?')} available, "
        f"generation {deployment.get('generation', '?')}, pods {phases or 'none'}"
    )
    found = [finding("workload_state", summary, {"type": "kubernetes", "object": where}, data=out)]
    for event in (out.get("events") or [])[-5:]:
        text = f"{where} event {event.get('reason')} x{event.get('count')}: {event.get('message')}"
        found.append(finding("event", text, {"type": "kubernetes", "object": where}, data=event))
    return found, []


def node_state(args: NodeArgs, sources: ReadSources) -> Findings:
    assert sources.cluster is not None
    where = f"node {args.name}"
    out = sources.cluster.evidence({"node": args.name})
    if "error" in out:
        return _cluster_error(where, out)
    node = out.get("node") or {}
    conditions = node.get("conditions") or {}
    summary = f"{where}: {'cordoned' if node.get('unschedulable') else 'schedulable'}, conditions {conditions}"
    return [finding("node_state", summary, {"type": "kubernetes", "object": where}, data=node)], []


def serving_metrics(args: MetricsArgs, sources: ReadSources) -> Findings:
    assert sources.metrics is not None
    labels = {"namespace": args.namespace, "model": args.model, "deployment": None if args.model else args.deployment}
    where = ",".join(f'{k}="{v}"' for k, v in labels.items() if v)
    found, gaps = [], []
    for name, query, value in sources.metrics.instant(list(dict.fromkeys(args.signals)), where):
        if value is None:
            gaps.append(gap("prometheus", f"no data for {name} ({query})"))
            continue
        source = {"type": "prometheus", "query": query, "range": "instant"}
        found.append(finding("signal", f"{name} = {value:.4g}", source, data={"name": name, "value": value}))
    return found, gaps


def search_postmortems(args: SearchArgs, sources: ReadSources) -> Findings:
    assert sources.postmortems is not None
    found = []
    for hit in sources.postmortems.search(args.text, args.limit):
        summary = (
            f"postmortem {hit.get('id')}: {hit.get('title')} — {hit.get('category')}/{hit.get('subcategory')}, "
            f"fixed by {hit.get('mitigation')}"
        )
        data = {k: hit.get(k) for k in ("id", "title", "date", "category", "subcategory", "mitigation", "snippet")}
        found.append(
            finding("precedent", summary, {"type": "postmortems", "postmortem_id": str(hit.get("id"))}, data=data)
        )
    return found, [] if found else [gap("postmortems", f"no postmortem matches {args.text[:80]!r}")]


def search_incidents(args: SearchArgs, sources: ReadSources) -> Findings:
    assert sources.incidents is not None
    hits = sources.incidents.search(args.text, args.limit)
    found = []
    for hit in hits:
        summary = (
            f"incident {hit['id']} ({hit['received_at'][:16]}): {hit['title']} — "
            f"{hit.get('category')}/{hit.get('subcategory')}, {hit.get('mitigation')} {hit.get('operation')}, "
            f"{hit.get('outcome')}"
        )
        source = {"type": "incident_store", "incident_ids": [hit["id"]]}
        found.append(finding("history", summary, source, at=hit["received_at"], data=hit))
    return found, [] if found else [gap("incident_store", f"no earlier incident matches {args.text[:80]!r}")]


READ_TOOLS = Registry(
    [
        ReadTool(
            "deployment_state",
            DeploymentArgs,
            "Read a Deployment: replicas available, generation, its pods (node, phase) and recent events.",
            deployment_state,
            "cluster",
        ),
        ReadTool(
            "node_state",
            NodeArgs,
            "Read a Node: cordoned or not, and its conditions (Ready, MemoryPressure, ...).",
            node_state,
            "cluster",
        ),
        ReadTool(
            "serving_metrics",
            MetricsArgs,
            "Current serving signals of one service from Prometheus (SLA, error rates, TTFT, queue, KV cache, "
            "GPU, restarts, per-pod skew).",
            serving_metrics,
            "metrics",
        ),
        ReadTool(
            "search_postmortems",
            SearchArgs,
            "Search past postmortems by text: what happened before, its category and what fixed it.",
            search_postmortems,
            "postmortems",
        ),
        ReadTool(
            "search_incidents",
            SearchArgs,
            "Search earlier incidents in mitigate's store by text or alert name: how often, the last "
            "classification, action and outcome.",
            search_incidents,
            "incidents",
        ),
    ]
)
