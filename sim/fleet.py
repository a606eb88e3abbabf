"""The simulated LLM serving fleet: the kubelet stand-in, the traffic model and the exporter on one
clock, plus a small control API (inject and clear faults) on the exporter's port, loopback only.

    fleet = Fleet(admin_api, Topology()); fleet.start(port=0)   # objects applied, ticking, serving
    fleet.inject("timeout")                                      # default target: see DEFAULT_TARGETS
    fleet.stop()
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from sim import topology as topo
from sim.exporter import FleetCollector
from sim.faults import FAULTS, ActiveFault
from sim.kubelet import ClusterView, Kubelet
from sim.model import TrafficModel

log = logging.getLogger("mitigate.sim")
TICK_S = 0.5
# Where a fault lands when no target is named: the model or region the scenarios are written for.
DEFAULT_TARGETS = {
    "timeout": "mixtral-8x7b",
    "resource_exhaustion": "mixtral-8x7b",
    "latency_spike": "llama3-8b/eastus",
    "transient": "llama3-8b",  # not the timeout scenario's model: the same alert on the same target is a recurrence
    "header_misconfig": "mixtral-8x7b",
    "bad_node": "node-of:mixtral-8x7b",
    "cpu_hog": "pod-of:mixtral-8x7b",
    "memory_leak": "pod-of:mixtral-8x7b",
    "network_latency": "pod-of:mixtral-8x7b",
    "gpu_throttle": "pod-of:mixtral-8x7b",
    "bad_rollout": "mixtral-8x7b/eastus",
}


class FaultError(ValueError):
    """An unknown fault, or a target it cannot apply to; the message says which."""


class Fleet:
    def __init__(self, api: Any, topology: topo.Topology | None = None, seed: int = 7) -> None:
        self.api = api
        self.topology = topology or topo.Topology()
        self.model = TrafficModel(self.topology.demand(), seed=seed)
        self.kubelet = Kubelet(api, self.topology)
        self.view = ClusterView()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FleetCollector(self.snapshot, self.topology.namespace))
        self._clock0 = time.monotonic()
        self.ticks = 0

    def now(self) -> float:
        return time.monotonic() - self._clock0

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self, port: int = 0, host: str = "127.0.0.1") -> int:
        topo.apply(self.api, self.topology)
        self.kubelet.heartbeat()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="sim-exporter", daemon=True).start()
        self._thread = threading.Thread(target=self._run, name="sim-fleet", daemon=True)
        self._thread.start()
        self.wait_ready()
        with self._lock:
            self.model.traffic_on = True
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick(started - last)
            except Exception:  # an API hiccup must not stop the fleet; the next tick retries
                log.exception("fleet tick failed")
            last = started
            self._stop.wait(max(0.0, TICK_S - (time.monotonic() - started)))

    def tick(self, dt: float) -> None:
        restarts = {name: stats.restarts for name, stats in self.model.stats.items()}
        view = self.kubelet.sync(restarts)
        with self._lock:
            self.model.step(self.now(), dt, view.pods, view.weights, view.keepalive)
            self.view = view
            self.ticks += 1

    def snapshot(self) -> tuple[TrafficModel, ClusterView]:
        with self._lock:
            return copy.deepcopy(self.model), copy.deepcopy(self.view)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every deployment runs exactly its replicas, all ready (a rollout has finished)."""
        wanted = {self.topology.deployment(m.name, r): m.replicas for m in self.topology.models for r in m.regions}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                pods, ticks = list(self.view.pods), self.ticks
            settled = all(
                sum(1 for p in pods if p.deployment == d) == n and all(p.ready for p in pods if p.deployment == d)
                for d, n in wanted.items()
            )
            if settled and ticks > 2:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the simulated fleet was not ready within {timeout_s:.0f}s: {self.view.replicas}")

    def pods_older_than(self, seconds: float) -> bool:
        """Whether every pod of the fleet has served for `seconds` (a baseline exists for each)."""
        return self.kubelet.youngest_pod_age() >= seconds

    # ---- faults -------------------------------------------------------------------------------
    def _resolve(self, name: str, target: str | None) -> tuple[str, str]:
        spec = FAULTS[name]
        target = target or DEFAULT_TARGETS[name]
        with self._lock:
            pods = [p for p in self.view.pods if p.ready]
        if target.startswith(("node-of:", "pod-of:")):
            kind, _, model = target.partition(":")
            candidates = sorted((p for p in pods if p.model == model and p.role == "engine"), key=lambda p: p.name)
            if not candidates:
                raise FaultError(f"{name}: no ready pod of {model} to target")
            return (candidates[0].node if kind == "node-of" else candidates[0].name), model
        if spec.scope == "model":
            if target not in self.topology.demand():
                raise FaultError(f"{name}: no model {target!r} (models: {', '.join(self.topology.demand())})")
            return target, target
        if spec.scope == "region":
            model, _, region = target.partition("/")
            if not any(m.name == model and region in m.regions for m in self.topology.models):
                raise FaultError(f"{name}: target must be MODEL/REGION of the fleet, got {target!r}")
            return target, model
        if spec.scope == "deployment":
            model, _, region = target.partition("/")
            if not any(m.name == model and region in m.regions for m in self.topology.models):
                raise FaultError(f"{name}: target must be MODEL/REGION of the fleet, got {target!r}")
            return topo.roll_out(self.api, self.topology, model, region, spec.rollout_args), model
        if spec.scope == "node":
            if target not in dict(self.topology.nodes):
                raise FaultError(f"{name}: no node {target!r}")
            return target, ""
        pod = next((p for p in pods if p.name == target), None)
        if pod is None:
            raise FaultError(f"{name}: no ready pod {target!r}")
        return target, pod.model

    def inject(self, name: str, target: str | None = None) -> dict[str, object]:
        if name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        resolved, model = self._resolve(name, target)
        fault = ActiveFault(FAULTS[name], resolved, self.now(), model)
        with self._lock:
            self.model.faults.append(fault)
        log.info("injected %s on %s", name, resolved)
        return fault.as_dict(self.now())

    def clear(self) -> None:
        with self._lock:
            self.model.faults.clear()

    def faults(self) -> list[dict[str, object]]:
        with self._lock:
            now = self.now()
            return [f.as_dict(now) for f in self.model.faults if not f.expired(now)]

    def reset(self, timeout_s: float = 60.0) -> None:
        """Faults cleared and the cluster objects put back as the topology says; returns once every
        rollout this started has finished (the controller has seen the new spec and no old pod is left)."""
        from kubernetes import client

        self.clear()
        topo.reset(self.api, self.topology)
        apps = client.AppsV1Api(self.api)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            settled = all(
                (d.status.observed_generation or 0) >= (d.metadata.generation or 0)
                and (d.status.updated_replicas or 0) == d.spec.replicas == (d.status.replicas or 0)
                for d in apps.list_namespaced_deployment(self.topology.namespace).items
            )
            if settled:
                self.wait_ready(timeout_s)
                return
            time.sleep(0.2)
        raise TimeoutError(f"the fleet's rollouts did not finish within {timeout_s:.0f}s after a reset")


def _handler(fleet: Fleet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, value: object) -> None:
            self._send(code, json.dumps(value).encode())

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(fleet.registry), "text/plain; version=0.0.4")
            elif self.path == "/faults":
                self._json(200, fleet.faults())
            elif self.path == "/healthz":
                self._json(200, {"ticks": fleet.ticks})
            else:
                self._json(404, {"error": f"no {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/faults":
                self._json(404, {"error": f"no {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                self._json(201, fleet.inject(str(body.get("name", "")), body.get("target")))
            except (ValueError, KeyError) as exc:
                self._json(422, {"error": str(exc)})

        def do_DELETE(self) -> None:
            if self.path != "/faults":
                self._json(404, {"error": f"no {self.path}"})
                return
            fleet.clear()
            self._json(200, {"cleared": True})

    return Handler
