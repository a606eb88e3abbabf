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
STABLE_ARGS = ("--max-num-seqs", "256")  # the engine settings every fleet deployment runs with


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
                            "args": ["--model", model.name, *STABLE_ARGS],
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


def roll_out(api: Any, topology: Topology, model: str, region: str, args: tuple[str, ...]) -> str:
    """A new Deployment of `model` beside the serving one, its engine arguments `args` in place of the
    stable ones (the shape of a bad rollout: a good deployment remains). Returns its name."""
    from kubernetes import client

    spec = next(m for m in topology.models if m.name == model)
    body = _deployment(topology, spec, region)
    name = f"{body['metadata']['name']}-v2"
    for labels in (
        body["metadata"]["labels"],
        body["spec"]["selector"]["matchLabels"],
        body["spec"]["template"]["metadata"]["labels"],
    ):
        labels["app"] = name
    body["metadata"]["name"] = name
    body["spec"]["replicas"] = 1
    flags = dict(zip(args[::2], args[1::2], strict=True))
    stable = list(body["spec"]["template"]["spec"]["containers"][0]["args"])
    body["spec"]["template"]["spec"]["containers"][0]["args"] = [
        flags.get(stable[i - 1], a) if i and stable[i - 1] in flags else a for i, a in enumerate(stable)
    ]
    client.AppsV1Api(api).create_namespaced_deployment(topology.namespace, body)
    return name


def reset(api: Any, topology: Topology) -> None:
    """Replace the objects with their specs (undoes scale-outs, templates, weights and cordons) and
    delete Deployments of the fleet that the topology does not have (a rollout a scenario made)."""
    from kubernetes import client

    apply(api, topology)
    apps = client.AppsV1Api(api)
    wanted = {topology.deployment(m.name, r) for m in topology.models for r in m.regions}
    for deployment in apps.list_namespaced_deployment(topology.namespace, label_selector=f"{SIM_LABEL}=true").items:
        if deployment.metadata.name not in wanted:
            try:
                apps.delete_namespaced_deployment(
                    deployment.metadata.name, topology.namespace, propagation_policy="Foreground"
                )
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
