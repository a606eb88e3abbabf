"""The physics of the RCA experiment's stack, one tick at a time: what each pod and node does, and what
it exports (counters and gauges, per candidate), given the demand, the active faults and the
background events. The faults say what they do to their target (sim/stack_faults.py); what follows
downstream is written here once, for any cause:

- engines batch continuously (up to MAX_RUNNING sequences; every token slows a little as the batch
  fills) and queue the rest: more load means a longer queue and a longer time to first token, whatever
  made the load; vLLM measures its latencies from a request's arrival at the engine;
- the router (the Ray head) sends each request to the worker with the fewest outstanding requests as
  it counts them (a slower worker, or one further away, holds more and gets fewer);
- a hop's callers see its latency and everything behind it, plus any delay on its incoming traffic;
  the gateway and the router hold every request in flight, so their memory and CPU follow latency;
- a pod down (OOM-killed, restarting) gets nothing and sends nothing; its counters start over;
- a node's CPU, memory and network are the sum of its pods' (and its own daemons'); a busy node slows
  the CPU-bound work of every pod on it (contention).

Latency is stochastic: requests differ (prompt and output lengths: a tick's mean latency varies with
1/sqrt(requests)), and each engine's speed wanders with its batch composition.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from sim.stack import BATCH, CACHE, CANDIDATES, GATEWAY, HEAD, HOSTS, NODE_OF, NODES, OPERATOR, PODS, WORKERS, Placed
from sim.stack_faults import STACK_FAULTS
from sim.stack_noise import Event

GIB = 2**30
DEMAND_RPS = 21.0  # about 70 % of the three workers' capacity
MAX_RUNNING, QUEUE_LIMIT = 64, 256
BASE_PREFILL_S, BASE_TPOT_S, OUTPUT_TOKENS = 0.2, 0.02, 200
CACHE_HIT, CACHE_READ_S, CACHE_PARALLEL, KV_BLOCK_BYTES = 0.4, 0.03, 4.0, 8e6
CPU_LIMIT = {GATEWAY: 4.0, HEAD: 8.0, OPERATOR: 1.0, CACHE: 4.0, BATCH: math.inf, **dict.fromkeys(WORKERS, 8.0)}
MEMORY_LIMIT = {GATEWAY: 1 * GIB, HEAD: 8 * GIB, OPERATOR: GIB / 2, CACHE: 16 * GIB, BATCH: 8 * GIB}
MEMORY_LIMIT |= dict.fromkeys(WORKERS, 40 * GIB)
RESTART_S = {GATEWAY: 3.0, HEAD: 10.0, OPERATOR: 5.0, CACHE: 5.0, BATCH: 5.0, **dict.fromkeys(WORKERS, 15.0)}
NODE_CORES = {"cpu-node-1": 16.0, "cpu-node-2": 16.0, "gpu-node-1": 32.0, "gpu-node-2": 32.0}
ROLE = {**dict.fromkeys(WORKERS, "engine"), **dict.fromkeys(NODES, "node")}
E2E_CV, TTFT_CV, TPOT_CV = 0.45, 0.5, 0.1  # request-to-request variation (output and prompt lengths)

Series = dict[tuple[str, str], float]  # (metric, extra labels) -> value


class _Mods:
    """The active faults and background events, as they touch each candidate this tick."""

    def __init__(self, faults: Sequence[Placed], events: Sequence[Event]) -> None:
        self.hog = dict.fromkeys(PODS, 0.0)
        self.work = dict.fromkeys(PODS, 1.0)
        self.leak = dict.fromkeys(PODS, 0.0)
        self.delay = dict.fromkeys(PODS, 0.0)
        self.cap = dict.fromkeys(WORKERS, 300.0)
        self.disk, self.burst = 1.0, 0.0
        self.route: tuple[float, str] | None = None
        self.retransmits = dict.fromkeys(NODES, 1.0)
        self.pressure = dict.fromkeys(NODES, 0.0)
        self.cpu = dict.fromkeys(CANDIDATES, 0.0)  # background: extra share of a pod's CPU, cores on a node
        self.memory = dict.fromkeys(PODS, 1.0)
        self.latency = dict.fromkeys(WORKERS, 1.0)
        for placed in faults:
            e = STACK_FAULTS[placed.fault].effect
            if placed.tier == "node":
                for pod in HOSTS[placed.target]:
                    self.work[pod] *= e.cpu_work_factor
                    self.delay[pod] += e.net_delay_s
                self.retransmits[placed.target] *= e.retransmit_factor
                self.pressure[placed.target] += e.pressure
            elif placed.tier == "router" and placed.onto:
                self.route = (e.route_share, placed.onto)
            else:
                pod = placed.target
                self.hog[pod] += e.cpu_hog_cores
                self.leak[pod] += e.memory_leak_per_s
                self.delay[pod] += e.net_delay_s
                if e.power_cap_w is not None and pod in self.cap:
                    self.cap[pod] = min(self.cap[pod], e.power_cap_w)
                self.disk *= e.disk_factor if pod == CACHE else 1.0
                self.burst += e.burst_cores if pod == BATCH else 0.0
        for ev in events:
            if ev.kind == "cpu":
                self.cpu[ev.candidate] += ev.size
            elif ev.kind == "memory":
                self.memory[ev.candidate] *= ev.size
            elif ev.kind == "latency":
                self.latency[ev.candidate] *= ev.size
            elif ev.kind == "retransmits":
                self.retransmits[ev.candidate] *= ev.size


class StackSim:
    def __init__(self, seed: int, wander: float = 0.05) -> None:
        self.rng = random.Random(seed)
        self.wander = wander  # the slow drift of every pod's CPU and memory (relative, ~30 s memory)
        self.counters: dict[str, Series] = {c: {} for c in CANDIDATES}
        self.gauges: dict[str, Series] = {c: {} for c in CANDIDATES}
        self.down_until = dict.fromkeys(PODS, -math.inf)
        self.leaked = dict.fromkeys(PODS, 0.0)
        self.restarts = dict.fromkeys(PODS, 0)
        self.running = dict.fromkeys(WORKERS, 24.0)
        self.waiting = dict.fromkeys(WORKERS, 0.0)
        self.sent = dict.fromkeys(WORKERS, DEMAND_RPS / 3)
        self.speed = dict.fromkeys(WORKERS, 0.0)
        self.drift = dict.fromkeys(CANDIDATES, 0.0)
        self.contention = dict.fromkeys(NODES, 1.0)
        self.cache_hits_per_s = DEMAND_RPS * CACHE_HIT
        self.cpu: dict[str, float] = {}
        self.memory: dict[str, float] = {}
        self.rx: dict[str, float] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _add(self, candidate: str, metric: str, value: float, extra: str = "") -> None:
        series = self.counters[candidate]
        key = (metric, extra)
        series[key] = series.get(key, 0.0) + value

    def _set(self, candidate: str, metric: str, value: float, extra: str = "") -> None:
        self.gauges[candidate][(metric, extra)] = value

    def _noisy_mean(self, n: float, mean: float, cv: float) -> float:
        """The sum of n requests' values around `mean` (central limit: sd mean*cv*sqrt(n))."""
        if n <= 0:
            return 0.0
        return max(0.0, n * mean * (1.0 + cv / math.sqrt(max(n, 1.0)) * self.rng.gauss(0.0, 1.0)))

    def _restart(self, pod: str, t: float) -> None:
        """OOM-killed: down while the container restarts; the new container's counters start at 0."""
        self.down_until[pod] = t + RESTART_S[pod]
        self.leaked[pod] = 0.0
        self.restarts[pod] += 1
        self.counters[pod] = {}
        if pod in WORKERS:
            self.running[pod] = self.waiting[pod] = 0.0

    def _resources(
        self, pod: str, dt: float, own_cores: float, mods: _Mods, memory: float, rx: float, *, cpu_bound: bool = False
    ) -> float:
        """CPU (the limit caps own work plus a hog), memory (plus what leaked), network; the starvation
        factor of the pod's own CPU-bound work is returned. Work that waits on requests burns more CPU
        time when the CPU is slower; a CPU-bound job (`cpu_bound`) uses the cores it gets either way."""
        drift = math.exp(self.drift[pod])
        slower = 1.0 if cpu_bound else mods.work[pod] * self.contention[NODE_OF[pod]]
        own = own_cores * slower * (1.0 + mods.cpu[pod]) * drift
        used = min(CPU_LIMIT[pod], own + mods.hog[pod])
        self.cpu[pod], self.memory[pod], self.rx[pod] = used, memory * mods.memory[pod] * drift + self.leaked[pod], rx
        self._add(pod, "container_cpu_usage_seconds_total", used * dt)
        self._set(pod, "container_memory_working_set_bytes", self.memory[pod])
        self._add(pod, "container_network_receive_bytes_total", rx * dt)
        return max(1.0, (own + mods.hog[pod]) / CPU_LIMIT[pod]) * mods.work[pod] * self.contention[NODE_OF[pod]]

    # -- one tick ----------------------------------------------------------------------------------
    def step(self, t: float, dt: float, demand_rps: float, faults: Sequence[Placed], events: Sequence[Event]) -> None:
        rng, mods = self.rng, _Mods(faults, events)
        rho = math.exp(-dt / 30.0)
        for c in CANDIDATES:
            self.drift[c] = rho * self.drift[c] + math.sqrt(1 - rho * rho) * self.wander * rng.gauss(0.0, 1.0)
        for w in WORKERS:
            self.speed[w] = rho * self.speed[w] + math.sqrt(1 - rho * rho) * 0.04 * rng.gauss(0.0, 1.0)
        for pod in PODS:
            if mods.leak[pod] and t >= self.down_until[pod]:
                self.leaked[pod] += mods.leak[pod] * MEMORY_LIMIT[pod] * dt
            elif not mods.leak[pod]:
                self.leaked[pod] = 0.0  # the stressor ends: what it held is freed
            self._set(pod, "kube_pod_container_status_restarts_total", float(self.restarts[pod]))
        up = {pod: t >= self.down_until[pod] for pod in PODS}

        arrivals = 0.0
        if up[GATEWAY]:
            mean = demand_rps * dt
            arrivals = max(0.0, mean + math.sqrt(mean) * rng.gauss(0.0, 1.0))
        forwarded = arrivals if up[HEAD] else 0.0
        failed = arrivals - forwarded  # the gateway answers 502 at once while the head is down
        sent = self._route(forwarded, up, mods)
        done, latency_sum, rejected = self._engines(t, dt, sent, up, mods)
        self._cache(dt, up[CACHE], mods)
        self._forwarders(t, dt, arrivals, failed, done, latency_sum, rejected, up, mods)
        self._aux(t, dt, up, mods)
        self._nodes(dt, mods)
        for pod in PODS:
            if self.leaked[pod] and self.memory.get(pod, 0.0) >= MEMORY_LIMIT[pod]:
                self._restart(pod, t)

    def _route(self, forwarded: float, up: dict[str, bool], mods: _Mods) -> dict[str, float]:
        ready = [w for w in WORKERS if up[w]]
        if not ready or forwarded <= 0:
            return dict.fromkeys(WORKERS, 0.0)
        if mods.route and mods.route[1] in ready and len(ready) > 1:
            share, onto = mods.route
            shares = {w: share if w == onto else (1 - share) / (len(ready) - 1) for w in ready}
        else:  # least outstanding requests, as the router counts them (in transit too)
            weight = {
                w: 1.0 / (self.running[w] + self.waiting[w] + self.sent[w] * mods.delay[w] + 1.0) ** 2 for w in ready
            }
            total = sum(weight.values())
            shares = {w: weight[w] / total for w in ready}
        return {w: forwarded * shares.get(w, 0.0) for w in WORKERS}

    def _engines(
        self, t: float, dt: float, sent: dict[str, float], up: dict[str, bool], mods: _Mods
    ) -> tuple[dict[str, float], dict[str, float], float]:
        done: dict[str, float] = {}
        latency_sum: dict[str, float] = {}  # as the router sees it: the engine's time plus the delay to it
        rejected_total = 0.0
        fetch_s = self._fetch_s(up[CACHE], mods)
        for w in WORKERS:
            head_extra = f'replica="{w}"'
            lam = sent[w]
            self.sent[w] = lam / dt
            if not up[w]:
                done[w] = latency_sum[w] = 0.0
                self._resources(w, dt, 0.1, mods, 2 * GIB, 0.0)
                for metric, value in (("DCGM_FI_DEV_GPU_UTIL", 0.0), ("DCGM_FI_DEV_POWER_USAGE", 60.0)):
                    self._set(w, metric, value)
                self._set(w, "DCGM_FI_DEV_FB_USED", 0.0)
                continue
            n, q = self.running[w], self.waiting[w]
            load = n / MAX_RUNNING
            cpu_f = self._resources(
                w, dt, 1.0 + 1.5 * load, mods, 12 * GIB, lam / dt * 4096 + CACHE_HIT * lam / dt * KV_BLOCK_BYTES
            )
            speed = math.exp(self.speed[w])
            power_factor = (300.0 / mods.cap[w]) ** 0.93  # decode is power-bound; prefill a little less
            prefill = BASE_PREFILL_S * (0.6 + 0.4 * cpu_f) * power_factor**0.6 * speed * mods.latency[w]
            prefill += CACHE_HIT * fetch_s
            tpot = BASE_TPOT_S * (1 + 0.5 * load) * (0.9 + 0.1 * cpu_f) * power_factor * speed
            service = prefill + OUTPUT_TOKENS * tpot
            completions = min(n, n * dt / service)
            n -= completions
            admitted = min(q + lam, MAX_RUNNING - n)
            q += lam - admitted
            rejected = max(0.0, q - QUEUE_LIMIT)
            q -= rejected
            n += admitted
            self.running[w], self.waiting[w] = n, q
            ttft = q / max(completions / dt, 0.5) + prefill
            e2e_sum = self._noisy_mean(completions, ttft + OUTPUT_TOKENS * tpot, E2E_CV)
            self._add(w, "vllm:time_to_first_token_seconds_sum", self._noisy_mean(admitted, ttft, TTFT_CV))
            self._add(w, "vllm:time_to_first_token_seconds_count", admitted)
            self._add(w, "vllm:time_per_output_token_seconds_sum", self._noisy_mean(completions, tpot, TPOT_CV))
            self._add(w, "vllm:time_per_output_token_seconds_count", completions)
            self._add(w, "vllm:e2e_request_latency_seconds_sum", e2e_sum)
            self._add(w, "vllm:e2e_request_latency_seconds_count", completions)
            self._add(w, "vllm:generation_tokens_total", completions * OUTPUT_TOKENS)
            self._add(w, "vllm:request_success_total", completions)
            self._add(w, "container_network_transmit_bytes_total", completions * OUTPUT_TOKENS * 20)
            self._set(w, "vllm:num_requests_running", n)
            self._set(w, "vllm:num_requests_waiting", q)
            self._set(w, "vllm:gpu_cache_usage_perc", min(0.99, 0.05 + 0.9 * n / MAX_RUNNING))
            self._set(w, "DCGM_FI_DEV_GPU_UTIL", min(99.0, 100 * (0.3 + 0.65 * n / MAX_RUNNING)))
            self._set(w, "DCGM_FI_DEV_POWER_USAGE", min(mods.cap[w], 110.0 + 190.0 * n / MAX_RUNNING))
            self._set(w, "DCGM_FI_DEV_FB_USED", 70 * 1024.0)  # MiB: vLLM reserves its share up front
            done[w] = completions
            latency_sum[w] = e2e_sum + completions * mods.delay[w] + rejected * 0.01
            rejected_total += rejected
            self._add(HEAD, "ray_serve_replica_request_latency_seconds_sum", latency_sum[w], head_extra)
            self._add(HEAD, "ray_serve_replica_request_latency_seconds_count", completions + rejected, head_extra)
        self.cache_hits_per_s = CACHE_HIT * sum(sent.values()) / dt
        return done, latency_sum, rejected_total

    def _fetch_s(self, cache_up: bool, mods: _Mods) -> float:
        if not cache_up:
            return 0.15  # a miss: the prefix is computed again
        util = min(0.95, self.cache_hits_per_s * CACHE_READ_S * mods.disk / CACHE_PARALLEL)
        return CACHE_READ_S * mods.disk / (1.0 - util) + mods.delay[CACHE]

    def _cache(self, dt: float, up: bool, mods: _Mods) -> None:
        if not up:
            self._resources(CACHE, dt, 0.0, mods, 0.2 * GIB, 0.0)
            return
        hits = self.cache_hits_per_s
        util = min(0.95, hits * CACHE_READ_S * mods.disk / CACHE_PARALLEL)
        self._resources(CACHE, dt, 0.1 + 0.01 * hits, mods, 6 * GIB, 2000.0)
        self._add(CACHE, "container_network_transmit_bytes_total", hits * KV_BLOCK_BYTES * dt)
        self._add(CACHE, "container_fs_io_time_seconds_total", util * dt)

    def _forwarders(
        self,
        t: float,
        dt: float,
        arrivals: float,
        failed: float,
        done: dict[str, float],
        latency_sum: dict[str, float],
        rejected: float,
        up: dict[str, bool],
        mods: _Mods,
    ) -> None:
        completed = sum(done.values())
        rps = arrivals / dt
        engines_in_flight = sum(self.running[w] + self.waiting[w] + self.sent[w] * mods.delay[w] for w in WORKERS)
        head_in_flight = engines_in_flight + rps * mods.delay[HEAD]
        gw_in_flight = head_in_flight + rps * mods.delay[GATEWAY]
        tokens = completed * OUTPUT_TOKENS / dt
        if up[HEAD]:
            head_f = self._resources(
                HEAD, dt, 0.5 + 0.03 * rps + 0.01 * head_in_flight, mods, 2 * GIB + 10e6 * head_in_flight,
                rps * 4096 + tokens * 20,
            )  # fmt: skip
        else:
            head_f = self._resources(HEAD, dt, 0.0, mods, 0.1 * GIB, 0.0)
        if up[GATEWAY]:
            gw_f = self._resources(
                GATEWAY, dt, 0.2 + 0.015 * rps + 0.004 * gw_in_flight, mods, 0.25 * GIB + 1e6 * gw_in_flight,
                rps * 4096 + tokens * 20,
            )  # fmt: skip
        else:
            gw_f = self._resources(GATEWAY, dt, 0.0, mods, 0.05 * GIB, 0.0)
        head_own = 0.006 * head_f + mods.delay[HEAD]
        gw_own = 0.004 * gw_f + mods.delay[GATEWAY]
        upstream = sum(latency_sum.values()) + completed * head_own
        answered = completed + rejected
        self._add(GATEWAY, "nginx_upstream_response_time_seconds_sum", upstream + failed * 0.001, f'upstream="{HEAD}"')
        self._add(GATEWAY, "nginx_upstream_response_time_seconds_count", answered + failed, f'upstream="{HEAD}"')
        self._add(GATEWAY, "nginx_http_request_duration_seconds_sum", upstream + answered * gw_own + failed * 0.005)
        self._add(GATEWAY, "nginx_http_request_duration_seconds_count", answered + failed)
        self._add(GATEWAY, "nginx_http_requests_total", answered + failed)

    def _aux(self, t: float, dt: float, up: dict[str, bool], mods: _Mods) -> None:
        self._resources(OPERATOR, dt, 0.05 if up[OPERATOR] else 0.0, mods, 0.15 * GIB, 3000.0)
        node = NODE_OF[BATCH]
        if not up[BATCH]:
            self._resources(BATCH, dt, 0.0, mods, 0.1 * GIB, 0.0)
            return
        others = sum(self.cpu.get(p, 0.0) for p in HOSTS[node] if p != BATCH)
        free = max(0.5, NODE_CORES[node] - others - 0.4 - mods.hog[BATCH])
        wanted = min(free, 2.0 * (1.0 + mods.cpu[BATCH]) + mods.burst) / (1.0 + mods.cpu[BATCH])
        slowdown = mods.work[BATCH] * self.contention[node] * (1.0 + 2.0 * mods.delay[BATCH])
        # A CPU-bound job: it uses the cores it gets; when they are slower (or its reads wait on the
        # network: TCP throughput falls with the round trip), it gets less done and reads less.
        self._resources(BATCH, dt, wanted, mods, 4 * GIB, 20e6 / slowdown, cpu_bound=True)

    def _nodes(self, dt: float, mods: _Mods) -> None:
        for node, pods in HOSTS.items():
            drift = math.exp(self.drift[node])
            cores = sum(self.cpu[p] for p in pods) + 0.4 * drift + mods.cpu[node]
            util = cores / NODE_CORES[node]
            self.contention[node] = 1.0 + max(0.0, util - 0.6)
            rx = sum(self.rx[p] for p in pods)
            self._add(node, "node_cpu_busy_seconds_total", cores * dt)
            self._set(node, "node_memory_used_bytes", sum(self.memory[p] for p in pods) + 3 * GIB * drift)
            self._add(node, "node_network_receive_bytes_total", rx * dt)
            retransmits = (1.0 + 0.05 * rx / 1e6) * mods.retransmits[node] * drift
            self._add(node, "node_netstat_Tcp_RetransSegs", retransmits * dt)
            pressure = 0.01 * drift + 0.5 * max(0.0, util - 0.6) + mods.pressure[node]
            self._add(node, "node_pressure_cpu_waiting_seconds_total", pressure * dt)
