"""How the target's workload is doing now: rollout status, pod restarts with the last termination
(OOMKilled, exit code, signal), why pods are Pending (their events), the conditions of the nodes under
them, and the last lines of a crashing container's log (byte-capped, made printable, tokens redacted).

Read-only and bounded like every investigation source; a refusal or a fault is a gap.
"""

from __future__ import annotations

from typing import Any

from agent.findings import Finding, Gap, finding, gap
from tools.investigate.bounds import Bounds, Unanswered, iso, kube_read, object_source, safe_text
from tools.investigate.kube import KubeSource

# Node conditions that are bad when True (Ready is bad when not True).
PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


def _rollout(deployment: Any) -> Finding | None:
    spec, status, meta = deployment.spec, deployment.status, deployment.metadata
    desired = spec.replicas if spec.replicas is not None else 1
    updated, available = status.updated_replicas or 0, status.available_replicas or 0
    progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
    stalled = progressing is not None and progressing.reason == "ProgressDeadlineExceeded"
    done = (status.observed_generation or 0) >= (meta.generation or 0) and updated == desired and available >= desired
    if done and not stalled:
        state = "complete"
    elif stalled:
        state = "stalled (progress deadline exceeded)"
    else:
        state = "in progress"
    summary = f"rollout of {meta.namespace}/{meta.name} {state}: {updated}/{desired} updated, {available} available"
    data = {
        "state": state.split(" ")[0],
        "desired": desired,
        "updated": updated,
        "available": available,
        "generation": meta.generation,
        "observed_generation": status.observed_generation,
    }
    return finding("rollout", summary, object_source("apps/v1", "Deployment", meta), None, data)


def _termination(status: Any) -> dict[str, Any] | None:
    last = status.last_state.terminated if status.last_state else None
    now = status.state.terminated if status.state else None
    term = last or now
    if term is None:
        return None
    out: dict[str, Any] = {"reason": term.reason, "exit_code": term.exit_code, "at": iso(term.finished_at)}
    if term.signal:
        out["signal"] = term.signal
    elif term.exit_code and term.exit_code > 128:
        out["signal"] = term.exit_code - 128  # a shell's way of saying "killed by signal N"
    return out


def workload_state(
    kube: KubeSource, target: dict[str, str], *, bounds: Bounds | None = None
) -> tuple[list[Finding], list[Gap]]:
    bounds = bounds or Bounds()
    findings: list[Finding] = []
    gaps: list[Gap] = []

    def read(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return kube_read(what, call, *args, timeout_s=bounds.timeout_s, **kwargs)
        except Unanswered as unanswered:
            gaps.append(unanswered.gap)
            return None

    namespace, name = target.get("namespace"), target.get("deployment")
    nodes = [target["node"]] if target.get("node") else []
    crashing: tuple[int, Any, str, bool] | None = None  # restarts, pod, container, previous instance?
    if namespace and name and namespace not in kube.allowed_namespaces:
        return [], [
            gap("kubernetes", f"namespace {namespace} is outside the guard policy's allowed namespaces: not read")
        ]
    if namespace and name:
        deployment = read(f"Deployment {namespace}/{name}", kube.apps.read_namespaced_deployment, name, namespace)
        if deployment is not None:
            rollout = _rollout(deployment)
            if rollout is not None:
                findings.append(rollout)
            selector = ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())
            pods = read(
                f"Pods of {namespace}/{name}",
                kube.core.list_namespaced_pod,
                namespace,
                label_selector=selector,
                limit=bounds.max_items,
            )
            for pod in pods.items if pods is not None else []:
                if pod.spec.node_name and pod.spec.node_name not in nodes:
                    nodes.append(pod.spec.node_name)
                source = object_source("v1", "Pod", pod.metadata)
                for status in (pod.status.container_statuses or []) if pod.status else []:
                    waiting = status.state.waiting.reason if status.state and status.state.waiting else None
                    term = _termination(status)
                    if not status.restart_count and term is None and not waiting:
                        continue
                    what = f"pod {pod.metadata.name} container {status.name}: {status.restart_count} restarts"
                    if term:
                        what += (
                            f", last terminated {term['reason'] or 'without a reason'} (exit code {term['exit_code']}"
                            + (f", signal {term['signal']}" if term.get("signal") else "")
                            + ")"
                        )
                    if waiting:
                        what += f", now {waiting}"
                    data = {
                        "pod": pod.metadata.name,
                        "container": status.name,
                        "restarts": status.restart_count,
                        "last_termination": term,
                        "waiting": waiting,
                    }
                    findings.append(finding("restarts", what, source, term["at"] if term else None, data))
                    if crashing is None or status.restart_count > crashing[0]:
                        crashing = (
                            status.restart_count,
                            pod,
                            status.name,
                            bool(status.last_state and status.last_state.terminated),
                        )
                if pod.status and pod.status.phase == "Pending":
                    events = read(
                        f"events of pod {pod.metadata.name}",
                        kube.core.list_namespaced_event,
                        namespace,
                        field_selector=f"involvedObject.name={pod.metadata.name}",
                        limit=bounds.max_items,
                    )
                    reasons = [
                        f"{e.reason}: {e.message}" for e in (events.items if events else []) if e.type == "Warning"
                    ]
                    why = reasons[-1] if reasons else "no Warning event yet"
                    findings.append(
                        finding(
                            "pending",
                            f"pod {pod.metadata.name} Pending: {why}"[:300],
                            source,
                            iso(pod.metadata.creation_timestamp),
                            {"pod": pod.metadata.name, "reasons": reasons[-3:]},
                        )
                    )
    for node_name in nodes[: bounds.max_items]:
        node = read(f"Node {node_name}", kube.core.read_node, node_name)
        if node is None:
            continue
        bad = []
        for condition in node.status.conditions or [] if node.status else []:
            if (condition.type == "Ready" and condition.status != "True") or (
                condition.type in PRESSURE and condition.status == "True"
            ):
                bad.append(
                    {
                        "type": condition.type,
                        "status": condition.status,
                        "reason": condition.reason,
                        "since": iso(condition.last_transition_time),
                    }
                )
        if bad:
            summary = f"node {node_name}: " + ", ".join(f"{c['type']}={c['status']} ({c['reason']})" for c in bad)
            findings.append(
                finding(
                    "node_condition",
                    summary,
                    object_source("v1", "Node", node.metadata),
                    bad[0]["since"],
                    {"node": node_name, "conditions": bad},
                )
            )
    if crashing is not None and namespace:
        findings_, gaps_ = log_tail(
            kube, namespace, crashing[1].metadata.name, crashing[2], previous=crashing[3], bounds=bounds
        )
        findings += findings_
        gaps += gaps_
    return findings, gaps


def log_tail(
    kube: KubeSource, namespace: str, pod: str, container: str, *, previous: bool = False, bounds: Bounds | None = None
) -> tuple[list[Finding], list[Gap]]:
    """The last lines of one container's log (its previous instance when it crashed): asked for with
    `tailLines` and `limitBytes`, and read at most `max_log_bytes` off the wire whatever the server sends."""
    bounds = bounds or Bounds()
    if namespace not in kube.allowed_namespaces:
        return [], [
            gap("kubernetes", f"namespace {namespace} is outside the guard policy's allowed namespaces: not read")
        ]
    what = f"log of {namespace}/{pod}/{container}" + (" (previous instance)" if previous else "")
    try:
        response = kube_read(
            what,
            kube.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=previous,
            tail_lines=bounds.log_lines,
            limit_bytes=bounds.max_log_bytes,
            _preload_content=False,
            timeout_s=bounds.timeout_s,
        )
    except Unanswered as unanswered:
        return [], [unanswered.gap]
    try:
        raw = response.read(bounds.max_log_bytes + 1)
    except Exception as exc:  # the stream broke or timed out half way
        response.close()
        response.release_conn()
        return [], [gap("kubernetes", f"{what}: {type(exc).__name__} while reading")]
    truncated = len(raw) > bounds.max_log_bytes
    if truncated:
        # Close, not only release: a connection handed back with the rest of a big log unread keeps the
        # API server (and the kubelet behind it) streaming into full buffers until it is next touched.
        response.close()
    response.release_conn()
    text = safe_text(raw, bounds.max_log_bytes)
    lines = text.splitlines()[-bounds.log_lines :]
    summary = (
        f"last {len(lines)} log lines of {pod}/{container}"
        + (" (previous instance)" if previous else "")
        + (f": {lines[-1][:160]}" if lines else ": empty")
    )
    source = {
        "type": "kubernetes",
        "object": f"v1 Pod {namespace}/{pod}",
        "log": {
            "container": container,
            "previous": previous,
            "tailLines": bounds.log_lines,
            "limitBytes": bounds.max_log_bytes,
        },
    }
    return [
        finding(
            "log_tail",
            summary,
            source,
            None,
            {"lines": lines, "bytes": len(raw[: bounds.max_log_bytes]), "truncated": truncated},
        )
    ], []
