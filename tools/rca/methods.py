"""Root-cause localisation over per-candidate telemetry: which pod or node of the serving stack is the
cause? The shared types, the statistical baselines and the ranking metrics.

Every method gets the same input and nothing else: for each candidate (a pod or a node), for each
metric, the samples of the reference window before the incident and of the incident window (from
Prometheus range queries, one per step, NaN where a scrape is missing); the graph-aware methods also
get the stack's structure (who calls whom, which node hosts which pod). None is told which fault was
injected, where, or on which tier.

- `nsigma`: the largest |x - mean| / std of the incident window against the reference, per candidate
  (the N-sigma rule of the RCA benchmark of Scheinert et al.).
- `baro`: the same with robust statistics, |median - median| / IQR (BARO's RobustScaler ranking; the
  injection time is given, so its change-point step is not needed).
- `random_ranking`: a seeded shuffle, the baseline every method must beat.
The serving-aware method is tools/rca/serving.py; CIRCA-style regression is tools/rca/circa.py; a
MicroRCA-style random walk is tools/rca/walk.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Windows = Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]  # candidate -> metric -> (pre, fault)
# The paper's "fundamental system telemetry" (Table 1 setting).
RESOURCE = ("cpu_cores", "memory_bytes", "network_rx_bytes_per_s", "gpu_util", "gpu_memory_bytes")
# Signals of the serving layer: the engines' own (vLLM), the latency and request rate a caller sees.
SERVING = ("ttft_s", "tpot_s", "e2e_s", "latency_s", "requests_per_s", "tokens_per_s", "queue", "kv_cache", "restarts")
# Everything else the stack exports: GPU power, transmit, the model cache's disk, the nodes' own.
OTHER = ("gpu_power_w", "network_tx_bytes_per_s", "disk_io_util", "retransmits_per_s", "cpu_pressure")
EVERYTHING = (*RESOURCE, *OTHER, *SERVING)
EPSILON = 1e-9


@dataclass(frozen=True)
class Candidate:
    pod: str  # the candidate: a pod or a node
    score: float
    metric: str  # what scored highest
    evidence: dict[str, float] = field(default_factory=dict)  # metric (or reasoning step) -> deviation


@dataclass(frozen=True)
class Topology:
    """The stack's structure: who sends requests to whom, and which node hosts which pod."""

    calls: Mapping[str, Sequence[str]] = field(default_factory=dict)
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def callers(self, candidate: str) -> list[str]:
        return sorted(c for c, callees in self.calls.items() if candidate in callees)


def series(values: Sequence[float]) -> np.ndarray:
    """The finite samples of a window (missing scrapes dropped)."""
    array = np.asarray(values, dtype=float)
    finite: np.ndarray = array[np.isfinite(array)]
    return finite


def _nsigma(pre: np.ndarray, fault: np.ndarray) -> float:
    if len(pre) < 2 or len(fault) == 0:
        return 0.0
    std = float(pre.std())
    return float(np.max(np.abs(fault - pre.mean()))) / max(std, EPSILON * max(1.0, abs(float(pre.mean()))))


def robust(pre: np.ndarray, fault: np.ndarray) -> float:
    if len(pre) < 2 or len(fault) == 0:
        return 0.0
    q1, median, q3 = (float(x) for x in np.percentile(pre, [25, 50, 75]))
    iqr = q3 - q1
    scale = iqr if iqr > EPSILON * max(1.0, abs(median)) else max(float(pre.std()), EPSILON * max(1.0, abs(median)))
    # The median of the fault window resists single outliers; a sustained shift is what a fault is.
    return abs(float(np.median(fault)) - median) / scale


def rank(
    windows: Windows, metrics: Sequence[str], deviation: Callable[[np.ndarray, np.ndarray], float]
) -> list[Candidate]:
    ranked = []
    for pod, by_metric in windows.items():
        evidence = {}
        for metric in metrics:
            if metric in by_metric:
                pre, fault = by_metric[metric]
                evidence[metric] = round(deviation(series(pre), series(fault)), 3)
        best = max(evidence, key=lambda m: evidence[m], default="")
        ranked.append(Candidate(pod, evidence.get(best, 0.0), best, evidence))
    return sorted(ranked, key=lambda c: (-c.score, c.pod))


def nsigma(windows: Windows, metrics: Sequence[str] = RESOURCE) -> list[Candidate]:
    return rank(windows, metrics, _nsigma)


def baro(windows: Windows, metrics: Sequence[str] = RESOURCE) -> list[Candidate]:
    return rank(windows, metrics, robust)


def random_ranking(windows: Windows, seed: int) -> list[Candidate]:
    pods = sorted(windows)
    random.Random(seed).shuffle(pods)
    return [Candidate(pod, 0.0, "") for pod in pods]


def _truths(truth: str | Collection[str]) -> set[str]:
    return {truth} if isinstance(truth, str) else set(truth)


def ac_at_case(ranked: Sequence[Candidate], truth: str | Collection[str], k: int) -> float:
    """The paper's AC@k for one case (equation 1): the share of its root causes in the top k, out of
    min(k, number of root causes) -- so with two faults, AC@1 asks for either and AC@3 for both."""
    causes = _truths(truth)
    found = len(causes & {c.pod for c in ranked[:k]})
    return found / min(k, len(causes)) if causes else 0.0


def ac_at(rankings: Sequence[tuple[Sequence[Candidate], str | Collection[str]]], k: int) -> float:
    """Mean over cases of AC@k."""
    if not rankings:
        return 0.0
    return sum(ac_at_case(ranked, truth, k) for ranked, truth in rankings) / len(rankings)


def avg_at(rankings: Sequence[tuple[Sequence[Candidate], str | Collection[str]]], k: int) -> float:
    return sum(ac_at(rankings, j) for j in range(1, k + 1)) / k
