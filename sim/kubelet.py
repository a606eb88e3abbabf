"""A scheduler and kubelet stand-in for the local API server (the approach of kwok): binds pending
pods of the simulated namespace to schedulable fake GPU nodes, reports them Running and Ready after a
short warm-up, finishes the termination of deleted pods, and keeps the nodes' heartbeat so the node
lifecycle controller leaves them alone. There is no container anywhere: the traffic model plays them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim.model import Pod
from sim.topology import KEEPALIVE_ANNOTATION, MODEL_LABEL, REGION_LABEL, ROLE_LABEL, Topology

WARMUP_S = 1.5  # model loading: a new pod serves this long after it was bound
HEARTBEAT_S = 5.0


@dataclass
class ClusterView:
    """What one sync saw: the pods the traffic model serves with, the routing weights, the deployments
    that run the keep-alive template, and replica counts for kube-state-style metrics."""

    pods: list[Pod] = field(default_factory=list)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    keepalive: set[str] = field(default_factory=set)
    replicas: dict[str, tuple[int, int]] = field(default_factory=dict)  # deployment -> (desired, available)
    cordoned: set[str] = field(default_factory=set)
    restarts: dict[str, int] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _oom_killed(at: str) -> dict[str, Any]:
    return {"terminated": {"reason": "OOMKilled", "exitCode": 137, "startedAt": at, "finishedAt": at}}


class Kubelet:
    def __init__(self, api: Any, topology: Topology) -> None:
        from kubernetes import client

        self._client = client
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.topology = topology
        self._bound_at: dict[str, float] = {}
        self._last_heartbeat = 0.0
        self._reported_restarts: dict[str, int] = {}

    def youngest_pod_age(self) -> float:
        """Seconds since the most recently bound pod was bound (0 with none)."""
        if not self._bound_at:
            return 0.0
        return time.monotonic() - max(self._bound_at.values())

    def heartbeat(self) -> None:
        now = _now()
        for name, _ in self.topology.nodes:
            condition = {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "simulated kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            status = {
                "conditions": [condition],
                "capacity": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8", "pods": "110"},
                "allocatable": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8", "pods": "110"},
            }
            self.core.patch_node_status(name, {"status": status})
        self._last_heartbeat = time.monotonic()

    def _schedule(self, pod: Any, nodes: list[Any], load: dict[str, int]) -> str | None:
        """The schedulable node with the fewest pods, preferring the pod's region."""
        region = (pod.metadata.labels or {}).get(REGION_LABEL)
        ready = [n for n in nodes if not n.spec.unschedulable]
        local = [n for n in ready if (n.metadata.labels or {}).get("topology.kubernetes.io/region") == region]
        pool = local or ready
        if not pool:
            return None
        return str(min(pool, key=lambda n: (load.get(n.metadata.name, 0), n.metadata.name)).metadata.name)

    def _bind(self, pod: Any, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.metadata.name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        # The generated client fails to parse the Binding it gets back; the call itself succeeds.
        self.core.create_namespaced_binding(self.topology.namespace, body, _preload_content=False)
        self._bound_at[pod.metadata.name] = time.monotonic()

    def _report_running(self, pod: Any, restarts: int) -> None:
        now = _now()
        status = {
            "phase": "Running",
            "podIP": "10.244.0.1",
            "hostIP": "10.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": c.name,
                    "ready": True,
                    "started": True,
                    "restartCount": restarts,
                    "image": c.image,
                    "imageID": f"sim://{c.image}",
                    "containerID": f"sim://{pod.metadata.uid}",
                    "state": {"running": {"startedAt": now}},
                    # The traffic model's restarts are OOM kills: say so, as a kubelet does.
                    **({"lastState": _oom_killed(now)} if restarts else {}),
                }
                for c in pod.spec.containers
            ],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.topology.namespace, {"status": status})
        self._reported_restarts[pod.metadata.name] = restarts

    def sync(self, restarts: dict[str, int]) -> ClusterView:
        """One pass over the namespace; `restarts` are the model's container restart counts (OOM)."""
        ns = self.topology.namespace
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_S:
            self.heartbeat()
        nodes = [n for n in self.core.list_node().items if n.metadata.name in dict(self.topology.nodes)]
        pods = self.core.list_namespaced_pod(ns).items
        load: dict[str, int] = {}
        for pod in pods:
            if pod.spec.node_name:
                load[pod.spec.node_name] = load.get(pod.spec.node_name, 0) + 1
        view = ClusterView(cordoned={n.metadata.name for n in nodes if n.spec.unschedulable})
        for pod in pods:
            name = pod.metadata.name
            if pod.metadata.deletion_timestamp is not None:
                # The kubelet's part of a deletion: the containers are gone, the object may go.
                try:
                    self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                except self._client.ApiException as exc:
                    if exc.status != 404:
                        raise
                self._bound_at.pop(name, None)
                continue
            if not pod.spec.node_name:
                node = self._schedule(pod, nodes, load)
                if node is not None:
                    self._bind(pod, node)
                    load[node] = load.get(node, 0) + 1
                continue
            bound = self._bound_at.setdefault(name, time.monotonic())
            warm = time.monotonic() - bound >= WARMUP_S
            count = restarts.get(name, 0)
            if warm and (pod.status.phase != "Running" or self._reported_restarts.get(name, 0) != count):
                self._report_running(pod, count)
            labels = pod.metadata.labels or {}
            view.pods.append(
                Pod(
                    name=name,
                    model=labels.get(MODEL_LABEL, ""),
                    region=labels.get(REGION_LABEL, ""),
                    deployment=labels.get("app", ""),
                    node=pod.spec.node_name,
                    ready=warm,
                    role=labels.get(ROLE_LABEL, "engine"),
                )
            )
        for deployment in self.apps.list_namespaced_deployment(ns).items:
            annotations = deployment.spec.template.metadata.annotations or {}
            if annotations.get(KEEPALIVE_ANNOTATION):
                view.keepalive.add(deployment.metadata.name)
            view.replicas[deployment.metadata.name] = (
                deployment.spec.replicas or 0,
                sum(1 for p in view.pods if p.deployment == deployment.metadata.name and p.ready),
            )
        for model in self.topology.routed():
            try:
                data = self.core.read_namespaced_config_map(f"{model.name}-routing-weights", ns).data or {}
            except self._client.ApiException as exc:
                if exc.status != 404:
                    raise
                data = {}
            view.weights[model.name] = {region: float(data.get(region, 0)) for region in model.regions}
        return view
