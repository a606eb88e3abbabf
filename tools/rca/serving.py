"""The serving-aware localisation method: robust deviations of every candidate's signals
(tools/rca/signals.py), then causal reasoning over the stack's structure. Nothing in it knows tiers or
names, nor gives any a prior: a candidate's part is read from the topology (who calls whom, which node
hosts which pod) and from what its signals mean.

1. **Latency decomposition** (latency flows up the call graph): a caller's own time is the latency its
   callers see minus the request-weighted latency of what it calls, and the way to an engine is the
   latency its caller sees minus the engine's own; a gateway slow only because an engine is slow has
   no own time to show.
2. **Load explains** (load flows down): more requests make an engine's queue, latency and resources
   grow, and a forwarder's memory follows what it holds in flight. The part of a deviation that the
   candidate's own load change accounts for is *explained*: discounted from its score.
3. **Credit upstream**: who changed that load is credited with the explained deviation. A balancer
   moves requests away from a callee that is slow on its own account onto the others: their gain is
   that callee's doing. A callee that lost requests on no account of its own, or gained them with no
   slow sibling to explain it, was dealt them by the caller (a skewed split); so were callees that all
   lost requests the caller did not.
4. **Common cause**: a candidate that deviates itself and reaches (hosts, or is waited on by) two or
   more candidates that deviate *alike* -- the same signal, the same way -- is promoted with the
   common-mode part of their deviations, which is discounted from each of them. The fewest causes
   that explain the most, most specific first: a node under two slowed pods, a cache under three.

The score is what is left of a candidate's own deviation plus the credit for what it explains.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from tools.rca.methods import Candidate, Topology, Windows
from tools.rca.signals import (
    LOAD,
    LOAD_SIG,
    Z_SIG,
    Dev,
    deviations,
    drivers,
    explained_share,
    guard_all,
    hop,
    load_of,
    queue_peak,
)

AGGREGATES = ("cpu_cores", "memory_bytes", "network_rx_bytes_per_s")  # a node's is its pods' sum plus its own
# What a router reacts to: a callee slow (or down) on its own account gets fewer requests.
SLOWS = frozenset({"ttft_s", "tpot_s", "e2e_s", "transit_s", "latency_s", "queue", "restarts"})


def _decompose(windows: Windows, topology: Topology, devs: dict[str, dict[str, Dev]]) -> None:
    for c in windows:
        callees = [k for k in topology.calls.get(c, ()) if {"latency_s", LOAD} <= set(windows.get(k, {}))]
        own, name = hop(windows, c, [(k, "latency_s") for k in callees], "own_latency_s"), "own_latency_s"
        if own is None and "e2e_s" in windows[c]:  # nothing behind it: the way to it is what its e2e leaves
            own, name = hop(windows, c, [(c, "e2e_s")], "transit_s"), "transit_s"
        if own is not None:
            devs[c].pop("latency_s", None)
            devs[c][name] = own


def _node_aggregates(devs: dict[str, dict[str, Dev]], node: str, pods: Sequence[str]) -> None:
    """A node's CPU, memory and network are its pods' sum: only what they do not account for is its own."""
    for metric in AGGREGATES:
        mine = devs.get(node, {}).get(metric)
        if mine is None or mine.during == mine.before:
            continue
        pods_change = sum(d.during - d.before for p in pods if (d := devs.get(p, {}).get(metric)) is not None)
        share = max(0.0, min(1.0, pods_change / (mine.during - mine.before)))
        devs[node][metric] = Dev(mine.before, mine.during, mine.z * (1 - share), mine.r * (1 - share))


def serving_aware(windows: Windows, topology: Topology | None = None) -> list[Candidate]:
    topology = topology or Topology()
    clean = guard_all(windows)
    devs = deviations(clean)
    raw_latency = {c: d["latency_s"] for c, d in devs.items() if "latency_s" in d}
    _decompose(clean, topology, devs)
    for node, pods in topology.hosts.items():
        if node in devs:
            _node_aggregates(devs, node, pods)

    own: dict[str, dict[str, float]] = {}  # candidate -> metric -> unexplained deviation
    explained: dict[str, float] = {}  # candidate -> its largest explained deviation
    for c, by_metric in devs.items():
        latency = raw_latency.get(c) or by_metric.get("e2e_s")
        driven = drivers(load_of(clean, topology, c), latency, queue_peak(clean[c].get("queue")))
        own[c], explained[c] = {}, 0.0
        for metric, dev in by_metric.items():
            share = explained_share(metric, dev, driven)
            own[c][metric] = abs(dev.z) * (1 - share)
            explained[c] = max(explained[c], abs(dev.z) * share)
    credit: dict[str, float] = defaultdict(float)
    why: dict[str, list[str]] = defaultdict(list)
    slowness = {c: max((v for m, v in by.items() if m in SLOWS), default=0.0) for c, by in own.items()}
    _credit_callers(devs, topology, slowness, explained, credit, why)
    signs = {c: {m: d.z > 0 for m, d in by.items()} for c, by in devs.items()}
    _common_causes(topology, list(windows), own, signs, credit, why)

    ranked = []
    for c in windows:
        mine = own.get(c, {})
        left = max(mine.values(), default=0.0)
        evidence = {m: round(v, 2) for m, v in sorted(mine.items(), key=lambda kv: -kv[1])[:4] if v > 0}
        metric = max(mine, key=lambda m: mine[m], default="")
        if credit.get(c):
            evidence["explains_downstream"] = round(credit[c], 2)
            evidence["explains_n"] = float(len(set(why[c])))
            if credit[c] > left:
                metric = f"explains {','.join(sorted(set(why[c])))}"
        ranked.append(Candidate(c, round(left + credit.get(c, 0.0), 3), metric, evidence))
    return sorted(ranked, key=lambda c: (-c.score, c.pod))


def _credit_callers(
    devs: Mapping[str, Mapping[str, Dev]],
    topology: Topology,
    slowness: Mapping[str, float],
    explained: Mapping[str, float],
    credit: dict[str, float],
    why: dict[str, list[str]],
) -> None:
    for caller, callees in topology.calls.items():
        rates = {k: d for k in callees if (d := devs.get(k, {}).get(LOAD)) is not None}
        before, during = sum(d.before for d in rates.values()), sum(d.during for d in rates.values())
        if len(rates) < 2 or before <= 0 or during <= 0:
            continue
        total_r = math.log(during / before)
        inbound = devs.get(caller, {}).get(LOAD)
        in_r = inbound.r if inbound is not None else total_r
        split = {k: math.log((max(d.during, 1e-9) / during) / (max(d.before, 1e-9) / before)) for k, d in rates.items()}
        slow = [j for j in rates if split[j] < -LOAD_SIG and slowness.get(j, 0.0) >= Z_SIG]
        # Who gave the gainers their extra share: the callees slow on their own account (a balancer
        # moves requests off them), or the caller (a callee that lost share on no account of its own).
        share = {k: (d.during / during) - (d.before / before) for k, d in rates.items()}
        lost_by_slow = sum(-share[j] for j in slow if share[j] < 0)
        lost = sum(-v for v in share.values() if v < 0) or 1.0
        for k in rates:
            mass = explained.get(k, 0.0)
            if mass <= 0:
                continue
            # A share that moved by less than LOAD_SIG is the balancer's noise, not a changed split.
            portion = abs(split[k]) / (abs(split[k]) + abs(total_r)) if abs(split[k]) >= LOAD_SIG else 0.0
            if share[k] < 0:
                givers = {k: 1.0} if k in slow else {caller: 1.0}
            else:
                givers = {j: -share[j] / lost for j in slow if share[j] < 0 and j != k}
                givers[caller] = 1.0 - lost_by_slow / lost
            for to, fraction in givers.items():
                if fraction > 0:
                    credit[to] += mass * portion * fraction
                    why[to].append(k)
            if abs(total_r - in_r) >= LOAD_SIG:  # the callees lost (or gained) requests the caller did not
                credit[caller] += mass * (1 - portion)
                why[caller].append(k)


def _reach(topology: Topology, parent: str) -> set[str]:
    """Whom a fault of `parent` can touch other than through load: the pods it hosts, and whoever waits
    on it or on them (their callers), transitively."""
    out = set(topology.hosts.get(parent, ()))
    frontier = [parent, *out]
    while frontier:
        for caller in topology.callers(frontier.pop()):
            if caller not in out and caller != parent:
                out.add(caller)
                frontier.append(caller)
    return out


def _common_causes(
    topology: Topology,
    candidates: Sequence[str],
    own: dict[str, dict[str, float]],
    signs: Mapping[str, Mapping[str, bool]],
    credit: dict[str, float],
    why: dict[str, list[str]],
) -> None:
    reach = {p: _reach(topology, p) for p in candidates}
    deviates = {c: max(own.get(c, {}).values(), default=0.0) >= Z_SIG for c in candidates}
    used: set[tuple[str, str, bool]] = set()
    while True:
        best: tuple[tuple[int, int, float], str, tuple[str, bool], list[str]] | None = None
        for p in candidates:
            if not deviates[p]:
                continue  # a common cause shows something of its own
            alike: dict[tuple[str, bool], list[str]] = defaultdict(list)
            for d in sorted(reach[p]):
                for metric, value in own.get(d, {}).items():
                    if value >= Z_SIG:
                        alike[(metric, signs[d][metric])].append(d)
            for signal, touched in alike.items():
                key = (len(touched), -len(reach[p]), max(own[p].values()))
                if len(touched) >= 2 and (p, *signal) not in used and (best is None or key > best[0]):
                    best = (key, p, signal, touched)
        if best is None:
            return
        _, parent, (metric, up), touched = best
        used.add((parent, metric, up))
        common = min(own[d][metric] for d in touched)
        for d in touched:
            own[d][metric] -= common
            credit[parent] += common
            why[parent].append(d)
