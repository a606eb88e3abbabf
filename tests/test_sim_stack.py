"""The RCA experiment's stack (sim/stack_sim.py) does what each fault says, downstream too: a router
fault skews load onto one worker, a gateway fault adds latency to everything behind it, a node fault
touches every pod on the node and nothing else; latency is stochastic; the scrape noise has the stated
spread; the plan covers every tier and keeps background anomalies off the root causes."""

from __future__ import annotations

import io
import itertools
import math
import re
import statistics
from pathlib import Path

import pytest

from sim import stack
from sim.stack import CACHE, GATEWAY, HEAD, OPERATOR, WORKERS, Placed, Schedule
from sim.stack_noise import Noise, background
from sim.stack_sim import DEMAND_RPS, StackSim
from sim.stack_telemetry import _Scraper

W0, W1, W2 = WORKERS


class Run:
    """The stack for `warm` seconds as it is, then `seconds` more under `faults`; the counters' rates
    and the mean of each latency histogram over that last stretch."""

    def __init__(self, faults: list[Placed], seconds: int = 90, warm: int = 120, seed: int = 3) -> None:
        self.sim = StackSim(seed, wander=0.0)
        self.sent = dict.fromkeys(WORKERS, 0.0)
        for t in range(warm):
            self.sim.step(float(t), 1.0, DEMAND_RPS, [], [])
        self.before = self._snapshot()
        for t in range(warm, warm + seconds):
            self.sim.step(float(t), 1.0, DEMAND_RPS, faults, [])
            for w in WORKERS:
                self.sent[w] += self.sim.sent[w] / seconds
        self.after, self.seconds = self._snapshot(), seconds

    def _snapshot(self) -> dict[tuple[str, str, str], float]:
        return {(c, m, x): v for c, series in self.sim.counters.items() for (m, x), v in series.items()}

    def rate(self, candidate: str, metric: str, extra: str = "") -> float:
        key = (candidate, metric, extra)
        return (self.after.get(key, 0.0) - self.before.get(key, 0.0)) / self.seconds

    def mean(self, candidate: str, histogram: str, extra: str = "") -> float:
        return self.rate(candidate, f"{histogram}_sum", extra) / self.rate(candidate, f"{histogram}_count", extra)

    def seen_by_router(self, worker: str) -> float:
        return self.mean(HEAD, "ray_serve_replica_request_latency_seconds", f'replica="{worker}"')

    def gauge(self, candidate: str, metric: str) -> float:
        return self.sim.gauges[candidate][(metric, "")]


@pytest.fixture(scope="module")
def calm() -> Run:
    return Run([])


def test_a_router_fault_pins_60_percent_of_the_requests_onto_one_worker_which_queues(calm):
    skewed = Run([Placed("routing_skew", "router", HEAD, onto=W1)])
    total = sum(skewed.sent.values())
    assert skewed.sent[W1] / total == pytest.approx(0.6, abs=0.02)
    assert skewed.sent[W0] / total == pytest.approx(0.2, abs=0.02)
    assert skewed.gauge(W1, "vllm:num_requests_waiting") > 50  # past its capacity: the queue grows
    assert skewed.mean(W1, "vllm:time_to_first_token_seconds") > 5 * calm.mean(W1, "vllm:time_to_first_token_seconds")
    assert skewed.mean(W0, "vllm:time_to_first_token_seconds") <= 1.05 * calm.mean(
        W0, "vllm:time_to_first_token_seconds"
    )
    # The head's own resources barely notice: the fault is in its decisions, not its load.
    assert skewed.rate(HEAD, "container_cpu_usage_seconds_total") < 1.5 * calm.rate(
        HEAD, "container_cpu_usage_seconds_total"
    )


def test_a_gateway_fault_adds_its_delay_to_everything_behind_it_and_nothing_below(calm):
    slow = Run([Placed("network_latency", "gateway", GATEWAY)])
    nginx = "nginx_http_request_duration_seconds"
    upstream = ("nginx_upstream_response_time_seconds", f'upstream="{HEAD}"')
    own = slow.mean(GATEWAY, nginx) - slow.mean(GATEWAY, *upstream)
    assert own == pytest.approx(1.0 + (calm.mean(GATEWAY, nginx) - calm.mean(GATEWAY, *upstream)), abs=0.05)
    assert slow.mean(GATEWAY, *upstream) == pytest.approx(calm.mean(GATEWAY, *upstream), rel=0.05)
    for w in WORKERS:  # every request, whichever worker served it, is 1 s slower end to end
        assert slow.seen_by_router(w) == pytest.approx(calm.seen_by_router(w), rel=0.05)


def test_a_node_fault_touches_every_pod_on_the_node_and_no_other(calm):
    nic = Run([Placed("nic_degraded", "node", "gpu-node-1")])
    for w in (W0, W1):
        assert nic.seen_by_router(w) - calm.seen_by_router(w) == pytest.approx(0.3, abs=0.12)
        assert nic.mean(w, "vllm:e2e_request_latency_seconds") == pytest.approx(
            calm.mean(w, "vllm:e2e_request_latency_seconds"), rel=0.06
        )  # the engine's own clock starts when the request reaches it
    assert nic.seen_by_router(W2) - calm.seen_by_router(W2) < 0.1
    retransmits = "node_netstat_Tcp_RetransSegs"
    assert nic.rate("gpu-node-1", retransmits) > 4 * calm.rate("gpu-node-1", retransmits)
    assert nic.rate("gpu-node-2", retransmits) < 1.5 * calm.rate("gpu-node-2", retransmits)

    hot = Run([Placed("cpu_throttle", "node", "cpu-node-1")])
    cpu = "container_cpu_usage_seconds_total"
    for pod in (GATEWAY, OPERATOR):  # the pods on cpu-node-1 burn 1.5x the CPU for the same work
        assert hot.rate(pod, cpu) == pytest.approx(1.5 * calm.rate(pod, cpu), rel=0.1)
    for pod in (HEAD, CACHE, W0):
        assert hot.rate(pod, cpu) == pytest.approx(calm.rate(pod, cpu), rel=0.1)


def test_a_worker_network_delay_is_seen_by_its_caller_not_by_the_engine_and_costs_it_requests(calm):
    slow = Run([Placed("network_latency", "worker", W2)])
    assert slow.seen_by_router(W2) - calm.seen_by_router(W2) == pytest.approx(1.0, abs=0.2)
    ttft = "vllm:time_to_first_token_seconds"
    assert slow.mean(W2, ttft) == pytest.approx(calm.mean(W2, ttft), rel=0.1)
    assert slow.sent[W2] < min(slow.sent[W0], slow.sent[W1])  # it holds more in flight: the router sends less


def test_a_power_cap_slows_tokens_while_utilisation_stays_and_the_router_moves_load_off_it(calm):
    capped = Run([Placed("gpu_throttle", "worker", W0)])
    assert capped.gauge(W0, "DCGM_FI_DEV_POWER_USAGE") <= 150
    tpot = "vllm:time_per_output_token_seconds"
    assert capped.mean(W0, tpot) > 1.6 * calm.mean(W0, tpot)
    assert capped.gauge(W0, "DCGM_FI_DEV_GPU_UTIL") > 0.9 * calm.gauge(W0, "DCGM_FI_DEV_GPU_UTIL")
    assert capped.sent[W0] < 0.85 * capped.sent[W1]


def test_a_memory_leak_ends_in_restarts_during_which_the_pod_gets_no_requests():
    leak = Run([Placed("memory_leak", "worker", W1)], seconds=60)
    assert leak.sim.restarts[W1] >= 1 and leak.sim.restarts[W0] == 0
    down, ticks_down = StackSim(5, wander=0.0), 0
    for t in range(200):
        was_down = t < down.down_until[W1]
        down.step(float(t), 1.0, DEMAND_RPS, [Placed("memory_leak", "worker", W1)] if t >= 100 else [], [])
        if was_down:
            ticks_down += 1
            assert down.sent[W1] == 0.0 and down.sent[W0] > 0
    assert ticks_down >= 15  # restarting, not serving


def test_latency_is_stochastic_the_reference_spread_is_not_zero():
    sim = StackSim(11, wander=0.0)
    means = []
    previous = (0.0, 0.0)
    for t in range(300):
        sim.step(float(t), 1.0, DEMAND_RPS, [], [])
        if t % 5 == 4:
            series = sim.counters[W0]
            total, count = (series[(f"vllm:e2e_request_latency_seconds_{k}", "")] for k in ("sum", "count"))
            if t > 60:
                means.append((total - previous[0]) / (count - previous[1]))
            previous = (total, count)
    spread = statistics.pstdev(means) / statistics.mean(means)
    assert spread > 0.02  # requests differ and batches differ: a 5 s mean moves


@pytest.mark.parametrize("level", [0.05, 0.15])
def test_scrape_jitter_has_the_stated_spread(tmp_path: Path, level: float):
    class Flat:  # a target whose true gauge is 100 and whose counter grows by exactly 10 per scrape
        def __init__(self) -> None:
            self.counters = {c: {} for c in stack.CANDIDATES}
            self.gauges = {c: {} for c in stack.CANDIDATES}
            self.gauges[W0][("g", "")] = 100.0
            self.counters[W0][("c_total", "")] = 0.0

    # An empty span has no outages and no exporter restarts: only the per-scrape jitter and failed scrapes.
    scraper = _Scraper(Noise(level), seed=2, start=0.0, end=0.0, tmp=tmp_path)
    flat = Flat()
    for ts in range(0, 5 * 4000, 5):
        flat.counters[W0][("c_total", "")] += 10.0
        scraper.scrape(flat, ts)  # type: ignore[arg-type]
    out = io.StringIO()
    scraper.close(out)
    text = out.getvalue()
    gauges = [float(v) for v in re.findall(rf'^g\{{[^}}]*pod="{W0}"\}} (\S+) ', text, re.M)]
    counters = [(float(v), int(ts)) for v, ts in re.findall(rf'^c_total\{{[^}}]*pod="{W0}"\}} (\S+) (\d+)', text, re.M)]
    assert len(gauges) > 3500  # a few scrapes fail (2 % at level 0.05, 6 % at 0.15)
    assert statistics.pstdev(math.log(g / 100) for g in gauges) == pytest.approx(level, rel=0.1)
    # Increments between consecutive scrapes (a failed scrape in between would span two).
    increments = [(b - a) / 10 for (a, t), (b, u) in itertools.pairwise(counters) if u - t == 5]
    assert statistics.pstdev(increments) == pytest.approx(level, rel=0.1)


def test_the_default_plan_covers_every_tier_and_seen_fault_and_the_stresses_do_what_they_say():
    schedule = Schedule(repeats=2)
    plan = stack.plan(schedule, 0.0, seed=1)
    assert {p.tier for i in plan for p in i.faults} == {"gateway", "router", "head", "worker", "node", "aux"}
    assert len(plan) == 2 * len(stack.catalogue())
    assert {p.fault for i in plan for p in i.faults} == {
        "cpu_hog", "memory_leak", "network_latency", "gpu_throttle", "routing_skew", "nic_degraded", "cpu_throttle"
    }  # fmt: skip
    assert {p.target for i in plan for p in i.faults if p.tier == "router"} == {HEAD}
    two = stack.plan(schedule, 0.0, seed=1, stress="two_faults")
    assert all(len(i.truth) == 2 for i in two)
    unseen = stack.plan(schedule, 0.0, seed=1, stress="unseen")
    assert {p.fault for i in unseen for p in i.faults} == {"slow_disk", "noisy_neighbour"}
    assert [i.start for i in plan] == sorted(i.start for i in plan)
    with pytest.raises(ValueError):  # every head fault sits on the head: no second target for a pair
        stack.plan(schedule, 0.0, seed=1, tiers=("head",), stress="two_faults")
    with pytest.raises(ValueError):
        stack.plan(schedule, 0.0, seed=1, tiers=("worker",), stress="unseen")


def test_background_anomalies_never_sit_on_a_root_cause_during_its_windows():
    schedule = Schedule(repeats=2)
    plan = stack.plan(schedule, 0.0, seed=3)
    roles = dict.fromkeys(stack.CANDIDATES, "pod")
    events = background(Noise(0.15), roles, plan, schedule, 0.0, plan[-1].start + 200, seed=3)
    assert len(events) > 50
    for e in events:
        for i in plan:
            if e.start < i.start + schedule.fault_s and i.start - schedule.pre_s < e.end:
                assert e.candidate not in i.truth


def test_the_unseen_faults_act_through_the_cache_and_the_shared_node(calm):
    disk = Run([Placed("slow_disk", "aux", CACHE)])
    for w in WORKERS:
        ttft = "vllm:time_to_first_token_seconds"
        assert disk.mean(w, ttft) > 1.4 * calm.mean(w, ttft)
    neighbour = Run([Placed("noisy_neighbour", "aux", stack.BATCH)])
    ttft = "vllm:time_to_first_token_seconds"
    assert neighbour.mean(W2, ttft) > 1.05 * calm.mean(W2, ttft)  # its co-tenant, on gpu-node-2
    assert neighbour.mean(W0, ttft) < 1.03 * calm.mean(W0, ttft)


def test_two_seeds_give_two_different_stacks():
    a, b = StackSim(1), StackSim(2)
    for t in range(30):
        a.step(float(t), 1.0, DEMAND_RPS, [], [])
        b.step(float(t), 1.0, DEMAND_RPS, [], [])
    assert a.counters[W0] != b.counters[W0]
