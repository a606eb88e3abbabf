"""Which Deployment is the known-good predecessor of a new one, when both were made within the window
and their creation times (one-second resolution) tie: exactly one direction, the ready one first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubernetes import client

from agent.findings import finding
from tools.investigate.bounds import Bounds
from tools.investigate.changes import ChangeReader
from tools.investigate.kube import KubeSource

NS = "llm-serving"


def _deployment(name: str, created: datetime, ready: int, max_num_seqs: str) -> client.V1Deployment:
    container = client.V1Container(name="engine", image="vllm:0.6", args=["--max-num-seqs", max_num_seqs])
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}), spec=client.V1PodSpec(containers=[container])
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, namespace=NS, creation_timestamp=created, uid=name),
        spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(match_labels={"app": name}), template=template),
        status=client.V1DeploymentStatus(ready_replicas=ready),
    )


def _compare(deployments: list[client.V1Deployment]) -> dict[str, dict]:
    reader = ChangeReader(KubeSource(client.ApiClient(), [NS]), Bounds())
    for d in deployments:
        data = {"deployment": f"{NS}/{d.metadata.name}", "change": "created", "changes": []}
        source = {"type": "kubernetes", "object": f"apps/v1 Deployment {NS}/{d.metadata.name}"}
        reader.findings.append(
            finding("recent_change", "created", source, d.metadata.creation_timestamp.isoformat(), data)
        )
    for d in deployments:
        reader.versus_neighbour(d, [n for n in deployments if n is not d])
    return {f["data"]["deployment"]: f["data"] for f in reader.findings}


def test_same_second_deployments_name_one_predecessor_the_ready_one() -> None:
    at = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)
    # The crashing one sorts first by name, so the name alone would pick the wrong predecessor.
    good, bad = _deployment("serve-b", at, 2, "256"), _deployment("serve-a", at, 0, "1024")
    for order in ([good, bad], [bad, good]):
        found = _compare(order)
        assert found[f"{NS}/serve-a"]["previous_deployment"] == f"{NS}/serve-b"
        assert found[f"{NS}/serve-a"]["previous_ready"] == 2
        assert "previous_deployment" not in found[f"{NS}/serve-b"]
        assert {"container": "engine", "field": "args --max-num-seqs", "from": "256", "to": "1024"} in found[
            f"{NS}/serve-a"
        ]["changes"]


def test_an_older_deployment_is_the_predecessor_whatever_its_readiness() -> None:
    at = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)
    old, new = _deployment("serve", at, 0, "256"), _deployment("serve-v2", at + timedelta(seconds=1), 3, "1024")
    found = _compare([new, old])
    assert found[f"{NS}/serve-v2"]["previous_deployment"] == f"{NS}/serve"
    assert "previous_deployment" not in found[f"{NS}/serve"]


def test_same_second_and_equally_ready_deployments_still_name_one_predecessor() -> None:
    at = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)
    one, two = _deployment("serve-x", at, 1, "256"), _deployment("serve-y", at, 1, "512")
    found = _compare([two, one])
    claims = [name for name, data in found.items() if "previous_deployment" in data]
    assert len(claims) == 1
