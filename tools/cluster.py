"""Cluster tools on the official Kubernetes client: one function per action, each with a server-side
dry run, each returning a typed ToolResult (the API's own error included when it refuses).

The guard has already judged the plan; these functions re-check what only the live cluster can tell
(current replicas, how many pods a node drain would evict) and never shell out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from agent.schemas import ToolResult
from tools.cluster_reads import ClusterReads, api_error, unavailable
from tools.pod_scope import owner_deployment, scope, why_not

TEMPLATES = Path(__file__).with_name("templates")
ISTIO = ("networking.istio.io", "v1beta1", "virtualservices")
# Seconds to connect to and to hear back from the API server. Without them a call to a server that
# stopped answering (not refusing) hangs the run forever.
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5.0, 30.0

Operation = Callable[[dict[str, Any], bool], ToolResult]


@cache
def load_template(name: str, version: str) -> dict[str, Any]:
    path = TEMPLATES / f"{name}-{version}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no template {name} version {version} in {TEMPLATES}")
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


class KubeCluster(ClusterReads):
    """The `Cluster` port of the graph, on a real API server.

    `approved_client` is a second identity allowed to delete deployments; it is used only for M6,
    which the guard lets through only after two different humans approved it.
    """

    def __init__(
        self,
        api_client: Any,
        approved_client: Any | None = None,
        *,
        allowed_namespaces: Collection[str],
        max_pods_affected: int = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        import urllib3
        from kubernetes import client

        for api in (api_client, approved_client):
            if api is not None:  # new connection pools take these (the client has no global timeout)
                api.rest_client.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(
                    connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S
                )

        self._client = client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._approved_apps = client.AppsV1Api(approved_client) if approved_client is not None else None
        self._max_pods = max_pods_affected
        self._allowed = frozenset(allowed_namespaces)
        self._clock = clock
        self._operations: dict[str, Operation] = {
            "scale_out": self.scale_out,
            "shift_traffic": self.shift_traffic,
            "restart_pod": self.restart_pod,
            "rollout_restart": self.rollout_restart,
            "cordon_and_evict": self.cordon_and_evict,
            "apply_connection_liveness_template": self.apply_connection_liveness_template,
            "delete_deployment": self.delete_deployment,
        }

    # ---- the port ----------------------------------------------------------------------------
    def dry_run(self, plan: dict[str, Any]) -> ToolResult:
        return self._run(plan, dry=True)

    def execute(self, plan: dict[str, Any]) -> ToolResult:
        return self._run(plan, dry=False)

    def _run(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        operation = self._operations.get(plan["operation"])
        if operation is None:
            return ToolResult(status="failed", reason=f"no cluster tool for {plan['operation']}")
        try:
            return operation(plan, dry)
        except Exception as exc:
            fault = unavailable(exc, dry)
            if fault is not None:
                return fault
            if isinstance(exc, self._client.ApiException):
                return api_error(exc)
            raise

    # ---- one function per action --------------------------------------------------------------
    def scale_out(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        namespace, name = plan["target"]["namespace"], plan["target"]["name"]
        current = self.apps.read_namespaced_deployment_scale(name, namespace).spec.replicas or 0
        wanted = int(plan["parameters"].get("replicas") or 0) or current + 1
        if wanted <= current:
            return ToolResult(status="failed", reason=f"scale-out to {wanted} would not add to the {current} running")
        self.apps.patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": wanted}}, dry_run="All" if dry else None
        )
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"replicas {current} -> {wanted}",
            details={"from": current, "to": wanted},
        )

    def rollout_restart(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        namespace, name = plan["target"]["namespace"], plan["target"]["name"]
        stamp = self._clock().isoformat()
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        self.apps.patch_namespaced_deployment(name, namespace, patch, dry_run="All" if dry else None)
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"rollout restart of {name} at {stamp}",
            details={"restartedAt": stamp},
        )

    def restart_pod(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        namespace, pod = plan["target"]["namespace"], plan["target"]["name"]
        refusal = why_not(self.core.read_namespaced_pod(pod, namespace), self._allowed)
        if refusal is not None:
            return ToolResult(status="denied", reason=f"will not restart {namespace}/{pod}: {refusal}")
        self.core.delete_namespaced_pod(pod, namespace, dry_run="All" if dry else None)
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"deleted pod {pod}; its controller replaces it",
            details={"pod": pod},
        )

    def cordon_and_evict(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        """Cordon the node, then evict (Eviction API, so PodDisruptionBudgets hold) only the pods in
        allowed namespaces that are neither DaemonSet nor mirror pods; the rest are left and listed."""
        node = plan["target"]["name"]
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        chosen = scope(pods, self._allowed)
        if len(chosen.movable) > self._max_pods:
            return ToolResult(
                status="denied",
                reason=f"blast radius: draining {node} would evict {len(chosen.movable)} pods, "
                f"more than max_pods_affected {self._max_pods}",
                details={"left": chosen.left},
            )
        mode = "All" if dry else None
        self.core.patch_node(node, {"spec": {"unschedulable": True}}, dry_run=mode)
        evicted: list[str] = []
        left = list(chosen.left)
        for pod in chosen.movable:
            name, namespace = pod.metadata.name, pod.metadata.namespace
            body = {
                "apiVersion": "policy/v1beta1",
                "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace},
                "deleteOptions": {"dryRun": ["All"]} if dry else {},
            }
            try:
                self.core.create_namespaced_pod_eviction(name, namespace, body, dry_run=mode)
            except self._client.ApiException as exc:
                if exc.status != 429:  # 429 on an eviction is a PodDisruptionBudget saying no
                    raise
                left.append({"pod": f"{namespace}/{name}", "reason": "its PodDisruptionBudget allows no disruption"})
                continue
            evicted.append(f"{namespace}/{name}")
        owners = sorted({o for o in map(owner_deployment, chosen.movable) if o})
        note = f"; left {len(left)}: " + ", ".join(f"{x['pod']} ({x['reason']})" for x in left) if left else ""
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"cordoned {node}, evicted {len(evicted)}{note}",
            details={"node": node, "evicted": evicted, "left": left, "owners": owners},
        )

    def apply_connection_liveness_template(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        namespace, name = plan["target"]["namespace"], plan["target"]["name"]
        version = str(plan["parameters"].get("template_version", "v1"))
        template = load_template("connection-liveness", version)
        deployment = self.apps.read_namespaced_deployment(name, namespace)
        container = deployment.spec.template.spec.containers[0].name
        patch = {
            "metadata": {"annotations": template["annotations"]},
            "spec": {
                "template": {
                    "metadata": {"annotations": template["annotations"]},
                    "spec": {"containers": [{"name": container, "env": template["env"]}]},
                }
            },
        }
        self.apps.patch_namespaced_deployment(name, namespace, patch, dry_run="All" if dry else None)
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"connection-liveness template {version} on {name}/{container}",
            details={"template_version": version, "container": container, "patch": patch},
        )

    def shift_traffic(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        """Move weight off the degraded destination of an Istio VirtualService named after the route.

        Without Istio (no VirtualService CRD) the documented fallback is the same weights written to a
        ConfigMap `<route>-routing-weights` that the gateway reads; see docs/cluster-tools.md.
        """
        namespace, route = plan["target"]["namespace"], plan["target"]["name"]
        away = plan["parameters"].get("away_from")
        group, version, plural = ISTIO
        try:
            service = self.custom.get_namespaced_custom_object(group, version, namespace, plural, route)
        except self._client.ApiException as exc:
            if exc.status != 404:
                raise
            return self._shift_via_configmap(namespace, route, away, dry)
        http = service["spec"]["http"]
        destinations = http[0]["route"]
        weights = _shifted(destinations, away)
        if weights is None:
            return ToolResult(status="failed", reason=f"no healthy destination left in {route} once {away} is drained")
        for destination, weight in zip(destinations, weights, strict=True):
            destination["weight"] = weight
        self.custom.patch_namespaced_custom_object(
            group, version, namespace, plural, route, {"spec": {"http": http}}, dry_run="All" if dry else None
        )
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"shifted {route} away from {away}",
            details={"weights": {_dest_name(d): w for d, w in zip(destinations, weights, strict=True)}},
        )

    def _shift_via_configmap(self, namespace: str, route: str, away: str | None, dry: bool) -> ToolResult:
        name = f"{route}-routing-weights"
        try:
            config_map = self.core.read_namespaced_config_map(name, namespace)
        except self._client.ApiException as exc:
            if exc.status == 404:
                return ToolResult(
                    status="failed",
                    reason=f"no VirtualService {route} and no ConfigMap {name}: "
                    "this cluster has no routing layer mitigate can shift",
                )
            raise
        weights = {k: int(v) for k, v in (config_map.data or {}).items()}
        destinations = [{"destination": {"host": k}, "weight": v} for k, v in weights.items()]
        shifted = _shifted(destinations, away)
        if shifted is None:
            return ToolResult(status="failed", reason=f"no healthy destination left in {name}")
        data = {k: str(w) for k, w in zip(weights, shifted, strict=True)}
        self.core.patch_namespaced_config_map(name, namespace, {"data": data}, dry_run="All" if dry else None)
        return ToolResult(
            status="dry-run-ok" if dry else "executed",
            reason=f"shifted {name} away from {away}",
            details={"weights": data, "fallback": "configmap"},
        )

    def delete_deployment(self, plan: dict[str, Any], dry: bool) -> ToolResult:
        namespace, name = plan["target"]["namespace"], plan["target"]["name"]
        apps = self._approved_apps or self.apps  # without the approved identity, RBAC refuses (403)
        apps.delete_namespaced_deployment(name, namespace, dry_run="All" if dry else None)
        return ToolResult(status="dry-run-ok" if dry else "executed", reason=f"deleted deployment {namespace}/{name}")


def _dest_name(destination: dict[str, Any]) -> str:
    d = destination.get("destination", {})
    return str(d.get("subset") or d.get("host"))


def _shifted(destinations: list[dict[str, Any]], away: str | None) -> list[int] | None:
    """Weights with the degraded destination at 0 and its share spread over the others."""
    degraded = [away is not None and away in _dest_name(d) for d in destinations]
    healthy = [i for i, bad in enumerate(degraded) if not bad]
    if not any(degraded) or not healthy:
        return None
    weights = [0] * len(destinations)
    for position, index in enumerate(healthy):
        weights[index] = 100 // len(healthy) + (1 if position < 100 % len(healthy) else 0)
    return weights


def connect(
    kubeconfig: str, approved_kubeconfig: str | None = None, *, policy: Any = None, **kwargs: Any
) -> KubeCluster:
    """A cluster on these kubeconfigs, scoped by the guard policy (the default policy file unless given)."""
    from kubernetes import config

    from tools.guard import load_policy

    policy = policy or load_policy()
    api = config.new_client_from_config(config_file=kubeconfig)
    approved = config.new_client_from_config(config_file=approved_kubeconfig) if approved_kubeconfig else None
    kwargs.setdefault("max_pods_affected", policy.blast_radius["max_pods_affected"])
    return KubeCluster(api, approved, allowed_namespaces=policy.allowed_namespaces, **kwargs)
