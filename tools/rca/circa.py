"""A CIRCA-style baseline (Li et al., KDD 2022; in the RCA paper's Table 1): regression-based
hypothesis testing over a structural graph built from the architecture.

Each metric's parents in the structural graph: a candidate's request rate is driven by its callers'
request rates; its latency signals by its own request rate and its callees' latency; its other
signals by its own request rate and latency; a node's signals by the same signal of the pods it hosts.
Each metric is regressed (ridge, on standardised parents) on its parents over the reference window;
its anomaly is the largest residual of the incident window in residual standard deviations (a metric
without parents is N-sigma scored). A candidate's score is its most anomalous metric's. The
descendant-adjustment step of CIRCA is left out: what remains is its core, regression-based test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tools.rca.methods import Candidate, Topology, Windows

LATENCY = frozenset({"latency_s", "ttft_s", "tpot_s", "e2e_s", "queue"})
RIDGE = 1.0
MIN_ROWS = 6


def parents(windows: Windows, topology: Topology, candidate: str, metric: str) -> list[tuple[str, str]]:
    def has(c: str, m: str) -> bool:
        return m in windows.get(c, {})

    if candidate in topology.hosts:
        return [(p, metric) for p in topology.hosts[candidate] if has(p, metric)]
    if metric == "requests_per_s":
        return [(k, metric) for k in topology.callers(candidate) if has(k, metric)]
    out = [(candidate, "requests_per_s")] if has(candidate, "requests_per_s") else []
    if metric in LATENCY:
        out += [(k, "latency_s") for k in topology.calls.get(candidate, ()) if has(k, "latency_s")]
    elif has(candidate, "latency_s"):
        out.append((candidate, "latency_s"))
    return out


def _joined(windows: Windows, candidate: str, metric: str) -> tuple[np.ndarray, int]:
    pre, fault = windows[candidate][metric]
    return np.asarray([*pre, *fault], dtype=float), len(pre)


def residual_score(y: np.ndarray, xs: Sequence[np.ndarray], n_pre: int) -> float:
    """The largest |residual| of the incident window, in residual standard deviations of the reference."""
    rows = np.isfinite(y)
    for x in xs:
        rows &= np.isfinite(x) if len(x) == len(y) else False
    train, test = rows.copy(), rows.copy()
    train[n_pre:], test[:n_pre] = False, False
    if train.sum() < MIN_ROWS or test.sum() == 0:
        return 0.0
    level = abs(float(np.median(y[train])))
    if xs:
        x = np.stack(xs, axis=1)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        std[std < 1e-12] = 1.0
        z = (x - mean) / std
        centre = float(y[train].mean())
        a = z[train]
        beta = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ (y[train] - centre))
        predicted = centre + z @ beta
    else:
        predicted = np.full(len(y), float(y[train].mean()))
    residual = y - predicted
    sigma = max(float(residual[train].std()), 1e-9 * max(1.0, level))
    return float(np.max(np.abs(residual[test]))) / sigma


def circa(windows: Windows, topology: Topology) -> list[Candidate]:
    ranked = []
    for candidate, by_metric in windows.items():
        evidence = {}
        for metric in by_metric:
            y, n_pre = _joined(windows, candidate, metric)
            xs = [_joined(windows, c, m)[0] for c, m in parents(windows, topology, candidate, metric)]
            evidence[metric] = round(residual_score(y, xs, n_pre), 3)
        best = max(evidence, key=lambda m: evidence[m], default="")
        ranked.append(Candidate(candidate, evidence.get(best, 0.0), best, evidence))
    return sorted(ranked, key=lambda c: (-c.score, c.pod))
