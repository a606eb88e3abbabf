"""The simulated fleet's traffic model follows the cluster: replicas add capacity, the keep-alive
template stops idle-stream 408s, weights move load, a replaced pod leaves its fault behind, a power cap
slows tokens while GPU utilisation barely moves, a transient heals by itself."""

from __future__ import annotations

from sim.faults import FAULTS, ActiveFault
from sim.model import Pod, TrafficModel


def _pods(n: int, model: str = "m", region: str = "r1", prefix: str = "p") -> list[Pod]:
    return [Pod(f"{prefix}{i}", model, region, f"{model}-{region}", f"node-{i % 2}") for i in range(n)]


def _run(model: TrafficModel, pods: list[Pod], seconds: float = 10, **kw: object) -> None:
    t = 0.0
    while t < seconds:
        model.step(t, 0.5, pods, kw.get("weights") or {}, kw.get("keepalive") or set())  # type: ignore[arg-type]
        t += 0.5


def _share(model: TrafficModel, code: str) -> float:
    total = sum(v for s in model.stats.values() for v in s.requests.values())
    return sum(v for s in model.stats.values() for (c, _), v in s.requests.items() if c == code) / total


def _fresh(**faults: str) -> TrafficModel:
    model = TrafficModel({"m": 12.0})
    model.traffic_on = True
    for name, target in faults.items():
        model.faults.append(ActiveFault(FAULTS[name], target, 0.0, "m"))
    return model


def test_more_replicas_end_the_throttling_of_a_surge():
    two, three = _fresh(resource_exhaustion="m"), _fresh(resource_exhaustion="m")
    _run(two, _pods(2))
    _run(three, _pods(3))
    assert _share(two, "429") > 0.05 and _share(three, "429") == 0


def test_the_keepalive_template_stops_idle_stream_timeouts():
    without, with_template = _fresh(timeout="m"), _fresh(timeout="m")
    _run(without, _pods(2))
    _run(with_template, _pods(2), keepalive={"m-r1"})
    assert _share(without, "408") > 0.03 and _share(with_template, "408") == 0


def test_weights_move_the_load_between_regions():
    model = _fresh()
    pods = _pods(2, region="east", prefix="e") + _pods(2, region="west", prefix="w")
    _run(model, pods, weights={"m": {"east": 0.0, "west": 100.0}})
    east = sum(v for name, s in model.stats.items() if name.startswith("e") for v in s.requests.values())
    west = sum(v for name, s in model.stats.items() if name.startswith("w") for v in s.requests.values())
    assert east == 0 and west > 100


def test_a_replaced_pod_leaves_its_fault_behind():
    model = _fresh(cpu_hog="p0")
    _run(model, _pods(2))
    hog = model.stats["p0"].cpu_seconds
    assert hog > 5 * model.stats["p1"].cpu_seconds
    replacement = [Pod("p9", "m", "r1", "m-r1", "node-0"), _pods(2)[1]]
    _run(model, replacement)
    assert "p0" not in model.stats
    assert model.stats["p9"].cpu_seconds < hog / 3  # the new pod burns a normal share


def test_a_power_cap_slows_tokens_while_gpu_utilisation_barely_moves():
    capped, normal = _fresh(gpu_throttle="p0"), _fresh()
    _run(capped, _pods(2))
    _run(normal, _pods(2))
    assert capped.stats["p0"].power_w <= 150
    assert abs(capped.stats["p0"].gpu_util - normal.stats["p0"].gpu_util) < 0.1
    tpot = lambda m: m.stats["p0"].tpot.total / m.stats["p0"].tpot.count  # noqa: E731
    assert tpot(capped) > 1.5 * tpot(normal)


def test_a_transient_heals_by_itself():
    model = _fresh(transient="m")
    _run(model, _pods(2), seconds=20)
    assert model.faults == []
    assert 0 < _share(model, "408") < 0.05  # only its first seconds had errors


def test_a_memory_leak_ends_in_oom_restarts_of_that_pod():
    model = _fresh(memory_leak="p0")
    _run(model, _pods(2), seconds=60)
    assert model.stats["p0"].restarts >= 1 and model.stats["p1"].restarts == 0
