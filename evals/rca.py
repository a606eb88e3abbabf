"""`mitigate rca eval`: fault localisation on the simulated serving stack, the RCA paper's experiment
(Scheinert et al., section 4.3, Table 1) made harder and fairer (sim/stack.py): faults on every tier
with their downstream effects, realistic noise, twelve candidates, and every method on the same data.

The schedule is simulated, written as OpenMetrics, backfilled into a real Prometheus with promtool,
and every method receives, per injection, the same range-query windows (evals/rca_queries.py). The
methods see the windows (and the graph-aware ones the stack's structure); never the injection.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from evals.rca_queries import prometheus_on, windows_for
from evals.rca_score import Case, tables
from sim import stack
from sim.stack_faults import SEEN, STACK_FAULTS, TIERS, UNSEEN
from sim.stack_noise import Noise
from sim.stack_telemetry import generate
from tools.rca.circa import circa
from tools.rca.methods import EVERYTHING, Candidate, Topology, Windows, baro, nsigma, random_ranking
from tools.rca.serving import serving_aware
from tools.rca.walk import random_walk

# Table 1 of Scheinert et al.: AC@1, AC@3, Avg@5 per fault type (faults on the workers only).
PAPER = {
    "NSigma": {"cpu_hog": (1.00, 1.00, 1.00), "memory_leak": (0.70, 0.90, 0.87),
               "network_latency": (0.93, 1.00, 0.99), "gpu_throttle": (0.17, 0.63, 0.55)},
    "BARO": {"cpu_hog": (0.13, 1.00, 0.83), "memory_leak": (0.77, 0.93, 0.91),
             "network_latency": (0.33, 1.00, 0.87), "gpu_throttle": (0.20, 0.67, 0.59)},
    "CIRCA": {"cpu_hog": (0.40, 1.00, 0.86), "memory_leak": (0.80, 0.93, 0.91),
              "network_latency": (0.70, 1.00, 0.93), "gpu_throttle": (0.20, 0.63, 0.61)},
    "Random": {"cpu_hog": (0.17, 0.50, 0.51), "memory_leak": (0.10, 0.43, 0.47),
               "network_latency": (0.30, 0.57, 0.58), "gpu_throttle": (0.23, 0.63, 0.57)},
}  # fmt: skip
TOPOLOGY = Topology(calls=stack.CALLS, hosts=stack.HOSTS)
STRESS_NOISE = 3.0  # `--stress noise`: three times the noise level


def rank_all(windows: Windows, topology: Topology, case_seed: int) -> dict[str, list[Candidate]]:
    """Every method on the same windows. Deliberately given nothing about the injection."""
    return {
        "Random": random_ranking(windows, case_seed),
        "NSigma": nsigma(windows),
        "BARO": baro(windows),
        "NSigma (all signals)": nsigma(windows, EVERYTHING),
        "BARO (all signals)": baro(windows, EVERYTHING),
        "CIRCA (regression)": circa(windows, topology),
        "MicroRCA (random walk)": random_walk(windows, topology),
        "serving-aware (no topology)": serving_aware(windows),
        "serving-aware": serving_aware(windows, topology),
    }


def run_matrix(
    schedule: stack.Schedule | None = None,
    *,
    seed: int = 4,
    noise: float = 0.05,
    tiers: tuple[str, ...] = TIERS,
    faults: tuple[str, ...] | None = None,
    stress: str = "none",
    workdir: Path | None = None,
) -> dict[str, Any]:
    from prometheus_api_client import PrometheusConnect

    if workdir is None:  # ~200 MB of OpenMetrics and blocks for the default matrix: not left behind
        with tempfile.TemporaryDirectory(prefix="mitigate-rca-") as scratch:
            return run_matrix(
                schedule, seed=seed, noise=noise, tiers=tiers, faults=faults, stress=stress, workdir=Path(scratch)
            )
    schedule = schedule or stack.Schedule()
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        raise RuntimeError("needs Debian's prometheus package (promtool, prometheus): scripts/apt-need prometheus")
    level = noise * STRESS_NOISE if stress == "noise" else noise
    timings: dict[str, float] = {}
    started = clock = time.monotonic()
    injections = stack.plan(schedule, 0.0, seed, tiers=tiers, faults=faults, stress=stress)
    total_s = injections[-1].start + schedule.fault_s + schedule.cooldown_s + 20
    origin = stack.anchor(total_s)
    injections = stack.plan(schedule, origin, seed, tiers=tiers, faults=faults, stress=stress)
    base = Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    openmetrics, data = base / "telemetry.om", base / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    with openmetrics.open("w") as out:
        stats = generate(out, schedule, injections, origin, Noise(level), seed)
    timings["simulate"], clock = time.monotonic() - clock, time.monotonic()
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data)],
        check=True,
        capture_output=True,
    )
    timings["backfill"], clock = time.monotonic() - clock, time.monotonic()
    ranked: dict[str, list[Case]] = {}
    labels = []
    changes: dict[str, dict[str, list[float]]] = {}
    query_s = 0.0
    with prometheus_on(data) as url:
        prom = PrometheusConnect(url=url)
        timings["start_prometheus"], clock = time.monotonic() - clock, time.monotonic()
        for n, injection in enumerate(injections):
            q = time.monotonic()
            windows = windows_for(
                prom, injection.start, schedule.pre_s, schedule.fault_s, schedule.step_s, stack.CANDIDATES
            )
            query_s += time.monotonic() - q
            for method, ranking in rank_all(windows, TOPOLOGY, seed * 1000 + n).items():
                ranked.setdefault(method, []).append((ranking, injection.truth))
            labels.append((frozenset(p.fault for p in injection.faults), frozenset(p.tier for p in injection.faults)))
            if len(injection.faults) == 1:
                _signature(changes, injection.faults[0], windows)
    timings["query"] = query_s
    timings["rank"], clock = time.monotonic() - clock - query_s, time.monotonic()
    order = {
        "methods": [f for f in (*SEEN, *UNSEEN) if any(f in label[0] for label in labels)],
        "by_tier": [t for t in TIERS if any(t in label[1] for label in labels)],
    }
    result = tables(ranked, labels, order)
    timings["score"] = time.monotonic() - clock
    return {
        "stress": stress,
        "noise": level,
        "seed": seed,
        "tiers": list(tiers),
        "faults": order["methods"],
        "injections": len(injections),
        "candidates": len(stack.CANDIDATES),
        "schedule": {"pre_s": schedule.pre_s, "fault_s": schedule.fault_s, "step_s": schedule.step_s},
        **result,
        "ac1_overall": {m: v["AC@1"] for m, v in result["overall"].items()},
        "descriptions": {f: STACK_FAULTS[f].description for f in order["methods"]},
        # How each fault shows on its root cause: the median over injections of (fault median / reference median).
        "signatures": {
            fault: {m: round(float(np.nanmedian(v)), 3) for m, v in sorted(by.items())} for fault, by in changes.items()
        },
        "telemetry": asdict(stats),
        "paper": {
            m: {f: dict(zip(("AC@1", "AC@3", "Avg@5"), v, strict=True)) for f, v in by.items()}
            for m, by in PAPER.items()
        },
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "seconds": round(time.monotonic() - started, 1),
    }


def _signature(changes: dict[str, dict[str, list[float]]], placed: stack.Placed, windows: Windows) -> None:
    for metric, (pre, fault) in windows.get(placed.target, {}).items():
        before, during = np.nanmedian(np.asarray(pre, dtype=float)), np.nanmedian(np.asarray(fault, dtype=float))
        if np.isfinite(before) and np.isfinite(during) and before:
            changes.setdefault(placed.fault, {}).setdefault(metric, []).append(float(during / before))
