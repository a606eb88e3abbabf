"""The read side of the cluster port: evidence for the DRI, confirmation that a plan's target exists,
and what a drain left behind (for verification). Reads never change anything, so any fault of the API
server during one is safe to ask again: it is raised as a retryable `DependencyFault`, except for
evidence, which is advisory and records the fault instead."""

from __future__ import annotations

import json
from typing import Any

from agent.schemas import ToolResult, ToolStatus
from tools.faults import DependencyFault, Fault, kube_fault
from tools.pod_scope import scope


def unavailable(exc: BaseException, dry: bool) -> ToolResult | None:
    """A fault of the API server (not an answer to the request) as a typed result, or None."""
    fault = kube_fault(exc, write=not dry)
    if fault is None:
        return None
    return ToolResult(status="unavailable", reason=fault.describe(), details={"fault": fault.as_dict()})


def api_error(exc: Any) -> ToolResult:
    body = getattr(exc, "body", None) or str(exc)
    try:
        message = json.loads(body).get("message", body)
    except (TypeError, ValueError):
        message = body
    status = getattr(exc, "status", None)
    verdict: ToolStatus = "denied" if status in (401, 403) else "failed"
    return ToolResult(status=verdict, reason=f"Kubernetes API answered {status}", api_error=str(message)[:2000])


class ClusterReads:
    """Mixed into KubeCluster, which sets the API objects and the allowed namespaces."""

    _client: Any
    apps: Any
    core: Any
    custom: Any
    _allowed: frozenset[str]

    def _read(self, call: Any, *args: Any) -> Any:
        """One read; None for 404; a fault of the server raised as DependencyFault."""
        try:
            return call(*args)
        except Exception as exc:
            fault = kube_fault(exc, write=False)
            if fault is not None:
                raise DependencyFault(fault) from exc
            if isinstance(exc, self._client.ApiException) and exc.status == 404:
                return None
            raise

    def lookup(self, target: dict[str, Any]) -> dict[str, Any]:
        """Does the plan's target exist? {"exists": bool, "detail": what was read}. A 403 is an answer:
        mitigate's identity may not read it, so it is not confirmed."""
        kind, namespace, name = target.get("kind"), target.get("namespace"), target.get("name")
        if not name or kind in (None, "none", "alert"):
            return {"exists": False, "detail": "the plan names no object"}
        try:
            if kind == "node":
                found = self._read(self.core.read_node, name)
                return {"exists": found is not None, "detail": f"node {name}"}
            if not namespace:
                return {"exists": False, "detail": f"{kind} {name} has no namespace"}
            if kind == "pod":
                found = self._read(self.core.read_namespaced_pod, name, namespace)
            elif kind == "deployment":
                found = self._read(self.apps.read_namespaced_deployment, name, namespace)
            elif kind == "route":
                group, version, plural = "networking.istio.io", "v1beta1", "virtualservices"
                found = self._read(self.custom.get_namespaced_custom_object, group, version, namespace, plural, name)
                if found is None:
                    found = self._read(self.core.read_namespaced_config_map, f"{name}-routing-weights", namespace)
                    return {"exists": found is not None, "detail": f"ConfigMap {namespace}/{name}-routing-weights"}
            else:
                return {"exists": False, "detail": f"no lookup for target kind {kind}"}
        except self._client.ApiException as exc:
            return {"exists": False, "detail": f"{kind} {namespace or ''}/{name}: API answered {exc.status}"}
        return {"exists": found is not None, "detail": f"{kind} {namespace}/{name}"}

    def observe(self, plan: dict[str, Any], owners: list[str]) -> dict[str, float]:
        """Cluster-side symptoms of a drain: movable pods still on the node, and replicas of the
        deployments that had pods there which are not ready (their pods not Running elsewhere)."""
        if plan.get("operation") != "cordon_and_evict":
            return {}
        node = plan["target"]["name"]
        pods = self._read(lambda: self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}"))
        not_ready = 0
        for owner in owners:
            namespace, name = owner.split("/", 1)
            deployment = self._read(self.apps.read_namespaced_deployment, name, namespace)
            if deployment is not None:
                not_ready += max(0, (deployment.spec.replicas or 0) - (deployment.status.ready_replicas or 0))
        on_node = len(scope(pods.items if pods is not None else [], self._allowed).movable)
        return {"pods_on_node": float(on_node), "replicas_not_ready": float(not_ready)}

    def evidence(self, target: dict[str, Any]) -> dict[str, Any]:
        """Read-only facts about the incident's target: deployment, its pods, their nodes, recent events."""
        out: dict[str, Any] = {}
        namespace, name = target.get("namespace"), target.get("deployment") or target.get("name")
        try:
            if namespace and name:
                deployment = self.apps.read_namespaced_deployment(name, namespace)
                out["deployment"] = {
                    "replicas": deployment.spec.replicas,
                    "available": deployment.status.available_replicas or 0,
                    "generation": deployment.metadata.generation,
                }
                selector = ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())
                pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
                out["pods"] = [
                    {"name": p.metadata.name, "node": p.spec.node_name, "phase": p.status.phase} for p in pods[:50]
                ]
                events = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
                out["events"] = [
                    {"reason": e.reason, "message": e.message, "count": e.count} for e in events.items[-20:]
                ]
            if target.get("node"):
                node = self.core.read_node(target["node"])
                out["node"] = {
                    "unschedulable": bool(node.spec.unschedulable),
                    "conditions": {c.type: c.status for c in node.status.conditions or []},
                }
        except Exception as exc:  # evidence is advisory: a fault or a refusal is recorded, never raised
            result = unavailable(exc, True) or (api_error(exc) if isinstance(exc, self._client.ApiException) else None)
            if result is None:
                raise
            out["error"] = result.model_dump()
        return out


__all__ = ["ClusterReads", "DependencyFault", "Fault", "api_error", "unavailable"]
