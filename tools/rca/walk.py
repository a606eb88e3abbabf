"""A MicroRCA-style baseline (Wu et al., NOMS 2020; in the RCA paper's Table 1): a personalised random
walk over the stack's graph, the graph family of the paper's methods (PC-RW, MicroRCA, MonitorRank).

The graph: the topology's edges (calls and hosting), both ways, weighted by how strongly the two
candidates' most anomalous metrics correlate over the whole window. The walk restarts at candidates in
proportion to their anomaly (BARO's robust score over every signal) times how strongly their anomalous
metric correlates with the latency at the entry point (the candidate nobody calls that exports a
latency): a candidate whose anomaly tracks what users feel, and that the walk reaches often from
there, ranks first.
"""

from __future__ import annotations

import numpy as np

from tools.rca.methods import EVERYTHING, Candidate, Topology, Windows, baro

ALPHA = 0.85  # the walk follows an edge with this probability, else restarts
STEPS = 100


def _joined(windows: Windows, candidate: str, metric: str) -> np.ndarray:
    pre, fault = windows.get(candidate, {}).get(metric, ([], []))
    values = np.asarray([*pre, *fault], dtype=float)
    finite = np.isfinite(values)
    if finite.any():
        values[~finite] = float(np.median(values[finite]))
    return values


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) != len(b) or len(a) < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return abs(float(np.corrcoef(a, b)[0, 1]))


def random_walk(windows: Windows, topology: Topology) -> list[Candidate]:
    anomalies = {c.pod: c for c in baro(windows, EVERYTHING)}
    names = sorted(windows)
    index = {name: i for i, name in enumerate(names)}
    top = {c: _joined(windows, c, anomalies[c].metric) for c in names}
    called = {k for callees in topology.calls.values() for k in callees}
    entry = [c for c in topology.calls if c not in called and "latency_s" in windows.get(c, {})]
    frontend = _joined(windows, entry[0], "latency_s") if entry else top[max(names, key=lambda c: anomalies[c].score)]
    weights = np.zeros((len(names), len(names)))
    edges = [(a, b) for a, bs in topology.calls.items() for b in bs]
    edges += [(node, pod) for node, pods in topology.hosts.items() for pod in pods]
    for a, b in edges:
        if a in index and b in index:
            w = _corr(top[a], top[b]) + 1e-3
            weights[index[a], index[b]] = weights[index[b], index[a]] = w
    scale = max((c.score for c in anomalies.values()), default=0.0) or 1.0
    restart = np.array([anomalies[c].score / scale * (_corr(top[c], frontend) + 0.1) for c in names]) + 1e-12
    restart /= restart.sum()
    rows = weights.sum(axis=1, keepdims=True)
    transition = np.where(rows > 0, weights / np.maximum(rows, 1e-12), np.eye(len(names)))
    visits = restart.copy()
    for _ in range(STEPS):
        visits = (1 - ALPHA) * restart + ALPHA * visits @ transition
    ranked = [
        Candidate(c, round(float(visits[index[c]]), 5), anomalies[c].metric, {"anomaly": anomalies[c].score})
        for c in names
    ]
    return sorted(ranked, key=lambda c: (-c.score, c.pod))
