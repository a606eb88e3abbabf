"""Fault localisation: the methods on hand-made windows (what the serving-aware method's causal reasoning
must and must not conclude), that no method can read the answer, the live localiser the closed loop
uses, and `mitigate rca eval --json` end to end (simulate, backfill a real Prometheus, range queries,
rank) for its shape."""

from __future__ import annotations

import ast
import inspect
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.schemas import Alert, Incident
from evals.rca import rank_all
from tests.conftest import ROOT
from tools.rca import methods
from tools.rca.methods import Topology
from tools.rca.serving import serving_aware

PRE, FAULT = 24, 12


def flat(level: float, n: int = PRE) -> list[float]:
    """A signal at `level` with a 1 % wobble (a reference window with a spread, as real ones have)."""
    return [level * (1 + 0.01 * ((i % 5) - 2)) for i in range(n)]


def sig(before: float, during: float) -> tuple[list[float], list[float]]:
    return flat(before), flat(during, FAULT)


def engine(rps: tuple[float, float], ttft: tuple[float, float], queue: tuple[float, float], **more: Any) -> dict:
    """An engine's windows: requests answered, time to first token, queue, and whatever else is given."""
    out = {"requests_per_s": sig(*rps), "ttft_s": sig(*ttft), "queue": sig(*queue)}
    out["cpu_cores"] = sig(2.0 * rps[0] / 7, 2.0 * rps[1] / 7)
    return out | {k: sig(*v) for k, v in more.items()}


ROUTER = Topology(calls={"router": ("w0", "w1", "w2")})


def skewed_router() -> dict[str, dict]:
    """The router pins its requests onto w0: w0 answers what it can and queues the rest; the others idle."""
    return {
        "router": {"cpu_cores": sig(1.0, 1.0), "memory_bytes": sig(2e9, 2e9)},
        "w0": engine((7.0, 10.0), (0.2, 8.0), (0.0, 150.0), gpu_util=(60, 95)),
        "w1": engine((7.0, 5.5), (0.2, 0.19), (0.0, 0.0), gpu_util=(60, 50)),
        "w2": engine((7.0, 5.5), (0.2, 0.19), (0.0, 0.0), gpu_util=(60, 50)),
    }


def test_nsigma_and_baro_rank_the_pod_whose_metric_moved_first():
    windows = {
        "worker": {"cpu_cores": (flat(2.0), flat(18.0, 6))},
        "gateway": {"cpu_cores": (flat(0.5), flat(0.52, 6))},
    }
    assert [c.pod for c in methods.nsigma(windows)] == ["worker", "gateway"]
    assert [c.pod for c in methods.baro(windows)] == ["worker", "gateway"]
    assert methods.nsigma(windows)[0].metric == "cpu_cores"


def test_a_deviation_the_caller_explains_is_discounted_and_the_caller_explaining_several_is_promoted():
    windows = skewed_router()
    raw = methods.baro(windows, methods.EVERYTHING)
    assert raw[0].pod == "w0"  # read without causes, the overloaded engine looks like the culprit
    ranked = serving_aware(windows, ROUTER)
    by = {c.pod: c for c in ranked}
    assert ranked[0].pod == "router" and ranked[0].metric.startswith("explains")
    assert by["router"].evidence["explains_n"] == 3  # the one it overloaded and the two it starved
    assert by["w0"].score < 0.1 * raw[0].score  # its queue was dealt to it: discounted
    # Without the call graph the queue is still explained by w0's load, but no one can be credited.
    assert {c.pod: c.score for c in serving_aware(windows)}["router"] < 1.0


def test_a_slow_engine_is_blamed_for_the_load_its_siblings_took_over():
    windows = {
        "router": {"cpu_cores": sig(1.0, 1.0)},
        "w0": engine((7.0, 4.5), (0.2, 0.35), (0.0, 0.0), tpot_s=(0.03, 0.06)),
        "w1": engine((7.0, 8.3), (0.2, 0.26), (0.0, 0.0), tpot_s=(0.03, 0.032)),
        "w2": engine((7.0, 8.3), (0.2, 0.26), (0.0, 0.0), tpot_s=(0.03, 0.032)),
    }
    ranked = serving_aware(windows, ROUTER)
    assert ranked[0].pod == "w0" and ranked[0].evidence["explains_downstream"] > 0
    assert {c.pod: c.score for c in ranked}["router"] < 1.0  # the router only reacted


def test_a_hop_is_charged_only_with_its_own_time():
    """The head adds a second: the gateway's latency rises by as much, but its own time does not."""
    engines = {w: {"latency_s": sig(5.0, 5.0), "requests_per_s": sig(7.0, 7.0)} for w in ("w0", "w1", "w2")}
    windows = {
        "gateway": {"latency_s": sig(5.02, 6.02), "requests_per_s": sig(21.0, 21.0)},
        "head": {"latency_s": sig(5.01, 6.01), "requests_per_s": sig(21.0, 21.0)},
        **engines,
    }
    topology = Topology(calls={"gateway": ("head",), "head": ("w0", "w1", "w2")})
    ranked = serving_aware(windows, topology)
    assert ranked[0].pod == "head" and ranked[0].metric == "own_latency_s"
    assert {c.pod: c.score for c in ranked}["gateway"] < 1.0
    first, second = methods.baro(windows, ("latency_s",))[:2]
    assert abs(first.score - second.score) < 0.05 * first.score  # the latency both export cannot tell


def _node(pods: dict[str, dict]) -> tuple[dict[str, dict], Topology]:
    windows = {"node": {"retransmits_per_s": sig(3.0, 20.0), "cpu_cores": sig(5.0, 5.0)}, **pods}
    return windows, Topology(hosts={"node": tuple(pods)})


def test_a_node_under_two_pods_deviating_alike_is_their_common_cause():
    slow_way = {"latency_s": (5.0, 5.4), "e2e_s": (5.0, 5.0)}  # 0.4 s more on the way to each
    windows, topology = _node({p: {k: sig(*v) for k, v in slow_way.items()} for p in ("p1", "p2")})
    ranked = serving_aware(windows, topology)
    assert ranked[0].pod == "node" and ranked[0].evidence["explains_n"] == 2
    assert all(c.score < 1.0 for c in ranked if c.pod in ("p1", "p2"))  # the common part was the node's


def test_unrelated_deviations_under_one_node_are_not_lumped_into_a_common_cause():
    windows, topology = _node({"p1": {"cpu_cores": sig(2.0, 8.0)}, "p2": {"memory_bytes": sig(1e9, 3e9)}})
    ranked = serving_aware(windows, topology)
    assert "node" not in {c.pod for c in ranked[:2]}
    assert {c.pod: c.evidence for c in ranked}["node"].get("explains_downstream") is None


def test_ac_at_k_follows_the_papers_definition_for_one_and_two_causes():
    a, b, c = (methods.Candidate(p, 0.0, "") for p in "abc")
    cases = [([a, b, c], "a"), ([b, a, c], "a"), ([c, b, a], "a")]
    assert methods.ac_at(cases, 1) == pytest.approx(1 / 3)
    assert methods.ac_at(cases, 2) == pytest.approx(2 / 3)
    assert methods.avg_at(cases, 3) == pytest.approx((1 / 3 + 2 / 3 + 1) / 3)
    assert methods.ac_at_case([b, c, a], {"a", "c"}, 1) == 0.0  # AC@1: either cause first
    assert methods.ac_at_case([c, b, a], {"a", "c"}, 1) == 1.0
    assert methods.ac_at_case([c, b, a], {"a", "c"}, 2) == 0.5  # AC@k: the share of both found
    assert methods.ac_at_case([c, b, a], {"a", "c"}, 3) == 1.0


def test_no_method_can_read_the_answer():
    """The methods' modules import nothing that knows the injections; the harness hands them windows,
    the structure and a seed; and a method's ranking does not depend on what candidates are called (no
    prior on names, so none on tiers)."""
    for path in (ROOT / "tools" / "rca").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.split(".")[0] in ("sim", "evals")], path
    assert list(inspect.signature(rank_all).parameters) == ["windows", "topology", "case_seed"]

    windows = skewed_router() | _node({"p1": {"latency_s": sig(5, 5.4), "e2e_s": sig(5, 5)}})[0]
    topology = Topology(calls=ROUTER.calls, hosts={"node": ("p1", "w0")})
    names = list(windows)
    aliases = dict(zip(names, random.Random(7).sample([f"c{i}" for i in range(len(names))], len(names)), strict=True))
    renamed = {aliases[c]: by for c, by in windows.items()}
    renamed_topology = Topology(
        calls={aliases[a]: tuple(aliases[b] for b in bs) for a, bs in topology.calls.items()},
        hosts={aliases[a]: tuple(aliases[b] for b in bs) for a, bs in topology.hosts.items()},
    )
    original, relabelled = rank_all(windows, topology, 1), rank_all(renamed, renamed_topology, 1)
    for method, ranking in original.items():
        if method == "Random":
            continue
        assert [(aliases[c.pod], c.score) for c in ranking] == [(c.pod, c.score) for c in relabelled[method]], method


class FakePrometheus:
    """Range queries answered from hand-made series: the `hog` pod burns 14 more cores from `start`."""

    def __init__(self, start: datetime, hog: str) -> None:
        self.start, self.hog = start, hog

    def custom_query_range(self, query: str, start_time: datetime, end_time: datetime, step: str) -> list[dict]:
        stamps = []
        t = start_time
        while t <= end_time:
            stamps.append(t)
            t += timedelta(seconds=2)
        out = []
        for i, pod in enumerate(("mixtral-0", "mixtral-1", "mixtral-2")):
            values = []
            for n, ts in enumerate(stamps):
                level = 2.0 + 0.05 * ((n + i) % 4)
                if "cpu_usage" in query and pod == self.hog and ts >= self.start:
                    level += 14.0
                values.append([ts.timestamp(), str(level)])
            out.append({"metric": {"pod": pod}, "values": values})
        return out


def test_the_live_localiser_names_the_hogging_pod_decisively():
    from tools.rca.localize import PrometheusLocalizer

    started = datetime.now(UTC) - timedelta(seconds=30)
    localizer = PrometheusLocalizer("http://127.0.0.1:9", reference_s=60)
    localizer._prom = FakePrometheus(started, hog="mixtral-1")
    incident = Incident(id="i1", alert=Alert(labels={"namespace": "sim", "model": "mixtral-8x7b"}), started_at=started)
    found = localizer.rank(incident)
    assert found["decisive"] and found["top"] == "mixtral-1"
    assert found["candidates"][0]["metric"] == "cpu_cores"


@pytest.fixture(scope="module")
def matrix() -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "rca", "eval", "--json", "--repeats", "1", "--seed", "11"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_json_keeps_the_per_fault_shape_and_adds_tiers_and_intervals(matrix):
    faults = ["cpu_hog", "memory_leak", "network_latency", "gpu_throttle", "routing_skew", "nic_degraded"]
    faults.append("cpu_throttle")
    assert matrix["candidates"] == 12 and matrix["injections"] == 35 and matrix["faults"] == faults
    for method, by_fault in matrix["methods"].items():
        assert list(by_fault) == faults
        assert list(matrix["by_tier"][method]) == ["gateway", "router", "head", "worker", "node", "aux"]
        for cell in [*by_fault.values(), *matrix["by_tier"][method].values(), matrix["overall"][method]]:
            assert {"AC@1", "AC@3", "Avg@5", "n", "blamed", "ci"} <= set(cell)
            for metric in ("AC@1", "AC@3", "Avg@5"):
                low, high = cell["ci"][metric]
                assert low <= cell[metric] <= high
            assert cell["AC@1"] <= cell["AC@3"]
    assert sum(v["n"] for v in matrix["by_tier"]["NSigma"].values()) == 35


def test_every_method_saw_the_same_cases_and_the_causal_reading_beats_the_statistical_baselines(matrix):
    ns = {m: v["n"] for m, v in matrix["overall"].items()}
    assert len(set(ns.values())) == 1
    overall = matrix["ac1_overall"]
    assert overall["serving-aware"] > max(overall["NSigma"], overall["BARO"], overall["Random"])
    assert matrix["timings_s"]["query"] > 0 and matrix["telemetry"]["samples"] > 0
