"""What one candidate's signals say, before any reasoning across candidates (the serving-aware method,
tools/rca/serving.py, builds on these):

- how far a signal moved (`deviation`): the incident window's median against the reference median, in
  robust standard deviations (IQR / 1.349), with floors so that a signal that happened to be flat
  cannot turn a wobble into the stack's largest anomaly;
- which samples to trust (`guarded`): those not next to a gap;
- a hop's own time (`hop`): a latency decomposition, step by step;
- how the candidate's load changed (`drivers`), and how much of a deviation that change can account for
  (`explained_share`): more requests make queues, latency and resources grow, the candidate being
  none the worse for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tools.rca.methods import Topology, Windows, series

Z_SIG = 3.0  # a deviation this many robust standard deviations out is a deviation
LOAD_SIG = 0.1  # a load change under 10 % explains nothing
AMPLIFY = 10.0  # queueing: a relative load change can explain up to this many times its relative latency change
NOISE_FLOOR = 0.05  # a change under 5 % of a signal's level is noise, however flat the signal was
HOP_FLOOR = 0.01  # a hop's own time (or the way to it): 1 % of the latency its callers see
ABS_FLOOR = {"queue": 1.0, "restarts": 0.1, "cpu_pressure": 0.01, "disk_io_util": 0.01, "retransmits_per_s": 0.5}
GAP_GUARD = 5  # steps: a range-query step of 5 s under a 30 s rate() window
COUNTS = frozenset({"restarts"})  # cumulative: one more is one more, whatever the count so far
# A hop's own time, or the way to it, can only add: when it falls, the caller is averaging in fast
# failures (429s, 502s) that the callee's own histogram does not count: no evidence against the hop.
ONE_SIDED = frozenset({"own_latency_s", "transit_s"})
LOAD = "requests_per_s"  # set by a candidate's callers (or its users), never its own doing
QUEUEING = frozenset({"ttft_s", "e2e_s", "latency_s", "queue"})  # steep in load; queues integrate its peaks
BATCHING = frozenset({"tpot_s"})  # a fuller batch: at most in proportion to the load
RESOURCE_LIKE = frozenset(
    {"cpu_cores", "network_rx_bytes_per_s", "network_tx_bytes_per_s", "gpu_util", "gpu_power_w", "tokens_per_s",
     "memory_bytes", "kv_cache"}
)  # fmt: skip

Pair = tuple[Sequence[float], Sequence[float]]  # (reference window, incident window)


@dataclass(frozen=True)
class Dev:
    before: float  # reference median
    during: float  # incident-window median
    z: float  # signed, in robust standard deviations
    r: float  # signed relative change, log((|during| + floor) / (|before| + floor))


@dataclass(frozen=True)
class Drivers:
    """How the candidate's load changed: what can explain its deviations without it being the cause."""

    load_r: float = 0.0  # requests answered (median)
    peak_r: float = 0.0  # the load's peaks (90th percentile): what a queue integrates
    in_flight_r: float = 0.0  # rate x latency (Little's law): what a forwarder holds
    saturated: bool = False  # its queue grew while it answered no fewer: offered more than it can take


def deviation(pre: Sequence[float], fault: Sequence[float], metric: str, floor: float = 0.0) -> Dev | None:
    a, b = series(pre), series(fault)
    if len(a) < 3 or len(b) < 2:
        return None
    q1, before, q3 = (float(x) for x in np.percentile(a, [25, 50, 75]))
    during = float(np.median(b))
    absolute = max(floor, ABS_FLOOR.get(metric, 0.0))
    relative = 0.0 if metric in COUNTS else NOISE_FLOOR * abs(before)
    scale = max((q3 - q1) / 1.349, relative, absolute, 1e-12)
    tiny = max(absolute, 1e-12)
    z = (during - before) / scale
    r = math.log((abs(during) + tiny) / (abs(before) + tiny))
    return Dev(before, during, max(0.0, z) if metric in ONE_SIDED else z, r)


def guarded(values: Sequence[float]) -> list[float]:
    """Samples next to a gap are not trusted: Prometheus' rate() over a range that an exporter outage cuts
    short is extrapolated only so far, and dips. Blank GAP_GUARD steps either side of a gap."""
    array = np.asarray(values, dtype=float)
    missing = ~np.isfinite(array)
    if not missing.any() or missing.all():
        return [float(x) for x in array]
    near = np.convolve(missing.astype(float), np.ones(2 * GAP_GUARD + 1), mode="same") > 0
    return [float(x) for x in np.where(near, np.nan, array)]


def hop(windows: Windows, candidate: str, parts: Sequence[tuple[str, str]], name: str) -> Dev | None:
    """A latency decomposition, step by step: the latency the candidate's callers see (`latency_s`) minus
    the mean of `parts` ((candidate, latency metric) pairs), weighted by their requests answered."""
    mine = windows.get(candidate, {})
    if "latency_s" not in mine or not parts:
        return None
    halves = []
    for i in (0, 1):  # the reference window, then the incident window
        whole = np.asarray(mine["latency_s"][i], dtype=float)
        latency = np.stack([np.asarray(windows[c][m][i], dtype=float) for c, m in parts])
        if len(parts) > 1:
            rate = np.stack([np.asarray(windows[c][LOAD][i], dtype=float) for c, _ in parts])
            rate = np.nan_to_num(rate, nan=0.0)
        else:
            rate = np.ones_like(latency)
        if latency.shape != rate.shape or latency.shape[1] != len(whole):
            return None
        total = rate.sum(axis=0)
        weighted = np.where(rate > 0, rate * np.nan_to_num(latency), 0.0).sum(axis=0) / np.maximum(total, 1e-12)
        broken = np.any((rate > 0) & ~np.isfinite(latency), axis=0) | (total <= 0)
        halves.append([float(x) for x in np.where(broken, np.nan, whole - weighted)])
    level = series(mine["latency_s"][0])
    floor = HOP_FLOOR * float(np.median(level)) if len(level) else 0.0
    return deviation(halves[0], halves[1], name, floor)


def load_of(windows: Windows, topology: Topology, candidate: str) -> Pair | None:
    """A candidate's requests answered; for one that exports none (a cache behind the engines), the sum
    of its callers' (load flows down the call graph)."""
    if LOAD in windows[candidate]:
        return windows[candidate][LOAD]
    callers = [k for k in topology.callers(candidate) if LOAD in windows.get(k, {})]
    if not callers:
        return None
    halves = []
    for i in (0, 1):
        stacked = np.stack([np.asarray(windows[k][LOAD][i], dtype=float) for k in callers])
        summed = np.where(np.isfinite(stacked).any(axis=0), np.nansum(stacked, axis=0), np.nan)
        halves.append([float(x) for x in summed])
    return halves[0], halves[1]


def queue_peak(queue: Pair | None) -> float:
    """How far the queue's peaks (90th percentile) rose, in robust standard deviations: a transient
    overload leaves its mark there even when the median does not move."""
    if queue is None:
        return 0.0
    a, b = series(queue[0]), series(queue[1])
    if len(a) < 3 or len(b) < 2:
        return 0.0
    q1, q3 = np.percentile(a, [25, 75])
    scale = max(float(q3 - q1) / 1.349, ABS_FLOOR["queue"])
    return float(np.percentile(b, 90) - np.percentile(a, 90)) / scale


def drivers(load: Pair | None, latency: Dev | None, queue: float) -> Drivers:
    def big(r: float) -> float:
        return r if abs(r) >= LOAD_SIG else 0.0

    dev = deviation(load[0], load[1], LOAD) if load is not None else None
    load_r = 0.0
    if dev is not None:  # a load change counts when it is large, or small but well out of its noise
        load_r = dev.r if abs(dev.r) >= LOAD_SIG or (abs(dev.z) >= Z_SIG and abs(dev.r) >= LOAD_SIG / 4) else 0.0
    peak_r = 0.0
    if load is not None:
        a, b = (series(x) for x in load)
        if len(a) >= 3 and len(b) >= 2 and np.percentile(a, 90) > 0 and np.percentile(b, 90) > 0:
            peak_r = big(math.log(float(np.percentile(b, 90)) / float(np.percentile(a, 90))))
    in_flight_r = load_r + (big(latency.r) if latency is not None else 0.0)
    # Answered at capacity, it cannot answer more: a queue that grows while the answered rate holds or
    # rises was offered more. (A candidate that became slower answers fewer.)
    saturated = queue >= Z_SIG and dev is not None and dev.r > -LOAD_SIG / 2
    return Drivers(load_r, peak_r, in_flight_r, saturated)


def explained_share(metric: str, dev: Dev, driven: Drivers) -> float:
    """How much of a deviation the candidate's own load (or what it holds in flight) can account for."""
    if metric == LOAD:
        return 1.0
    if metric in QUEUEING and driven.saturated:
        return 1.0 if dev.r > 0 else 0.0  # past capacity, waiting grows without bound with what is offered
    if metric in QUEUEING:
        options = [(driven.peak_r, AMPLIFY), (driven.load_r, AMPLIFY)]
    elif metric in BATCHING:
        options = [(driven.load_r, 1.0)]
    elif metric in RESOURCE_LIKE:
        options = [(driven.load_r, 1.0), (driven.in_flight_r, 1.0)]
    else:
        return 0.0
    share = 0.0
    for driver, gain in options:
        if driver and dev.r and (driver > 0) == (dev.r > 0):
            share = max(share, min(1.0, gain * abs(driver) / abs(dev.r)))
    return share


def guard_all(windows: Windows) -> dict[str, dict[str, Pair]]:
    return {c: {m: (guarded(pre), guarded(fault)) for m, (pre, fault) in by.items()} for c, by in windows.items()}


def deviations(windows: Mapping[str, Mapping[str, Pair]]) -> dict[str, dict[str, Dev]]:
    out: dict[str, dict[str, Dev]] = {}
    for c, by_metric in windows.items():
        out[c] = {m: d for m, (pre, fault) in by_metric.items() if (d := deviation(pre, fault, m)) is not None}
    return out
