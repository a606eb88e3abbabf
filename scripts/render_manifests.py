"""Render deploy/kustomization.yaml without kubectl: the subset of kustomize it uses (file resources,
`labels`, `images`, JSON 6902 `patches` with a kind/name target). tests/test_deploy.py checks that the
result equals `kubectl kustomize deploy` where kubectl exists, then applies it to a real API server.

usage: scripts/render_manifests.py [deploy] > all.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.lstrip("/").split("/")]


def _json6902(document: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    for op in operations:
        *parents, last = _pointer(op["path"])
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] in ("replace", "add"):
            if isinstance(node, list) and op["op"] == "add":
                node.insert(len(node) if key == "-" else key, op["value"])
            else:
                node[key] = op["value"]
        elif op["op"] == "remove":
            del node[key]
        else:
            raise ValueError(f"unsupported patch op {op['op']}")


def _matches(document: dict[str, Any], target: dict[str, Any]) -> bool:
    meta = document.get("metadata", {})
    return all(
        (key == "kind" and document.get("kind") == value)
        or (key == "name" and meta.get("name") == value)
        or (key == "namespace" and meta.get("namespace") == value)
        for key, value in target.items()
    )


def _pod_specs(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    template = spec.get("template", {}).get("spec")
    return [template] if template else []


def render(folder: Path = ROOT / "deploy") -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "labels", "images", "patches"}
    if unknown:
        raise ValueError(f"{folder}/kustomization.yaml uses what this renderer does not know: {sorted(unknown)}")
    documents: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if not path.is_file():
            raise ValueError(f"resource {resource} is not a file in {folder}")
        documents += [copy.deepcopy(d) for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        hits = [d for d in documents if _matches(d, patch["target"])]
        if not hits:
            raise ValueError(f"patch target {patch['target']} matches nothing")
        for document in hits:
            _json6902(document, yaml.safe_load(patch["patch"]))
    for entry in kustomization.get("labels", []):
        for document in documents:
            document.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in kustomization.get("images", []):
        for document in documents:
            for spec in _pod_specs(document):
                for container in spec.get("containers", []) + spec.get("initContainers", []):
                    if container["image"].split(":")[0] == image["name"]:
                        container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return documents


if __name__ == "__main__":
    print(yaml.safe_dump_all(render(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy"), sort_keys=False))
