"""What makes the RCA experiment's telemetry look like a real cluster's rather than a lab's, all seeded:

- load that moves: a diurnal cycle (+-20 %) and bursts (+20-60 % for 20-90 s, at any time, inside a
  fault window too);
- unrelated background anomalies on healthy candidates (a CPU spike from a GC or a config reload, a
  memory step, a burst of long prompts on an engine, a system daemon or retransmissions on a node);
- per-scrape jitter (`level`, the relative standard deviation of every gauge value and of the counter
  increments between two scrapes of a target), failed scrapes and longer exporter outages (gaps), and
  exporter restarts that reset a pod's application counters (sim/stack_telemetry.py applies these).

`level` 0.05 is the default; every rate above scales with level / 0.05, so `--noise 0` leaves only the
stack's own randomness (Poisson arrivals, request-to-request variation, batch composition).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sim.stack import Injection, Schedule

DIURNAL_AMPLITUDE = 0.2
DAY_S = 86_400.0


@dataclass(frozen=True)
class Noise:
    level: float = 0.05

    @property
    def scale(self) -> float:
        return self.level / 0.05

    @property
    def bursts_per_h(self) -> float:
        return 4.0 * self.scale

    @property
    def background_per_h(self) -> float:  # per candidate
        return 2.0 * self.scale

    @property
    def failed_scrape_p(self) -> float:  # a target's scrape fails (all its series miss that sample)
        return min(0.5, 0.02 * self.scale)

    @property
    def outages_per_h(self) -> float:  # per target: 15-60 s without samples
        return 0.5 * self.scale

    @property
    def resets_per_h(self) -> float:  # per pod: the exporter restarts, its counters start over
        return 0.3 * self.scale


@dataclass(frozen=True)
class Event:
    candidate: str
    kind: str  # cpu (extra share of its CPU), memory (factor), latency (prefill factor), retransmits (factor)
    start: float
    end: float
    size: float


@dataclass(frozen=True)
class Burst:
    start: float
    end: float
    size: float  # demand multiplied by 1 + size at the plateau


def poisson_times(rng: random.Random, per_h: float, start: float, end: float) -> list[float]:
    out: list[float] = []
    t = start
    if per_h <= 0:
        return out
    while True:
        t += rng.expovariate(per_h / 3600.0)
        if t >= end:
            return out
        out.append(t)


def bursts(noise: Noise, start: float, end: float, seed: int) -> list[Burst]:
    rng = random.Random(seed * 7 + 1)
    times = poisson_times(rng, noise.bursts_per_h, start, end)
    return [Burst(t, t + rng.uniform(20, 90), rng.uniform(0.2, 0.6)) for t in times]


def demand_factor(t: float, origin: float, active: Sequence[Burst]) -> float:
    """Diurnal cycle times the bursts under way (5 s ramps, so a burst is not a step)."""
    factor = 1.0 + DIURNAL_AMPLITUDE * math.sin(2 * math.pi * (t - origin) / DAY_S)
    for b in active:
        ramp = min(1.0, (t - b.start) / 5.0, (b.end - t) / 5.0)
        factor *= 1.0 + b.size * max(0.0, ramp)
    return factor


KINDS = {
    "engine": ("cpu", "memory", "latency"),
    "pod": ("cpu", "memory"),
    "node": ("cpu", "retransmits"),
}


def background(
    noise: Noise,
    candidates: dict[str, str],  # candidate -> engine | pod | node
    injections: Sequence[Injection],
    schedule: Schedule,
    start: float,
    end: float,
    seed: int,
) -> list[Event]:
    """Anomalies unrelated to any fault, on candidates that are not the root cause of an injection
    whose reference or fault window they would overlap (they are noise, not a second fault)."""
    rng = random.Random(seed * 7 + 2)
    busy = [
        (inj.start - schedule.pre_s, inj.start + schedule.fault_s + max(inj.offsets), inj.truth) for inj in injections
    ]
    out = []
    for candidate, role in sorted(candidates.items()):
        for t in poisson_times(rng, noise.background_per_h, start, end):
            kind = rng.choice(KINDS[role])
            duration = rng.uniform(30, 120) if kind == "memory" else rng.uniform(10, 60)
            size = {"cpu": rng.uniform(1.0, 3.0), "memory": rng.uniform(1.1, 1.3)}.get(kind, rng.uniform(1.5, 3.0))
            if any(lo < t + duration and t < hi and candidate in truth for lo, hi, truth in busy):
                continue
            out.append(Event(candidate, kind, t, t + duration, size))
    return sorted(out, key=lambda e: e.start)
