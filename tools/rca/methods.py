"""Root-cause localisation over per-pod telemetry: which pod of the serving stack is the cause?

Every method gets the same input: for each candidate pod, for each metric, the samples of the
pre-fault window and of the fault window (from Prometheus range queries), and returns the candidates
ranked, most likely cause first, with the evidence that ranked them.

- `nsigma`: the largest |x - mean| / std of the fault window against the pre-fault window, per pod
  (the N-sigma rule of the RCA benchmark of Scheinert et al.).
- `baro`: the same with robust statistics, |x - median| / IQR (BARO's RobustScaler ranking; the
  injection time is given, so its change-point step is not needed).
- `serving_aware`: robust deviations of the LLM-level signals (TTFT, time per output token, tokens/s,
  queue, KV cache, restarts) next to the resource metrics, read along the request path: a component
  whose anomaly is explained by an anomalous component downstream of it (the gateway and the router
  forward every request to the engines) is a symptom, not the cause.
- `random`: a seeded shuffle, the baseline every method must beat.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Windows = Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]  # pod -> metric -> (pre, fault)
SERVING = ("ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "queue", "kv_cache", "restarts")
RESOURCE = ("cpu_cores", "memory_bytes", "network_rx_bytes_per_s", "gpu_util", "gpu_memory_bytes")
EPSILON = 1e-9


@dataclass(frozen=True)
class Candidate:
    pod: str
    score: float
    metric: str  # the metric that scored highest
    evidence: dict[str, float] = field(default_factory=dict)  # metric -> deviation


def _series(values: Sequence[float]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    return array


def _nsigma(pre: np.ndarray, fault: np.ndarray) -> float:
    if len(pre) < 2 or len(fault) == 0:
        return 0.0
    std = float(pre.std())
    return float(np.max(np.abs(fault - pre.mean()))) / max(std, EPSILON * max(1.0, abs(float(pre.mean()))))


def _robust(pre: np.ndarray, fault: np.ndarray) -> float:
    if len(pre) < 2 or len(fault) == 0:
        return 0.0
    q1, median, q3 = (float(x) for x in np.percentile(pre, [25, 50, 75]))
    iqr = q3 - q1
    scale = iqr if iqr > EPSILON * max(1.0, abs(median)) else max(float(pre.std()), EPSILON * max(1.0, abs(median)))
    # The median of the fault window resists single outliers; a sustained shift is what a fault is.
    return abs(float(np.median(fault)) - median) / scale


NOISE_FLOOR = 0.05  # serving-aware: a change under 5 % of a signal's level is noise, however flat it was


def _robust_floored(pre: np.ndarray, fault: np.ndarray) -> float:
    """`_robust` with a relative floor under the scale: a signal that was perfectly flat (a queue at
    zero, a saturated cache) must not turn a tiny wobble into the largest deviation of the stack."""
    if len(pre) < 2 or len(fault) == 0:
        return 0.0
    q1, median, q3 = (float(x) for x in np.percentile(pre, [25, 50, 75]))
    scale = max(q3 - q1, NOISE_FLOOR * abs(median), EPSILON)
    return abs(float(np.median(fault)) - median) / scale


def _rank(windows: Windows, metrics: Sequence[str], deviation: object) -> list[Candidate]:
    ranked = []
    for pod, by_metric in windows.items():
        evidence = {}
        for metric in metrics:
            if metric in by_metric:
                pre, fault = by_metric[metric]
                evidence[metric] = round(deviation(_series(pre), _series(fault)), 3)  # type: ignore[operator]
        best = max(evidence, key=lambda m: evidence[m], default="")
        ranked.append(Candidate(pod, evidence.get(best, 0.0), best, evidence))
    return sorted(ranked, key=lambda c: (-c.score, c.pod))


def nsigma(windows: Windows, metrics: Sequence[str] = RESOURCE) -> list[Candidate]:
    return _rank(windows, metrics, _nsigma)


def baro(windows: Windows, metrics: Sequence[str] = RESOURCE) -> list[Candidate]:
    return _rank(windows, metrics, _robust)


def random_ranking(windows: Windows, seed: int) -> list[Candidate]:
    pods = sorted(windows)
    random.Random(seed).shuffle(pods)
    return [Candidate(pod, 0.0, "") for pod in pods]


@dataclass(frozen=True)
class Topology:
    """The request path: each component forwards to the ones listed (gateway -> router -> engines)."""

    downstream: Mapping[str, Sequence[str]]
    engines: Sequence[str]


SYMPTOM_DISCOUNT = 0.05  # an upstream anomaly explained by a downstream one keeps this share of its score
EXPLAINS = 4.0  # a downstream serving deviation this large explains upstream anomalies


def serving_aware(windows: Windows, topology: Topology) -> list[Candidate]:
    """Robust deviations of every pod's serving and resource signals; then, along the request path, an
    upstream component's score is discounted when a component it forwards to is anomalous itself."""
    own = {c.pod: c for c in _rank(windows, (*SERVING, *RESOURCE, "gpu_power_w"), _robust_floored)}

    def reach(pod: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for child in topology.downstream.get(pod, ()):
            if child not in seen:
                out |= {child} | reach(child, seen | {pod})
        return out

    ranked = []
    for pod, candidate in own.items():
        below = reach(pod)
        explained = [c for c in below if c in own and max(own[c].evidence.get(m, 0.0) for m in SERVING) >= EXPLAINS]
        score = candidate.score * (SYMPTOM_DISCOUNT if explained else 1.0)
        evidence = dict(candidate.evidence)
        if explained:
            evidence["explained_by_downstream"] = float(len(explained))
        ranked.append(Candidate(pod, round(score, 3), candidate.metric, evidence))
    return sorted(ranked, key=lambda c: (-c.score, c.pod))


def ac_at(rankings: Sequence[tuple[Sequence[Candidate], str]], k: int) -> float:
    """Share of cases whose true root cause is among the top k."""
    if not rankings:
        return 0.0
    return sum(truth in [c.pod for c in ranked[:k]] for ranked, truth in rankings) / len(rankings)


def avg_at(rankings: Sequence[tuple[Sequence[Candidate], str]], k: int) -> float:
    return sum(ac_at(rankings, j) for j in range(1, k + 1)) / k
