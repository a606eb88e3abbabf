"""Pull the incident's target out of its alert labels and, failing that, its text."""

from __future__ import annotations

import re

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
    labels = incident.alert.labels if incident.alert else {}
    found: dict[str, str] = {}
    for entity, keys in _LABEL_KEYS.items():
        for key in keys:
            if labels.get(key):
                found[entity] = labels[key]
                break
    text = incident.text()
    for entity, pattern in _TEXT_PATTERNS.items():
        if entity not in found and (match := pattern.search(text)):
            found[entity] = match.group(1).lower()
    return found
