"""What the simulated fleet looks like on the cluster: fake GPU nodes, one Deployment per model and
region, and a routing-weights ConfigMap per multi-region model (the gateway's traffic split, which
mitigate's shift_traffic changes). `apply` creates it, `reset` puts it back as it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE = "mitigate-demo"
MODEL_LABEL, REGION_LABEL, ROLE_LABEL = "mitigate.io/model", "mitigate.io/region", "mitigate.io/role"
SIM_LABEL = "mitigate.io/simulated"
KEEPALIVE_ANNOTATION = "mitigate.io/connection-liveness"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    regions: tuple[str, ...]
    replicas: int
    demand_rps: float


@dataclass(frozen=True)
class Topology:
    models: tuple[ModelSpec, ...] = (
        ModelSpec("mixtral-8x7b", ("eastus",), replicas=2, demand_rps=12.0),
        ModelSpec("llama3-8b", ("eastus", "westus"), replicas=2, demand_rps=12.0),
    )
    nodes: tuple[tuple[str, str], ...] = (
        ("gpu-node-1", "eastus"),
        ("gpu-node-2", "eastus"),
        ("gpu-node-3", "eastus"),
        ("gpu-node-4", "westus"),
        ("gpu-node-5", "westus"),
    )
    namespace: str = NAMESPACE

    def deployment(self, model: str, region: str) -> str:
        return f"{model}-{region}"

    def routed(self) -> list[ModelSpec]:
        return [m for m in self.models if len(m.regions) > 1]

    def demand(self) -> dict[str, float]:
        return {m.name: m.demand_rps for m in self.models}


def _deployment(topology: Topology, model: ModelSpec, region: str) -> dict[str, Any]:
    name = topology.deployment(model.name, region)
    labels = {"app": name, MODEL_LABEL: model.name, REGION_LABEL: region, ROLE_LABEL: "engine", SIM_LABEL: "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": topology.namespace, "labels": labels},
        "spec": {
            "replicas": model.replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "vllm/vllm-openai:simulated",
                            "args": ["--model", model.name],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def _weights(topology: Topology, model: ModelSpec) -> dict[str, Any]:
    share = 100 // len(model.regions)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{model.name}-routing-weights", "namespace": topology.namespace},
        "data": {region: str(share) for region in model.regions},
    }


def apply(api: Any, topology: Topology) -> None:
    """Create (or restore) the fleet's objects; safe to call on a cluster that already has them."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": topology.namespace}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    for name, region in topology.nodes:
        body = {
            "metadata": {
                "name": name,
                "labels": {
                    "topology.kubernetes.io/region": region,
                    "nvidia.com/gpu.present": "true",
                    SIM_LABEL: "true",
                },
            },
            "spec": {"unschedulable": False},
        }
        try:
            core.create_node(body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            core.patch_node(name, {"spec": {"unschedulable": False}})
    for model in topology.models:
        for region in model.regions:
            deployment = _deployment(topology, model, region)
            try:
                apps.create_namespaced_deployment(topology.namespace, deployment)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                apps.replace_namespaced_deployment(
                    topology.deployment(model.name, region), topology.namespace, deployment
                )
        if len(model.regions) > 1:
            weights = _weights(topology, model)
            try:
                core.create_namespaced_config_map(topology.namespace, weights)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                core.replace_namespaced_config_map(f"{model.name}-routing-weights", topology.namespace, weights)


reset = apply  # replacing the objects with their specs undoes scale-outs, templates, weights and cordons
