"""The traffic model of the simulated fleet: demand per model, split by routing weights over regions and
evenly over the ready pods of each region's deployment, served within each pod's capacity, with the
active faults applied. Pure and deterministic given its seed: the kubelet stand-in tells it which pods
exist, the exporter reads what it accumulated.

Counts are expected values per tick (a 1,000-request tick adds 1,000 x share to each outcome), with a
little seeded noise so that baselines have a spread, as real telemetry does.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

from sim.faults import ActiveFault

CAPACITY_RPS = 10.0  # requests/s one engine pod serves before its queue grows
MAX_RUNNING = 32  # concurrent sequences per engine
LONG_STREAM_SHARE = 0.3  # requests whose generation outlives an idle timer without keep-alive
BASE_TTFT_S, BASE_TPOT_S, OUTPUT_TOKENS, PROMPT_TOKENS = 0.25, 0.03, 200, 600
POWER_W, MEMORY_LIMIT_GB, BASE_MEMORY_GB = 300.0, 40.0, 12.0
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, float("inf"))
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, float("inf"))


@dataclass
class Pod:
    """What the model needs to know about one pod (the kubelet stand-in keeps it current)."""

    name: str
    model: str
    region: str
    deployment: str
    node: str
    ready: bool = True
    role: str = "engine"  # engine, gateway, router, operator


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0
    count: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0.0] * len(self.buckets)

    def observe_lognormal(self, n: float, median: float, sigma: float = 0.35) -> None:
        """Add n observations from a log-normal around `median` (expected counts per bucket)."""
        if n <= 0:
            return
        for i, bound in enumerate(self.buckets):
            share = (
                1.0 if math.isinf(bound) else 0.5 * (1 + math.erf(math.log(bound / median) / (sigma * math.sqrt(2))))
            )
            self.counts[i] += n * share
        self.total += n * median * math.exp(sigma * sigma / 2)
        self.count += n


@dataclass
class PodStats:
    """Everything one pod has accumulated (counters) and reports now (gauges)."""

    requests: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))  # (code, reason)
    ttft: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(TPOT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    cpu_seconds: float = 0.0
    network_rx_bytes: float = 0.0
    restarts: int = 0
    running: float = 0.0
    waiting: float = 0.0
    kv_cache: float = 0.0
    gpu_util: float = 0.0
    power_w: float = 0.0
    memory_gb: float = BASE_MEMORY_GB
    fb_used_gb: float = 0.0
    xid: int = 0
    rps: float = 0.0  # requests/s it was sent in the last tick
    e2e_mean_s: float = 0.0  # their mean end-to-end latency: rps x e2e is what is in flight to it


class TrafficModel:
    def __init__(self, demand_rps: dict[str, float], seed: int = 7) -> None:
        self.demand_rps = dict(demand_rps)
        self.stats: dict[str, PodStats] = {}
        self.faults: list[ActiveFault] = []
        self.traffic_on = False  # the load generator starts once the fleet is up (no start-up 503s)
        # Requests the gateway could not send anywhere (no ready pod in the region): 503 at the gateway.
        self.unserved: dict[tuple[str, str], float] = defaultdict(float)
        self._rng = random.Random(seed)

    def _faults_on(self, pod: Pod) -> list[ActiveFault]:
        out = []
        for fault in self.faults:
            scope = fault.spec.scope
            if (
                (scope == "model" and fault.target == pod.model)
                or (scope == "region" and fault.target == f"{pod.model}/{pod.region}")
                or (scope == "node" and fault.target == pod.node)
                or (scope == "pod" and fault.target == pod.name)
                or (scope == "deployment" and fault.target == pod.deployment)
            ):
                out.append(fault)
        return out

    def step(
        self,
        now: float,
        dt: float,
        pods: list[Pod],
        weights: dict[str, dict[str, float]],
        keepalive: set[str],
    ) -> None:
        """Advance by dt seconds. `weights[model][region]` routes each model; `keepalive` names the
        deployments that run the connection-liveness template."""
        self.faults = [f for f in self.faults if not f.expired(now)]
        live = {p.name for p in pods}
        self.stats = {name: s for name, s in self.stats.items() if name in live}  # deleted pods are gone
        for model, base in self.demand_rps.items() if self.traffic_on else ():
            factor = math.prod(
                f.spec.demand_factor for f in self.faults if f.spec.scope == "model" and f.target == model
            )
            engines = [p for p in pods if p.model == model and p.role == "engine"]
            regions = sorted({p.region for p in engines})
            split = weights.get(model) or {r: 1.0 for r in regions}
            total_weight = sum(split.get(r, 0.0) for r in regions) or 1.0
            for region in regions:
                demand = base * factor * split.get(region, 0.0) / total_weight
                ready = [p for p in engines if p.region == region and p.ready]
                if not ready:
                    self.unserved[(model, region)] += demand * dt
                    continue
                shares = {p.name: math.prod(f.spec.load_share for f in self._faults_on(p)) for p in ready}
                total_share = sum(shares.values())
                for pod in ready:
                    self._serve(pod, demand * shares[pod.name] / total_share, dt, now, pod.deployment in keepalive)
        for pod in pods:
            self.stats.setdefault(pod.name, PodStats())
            if not pod.ready:
                continue
            if pod.role != "engine":
                self._idle(pod, dt)

    def _noise(self) -> float:
        return 1.0 + self._rng.gauss(0.0, 0.03)

    def _idle(self, pod: Pod, dt: float) -> None:
        stats = self.stats[pod.name]
        stats.cpu_seconds += 0.3 * dt * self._noise()
        stats.memory_gb = 1.5 * self._noise()

    def _serve(self, pod: Pod, rps: float, dt: float, now: float, keepalive: bool) -> None:
        stats = self.stats.setdefault(pod.name, PodStats())
        faults = self._faults_on(pod)
        n = rps * dt * self._noise()
        utilisation = rps / CAPACITY_RPS
        throttled = max(0.0, (utilisation - 1.0) / utilisation) if utilisation > 1 else 0.0
        served = n * (1 - throttled)
        outcomes: dict[tuple[str, str], float] = defaultdict(float)
        outcomes[("429", "engine-queue-full")] += n * throttled
        remaining = served
        for fault in faults:
            for code, share in fault.spec.errors.items():
                failed = served * share
                outcomes[(code, fault.spec.error_reason)] += failed
                remaining -= failed
            if fault.spec.stream_timeouts and not keepalive:
                cut = served * LONG_STREAM_SHARE * fault.spec.stream_timeouts
                outcomes[("408", "idle-stream-timeout")] += cut
                remaining -= cut
        outcomes[("200", "")] += max(0.0, remaining)
        for key, count in outcomes.items():
            if count > 0:
                stats.requests[key] += count

        ttft_factor = math.prod(f.spec.ttft_factor for f in faults)
        tpot_factor = math.prod(f.spec.tpot_factor for f in faults)
        extra = sum(f.spec.extra_latency_s for f in faults)
        load = min(utilisation, 1.0)
        queueing = 1.0 + load**3 + (6.0 * (utilisation - 1.0) if utilisation > 1 else 0.0)
        ttft = BASE_TTFT_S * queueing * ttft_factor + extra
        tpot = BASE_TPOT_S * (1 + 0.5 * load) * tpot_factor
        stats.ttft.observe_lognormal(served, ttft)
        stats.tpot.observe_lognormal(served, tpot)
        stats.e2e.observe_lognormal(served, ttft + OUTPUT_TOKENS * tpot)
        stats.rps, stats.e2e_mean_s = rps, ttft + OUTPUT_TOKENS * tpot
        stats.prompt_tokens += served * PROMPT_TOKENS
        stats.generation_tokens += served * OUTPUT_TOKENS
        stats.running = min(MAX_RUNNING, MAX_RUNNING * load * self._noise())
        waiting = max(0.0, 120.0 * (utilisation - 1.0) + 60) if utilisation > 1 else 8.0 * load**4
        stats.waiting = waiting * self._noise()
        stats.kv_cache = min(0.99, (0.2 + 0.7 * load + (0.2 if utilisation > 1 else 0.0)) * self._noise())
        stats.gpu_util = min(0.99, (0.3 + 0.65 * load) * self._noise())
        cap = min((f.spec.power_cap_w for f in faults if f.spec.power_cap_w), default=POWER_W)
        stats.power_w = min(cap, (120 + 170 * load) * self._noise())
        stats.fb_used_gb = 30.0 + 40.0 * stats.kv_cache
        stats.cpu_seconds += (1.0 + 1.5 * load + sum(f.spec.cpu_cores for f in faults)) * dt * self._noise()
        stats.network_rx_bytes += n * 4096
        stats.xid = max((f.spec.xid for f in faults), default=0)
        leak = sum(f.spec.memory_leak_gb_per_s for f in faults)
        stats.memory_gb = (stats.memory_gb + leak * dt) if leak else BASE_MEMORY_GB * self._noise()
        if stats.memory_gb > MEMORY_LIMIT_GB:  # OOM-killed: the container restarts in the same pod
            stats.restarts += 1
            stats.memory_gb = BASE_MEMORY_GB
