"""The serving stack of the RCA paper (Scheinert et al., section 4.3) on the simulated fleet's traffic
model, in simulated time: an NGINX gateway, a Ray head (router), the KubeRay operator and three engine
workers under constant load; the four faults injected one at a time into each worker, ten times each,
with cooldowns in between. The telemetry is written as OpenMetrics for `promtool tsdb
create-blocks-from openmetrics`, so that Prometheus serves eight hours of it a few seconds later.

The gateway and the router hold every request in flight, so their memory and CPU follow the engines'
latency (Little's law: in flight = rate x latency); they also export the latency of the requests they
forward (NGINX's request duration, Ray Serve's request latency), which is every engine's latency
mixed together. That is where symptoms surface, and why methods that read these metrics without the
request path blame them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from sim.faults import FAULTS, ActiveFault
from sim.model import LATENCY_BUCKETS, Histogram, Pod, TrafficModel

MODEL, REGION, NAMESPACE = "llama3-70b", "eastus", "rca"
WORKERS = ("ray-worker-0", "ray-worker-1", "ray-worker-2")
GATEWAY, ROUTER, OPERATOR = "nginx-gateway-0", "ray-head-0", "kuberay-operator-0"
PODS = (GATEWAY, ROUTER, OPERATOR, *WORKERS)
# The request path, for methods that use topology: gateway -> router -> workers; the operator is off it.
DOWNSTREAM = {GATEWAY: (ROUTER,), ROUTER: WORKERS, OPERATOR: ()}
RCA_FAULTS = ("cpu_hog", "memory_leak", "network_latency", "gpu_throttle")
DEMAND_RPS = 21.0  # 70 % of the three workers' capacity
# What each hop adds to a request's latency on top of the engines' (routing, proxying, TLS).
HOP_OVERHEAD_S = {ROUTER: 0.004, GATEWAY: 0.006}


@dataclass(frozen=True)
class Injection:
    fault: str
    pod: str
    start: float  # unix seconds


@dataclass(frozen=True)
class Schedule:
    repeats: int = 10
    pre_s: int = 120  # normal behaviour before each injection (the methods' reference window)
    fault_s: int = 60  # the paper's one-minute injections
    cooldown_s: int = 60
    step_s: int = 5  # the scrape interval of the generated telemetry

    @property
    def period_s(self) -> int:
        return self.pre_s + self.fault_s + self.cooldown_s


def plan(schedule: Schedule, start: float, seed: int) -> list[Injection]:
    """Every fault into every worker `repeats` times, in a shuffled but reproducible order."""
    cases = [(f, w) for _ in range(schedule.repeats) for f in RCA_FAULTS for w in WORKERS]
    random.Random(seed).shuffle(cases)
    return [Injection(f, w, start + i * schedule.period_s + schedule.pre_s) for i, (f, w) in enumerate(cases)]


def _pods() -> list[Pod]:
    engines = [Pod(w, MODEL, REGION, f"{MODEL}-workers", f"gpu-node-{i + 1}") for i, w in enumerate(WORKERS)]
    roles = [(GATEWAY, "gateway"), (ROUTER, "router"), (OPERATOR, "operator")]
    return engines + [Pod(name, MODEL, REGION, name.rsplit("-", 1)[0], "cpu-node-1", role=role) for name, role in roles]


class _Control:
    """Resource metrics of the gateway, router and operator, from what the engines hold in flight."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cpu_seconds = {GATEWAY: 0.0, ROUTER: 0.0, OPERATOR: 0.0}
        self.rx_bytes = {GATEWAY: 0.0, ROUTER: 0.0, OPERATOR: 0.0}
        self.memory = {GATEWAY: 0.0, ROUTER: 0.0, OPERATOR: 0.0}
        self.latency = {pod: Histogram(LATENCY_BUCKETS) for pod in (GATEWAY, ROUTER)}

    def _noise(self) -> float:
        return 1 + self.rng.gauss(0, 0.03)

    def forward(self, dt: float, rps: float, engine_latency_s: float) -> None:
        """Requests one engine served this tick, as the router and the gateway in front of it saw them."""
        below = engine_latency_s
        for pod in (ROUTER, GATEWAY):
            below += HOP_OVERHEAD_S[pod]
            self.latency[pod].observe_lognormal(rps * dt, below)

    def step(self, dt: float, rps: float, in_flight: float) -> None:
        noise = self._noise
        cores = {
            GATEWAY: 0.3 + 0.02 * rps + 0.01 * in_flight,
            ROUTER: 0.6 + 0.03 * rps + 0.015 * in_flight,
            OPERATOR: 0.05,
        }
        for pod, value in cores.items():
            self.cpu_seconds[pod] += value * dt * noise()
        self.rx_bytes[GATEWAY] += rps * 4096 * dt * noise()
        self.rx_bytes[ROUTER] += rps * 4096 * dt * noise()
        self.rx_bytes[OPERATOR] += 200 * dt * noise()
        self.memory[GATEWAY] = (300e6 + 4e6 * in_flight) * noise()
        self.memory[ROUTER] = (2e9 + 20e6 * in_flight) * noise()
        self.memory[OPERATOR] = 150e6 * noise()


def _labels(pod: str) -> str:
    return f'namespace="{NAMESPACE}",model="{MODEL}",pod="{pod}"'


def generate(out: IO[str], schedule: Schedule, start: float, seed: int = 4) -> list[Injection]:
    """Write the whole experiment's telemetry as OpenMetrics to `out`; return the injections."""
    injections = plan(schedule, start, seed)
    model = TrafficModel({MODEL: DEMAND_RPS}, seed=seed)
    model.traffic_on = True
    control = _Control(random.Random(seed + 1))
    pods = _pods()
    end = start + len(injections) * schedule.period_s
    active: dict[Injection, ActiveFault] = {}
    t, dt = start, 1.0
    next_sample = start
    samples: dict[str, list[str]] = {}
    while t < end:
        for inj in injections:
            if inj.start <= t < inj.start + schedule.fault_s and inj not in active:
                active[inj] = ActiveFault(FAULTS[inj.fault], inj.pod, t - start, MODEL)
                model.faults.append(active[inj])
            elif t >= inj.start + schedule.fault_s and inj in active:
                model.faults.remove(active.pop(inj))
        model.step(t - start, dt, pods, {}, set())
        engines = [model.stats[w] for w in WORKERS]
        in_flight = sum(s.rps * s.e2e_mean_s for s in engines)
        for engine in engines:
            control.forward(dt, engine.rps, engine.e2e_mean_s)
        control.step(dt, sum(s.rps for s in engines), in_flight)
        t += dt
        if t >= next_sample:
            _sample(samples, model, control, int(t))
            next_sample += schedule.step_s
    for name, lines in samples.items():
        out.write(f"# TYPE {name} gauge\n")
        out.writelines(lines)
    out.write("# EOF\n")
    return injections


def _sample(samples: dict[str, list[str]], model: TrafficModel, control: _Control, ts: int) -> None:
    def put(name: str, pod: str, value: float) -> None:
        samples.setdefault(name, []).append(f"{name}{{{_labels(pod)}}} {value:.6g} {ts}\n")

    for pod in (GATEWAY, ROUTER, OPERATOR):
        put("container_cpu_usage_seconds_total", pod, control.cpu_seconds[pod])
        put("container_memory_working_set_bytes", pod, control.memory[pod])
        put("container_network_receive_bytes_total", pod, control.rx_bytes[pod])
    for pod, metric in (
        (GATEWAY, "nginx_http_request_duration_seconds"),
        (ROUTER, "ray_serve_request_latency_seconds"),
    ):
        put(f"{metric}_sum", pod, control.latency[pod].total)
        put(f"{metric}_count", pod, control.latency[pod].count)
    for pod in WORKERS:
        s = model.stats[pod]
        put("container_cpu_usage_seconds_total", pod, s.cpu_seconds)
        put("container_memory_working_set_bytes", pod, s.memory_gb * 2**30)
        put("container_network_receive_bytes_total", pod, s.network_rx_bytes)
        put("DCGM_FI_DEV_GPU_UTIL", pod, 100 * s.gpu_util)
        put("DCGM_FI_DEV_FB_USED", pod, 70 * 1024)  # static allocation: vLLM reserves its share up front
        put("DCGM_FI_DEV_POWER_USAGE", pod, s.power_w)
        put("vllm:time_to_first_token_seconds_sum", pod, s.ttft.total)
        put("vllm:time_to_first_token_seconds_count", pod, s.ttft.count)
        put("vllm:time_per_output_token_seconds_sum", pod, s.tpot.total)
        put("vllm:time_per_output_token_seconds_count", pod, s.tpot.count)
        put("vllm:e2e_request_latency_seconds_sum", pod, s.e2e.total)
        put("vllm:e2e_request_latency_seconds_count", pod, s.e2e.count)
        put("vllm:generation_tokens_total", pod, s.generation_tokens)
        put("vllm:num_requests_waiting", pod, s.waiting)
        put("vllm:gpu_cache_usage_perc", pod, s.kv_cache)
        put("kube_pod_container_status_restarts_total", pod, s.restarts)


def anchor(schedule: Schedule, seed: int = 4, margin_s: int = 600) -> float:
    """A start time such that the experiment ends `margin_s` before now (Prometheus refuses the future)."""
    total = len(plan(schedule, 0.0, seed)) * schedule.period_s
    now = int(datetime.now(UTC).timestamp())
    return float(now - margin_s - total - (now % 60))
