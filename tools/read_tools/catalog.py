"""The tools the LLM may call today, one entry each. Adding a tool is one more `ReadTool(...)` here:
its arguments model (validated before the call), a description the model reads, a function that
returns (findings, gaps), and the source it needs."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from agent.findings import Findings, finding, gap
from agent.schemas import Alert, Incident
from tools.investigate.changes import recent_changes as investigate_changes
from tools.investigate.history import incident_history as investigate_history
from tools.investigate.trends import metric_trends
from tools.investigate.workload import workload_state as investigate_workload
from tools.metrics import PrometheusMetrics
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


class TargetArgs(_Args):
    """A Deployment (with its namespace), a Node, or both: what the investigation calls the target."""

    namespace: Namespace | None = None
    deployment: Name | None = None
    node: Name | None = None

    @model_validator(mode="after")
    def _a_target(self) -> TargetArgs:
        if bool(self.namespace) != bool(self.deployment):
            raise ValueError("a deployment needs its namespace, and a namespace a deployment")
        if not (self.deployment or self.node):
            raise ValueError("name a deployment (with its namespace) or a node")
        return self

    def entities(self) -> dict[str, str]:
        named = {"namespace": self.namespace, "deployment": self.deployment, "node": self.node}
        return {k: v for k, v in named.items() if v}


class ChangesArgs(TargetArgs):
    # How far back "recent" goes; unset, the investigation's own setting (MITIGATE_INVESTIGATE_HOURS).
    hours: float | None = Field(default=None, gt=0, le=168)


def _trend_signals() -> list[Signal]:
    """The investigation's own key series (tools/metrics.py TREND_SERIES), the default to trend."""
    return [cast(Signal, name) for name in PrometheusMetrics.TREND_SERIES]


class TrendArgs(_Args):
    namespace: Namespace
    deployment: Name | None = None
    model: Name | None = None
    signals: list[Signal] = Field(default_factory=lambda: _trend_signals(), min_length=1, max_length=12)
    minutes: int = Field(default=60, ge=1, le=360)

    @model_validator(mode="after")
    def _one_service(self) -> TrendArgs:
        if not (self.deployment or self.model):
            raise ValueError("name the service: deployment or model")
        return self


class HistoryArgs(_Args):
    alertname: Name
    target: Name | None = None  # the deployment, node, pod, service or endpoint the alert names
    days: int = Field(default=30, ge=1, le=90)


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


def _service(args: MetricsArgs | TrendArgs) -> str:
    """Label matchers of one service, from validated plain values only (never PromQL from the model)."""
    labels = {"namespace": args.namespace, "model": args.model, "deployment": None if args.model else args.deployment}
    return ",".join(f'{k}="{v}"' for k, v in labels.items() if v)


def serving_metrics(args: MetricsArgs, sources: ReadSources) -> Findings:
    assert sources.metrics is not None
    where = _service(args)
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


# The deterministic investigation's own functions (tools/investigate/), with the model's validated
# arguments in place of the incident's entities: the same reads, bounds, redaction and sources.


def recent_changes(args: ChangesArgs, sources: ReadSources) -> Findings:
    assert sources.kube is not None
    now = sources.clock()
    bounds = replace(sources.bounds, changes_hours=args.hours) if args.hours else sources.bounds
    return investigate_changes(sources.kube, args.entities(), now=now, impact=sources.impact or now, bounds=bounds)


def workload_state(args: TargetArgs, sources: ReadSources) -> Findings:
    assert sources.kube is not None
    return investigate_workload(sources.kube, args.entities(), bounds=sources.bounds)


def metric_trend(args: TrendArgs, sources: ReadSources) -> Findings:
    assert sources.trends is not None
    queries = sources.trends.series(list(dict.fromkeys(args.signals)), _service(args))
    bounds = replace(sources.bounds, trend_minutes=args.minutes)
    return metric_trends(sources.trends.url, queries, now=sources.clock(), bounds=bounds, include_steady=True)


def incident_history(args: HistoryArgs, sources: ReadSources) -> Findings:
    assert sources.store is not None
    labels = {"alertname": args.alertname, **({"deployment": args.target} if args.target else {})}
    # The run's own incident is left out, as in the investigation's history step.
    asked = Incident(id=sources.incident_id or "tool-loop", alert=Alert(labels=labels))
    bounds = replace(sources.bounds, history_days=args.days)
    found, gaps = investigate_history(sources.store, asked, now=sources.clock(), bounds=bounds)
    if not found and not gaps:
        on = f" on {args.target}" if args.target else " without a target"
        gaps = [gap("incident_store", f"no earlier {args.alertname}{on} in the last {args.days} days")]
    return found, gaps


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
        ReadTool(
            "recent_changes",
            ChangesArgs,
            "What changed in the last `hours` on a Deployment, its neighbours and the nodes under it: revisions "
            "with the pod-template diff (image, args, env, resources), ConfigMaps/Secrets it references (names "
            "and change times only), its HPA, node cordons, taints and kubelet versions; each with minutes "
            "before the impact.",
            recent_changes,
            "kube",
        ),
        ReadTool(
            "workload_state",
            TargetArgs,
            "How a Deployment's workload is now: rollout status, pod restarts with the last termination "
            "(OOMKilled, exit code, signal), why pods are Pending, bad node conditions, and the last lines of "
            "the most-restarted container's log (capped, tokens redacted).",
            workload_state,
            "kube",
        ),
        ReadTool(
            "metric_trend",
            TrendArgs,
            "The service's key series over the last `minutes` from Prometheus: baseline, worst, now, when each "
            "started to move and whether it is still moving (ongoing), back (recovered) or steady.",
            metric_trend,
            "trends",
        ),
        ReadTool(
            "incident_history",
            HistoryArgs,
            "How often this alert fired on this target in the last `days` (mitigate's store), and the last "
            "one's classification, plan, action and outcome: the recurrence evidence.",
            incident_history,
            "store",
        ),
    ]
)
