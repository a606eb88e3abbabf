"""The read-only Kubernetes handle every investigation source shares: the official client's API
objects on one ApiClient, the namespaces the guard policy lets mitigate look at, and a converter to the
plain JSON the API itself speaks (for diffs and findings)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

MAX_METADATA_BYTES = 256 * 1024


class KubeSource:
    def __init__(self, api_client: Any, allowed_namespaces: Collection[str]) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV1Api(api_client)
        self.allowed_namespaces = frozenset(allowed_namespaces)

    def plain(self, obj: Any) -> Any:
        """A client model as the API's own JSON (camelCase keys, ISO times)."""
        return self.api_client.sanitize_for_serialization(obj)

    def metadata_only(self, kind: str, name: str, namespace: str, _request_timeout: float) -> dict[str, Any]:
        """GET one ConfigMap or Secret as PartialObjectMetadata: the server sends names, times and
        resourceVersion, never the object's data (a Secret's values never reach this process)."""
        import json

        read = {"configmaps": self.core.read_namespaced_config_map, "secrets": self.core.read_namespaced_secret}[kind]
        response = read(
            name,
            namespace,
            _headers={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
            _preload_content=False,
            _request_timeout=_request_timeout,
        )
        try:
            body = json.loads(response.read(MAX_METADATA_BYTES))
        finally:
            response.release_conn()
        if not isinstance(body, dict) or body.get("kind") != "PartialObjectMetadata":
            raise ValueError("the API server did not answer with metadata only")
        meta = body.get("metadata") or {}
        return {k: meta.get(k) for k in ("name", "namespace", "resourceVersion", "creationTimestamp", "managedFields")}
