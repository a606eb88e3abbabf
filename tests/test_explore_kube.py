"""The tool loop against the real kube-apiserver with mitigate's least-privilege identity: it reads a
Deployment and a Node, a model asking for writes is refused, and nothing in the cluster changes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from agent.explore import ExploreBudget, Explorer
from agent.schemas import Incident
from api.settings import Settings
from api.wiring import make_llm
from tests.fake_openai import FakeOpenAI
from tests.kube_fixture import ControlPlane
from tools.cluster import connect
from tools.guard import load_policy
from tools.read_tools.catalog import READ_TOOLS
from tools.read_tools.registry import ReadSources
from tools.read_tools.sources import ReadOnlyCluster

pytestmark = pytest.mark.kube
NS = "llm-serving"


def _deployment(api: Any) -> str:
    from kubernetes import client

    name = f"llm-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.6"}]},
            },
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment(NS, body)
    return name


def test_the_loop_reads_the_cluster_and_writes_nothing(control_plane: ControlPlane):
    from kubernetes import client

    admin = control_plane.admin()
    name = _deployment(admin)
    apps = client.AppsV1Api(admin)
    # Not resourceVersion: the controller manager writes the status of a new Deployment on its own.
    before = apps.read_namespaced_deployment(name, NS).metadata
    policy = load_policy()
    cluster = connect(str(control_plane.mitigate_kubeconfig), None, policy=policy)
    sources = ReadSources(policy.allowed_namespaces, cluster=ReadOnlyCluster(cluster))
    explorer = Explorer(READ_TOOLS, sources, ExploreBudget(max_steps=4))
    with FakeOpenAI() as fake:
        fake.script.extend(
            [
                (
                    "tool_calls",
                    [
                        ("deployment_state", {"namespace": NS, "name": name}),
                        ("deployment_state", {"namespace": NS, "name": "no-such-deployment"}),
                    ],
                ),
                (
                    "tool_calls",
                    [
                        ("delete_deployment", {"namespace": NS, "name": name}),
                        ("deployment_state", {"namespace": "kube-system", "name": "coredns"}),
                    ],
                ),
                ("text", "read it"),
            ]
        )
        settings = Settings(llm_base_url=fake.base_url, llm_model="m", llm_api_key=SecretStr("k"), llm_max_retries=0)
        incident = Incident(id="K-1", title=f"{name} is slow")
        exploration, _ = explorer.run(make_llm(settings), incident, {"deployment": name, "namespace": NS})

    assert exploration["stop_reason"] == "done"
    assert [c["ok"] for c in exploration["calls"]] == [True, True, False, False]
    state = next(f for f in exploration["findings"] if f["kind"] == "workload_state")
    assert state["source"] == {"type": "kubernetes", "object": f"deployment {NS}/{name}"}
    assert state["data"]["deployment"]["replicas"] == 2
    assert any(g["source"] == "kubernetes" and "no-such-deployment" in g["reason"] for g in exploration["gaps"])
    after = apps.read_namespaced_deployment(name, NS)
    assert after.metadata.uid == before.uid and after.metadata.generation == before.generation  # no spec write
    assert after.spec.replicas == 2 and after.metadata.deletion_timestamp is None


def test_the_investigation_tools_find_the_revision_diff_and_the_rollout_and_write_nothing(control_plane: ControlPlane):
    """`recent_changes` and `workload_state` run the investigation's own reads for the model: a second
    revision that raised --max-num-seqs is a change with its diff and its ReplicaSet's resourceVersion."""
    from kubernetes import client

    from tests.waiting import until
    from tools.investigate import Bounds, KubeSource

    admin = control_plane.admin()
    apps = client.AppsV1Api(admin)
    name = _deployment(admin)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "engine", "args": ["--max-num-seqs", "512"]}]}}}}
    apps.patch_namespaced_deployment(name, NS, patch)

    def revisions() -> set[str]:
        sets = apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items
        return {(rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "") for rs in sets}

    until(lambda: {"1", "2"} <= revisions(), "two revisions", 30)
    before = apps.read_namespaced_deployment(name, NS).metadata
    policy = load_policy()
    cluster = connect(str(control_plane.mitigate_kubeconfig), None, policy=policy)
    kube = KubeSource(cluster.apps.api_client, policy.allowed_namespaces)
    sources = ReadSources(policy.allowed_namespaces, kube=kube, bounds=Bounds(timeout_s=5))
    explorer = Explorer(READ_TOOLS, sources, ExploreBudget(max_steps=3))
    target = {"namespace": NS, "deployment": name}
    with FakeOpenAI() as fake:
        fake.script.extend(
            [
                ("tool_calls", [("recent_changes", {**target, "hours": 1}), ("workload_state", target)]),
                ("text", "revision 2 raised --max-num-seqs"),
            ]
        )
        settings = Settings(llm_base_url=fake.base_url, llm_model="m", llm_api_key=SecretStr("k"), llm_max_retries=0)
        exploration, _ = explorer.run(make_llm(settings), Incident(id="K-2", title=f"{name} OOM"), target)
        told = fake.requests[1]["body"]["messages"][3]["content"]

    assert [c["ok"] for c in exploration["calls"]] == [True, True]
    (rollout,) = [f for f in exploration["findings"] if f["data"].get("change") == "rollout"]
    assert rollout["data"]["revision"] == 2 and rollout["data"]["previous_revision"] == 1
    assert rollout["data"]["changes"] == [
        {"container": "engine", "field": "args --max-num-seqs", "from": None, "to": "512"}
    ]
    assert rollout["source"]["object"].startswith(f"apps/v1 ReplicaSet {NS}/{name}-")
    assert rollout["source"]["resourceVersion"]
    state = next(f for f in exploration["findings"] if f["kind"] == "rollout")
    assert state["source"]["object"] == f"apps/v1 Deployment {NS}/{name}" and state["source"]["resourceVersion"]
    assert told.startswith("<tool_output>") and "max-num-seqs" in told
    after = apps.read_namespaced_deployment(name, NS)
    assert after.metadata.uid == before.uid and after.metadata.generation == before.generation
    assert after.metadata.deletion_timestamp is None
