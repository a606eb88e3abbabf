"""Which pods an eviction or a restart may touch: the guard's namespace allow-list applied to each pod,
never a DaemonSet's pod (its controller puts it straight back on the same node) and never a mirror pod
(the kubelet owns it; the API cannot move it). Everything left alone is reported with the reason."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass
class Scope:
    movable: list[Any] = field(default_factory=list)
    left: list[dict[str, str]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [f"{p.metadata.namespace}/{p.metadata.name}" for p in self.movable]


def why_not(pod: Any, allowed_namespaces: Collection[str]) -> str | None:
    """The reason this pod must not be evicted or restarted by mitigate, or None when it may be."""
    meta = pod.metadata
    if meta.namespace not in allowed_namespaces:
        return f"namespace {meta.namespace} is not in the allowed namespaces"
    if any(o.kind == "DaemonSet" for o in meta.owner_references or []):
        return "a DaemonSet pod (its controller would put it back on this node)"
    if MIRROR_ANNOTATION in (meta.annotations or {}) or any(o.kind == "Node" for o in meta.owner_references or []):
        return "a mirror (static) pod, owned by the kubelet"
    if meta.deletion_timestamp is not None:
        return "already terminating"
    return None


def scope(pods: list[Any], allowed_namespaces: Collection[str]) -> Scope:
    out = Scope()
    for pod in pods:
        reason = why_not(pod, allowed_namespaces)
        if reason is None:
            out.movable.append(pod)
        else:
            out.left.append({"pod": f"{pod.metadata.namespace}/{pod.metadata.name}", "reason": reason})
    return out


def owner_deployment(pod: Any) -> str | None:
    """`namespace/deployment` of a pod made by a Deployment's ReplicaSet (named `<deployment>-<hash>`)."""
    for owner in pod.metadata.owner_references or []:
        if owner.kind == "ReplicaSet" and "-" in owner.name:
            return f"{pod.metadata.namespace}/{owner.name.rsplit('-', 1)[0]}"
    return None
