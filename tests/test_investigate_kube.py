"""Investigation against the real kube-apiserver (+ controller manager, + the simulated kubelet): a
Deployment with several revisions and a changed `--max-num-seqs`, a ConfigMap edit, a Secret whose
value must never be read, an HPA, pods the kubelet reports OOMKilled, a cordoned node. Read as
mitigate's least-privilege identity; refusals (403), missing objects and a log that needs a real kubelet
are gaps, and nothing is written."""

from __future__ import annotations

import contextlib
import json
import ssl
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from sim.kubelet import Kubelet
from sim.topology import ModelSpec, Topology, apply
from tests.kube_fixture import ControlPlane
from tests.waiting import until
from tools.cluster import connect
from tools.guard import load_policy
from tools.investigate import Bounds, KubeSource
from tools.investigate.changes import recent_changes
from tools.investigate.workload import workload_state

pytestmark = pytest.mark.kube
NS = "llm-serving"
SECRET_VALUE = "s3cr3t-value-that-must-never-appear-0123456789"


def _revision(apps: Any, name: str, revision: str) -> None:
    def has() -> bool:
        sets = apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items
        return any((rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision") == revision for rs in sets)

    until(has, f"ReplicaSet revision {revision} of {name}", 30)


@pytest.fixture(scope="module")
def fleet(control_plane: ControlPlane) -> dict[str, Any]:
    from kubernetes import client

    admin = control_plane.admin()
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    tag = uuid.uuid4().hex[:6]
    model, node, cordoned = f"inv-{tag}", f"gpu-inv-{tag}", f"gpu-inv-{tag}-b"
    topology = Topology(models=(ModelSpec(model, ("eastus",), 2, 1.0),), nodes=((node, "eastus"),), namespace=NS)
    apply(admin, topology)
    name = topology.deployment(model, "eastus")
    _revision(apps, name, "1")
    core.create_namespaced_config_map(NS, {"metadata": {"name": f"{model}-engine"}, "data": {"max_model_len": "4096"}})
    core.create_namespaced_secret(NS, {"metadata": {"name": f"{model}-token"}, "stringData": {"token": SECRET_VALUE}})
    # Revision 2 references the ConfigMap and the Secret and sets --max-num-seqs 256; revision 3 raises it.
    container = {
        "name": "engine",
        "args": ["--model", model, "--max-num-seqs", "256"],
        "envFrom": [{"configMapRef": {"name": f"{model}-engine"}}],
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": f"{model}-token", "key": "token"}}}],
    }
    apps.patch_namespaced_deployment(name, NS, {"spec": {"template": {"spec": {"containers": [container]}}}})
    _revision(apps, name, "2")
    container["args"] = ["--model", model, "--max-num-seqs", "1024"]
    apps.patch_namespaced_deployment(name, NS, {"spec": {"template": {"spec": {"containers": [container]}}}})
    _revision(apps, name, "3")
    core.patch_namespaced_config_map(f"{model}-engine", NS, {"data": {"max_model_len": "8192"}})
    hpa = {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2,
            "maxReplicas": 6,
        },
    }
    client.AutoscalingV1Api(admin).create_namespaced_horizontal_pod_autoscaler(NS, hpa)
    core.create_node({"metadata": {"name": cordoned}, "spec": {"unschedulable": True}})
    # The simulated kubelet binds the pods and reports them Running after 4 OOM kills.
    kubelet = Kubelet(admin, topology)

    def oom_reported() -> bool:
        pods = [
            p
            for p in core.list_namespaced_pod(NS, label_selector=f"app={name}").items
            if not p.metadata.deletion_timestamp
        ]
        kubelet.sync({p.metadata.name: 4 for p in pods})
        statuses = [s for p in pods for s in (p.status.container_statuses or [])]
        return bool(statuses) and all(s.restart_count == 4 and s.last_state.terminated for s in statuses)

    until(oom_reported, "the kubelet reporting OOM kills", 60)
    return {"model": model, "name": name, "node": node, "cordoned": cordoned, "admin": admin}


# What these tests assert is what is found, not how fast (test_an_unreachable_api_server_... checks the
# deadline): a busy machine's slow answer must not turn a finding into a gap.
PATIENT = Bounds(timeout_s=10.0)


def _kube(kubeconfig: Any) -> KubeSource:
    return KubeSource(connect(str(kubeconfig)).apps.api_client, load_policy().allowed_namespaces)


def test_the_revision_diff_configmap_edit_hpa_and_cordon_are_found_with_their_sources(control_plane, fleet):
    from kubernetes import client

    target = {"namespace": NS, "deployment": fleet["name"], "node": fleet["cordoned"]}
    before = client.AppsV1Api(fleet["admin"]).read_namespaced_deployment(fleet["name"], NS).metadata.resource_version
    findings, gaps = recent_changes(
        _kube(control_plane.mitigate_kubeconfig), target, now=datetime.now(UTC), bounds=PATIENT
    )

    rollout = [f for f in findings if f["data"].get("change") == "rollout"]
    assert len(rollout) == 1, findings
    assert rollout[0]["data"]["revision"] == 3 and rollout[0]["data"]["previous_revision"] == 2
    assert {"container": "engine", "field": "args --max-num-seqs", "from": "256", "to": "1024"} in rollout[0]["data"][
        "changes"
    ]
    assert "--max-num-seqs 256 → 1024" in rollout[0]["summary"]
    assert rollout[0]["source"]["object"].startswith(f"apps/v1 ReplicaSet {NS}/{fleet['name']}-")
    assert rollout[0]["source"]["resourceVersion"]
    config = [f for f in findings if f["data"].get("kind") == "ConfigMap"]
    assert config and config[0]["data"]["name"] == f"{fleet['model']}-engine" and config[0]["source"]["resourceVersion"]
    assert any(f["source"]["object"].startswith("autoscaling/v1 HorizontalPodAutoscaler") for f in findings)
    assert any(f["data"].get("change") == "cordon" and f["data"]["node"] == fleet["cordoned"] for f in findings)
    # mitigate's identity may not read Secrets: the name is known from the template, the value never.
    assert any("Secret" in g["reason"] and "forbidden" in g["reason"] for g in gaps), gaps
    assert SECRET_VALUE not in json.dumps([findings, gaps])
    after = client.AppsV1Api(fleet["admin"]).read_namespaced_deployment(fleet["name"], NS).metadata.resource_version
    assert after == before  # read-only


def test_workload_state_names_oom_kills_and_states_the_log_it_could_not_read(control_plane, fleet):
    target = {"namespace": NS, "deployment": fleet["name"]}
    findings, gaps = workload_state(_kube(control_plane.mitigate_kubeconfig), target, bounds=PATIENT)
    restarts = [f for f in findings if f["kind"] == "restarts"]
    assert restarts and all(f["data"]["restarts"] == 4 for f in restarts)
    assert all(f["data"]["last_termination"]["reason"] == "OOMKilled" for f in restarts)
    assert "OOMKilled (exit code 137, signal 9)" in restarts[0]["summary"]
    assert any(f["kind"] == "rollout" for f in findings)
    # There is no real kubelet to serve logs: the API server's failure is a gap, not an error.
    assert any(g["reason"].startswith(f"log of {NS}/") for g in gaps), gaps


def test_pending_pods_say_why_and_unhealthy_nodes_their_conditions(control_plane):
    from kubernetes import client

    admin = control_plane.admin()
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    name, node = f"pend-{uuid.uuid4().hex[:6]}", f"gpu-sick-{uuid.uuid4().hex[:6]}"
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "engine", "image": "x"}]}}
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}
    apps.create_namespaced_deployment(NS, {"metadata": {"name": name}, "spec": spec})
    pod = until(lambda: core.list_namespaced_pod(NS, label_selector=f"app={name}").items, "the pod")[0]
    message = "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."
    event = {
        "metadata": {"name": f"{pod.metadata.name}.1"},
        "involvedObject": {"kind": "Pod", "name": pod.metadata.name, "namespace": NS, "uid": pod.metadata.uid},
        "reason": "FailedScheduling",
        "message": message,
        "type": "Warning",
    }
    core.create_namespaced_event(NS, event)
    core.create_node({"metadata": {"name": node}})
    now = datetime.now(UTC).isoformat()
    conditions = [
        {
            "type": "Ready",
            "status": "False",
            "reason": "KubeletNotReady",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        },
        {
            "type": "MemoryPressure",
            "status": "True",
            "reason": "KubeletHasInsufficientMemory",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        },
    ]
    core.patch_node_status(node, {"status": {"conditions": conditions}})
    findings, _gaps = workload_state(
        _kube(control_plane.mitigate_kubeconfig), {"namespace": NS, "deployment": name, "node": node}, bounds=PATIENT
    )
    pending = [f for f in findings if f["kind"] == "pending"]
    assert pending and pending[0]["summary"].endswith(f"Pending: FailedScheduling: {message}"), findings
    sick = [f for f in findings if f["kind"] == "node_condition"]
    assert sick and {c["type"] for c in sick[0]["data"]["conditions"]} == {"Ready", "MemoryPressure"}
    assert sick[0]["source"]["object"] == f"v1 Node {node}"


def _nobody(control_plane: ControlPlane) -> KubeSource:
    """A ServiceAccount with no rights at all, through a token the API server issues (TokenRequest)."""
    from kubernetes import client

    core = client.CoreV1Api(control_plane.admin())
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_service_account(NS, {"metadata": {"name": name}})
    request = {"spec": {"audiences": ["https://127.0.0.1"], "expirationSeconds": 3600}}
    token = core.create_namespaced_service_account_token(name, NS, request).status.token
    configuration = client.Configuration()
    configuration.host = control_plane.server
    configuration.ssl_ca_cert = str(control_plane.dir / "pki" / "apiserver.crt")
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return KubeSource(client.ApiClient(configuration), load_policy().allowed_namespaces)


def test_a_service_account_without_rights_gets_gaps_only(control_plane, fleet):
    target = {"namespace": NS, "deployment": fleet["name"], "node": fleet["node"]}
    kube = _nobody(control_plane)
    for findings, gaps in (
        recent_changes(kube, target, now=datetime.now(UTC), bounds=PATIENT),
        workload_state(kube, target, bounds=PATIENT),
    ):
        assert findings == []
        assert gaps and all("forbidden (403)" in g["reason"] for g in gaps), gaps


def test_missing_objects_and_namespaces_outside_the_policy_are_gaps(control_plane):
    kube = _kube(control_plane.mitigate_kubeconfig)
    findings, gaps = recent_changes(
        kube, {"namespace": NS, "deployment": "no-such-deployment"}, now=datetime.now(UTC), bounds=PATIENT
    )
    assert findings == [] and gaps == [
        {"source": "kubernetes", "reason": f"Deployment {NS}/no-such-deployment: not found"}
    ]
    findings, gaps = workload_state(kube, {"namespace": "kube-system", "deployment": "coredns"}, bounds=PATIENT)
    assert findings == [] and "outside the guard policy" in gaps[0]["reason"]


def test_an_unreachable_api_server_is_a_gap_within_the_deadline(control_plane):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # nothing listens
    kube = KubeSource(client.ApiClient(configuration), [NS])
    started = datetime.now(UTC)
    findings, gaps = recent_changes(
        kube, {"namespace": NS, "deployment": "x"}, now=started, bounds=Bounds(timeout_s=1.0)
    )
    assert findings == [] and len(gaps) == 1 and gaps[0]["source"] == "kubernetes"
    assert (datetime.now(UTC) - started).total_seconds() < 10


class KubeletLogs:
    """The kubelet's log endpoint (`/containerLogs/<ns>/<pod>/<container>`) over HTTPS, which the API
    server proxies `pods/log` to. It serves `body` whole, ignoring `limitBytes` like a misbehaving kubelet
    or proxy would, so that only the reader's own cap stands between a 50 MB log and the run."""

    def __init__(self, pki: Any) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.body = b""
        self.sent = 0
        self.finished = threading.Event()  # the last response was written whole, or its reader left
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                # The reader may stop at its cap and close: what a reader should do. Written in chunks
                # and counted: a reader that stops reading stops this writer once the buffers between fill.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    for start in range(0, len(owner.body), 65536):
                        self.wfile.write(owner.body[start : start + 65536])
                        owner.sent += len(owner.body[start : start + 65536])
                owner.finished.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def logged_pod(control_plane: ControlPlane) -> Any:
    """A pod on a node whose kubelet endpoint is `KubeletLogs`."""
    from kubernetes import client

    core = client.CoreV1Api(control_plane.admin())
    kubelet = KubeletLogs(control_plane.dir / "pki")
    node, pod = f"gpu-logs-{uuid.uuid4().hex[:6]}", f"engine-{uuid.uuid4().hex[:6]}"
    core.create_node({"metadata": {"name": node}})
    status = {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
    }
    core.patch_node_status(node, {"status": status})
    spec = {"nodeName": node, "containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.6"}]}
    core.create_namespaced_pod(NS, {"metadata": {"name": pod}, "spec": spec})
    yield kubelet, pod
    kubelet.server.shutdown()
    core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)


def test_a_log_with_binary_bytes_and_tokens_is_made_printable_and_redacted(control_plane, logged_pod):
    from tools.investigate.workload import log_tail

    kubelet, pod = logged_pod
    kubelet.body = (
        b"INFO loading weights\n\x00\x01\xff\xfe\x1b[31mCUDA error: out of memory\x1b[0m\n"
        b"Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345\nHF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUv\n"
        b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    )
    findings, gaps = log_tail(_kube(control_plane.mitigate_kubeconfig), NS, pod, "engine", previous=True)
    assert gaps == []
    lines = findings[0]["data"]["lines"]
    text = "\n".join(lines)
    assert "CUDA error: out of memory" in text and lines[-1].startswith("torch.OutOfMemoryError")
    assert "abcdefghijklmnop" not in text and "hf_AbCdEf" not in text and "[redacted]" in text
    assert all(ch.isprintable() for line in lines for ch in line), lines
    # The API server passed the bounds on to the kubelet: the previous instance, the tail, the byte limit.
    assert (
        "previous=true" in kubelet.paths[-1]
        and "tailLines=40" in kubelet.paths[-1]
        and "limitBytes=16384" in kubelet.paths[-1]
    )


def test_a_50_mb_log_is_read_only_up_to_the_cap(control_plane, logged_pod):

    from tools.investigate.workload import log_tail

    kubelet, pod = logged_pod
    kubelet.body = (b"x" * 99 + b"\n") * (50 * 1024 * 1024 // 100)
    kubelet.sent = 0
    kubelet.finished.clear()
    findings, gaps = log_tail(
        _kube(control_plane.mitigate_kubeconfig), NS, pod, "engine", bounds=Bounds(max_log_bytes=4096)
    )
    assert gaps == [] and findings[0]["data"]["truncated"] is True
    assert findings[0]["data"]["bytes"] == 4096 and len(findings[0]["data"]["lines"]) <= 40
    # The reader stopped at its cap and closed the stream: what left the kubelet is what the buffers
    # between held, not 50 MB (a reader that loads the whole body returns only after all of it was sent).
    until(kubelet.finished.is_set, "the reader to close the log stream")
    assert kubelet.sent < len(kubelet.body) // 2, kubelet.sent


def test_a_bad_new_deployment_beside_a_good_one_is_a2_and_deleted_only_after_two_approvals(control_plane):
    """The bad-rollout scenario through the whole graph on the real API server: a second Deployment of
    a model with `--max-num-seqs` raised, its pods OOM-killed, an alert that says only that. Investigation
    finds the new Deployment and how its template differs from the one still serving; the earliest cause
    is the configuration (A2), the plan deletes the new Deployment (M6), and the guard holds it until two
    different people approved; the good Deployment stays."""
    from dataclasses import replace

    from kubernetes import client
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from agent.context import MemoryRecorder, TriageContext
    from agent.graph import builder
    from agent.rulebook import load_rulebook
    from tests.approvers import REGISTRY, answer
    from tests.fakes import FakeSla
    from tools.investigate import Investigator

    admin = control_plane.admin()
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    tag = uuid.uuid4().hex[:6]
    model, node = f"roll-{tag}", f"gpu-roll-{tag}"
    topology = Topology(models=(ModelSpec(model, ("eastus",), 2, 1.0),), nodes=((node, "eastus"),), namespace=NS)
    apply(admin, topology)
    stable = topology.deployment(model, "eastus")
    seqs = {"name": "engine", "args": ["--model", model, "--max-num-seqs", "256"]}
    apps.patch_namespaced_deployment(stable, NS, {"spec": {"template": {"spec": {"containers": [seqs]}}}})
    body = apps.read_namespaced_deployment(stable, NS)
    bad = f"{stable}-v2"
    template = admin.sanitize_for_serialization(body.spec.template)
    template["metadata"]["labels"]["app"] = bad
    template["spec"]["containers"][0]["args"] = ["--model", model, "--max-num-seqs", "1024"]
    labels = {**(body.metadata.labels or {}), "app": bad}
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": bad}}, "template": template}
    apps.create_namespaced_deployment(NS, {"metadata": {"name": bad, "labels": labels}, "spec": spec})
    kubelet = Kubelet(admin, topology)

    def settled() -> bool:
        pods = [p for p in core.list_namespaced_pod(NS, label_selector=f"app in ({stable},{bad})").items]
        kubelet.sync({p.metadata.name: 3 for p in pods if p.metadata.labels["app"] == bad})
        stable_ready = apps.read_namespaced_deployment(stable, NS).status.ready_replicas or 0
        return stable_ready >= 1 and any(p.metadata.labels["app"] == bad and p.status.phase == "Running" for p in pods)

    until(settled, "both deployments running", 60)

    policy = load_policy()
    cluster = connect(str(control_plane.mitigate_kubeconfig), str(control_plane.approved_kubeconfig), policy=policy)
    investigator = Investigator(
        KubeSource(cluster.apps.api_client, policy.allowed_namespaces), bounds=PATIENT, budget_s=30
    )
    context = TriageContext(
        rulebook=load_rulebook(),
        policy=policy,
        recorder=MemoryRecorder(),
        cluster=cluster,
        sla=FakeSla("verified"),
        approvers=REGISTRY,
    )
    context = replace(context, investigator=investigator)
    labels = {"alertname": "PodRestarting", "namespace": NS, "deployment": bad, "model": model}
    incident = {
        "id": f"INC-{tag}",
        "title": f"Pod of {model} restarted (OOM-killed?)",
        "alert": {"status": "firing", "labels": labels},
        "signals": {"pod_restarts": 3, "oom_kills": 3},
        "started_at": datetime.now(UTC).isoformat(),
    }
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": f"roll-{tag}"}}
    state = graph.invoke({"run_id": f"roll-{tag}", "incident": incident}, config, context=context)

    created = {
        f["data"]["deployment"]: f["data"]
        for f in state["investigation"]["findings"]
        if f["data"].get("change") == "created"
    }
    assert created[f"{NS}/{bad}"]["previous_deployment"] == f"{NS}/{stable}", created
    assert {"container": "engine", "field": "args --max-num-seqs", "from": "256", "to": "1024"} in created[
        f"{NS}/{bad}"
    ]["changes"]
    # Both were made within the window, often in the same second: the good one is never "new beside" the bad.
    assert "previous_deployment" not in created.get(f"{NS}/{stable}", {}), created
    assert (state["classification"]["category"], state["classification"]["subcategory"]) == ("A2", "config_change")
    assert (state["plan"]["mitigation"], state["plan"]["operation"]) == ("M6", "delete_deployment")
    assert state["plan"]["target"]["name"] == bad
    assert "__interrupt__" in state  # the guard asks for approvals before any write
    state = graph.invoke(
        Command(resume=answer("alice", reason="v2 OOMs since --max-num-seqs 1024")), config, context=context
    )
    assert "__interrupt__" in state and apps.read_namespaced_deployment(bad, NS)  # one approval is not enough
    state = graph.invoke(Command(resume=answer("carol", reason="confirmed")), config, context=context)
    assert state["report"]["status"] == "mitigated", state["report"]
    with pytest.raises(client.ApiException) as gone:
        apps.read_namespaced_deployment(bad, NS)
    assert gone.value.status == 404
    assert apps.read_namespaced_deployment(stable, NS).status.ready_replicas >= 1
