"""Benchmark: the read-only investigation step.

1. Investigation latency against the local servers: a real kube-apiserver (scripts/kube up) with a
   Deployment of several revisions, ReplicaSets, pods, a ConfigMap, an HPA and nodes, a real Prometheus
   (scripts/monitoring up) holding the key series, and the SQLite incident store, read as mitigate's
   least-privilege identity. Target p95 < 1.5 s.
2. Triage latency without a cluster or Prometheus (what every installation without them sees), for the
   graph of agent/graph.py (intake, which reads the store's history itself when nothing else is configured,
   -> (investigate) -> (explore, with an LLM) -> retrieve -> ...) against the graph as it
   was before the investigate and explore steps, in the same run, interleaved. Target: a ratio of about 1.

usage: .venv/bin/python bench/investigate.py [--kube-dir DIR] [--repeat 30] [--dataset ...] [--triage-only]
  --kube-dir reuses a control plane started with `scripts/kube up DIR` (else one is started and stopped).
  --triage-only measures part 2 alone (no control plane, no Prometheus).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NS = "llm-serving"
WITH = "agent/graph.py"
NO_SOURCE = "agent/graph.py, no investigation source"
WITHOUT = "without investigate"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(name: str, values: list[float]) -> str:
    return (
        f"{name}: n={len(values)}  p50 {_percentile(values, 0.5):.1f} ms  p95 {_percentile(values, 0.95):.1f} ms  "
        f"max {max(values):.1f} ms"
    )


def _arrange(kube_dir: Path) -> dict[str, str]:
    """A Deployment with three revisions (the last raised --max-num-seqs), a ConfigMap it reads, an
    HPA, pods the simulated kubelet runs with OOM restarts, one more node cordoned."""
    from kubernetes import client, config

    from sim.kubelet import Kubelet
    from sim.topology import ModelSpec, Topology, apply

    admin = config.new_client_from_config(config_file=str(kube_dir / "admin.kubeconfig"))
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    tag = uuid.uuid4().hex[:6]
    model = f"bench-{tag}"
    topology = Topology(
        models=(ModelSpec(model, ("eastus",), 3, 1.0),), nodes=((f"gpu-bench-{tag}", "eastus"),), namespace=NS
    )
    apply(admin, topology)
    name = topology.deployment(model, "eastus")
    core.create_namespaced_config_map(NS, {"metadata": {"name": f"{model}-engine"}, "data": {"a": "1"}})
    for seqs in ("256", "1024"):
        container = {
            "name": "engine",
            "args": ["--model", model, "--max-num-seqs", seqs],
            "envFrom": [{"configMapRef": {"name": f"{model}-engine"}}],
        }
        apps.patch_namespaced_deployment(name, NS, {"spec": {"template": {"spec": {"containers": [container]}}}})
        time.sleep(1.0)  # let the controller cut a ReplicaSet per revision
    hpa = {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 3,
            "maxReplicas": 6,
        },
    }
    client.AutoscalingV1Api(admin).create_namespaced_horizontal_pod_autoscaler(NS, hpa)
    kubelet = Kubelet(admin, topology)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = [
            p
            for p in core.list_namespaced_pod(NS, label_selector=f"app={name}").items
            if not p.metadata.deletion_timestamp
        ]
        kubelet.sync({p.metadata.name: 3 for p in pods})
        if pods and all(p.status.phase == "Running" for p in pods):
            break
        time.sleep(0.5)
    return {"namespace": NS, "deployment": name, "model": model}


def _prometheus(tmp: Path) -> tuple[str, Any]:
    """A real Prometheus scraping an exporter of the gateway's request counters for the model."""
    import threading
    from http.server import ThreadingHTTPServer

    from prometheus_client import CollectorRegistry, MetricsHandler
    from prometheus_client.core import CounterMetricFamily

    counts = {"200": 0.0, "500": 0.0}

    class Traffic:
        def collect(self) -> Any:
            counts["200"] += 20
            counts["500"] += 1
            family = CounterMetricFamily("gateway_requests", "bench", labels=["namespace", "model", "code"])
            for code, value in counts.items():
                family.add_metric([NS, "m", code], value)
            yield family

    registry = CollectorRegistry()
    registry.register(Traffic())
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp / "token").write_text("unused")
    monitoring = str(ROOT / "scripts" / "monitoring")
    subprocess.run(
        [monitoring, "up", str(tmp), "http://127.0.0.1:9/unused", str(tmp / "token")], check=True, capture_output=True
    )
    subprocess.run(
        [monitoring, "target", str(tmp), "bench", f"127.0.0.1:{server.server_address[1]}"],
        check=True,
        capture_output=True,
    )
    return (tmp / "prometheus.url").read_text().strip(), server


def investigation_latencies(kube_dir: Path, repeat: int) -> tuple[list[float], int, int]:
    from datetime import UTC, datetime

    from agent.schemas import Alert, Incident
    from api.settings import Settings
    from api.wiring import open_store
    from tools.cluster import connect
    from tools.guard import load_policy
    from tools.investigate import Investigator, KubeSource
    from tools.metrics import MetricsSettings, PrometheusMetrics

    target = _arrange(kube_dir)
    with tempfile.TemporaryDirectory() as tmp:
        url, server = _prometheus(Path(tmp))
        try:
            time.sleep(3)  # a few scrapes
            store = open_store(Settings(database_url=f"sqlite:///{tmp}/bench.db"))
            labels = {
                "alertname": "HighServerErrorRate",
                "namespace": NS,
                "model": "m",
                "deployment": target["deployment"],
            }
            for i in range(20):
                earlier = Incident(id=f"old-{i}", title="5xx", alert=Alert(status="firing", labels=labels))
                store.recorder.save_incident(earlier, source="bench", payload={})
            metrics = PrometheusMetrics(url, MetricsSettings(window="5s"))
            kube = KubeSource(
                connect(str(kube_dir / "mitigate.kubeconfig")).apps.api_client, load_policy().allowed_namespaces
            )
            investigator = Investigator(kube, url, metrics.trend_queries, store.sessions)
            incident = Incident(
                id="now",
                title="5xx on the new revision",
                alert=Alert(status="firing", labels=labels),
                started_at=datetime.now(UTC),
            )
            entities = {"namespace": NS, "deployment": target["deployment"]}
            first = investigator.investigate(incident, entities)  # warm-up: connections, TLS
            latencies = []
            for _ in range(repeat):
                started = time.perf_counter()
                investigator.investigate(incident, entities)
                latencies.append((time.perf_counter() - started) * 1000)
            return latencies, len(first["findings"]), len(first["gaps"])
        finally:
            server.shutdown()
            subprocess.run([str(ROOT / "scripts" / "monitoring"), "down", tmp], capture_output=True)


def triage_latencies(dataset: Path, passes: int) -> dict[str, list[float]]:
    """The graph with and without the investigate step, no cluster and no Prometheus, SQLite store and
    checkpointer, the rulebook alone (so the step's own cost is not hidden under the model's). The graph
    runs twice: with the investigation every installation has (the incident store's history of the
    alert: a read, and a step in the timeline when there is something to look up) and with no source at
    all, which leaves only what the graph's shape costs (its supersteps, each checkpointed)."""
    from dataclasses import replace

    from langgraph.graph import END, START, StateGraph

    from agent import graph as full
    from agent.context import TriageContext
    from agent.routes import route_after_act, route_after_guard, route_after_verify
    from agent.state import TriageInput, TriageState
    from api.settings import Settings
    from api.wiring import make_context, open_checkpointer, open_store
    from evals.dataset import load_dataset

    cases = load_dataset(dataset)
    without: StateGraph[TriageState, TriageContext, TriageInput, TriageState] = StateGraph(
        TriageState, context_schema=TriageContext, input_schema=TriageInput
    )
    # agent/graph.py as it was before the investigate step: the same node functions and routers.
    from agent.nodes.intake import read_incident

    without.add_node("intake", read_incident)  # intake as it was: it did not look at the store's history
    for name in ("retrieve", "classify", "plan", "preflight", "guard", "act", "verify", "escalate", "report"):
        without.add_node(name, getattr(full, name))
    without.add_edge(START, "intake")
    for source, target in (
        ("intake", "retrieve"),
        ("retrieve", "classify"),
        ("classify", "plan"),
        ("plan", "preflight"),
    ):
        without.add_edge(source, target)
    without.add_edge("preflight", "guard")
    without.add_conditional_edges("guard", route_after_guard)
    without.add_conditional_edges("act", route_after_act)
    without.add_conditional_edges("verify", route_after_verify)
    without.add_edge("escalate", "report")
    without.add_edge("report", END)
    results: dict[str, list[float]] = {WITH: [], NO_SOURCE: [], WITHOUT: []}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db", engine="rulebook", state_dir=Path(tmp), use_model=False
        )
        store = open_store(settings)
        context = make_context(settings, store.recorder)
        contexts = {WITH: context, NO_SOURCE: replace(context, investigator=None), WITHOUT: context}
        with open_checkpointer(settings.database_url) as checkpointer:
            graphs = {WITH: full.builder, NO_SOURCE: full.builder, WITHOUT: without}

            compiled: dict[str, Any] = {which: b.compile(checkpointer=checkpointer) for which, b in graphs.items()}

            def triage(which: str, incident: Any) -> None:
                """What api.runs.start_run does, on the chosen graph: store, run (durable), record."""
                run_id = uuid.uuid4().hex
                store.recorder.save_incident(incident, source="bench", payload={})  # False when stored before
                store.recorder.start_run(run_id, incident.id, "rulebook")
                store.recorder.set_run_status(run_id, "running")
                config: dict[str, Any] = {"configurable": {"thread_id": run_id}}
                state = {"run_id": run_id, "incident": incident.model_dump(mode="json")}
                result = compiled[which].invoke(state, config=config, context=contexts[which], durability="sync")
                store.recorder.finish_run(run_id, status=result["status"], report=result["report"])

            for which in graphs:
                triage(which, cases[0].incident)  # warm-up
            for _ in range(passes):
                for case in cases:
                    for which in graphs:  # interleaved: drift in the machine's load hits both alike
                        started = time.perf_counter()
                        triage(which, case.incident)
                        results[which].append((time.perf_counter() - started) * 1000)
    return results


def investigation(kube_dir_arg: Path | None, repeat: int) -> None:
    own = kube_dir_arg is None
    kube_dir = kube_dir_arg or Path(tempfile.mkdtemp(prefix="mitigate-bench-kube-"))
    if own:
        subprocess.run([str(ROOT / "scripts" / "kube"), "up", str(kube_dir)], check=True, capture_output=True)
    try:
        latencies, findings, gaps = investigation_latencies(kube_dir, repeat)
    finally:
        if own:
            subprocess.run([str(ROOT / "scripts" / "kube"), "down", str(kube_dir)], capture_output=True)
    p95 = _percentile(latencies, 0.95)
    print(f"investigation against kube-apiserver + Prometheus + SQLite store ({findings} findings, {gaps} gaps):")
    print(f"  {_line('investigate', latencies)}   (target p95 < 1500 ms: {'met' if p95 < 1500 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kube-dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=30, help="investigations against the local servers")
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals/datasets/paper156.jsonl")
    parser.add_argument("--passes", type=int, default=1, help="passes over the dataset for the triage ratio")
    parser.add_argument("--triage-only", action="store_true", help="skip the investigation against local servers")
    args = parser.parse_args()

    if not args.triage_only:
        investigation(args.kube_dir, args.repeat)
    results = triage_latencies(args.dataset, args.passes)
    base = _percentile(results[WITHOUT], 0.95)
    print("triage without a cluster or Prometheus (rulebook alone, SQLite store + checkpointer), interleaved:")
    for name, values in results.items():
        print(f"  {_line(name, values)}   p95 {_percentile(values, 0.95) / base:.2f}x the graph without investigate")
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name in (WITH, NO_SOURCE):
        ratio, extra = medians[name] / medians[WITHOUT], medians[name] - medians[WITHOUT]
        print(f"  median ratio {name}: {ratio:.2f}x ({extra:+.1f} ms)")


if __name__ == "__main__":
    main()
