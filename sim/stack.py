"""The serving stack of the RCA paper (Scheinert et al., section 4.3), widened into a fairer experiment:
its shape, and the plan of injections that `mitigate rca eval` runs against it.

The stack: an NGINX gateway forwards every request to the Ray head, whose router spreads them over
three engine workers; the workers read prefix KV blocks from a model cache. Beside the request path:
the KubeRay operator, and a batch job sharing a GPU node. Four nodes host them. The candidates for the
root cause are all eight pods and all four nodes: random AC@1 is 1/12.

The plan: every fault of sim/stack_faults.py on every target of every tier it applies to, `repeats`
times, in a shuffled but reproducible order; or, under a stress, two faults at once or the faults the
methods were not designed around.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from sim.stack_faults import SEEN, STACK_FAULTS, TIERS, UNSEEN

MODEL, NAMESPACE = "llama3-70b", "rca"
GATEWAY, HEAD, OPERATOR = "nginx-gateway-0", "ray-head-0", "kuberay-operator-0"
CACHE, BATCH = "model-cache-0", "batch-embed-0"
WORKERS = ("ray-worker-0", "ray-worker-1", "ray-worker-2")
PODS = (GATEWAY, HEAD, OPERATOR, *WORKERS, CACHE, BATCH)
HOSTS = {  # node -> the pods on it
    "cpu-node-1": (GATEWAY, OPERATOR),
    "cpu-node-2": (HEAD, CACHE),
    "gpu-node-1": (WORKERS[0], WORKERS[1]),
    "gpu-node-2": (WORKERS[2], BATCH),
}
NODES = tuple(HOSTS)
NODE_OF = {pod: node for node, pods in HOSTS.items() for pod in pods}
CANDIDATES = (*PODS, *NODES)
# Who sends requests to whom (the service mesh's call graph): gateway -> head -> workers -> cache.
CALLS = {GATEWAY: (HEAD,), HEAD: WORKERS, **{w: (CACHE,) for w in WORKERS}}
TARGETS: dict[str, tuple[str, ...]] = {
    "gateway": (GATEWAY,),
    "head": (HEAD,),
    "router": (HEAD,),
    "worker": WORKERS,
    "node": NODES,
}
AUX_TARGETS: dict[str, tuple[str, ...]] = {"slow_disk": (CACHE,), "noisy_neighbour": (BATCH,)}
AUX_DEFAULT = (OPERATOR, CACHE, BATCH)
STRESSES = ("none", "noise", "two_faults", "unseen")


@dataclass(frozen=True)
class Placed:
    """One fault placed on one candidate; `onto` is the worker a routing fault pins traffic onto."""

    fault: str
    tier: str
    target: str  # the root cause: the candidate a method should rank first
    onto: str | None = None


@dataclass(frozen=True)
class Injection:
    faults: tuple[Placed, ...]
    start: float  # unix seconds; a second concurrent fault starts up to 20 s later (Placed order)
    offsets: tuple[float, ...] = (0.0,)

    @property
    def truth(self) -> frozenset[str]:
        return frozenset(p.target for p in self.faults)


@dataclass(frozen=True)
class Schedule:
    repeats: int = 10
    pre_s: int = 120  # normal behaviour before each injection (the methods' reference window)
    fault_s: int = 60  # the paper's one-minute injections
    cooldown_s: int = 60
    step_s: int = 5  # the scrape interval of the generated telemetry

    @property
    def period_s(self) -> int:
        return self.pre_s + self.fault_s + self.cooldown_s


def catalogue(tiers: tuple[str, ...] = TIERS, faults: tuple[str, ...] = SEEN) -> list[Placed]:
    """Every (fault, tier, target) the filters allow, once."""
    out = []
    for name in faults:
        spec = STACK_FAULTS[name]
        for tier in spec.tiers:
            if tier not in tiers:
                continue
            targets: tuple[str, ...] = AUX_TARGETS.get(name, AUX_DEFAULT) if tier == "aux" else TARGETS[tier]
            for target in targets:
                if tier == "router":
                    out += [Placed(name, tier, target, onto) for onto in WORKERS]
                else:
                    out.append(Placed(name, tier, target))
    return out


def plan(
    schedule: Schedule,
    start: float,
    seed: int,
    *,
    tiers: tuple[str, ...] = TIERS,
    faults: tuple[str, ...] | None = None,
    stress: str = "none",
) -> list[Injection]:
    rng = random.Random(seed)
    cases: list[tuple[Placed, ...]]
    single = catalogue(tiers, faults or (UNSEEN if stress == "unseen" else SEEN))
    # Two concurrent faults need two targets to put them on.
    if len({p.target for p in single}) < (2 if stress == "two_faults" else 1):
        raise ValueError(f"too few faults apply to the tiers {', '.join(tiers)} for the {stress} matrix")
    if stress == "unseen":
        cases = [(p,) for _ in range(schedule.repeats * 3) for p in single]
    elif stress == "two_faults":
        cases = []
        while len(cases) < schedule.repeats * 12:
            a, b = rng.sample(single, 2)
            if a.target != b.target:
                cases.append((a, b))
    else:
        cases = [(p,) for _ in range(schedule.repeats) for p in single]
    rng.shuffle(cases)
    out = []
    for i, placed in enumerate(cases):
        offsets = (0.0, *(float(rng.randint(0, 20)) for _ in placed[1:]))
        out.append(Injection(placed, start + i * schedule.period_s + schedule.pre_s, offsets))
    return out


def anchor(total_s: float, margin_s: int = 600) -> float:
    """A start time such that the experiment ends `margin_s` before now (Prometheus refuses the future)."""
    now = int(datetime.now(UTC).timestamp())
    return float(now - margin_s - int(total_s) - (now % 60))
