"""Pull the incident's target out of its alert labels and, failing that, its text.

Where each entity came from is kept (`sources`): a name from alert labels was made by a machine; a name
read out of prose may have been put there by anyone who can write an incident, so the guard treats it
as a suggestion to confirm, never as a target to write to on its own."""

from __future__ import annotations

import re
from typing import Any

from agent.schemas import Incident

_LABEL_KEYS = {
    "namespace": ("namespace", "kubernetes_namespace", "ns"),
    "deployment": ("deployment", "kubernetes_deployment", "workload", "app"),
    "pod": ("pod", "kubernetes_pod_name", "pod_name"),
    "node": ("node", "kubernetes_node", "instance_node", "hostname"),
    "region": ("region", "location", "zone"),
    "endpoint": ("endpoint", "route", "service"),
    "model": ("model", "model_name"),
}
_K8S_NAME = r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?"
_TEXT_PATTERNS = {
    "namespace": re.compile(rf"\bnamespace[:= /]+`?({_K8S_NAME})", re.IGNORECASE),
    "deployment": re.compile(rf"\bdeployment[:= /]+`?({_K8S_NAME}-{_K8S_NAME})", re.IGNORECASE),
    "pod": re.compile(rf"\bpod[:= /]+`?({_K8S_NAME}-[a-z0-9]{{4,}}(?:-[a-z0-9]{{4,}})?)\b", re.IGNORECASE),
    "node": re.compile(rf"\bnode[:= /]+`?((?:aks|gke|eks|ip|node|gpu)-{_K8S_NAME})", re.IGNORECASE),
    "region": re.compile(
        r"\b((?:east|west|north|south|central)(?:us|europe|asia)\d?|(?:sweden|france|uk|japan|australia|canada|"
        r"germany|switzerland|norway|korea|india|brazil)(?:central|east|west|south|north)|"
        r"(?:us|eu|ap)-(?:east|west|north|south|central)-\d)\b",
        re.IGNORECASE,
    ),
}


def extract_entities(incident: Incident) -> dict[str, str]:
    return entities_with_sources(incident)[0]


def entities_with_sources(incident: Incident) -> tuple[dict[str, str], dict[str, str]]:
    """The entities, and for each whether it came from `alert_labels` or `text`."""
    labels = incident.alert.labels if incident.alert else {}
    found: dict[str, str] = {}
    sources: dict[str, str] = {}
    for entity, keys in _LABEL_KEYS.items():
        for key in keys:
            if labels.get(key):
                found[entity], sources[entity] = labels[key], "alert_labels"
                break
    text = incident.text()
    for entity, pattern in _TEXT_PATTERNS.items():
        if entity not in found and (match := pattern.search(text)):
            found[entity], sources[entity] = match.group(1).lower(), "text"
    return found, sources


# Which entities name a target of each kind (the planner's choice, agent/planner.py `_target`).
_TARGET_ENTITIES = {
    "node": ("node",),
    "pod": ("pod",),
    "deployment": ("deployment",),
    "route": ("endpoint", "deployment"),
}


def target_source(target: dict[str, object], entities: dict[str, str], sources: dict[str, str]) -> str:
    """Where a plan's target came from: `text` when its name or namespace was read from prose,
    `alert_labels` when both came from labels, `telemetry` for a name no entity holds (fault
    localisation picked the pod from Prometheus' labels), `none` without a name."""
    name, namespace = target.get("name"), target.get("namespace")
    if not name:
        return "none"
    if namespace and sources.get("namespace") == "text" and entities.get("namespace") == namespace:
        return "text"
    for entity in _TARGET_ENTITIES.get(str(target.get("kind")), ()):
        if entities.get(entity) == name:
            return sources.get(entity, "alert_labels")
    return "telemetry"


# Operations that disrupt what they touch for a while (pods restart or move, load moves): alerts about
# it shortly after are their doing. A scale-out only adds capacity.
DISRUPTIVE = frozenset(
    {"cordon_and_evict", "restart_pod", "rollout_restart", "apply_connection_liveness_template", "shift_traffic"}
)


def touched_keys(plan: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """What an executed, disruptive action changed, as keys alerts can share."""
    if plan.get("operation") not in DISRUPTIVE:
        return []
    target = plan.get("target") or {}
    keys: list[str] = []
    if target.get("kind") == "node" and target.get("name"):
        keys.append(f"node:{target['name']}")
    elif target.get("kind") in ("deployment", "route") and target.get("name"):
        keys.append(f"deployment:{target.get('namespace') or '-'}/{target['name']}")
    elif target.get("kind") == "pod" and (plan.get("parameters") or {}).get("deployment"):
        keys.append(f"deployment:{target.get('namespace') or '-'}/{plan['parameters']['deployment']}")
    keys.extend(f"deployment:{owner}" for owner in (result.get("details") or {}).get("owners") or [])
    return keys
