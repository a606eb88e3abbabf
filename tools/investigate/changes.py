"""What changed, shortly before the impact, on the target and its neighbours: Deployment revisions
(ReplicaSets with their revision annotation) and the diff of their pod templates, the ConfigMaps and
Secrets the pods reference (names and change times only: a Secret's values are never read), the HPA
that scales the target, and the nodes under it (cordons, taints, kubelet versions, nodes that joined).

Read-only and bounded: every call has a deadline, every list a limit. A refusal or a fault is a gap.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agent.findings import Finding, Gap, finding, gap
from tools.investigate.bounds import Bounds, Unanswered, iso, kube_read, object_source
from tools.investigate.kube import KubeSource
from tools.investigate.template_diff import describe, template_diff

REVISION = "deployment.kubernetes.io/revision"
# Labels that say two Deployments serve the same thing (the sim's, the Kubernetes recommended ones).
NEIGHBOUR_LABELS = ("mitigate.io/model", "app.kubernetes.io/name", "model")


def _before(at: datetime | None, impact: datetime) -> str:
    if at is None:
        return ""
    minutes = (impact - at).total_seconds() / 60
    return f"{minutes:.0f} min before impact" if minutes >= 0 else f"{-minutes:.0f} min after impact began"


def spec_write(meta: Any) -> datetime | None:
    """The last write to anything but status (controllers stamp status every few seconds)."""
    times = []
    for entry in getattr(meta, "managed_fields", None) or []:
        fields = getattr(entry, "fields_v1", None) or {}
        if getattr(entry, "time", None) and any(k != "f:status" for k in fields):
            times.append(entry.time)
    return max(times) if times else getattr(meta, "creation_timestamp", None)


def age_order(deployment: Any) -> tuple[datetime, int, str]:
    """A strict order of Deployments by age. Creation times have a one-second resolution, and a new
    Deployment is often made in the same second as the one it sits beside (a script, a GitOps sync):
    then the one with more ready replicas counts as older (it is the known-good one), then the name.
    A strict order means two Deployments never each name the other as their predecessor."""
    meta = deployment.metadata
    ready = (deployment.status.ready_replicas or 0) if deployment.status else 0
    return (meta.creation_timestamp, -ready, meta.name)


class ChangeReader:
    def __init__(self, kube: KubeSource, bounds: Bounds) -> None:
        self.kube, self.bounds = kube, bounds
        self.findings: list[Finding] = []
        self.gaps: list[Gap] = []

    def read(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return kube_read(what, call, *args, timeout_s=self.bounds.timeout_s, **kwargs)
        except Unanswered as unanswered:
            self.gaps.append(unanswered.gap)
            return None

    def revisions(self, deployment: Any, since: datetime, impact: datetime) -> None:
        meta, ns = deployment.metadata, deployment.metadata.namespace
        selector = ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())
        found = self.read(
            f"ReplicaSets of {ns}/{meta.name}",
            self.kube.apps.list_namespaced_replica_set,
            ns,
            label_selector=selector,
            limit=self.bounds.max_items,
        )
        if found is None:
            return
        owned = [rs for rs in found.items if any(o.uid == meta.uid for o in rs.metadata.owner_references or [])]
        owned.sort(key=lambda rs: int((rs.metadata.annotations or {}).get(REVISION, "0") or 0))
        if not owned:
            return
        newest = owned[-1]
        revision = int((newest.metadata.annotations or {}).get(REVISION, "0") or 0)
        at = newest.metadata.creation_timestamp
        if at is None or at < since:
            return
        source = object_source("apps/v1", "ReplicaSet", newest.metadata)
        if len(owned) >= 2:
            previous = owned[-2]
            changes = template_diff(self.kube.plain(previous.spec.template), self.kube.plain(newest.spec.template))
            prev_rev = int((previous.metadata.annotations or {}).get(REVISION, "0") or 0)
            what = describe(changes) or "no change to image, args, env or resources"
            summary = f"Deployment {ns}/{meta.name} rolled out revision {revision} ({_before(at, impact)}): {what}"
            data = {
                "deployment": f"{ns}/{meta.name}",
                "revision": revision,
                "previous_revision": prev_rev,
                "changes": changes[:20],
                "change": "rollout",
            }
        else:
            summary = f"Deployment {ns}/{meta.name} created ({_before(at, impact)}), revision {revision}"
            data = {"deployment": f"{ns}/{meta.name}", "revision": revision, "changes": [], "change": "created"}
        self.findings.append(finding("recent_change", summary, source, iso(at), data))

    def versus_neighbour(self, created: Any, neighbours: list[Any]) -> None:
        """A new Deployment next to an older one serving the same thing: how their templates differ."""
        mine = age_order(created)
        older = [d for d in neighbours if age_order(d) < mine]
        if not older:
            return
        stable = min(older, key=age_order)
        changes = template_diff(self.kube.plain(stable.spec.template), self.kube.plain(created.spec.template))
        for item in self.findings:
            if (
                item["data"].get("deployment") == f"{created.metadata.namespace}/{created.metadata.name}"
                and item["data"].get("change") == "created"
            ):
                item["data"].update(
                    changes=changes[:20],
                    previous_deployment=f"{stable.metadata.namespace}/{stable.metadata.name}",
                    previous_ready=stable.status.ready_replicas or 0,
                )
                if changes:
                    item["summary"] = (item["summary"] + f"; differs from {stable.metadata.name}: {describe(changes)}")[
                        :300
                    ]

    def references(self, deployment: Any, since: datetime, impact: datetime) -> None:
        ns = deployment.metadata.namespace
        template = self.kube.plain(deployment.spec.template)
        refs: set[tuple[str, str]] = set()
        for volume in (template.get("spec") or {}).get("volumes") or []:
            if (volume.get("configMap") or {}).get("name"):
                refs.add(("configmaps", volume["configMap"]["name"]))
            if (volume.get("secret") or {}).get("secretName"):
                refs.add(("secrets", volume["secret"]["secretName"]))
        for container in (template.get("spec") or {}).get("containers") or []:
            for source in container.get("envFrom") or []:
                for key, kind in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                    if (source.get(key) or {}).get("name"):
                        refs.add((kind, source[key]["name"]))
            for item in container.get("env") or []:
                value_from = item.get("valueFrom") or {}
                for key, kind in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                    if (value_from.get(key) or {}).get("name"):
                        refs.add((kind, value_from[key]["name"]))
        for kind, name in sorted(refs)[: self.bounds.max_items]:
            label = "ConfigMap" if kind == "configmaps" else "Secret"
            meta = self.read(f"{label} {ns}/{name}", self.kube.metadata_only, kind, name, ns)
            if meta is None:
                continue
            times = [m.get("time") for m in meta.get("managedFields") or [] if m.get("time")]
            changed = max(times) if times else meta.get("creationTimestamp")
            at = datetime.fromisoformat(str(changed).replace("Z", "+00:00")) if changed else None
            if at is not None and at >= since:
                source = {
                    "type": "kubernetes",
                    "object": f"v1 {label} {ns}/{name}",
                    "resourceVersion": meta.get("resourceVersion"),
                }
                self.findings.append(
                    finding(
                        "recent_change",
                        f"{label} {ns}/{name} (used by {deployment.metadata.name}) changed ({_before(at, impact)})",
                        source,
                        iso(at),
                        {"kind": label, "name": name, "used_by": deployment.metadata.name},
                    )
                )

    def autoscalers(self, deployment: Any, since: datetime, impact: datetime) -> None:
        ns, name = deployment.metadata.namespace, deployment.metadata.name
        found = self.read(
            f"HorizontalPodAutoscalers in {ns}",
            self.kube.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            ns,
            limit=self.bounds.max_items,
        )
        for hpa in found.items if found is not None else []:
            if hpa.spec.scale_target_ref.name != name:
                continue
            at = spec_write(hpa.metadata)
            if at is not None and at >= since:
                limits = f"min {hpa.spec.min_replicas}, max {hpa.spec.max_replicas}"
                summary = f"HPA {ns}/{hpa.metadata.name} of {name} changed ({_before(at, impact)}): {limits}"
                self.findings.append(
                    finding(
                        "recent_change",
                        summary,
                        object_source("autoscaling/v1", "HorizontalPodAutoscaler", hpa.metadata),
                        iso(at),
                        {"min": hpa.spec.min_replicas, "max": hpa.spec.max_replicas},
                    )
                )

    def nodes(self, names: list[str], since: datetime, impact: datetime) -> None:
        versions: dict[str, str] = {}
        for name in names[: self.bounds.max_items]:
            node = self.read(f"Node {name}", self.kube.core.read_node, name)
            if node is None:
                continue
            source = object_source("v1", "Node", node.metadata)
            versions[name] = node.status.node_info.kubelet_version if node.status and node.status.node_info else "?"
            entries = node.metadata.managed_fields or []
            if node.spec.unschedulable:
                stamps = [
                    e.time for e in entries if e.time and "f:unschedulable" in ((e.fields_v1 or {}).get("f:spec") or {})
                ]
                at = max(stamps) if stamps else None
                self.findings.append(
                    finding(
                        "recent_change",
                        f"Node {name} is cordoned" + (f" ({_before(at, impact)})" if at else ""),
                        source,
                        iso(at),
                        {"node": name, "change": "cordon"},
                    )
                )
            for taint in node.spec.taints or []:
                if taint.key == "node.kubernetes.io/unschedulable":
                    continue  # the cordon itself, said above
                stamps = [e.time for e in entries if e.time and "f:taints" in ((e.fields_v1 or {}).get("f:spec") or {})]
                at = taint.time_added or (max(stamps) if stamps else None)
                if at is None or at >= since:
                    self.findings.append(
                        finding(
                            "recent_change",
                            f"Node {name} tainted {taint.key}={taint.value or ''}:{taint.effect}"
                            + (f" ({_before(at, impact)})" if at else ""),
                            source,
                            iso(at),
                            {"node": name, "change": "taint", "taint": taint.key},
                        )
                    )
            created = node.metadata.creation_timestamp
            if created is not None and created >= since:
                self.findings.append(
                    finding(
                        "recent_change",
                        f"Node {name} joined the cluster ({_before(created, impact)}), kubelet {versions[name]}",
                        source,
                        iso(created),
                        {"node": name, "change": "joined"},
                    )
                )
        if len(set(versions.values())) > 1:
            summary = "nodes under the target run different kubelet versions: " + ", ".join(
                f"{n} {v}" for n, v in sorted(versions.items())
            )
            self.findings.append(
                finding(
                    "recent_change",
                    summary,
                    {"type": "kubernetes", "object": "v1 Node " + ",".join(sorted(versions))},
                    None,
                    {"kubelet_versions": versions, "change": "kubelet_version"},
                )
            )


def recent_changes(
    kube: KubeSource,
    target: dict[str, str],
    *,
    now: datetime,
    impact: datetime | None = None,
    bounds: Bounds | None = None,
) -> tuple[list[Finding], list[Gap]]:
    """Changes to the target Deployment and its neighbours (and the nodes under them) in the last
    `bounds.changes_hours`. `target`: entities (namespace, deployment, node)."""
    bounds = bounds or Bounds()
    impact = impact or now
    since = now - timedelta(hours=bounds.changes_hours)
    reader = ChangeReader(kube, bounds)
    namespace, name = target.get("namespace"), target.get("deployment")
    nodes = [target["node"]] if target.get("node") else []
    if namespace and name:
        if namespace not in kube.allowed_namespaces:
            return [], [
                gap("kubernetes", f"namespace {namespace} is outside the guard policy's allowed namespaces: not read")
            ]
        deployment = reader.read(
            f"Deployment {namespace}/{name}", kube.apps.read_namespaced_deployment, name, namespace
        )
        if deployment is not None:
            labels = deployment.metadata.labels or {}
            key = next((k for k in NEIGHBOUR_LABELS if labels.get(k)), None)
            neighbours = [deployment]
            if key is not None:
                listed = reader.read(
                    f"Deployments in {namespace}",
                    kube.apps.list_namespaced_deployment,
                    namespace,
                    label_selector=f"{key}={labels[key]}",
                    limit=bounds.max_items,
                )
                neighbours += [d for d in (listed.items if listed else []) if d.metadata.uid != deployment.metadata.uid]
            for each in neighbours:
                reader.revisions(each, since, impact)
            created = [
                d for d in neighbours if d.metadata.creation_timestamp and d.metadata.creation_timestamp >= since
            ]
            for each in created:
                reader.versus_neighbour(each, [d for d in neighbours if d is not each])
            reader.references(deployment, since, impact)
            reader.autoscalers(deployment, since, impact)
            selector = ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())
            pods = reader.read(
                f"Pods of {namespace}/{name}",
                kube.core.list_namespaced_pod,
                namespace,
                label_selector=selector,
                limit=bounds.max_items,
            )
            nodes += sorted({p.spec.node_name for p in (pods.items if pods else []) if p.spec.node_name} - set(nodes))
    if nodes:
        reader.nodes(nodes, since, impact)
    return reader.findings, reader.gaps
