"""Dependency faults on real servers end in a stated outcome, never a bare `failed`: the API server
stopped before act, between the dry run and the write, and during verify; Prometheus stopped during
verify. Each is recorded as steps, retried a bounded number of times, then escalated with the reason;
nothing is written twice, and `runs retry` finishes the run once the dependency is back.

These tests stop and start servers, so they run on a control plane of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.context import TriageContext
from agent.rulebook import load_rulebook
from agent.schemas import Incident
from api.run_faults import RetryPolicy, run_to_end
from api.runs import create_run, execute_run, resume_run
from api.settings import Settings
from api.wiring import open_checkpointer, open_store
from tests.apiserver_switch import ApiServer, _alive
from tests.approvers import REGISTRY, answer
from tests.conftest import ROOT
from tests.fakes import FakeSla
from tests.kube_fixture import ControlPlane
from tests.waiting import until
from tools.cluster import connect
from tools.guard import load_policy

pytestmark = pytest.mark.kube
NS = "llm-serving"
RETRY = RetryPolicy(attempts=3, backoff_s=0.2)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, ApiServer]]:
    from kubernetes import config

    state = tmp_path_factory.mktemp("fault-kube")
    up = subprocess.run([str(ROOT / "scripts" / "kube"), "up", str(state)], capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        cp = ControlPlane(
            state,
            state / "admin.kubeconfig",
            state / "mitigate.kubeconfig",
            state / "approved.kubeconfig",
            (state / "server").read_text().strip(),
        )
        api = ApiServer(state, config.new_client_from_config(config_file=str(cp.admin_kubeconfig)))
        try:
            yield cp, api
        finally:
            api.close()
    finally:
        subprocess.run([str(ROOT / "scripts" / "kube"), "down", str(state)], capture_output=True, timeout=120)


class Run:
    """One run on the real store and checkpointer, as the service runs it (bounded retries with backoff)."""

    def __init__(self, tmp_path: Path, context_args: dict[str, Any], incident: dict[str, Any]) -> None:
        self.url = f"sqlite:///{tmp_path}/faults.db"
        self.store = open_store(Settings(database_url=self.url))
        self.context = TriageContext(
            rulebook=load_rulebook(),
            policy=load_policy(),
            recorder=self.store.recorder,
            approvers=REGISTRY,
            **context_args,
        )
        parsed = Incident.model_validate(incident)
        run_id = create_run(parsed, source="test", payload=incident, recorder=self.store.recorder, engine="rulebook")
        assert run_id is not None
        self.id = run_id

    def go(self, answer_: dict[str, Any] | None = None, *, fresh: bool = False) -> Any:
        recorder = self.store.recorder
        if fresh:  # what `mitigate runs retry` does
            recorder.set_run_retry(self.id, 0, None)
        with open_checkpointer(self.url) as cp:

            def first() -> Any:
                if answer_ is not None:
                    return resume_run(self.id, recorder=recorder, context=self.context, checkpointer=cp, answer=answer_)
                return execute_run(self.id, recorder=recorder, context=self.context, checkpointer=cp)

            def then() -> Any:
                return resume_run(self.id, recorder=recorder, context=self.context, checkpointer=cp)

            return run_to_end(
                first, then, self.id, recorder=recorder, context=self.context, checkpointer=cp, retry=RETRY
            )

    def steps(self) -> list[str]:
        run = self.store.recorder.run(self.id)
        assert run is not None
        return [s["node"] for s in run["steps"]]

    def action(self) -> dict[str, Any]:
        timeline = self.store.recorder.run(self.id)
        assert timeline is not None
        from store.models import ActionRow
        from store.recorder import action_dict

        with self.store.sessions() as session:
            [row] = session.query(ActionRow).filter(ActionRow.run_id == self.id).all()
            return action_dict(row)


def _node(cp: ControlPlane) -> str:
    from kubernetes import client

    core = client.CoreV1Api(cp.admin())
    node = f"gpu-node-{uuid.uuid4().hex[:6]}"
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    core.create_namespaced_pod(
        NS,
        {"metadata": {"name": f"{node}-pod"}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}},
    )
    return node


def _deployment(cp: ControlPlane) -> str:
    from kubernetes import client

    name = f"llm-{uuid.uuid4().hex[:8]}"
    client.AppsV1Api(cp.admin()).create_namespaced_deployment(
        NS,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "e", "image": "x"}]},
                },
            },
        },
    )
    return name


def _bad_node(node: str) -> dict[str, Any]:
    alert = {"status": "firing", "labels": {"alertname": "GPUXid", "namespace": NS, "node": node}}
    return {
        "id": f"F-{uuid.uuid4().hex[:6]}",
        "title": f"XID 79 on node {node}; its pods fail, still failing",
        "alert": alert,
    }


def _saturated(name: str) -> dict[str, Any]:
    alert = {"status": "firing", "labels": {"alertname": "TooManyRequests", "namespace": NS, "deployment": name}}
    return {
        "id": f"F-{uuid.uuid4().hex[:6]}",
        "title": "429 throttling, queue backlog on every replica, still growing",
        "alert": alert,
    }


def _cordoned(cp: ControlPlane, node: str) -> bool:
    from kubernetes import client

    return bool(client.CoreV1Api(cp.admin()).read_node(node).spec.unschedulable)


def _replicas(cp: ControlPlane, name: str) -> int:
    from kubernetes import client

    return int(client.AppsV1Api(cp.admin()).read_namespaced_deployment(name, NS).spec.replicas)


def _escalated_by_fault(outcome: Any, run: Run, dependency: str, stopped_at: str) -> None:
    assert outcome.status == "escalated", outcome
    reason = outcome.report["escalation"]["reason"]
    assert f"{dependency}: " in reason and f"after {RETRY.attempts} attempts" in reason, reason
    assert f"stopped at {stopped_at}" in reason and f"runs retry {run.id}" in reason
    assert reason in outcome.report["notes"]
    steps = run.steps()
    assert [s for s in steps if s.startswith("fault-")] == ["fault-1", "fault-2", "fault-3"] and "escalate" in steps
    stored = run.store.recorder.run(run.id)
    assert stored is not None and stored["status"] == "escalated" and stored["report"]["escalation"]["fault"]


def test_api_server_stopped_before_act(plane, tmp_path):
    cp, api = plane
    node = _node(cp)
    run = Run(tmp_path, {"cluster": connect(str(cp.mitigate_kubeconfig)), "sla": FakeSla("verified")}, _bad_node(node))
    assert run.go().status == "awaiting_approval"
    api.stop()
    try:
        outcome = run.go(answer("alice"))
        _escalated_by_fault(outcome, run, "kubernetes connection", "act")
        action = run.action()
        assert action["status"] == "failed" and action["reason"].startswith("not executed:")
    finally:
        api.start()
    assert not _cordoned(cp, node)  # nothing was written while it was down
    # A human retries once the API server is back: `mitigate runs retry`, the real command.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MITIGATE_")}
    env |= {"MITIGATE_DATABASE_URL": run.url, "MITIGATE_KUBECONFIG": str(cp.mitigate_kubeconfig)}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "runs", "retry", run.id, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["actions"][0]["status"] == "executed" and _cordoned(cp, node)
    # This CLI has no Prometheus configured: it says so rather than claiming success.
    assert report["status"] == "escalated" and "no Prometheus configured" in report["escalation"]["reason"]


class StopBeforeWrite:
    """The real cluster, with the API server stopped after the dry run and before the write."""

    def __init__(self, cluster: Any, api: ApiServer) -> None:
        self.cluster, self.api, self.stopped = cluster, api, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def execute(self, plan: dict[str, Any]) -> Any:
        if not self.stopped:
            self.stopped = True
            self.api.stop()
        return self.cluster.execute(plan)


def test_api_server_stopped_between_the_dry_run_and_the_write(plane, tmp_path):
    cp, api = plane
    name = _deployment(cp)
    cluster = StopBeforeWrite(connect(str(cp.mitigate_kubeconfig)), api)
    run = Run(tmp_path, {"cluster": cluster, "sla": FakeSla("verified")}, _saturated(name))
    try:
        outcome = run.go()
        _escalated_by_fault(outcome, run, "kubernetes connection", "act")
        assert run.action()["dry_run"]["status"] == "dry-run-ok" and run.action()["status"] == "failed"
    finally:
        api.start()
    assert _replicas(cp, name) == 2  # the write never reached the server
    done = run.go(fresh=True)
    assert done.status == "mitigated", done.report
    assert _replicas(cp, name) == 3  # written exactly once (a repeat would make it 4)
    assert done.report["actions"][0]["status"] == "executed"


class ClusterVerifier:
    """Verifies a drain on the cluster's own state (pods left on the node) and can stop the API server
    at the start of its first verification."""

    def __init__(self, api: ApiServer | None) -> None:
        self.api, self.baselines = api, []  # type: ignore[var-annotated]

    def baseline(self, plan: dict[str, Any], incident: Incident, observe: Any = None) -> dict[str, Any]:
        return {"values": observe()}

    def verify(self, plan: dict[str, Any], incident: Incident, baseline: Any, observe: Any = None) -> dict[str, Any]:
        self.baselines.append(baseline)
        if self.api is not None:
            api, self.api = self.api, None
            api.stop()
        values = observe()
        status = "verified" if values["pods_on_node"] < 1 else "not_recovered"
        return {
            "status": status,
            "reason": f"pods on node {baseline['values']['pods_on_node']:g} -> {values['pods_on_node']:g}",
        }


def test_api_server_stopped_during_verify(plane, tmp_path):
    cp, api = plane
    node = _node(cp)
    verifier = ClusterVerifier(api)
    run = Run(tmp_path, {"cluster": connect(str(cp.mitigate_kubeconfig)), "sla": verifier}, _bad_node(node))
    assert run.go().status == "awaiting_approval"
    try:
        outcome = run.go(answer("alice"))
        _escalated_by_fault(outcome, run, "kubernetes connection", "verify")
        assert run.action()["status"] == "executed"  # the drain itself went through, once
    finally:
        api.start()
    stored_baseline = run.action()["baseline"]
    assert stored_baseline["values"]["pods_on_node"] == 1  # taken before the drain
    done = run.go(fresh=True)
    assert done.status == "mitigated" and done.report["verification"]["reason"] == "pods on node 1 -> 0"
    assert all(b == stored_baseline for b in verifier.baselines) and len(verifier.baselines) == 4
    assert _cordoned(cp, node)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path, Any]]:
    """A real Prometheus scraping gateway_requests_total for one deployment, 10% of it 429s."""
    from prometheus_client import CollectorRegistry, MetricsHandler
    from prometheus_client.core import CounterMetricFamily

    counts = {"200": 0.0, "429": 0.0}
    labels: dict[str, str] = {}

    class Gateway:
        def collect(self) -> Iterator[CounterMetricFamily]:
            family = CounterMetricFamily("gateway_requests", "test", labels=["namespace", "deployment", "code"])
            for code, value in counts.items():
                family.add_metric([NS, labels.get("deployment", "none"), code], value)
            yield family

    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.1):
            counts["200"] += 9
            counts["429"] += 1

    threading.Thread(target=traffic, daemon=True).start()
    registry = CollectorRegistry()
    registry.register(Gateway())  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "token").write_text("unused")
    monitoring = str(ROOT / "scripts" / "monitoring")
    subprocess.run(
        [monitoring, "up", str(tmp_path / "mon"), "http://127.0.0.1:9/x", str(tmp_path / "token")], check=True
    )
    try:
        subprocess.run(
            [monitoring, "target", str(tmp_path / "mon"), "gw", f"127.0.0.1:{server.server_address[1]}"], check=True
        )
        yield (tmp_path / "mon" / "prometheus.url").read_text().strip(), tmp_path / "mon", labels
    finally:
        stop.set()
        server.shutdown()
        subprocess.run([monitoring, "down", str(tmp_path / "mon")], capture_output=True)


class StopsPrometheus:
    """The real verifier; Prometheus is stopped as its first verification starts."""

    def __init__(self, verifier: Any, monitoring_dir: Path) -> None:
        self.verifier, self.dir, self.stopped = verifier, monitoring_dir, False

    def baseline(self, *args: Any) -> Any:
        return self.verifier.baseline(*args)

    def verify(self, *args: Any) -> Any:
        if not self.stopped:
            self.stopped = True
            pid = int((self.dir / "pids").read_text().split()[0])  # Prometheus, started by `monitoring up`
            os.kill(pid, signal.SIGTERM)
            until(lambda: not _alive(pid), "Prometheus to stop", 30)
        return self.verifier.verify(*args)


def test_prometheus_stopped_during_verify(plane, prometheus, tmp_path):
    from tools.metrics import MetricsSettings, PrometheusMetrics
    from tools.verification import Verifier

    cp, _api = plane
    url, monitoring_dir, labels = prometheus
    name = _deployment(cp)
    labels["deployment"] = name
    metrics = PrometheusMetrics(url, MetricsSettings(window="5s", poll_s=0.5, stable_s=1, deadline_s=30))
    until(
        lambda: metrics.measure({"target": {}}, Incident.model_validate(_saturated(name)), ["http_429_rate"])[
            "http_429_rate"
        ],
        "429s in Prometheus",
        60,
    )
    verifier = StopsPrometheus(Verifier(metrics), monitoring_dir)
    run = Run(tmp_path, {"cluster": connect(str(cp.mitigate_kubeconfig)), "sla": verifier}, _saturated(name))
    outcome = run.go()
    _escalated_by_fault(outcome, run, "prometheus unavailable", "verify")
    assert _replicas(cp, name) == 3 and run.action()["status"] == "executed"  # acted once, then could not check
    baseline = run.action()["baseline"]["values"]
    assert baseline["http_429_rate"] >= 0.05  # the symptom, measured before the action, is kept
