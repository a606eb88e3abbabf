"""Run the RCA experiment's stack through its schedule and write what Prometheus would have scraped,
as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`.

Scraping is where part of the noise lives (sim/stack_noise.py): every gauge value carries its own
jitter, the counter increments of one target's scrape share one (the scrape boundary moves for all of
them), a scrape fails now and then and an exporter is out for a while (gaps), and an exporter restart
resets a pod's application counters (Prometheus' rate() must cope, as it does in production).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sim.stack import CANDIDATES, MODEL, NAMESPACE, NODES, PODS, Injection, Placed, Schedule
from sim.stack_noise import Event, Noise, background, bursts, demand_factor, poisson_times
from sim.stack_sim import DEMAND_RPS, ROLE, StackSim

EXACT = {"kube_pod_container_status_restarts_total"}  # kube-state-metrics reads it from the API: no jitter
NO_RESET = EXACT | {"container_cpu_usage_seconds_total", "container_network_receive_bytes_total",
                    "container_network_transmit_bytes_total", "container_fs_io_time_seconds_total"}  # fmt: skip


@dataclass
class TelemetryStats:
    samples: int = 0
    failed_scrapes: int = 0
    outages: int = 0
    counter_resets: int = 0
    background_events: int = 0
    bursts: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _labels(candidate: str, extra: str) -> str:
    base = f'node="{candidate}"' if candidate in NODES else f'namespace="{NAMESPACE}",model="{MODEL}",pod="{candidate}"'
    return f"{base},{extra}" if extra else base


class _Scraper:
    def __init__(self, noise: Noise, seed: int, start: float, end: float, tmp: Path) -> None:
        self.noise, self.rng, self.tmp = noise, random.Random(seed * 7 + 3), tmp
        self.files: dict[str, IO[str]] = {}
        self.last: dict[tuple[str, str, str], float] = {}
        self.emitted: dict[tuple[str, str, str], float] = {}
        self.stats = TelemetryStats()
        self.outages = {
            c: [(t, t + self.rng.uniform(15, 60)) for t in poisson_times(self.rng, noise.outages_per_h, start, end)]
            for c in CANDIDATES
        }
        self.resets = {p: poisson_times(self.rng, noise.resets_per_h, start, end) for p in PODS}
        self.stats.outages = sum(len(v) for v in self.outages.values())

    def _out(self, metric: str) -> IO[str]:
        if metric not in self.files:
            self.files[metric] = (self.tmp / f"{len(self.files)}.om").open("w")
        return self.files[metric]

    def scrape(self, sim: StackSim, ts: int) -> None:
        level, rng = self.noise.level, self.rng
        for c in CANDIDATES:
            if any(lo <= ts < hi for lo, hi in self.outages[c]) or rng.random() < self.noise.failed_scrape_p:
                self.stats.failed_scrapes += 1
                continue
            reset = bool(self.resets.get(c)) and self.resets[c][0] <= ts
            if reset:
                self.resets[c].pop(0)
                self.stats.counter_resets += 1
            share = max(0.0, 1.0 + level * rng.gauss(0.0, 1.0))
            for (metric, extra), true in sim.counters[c].items():
                key = (c, metric, extra)
                previous = self.last.get(key)
                increment = true - previous if previous is not None and true >= previous else true
                self.last[key] = true
                restart = reset and metric not in NO_RESET
                value = (0.0 if restart else self.emitted.get(key, 0.0)) + increment * share
                self.emitted[key] = value
                self._out(metric).write(f"{metric}{{{_labels(c, extra)}}} {value:.7g} {ts}\n")
            for (metric, extra), true in sim.gauges[c].items():
                value = true if metric in EXACT else true * (1.0 + level * rng.gauss(0.0, 1.0))
                self._out(metric).write(f"{metric}{{{_labels(c, extra)}}} {value:.6g} {ts}\n")
            self.stats.samples += len(sim.counters[c]) + len(sim.gauges[c])

    def close(self, out: IO[str]) -> None:
        for metric, handle in self.files.items():
            handle.close()
            out.write(f"# TYPE {metric} gauge\n")
            with open(handle.name) as f:
                shutil.copyfileobj(f, out)
        out.write("# EOF\n")


def _active(injection: Injection, t: float, fault_s: int) -> list[Placed]:
    return [
        p
        for p, offset in zip(injection.faults, injection.offsets, strict=True)
        if injection.start + offset <= t < injection.start + offset + fault_s
    ]


def generate(
    out: IO[str], schedule: Schedule, injections: list[Injection], start: float, noise: Noise, seed: int
) -> TelemetryStats:
    """Simulate from `start` to the last injection's cooldown and write the scraped telemetry to `out`."""
    end = injections[-1].start + schedule.fault_s + schedule.cooldown_s + max(injections[-1].offsets)
    roles = {c: ROLE.get(c, "pod") for c in CANDIDATES}
    events = background(noise, roles, injections, schedule, start, end, seed)
    surges = bursts(noise, start, end, seed)
    sim = StackSim(seed, wander=noise.level)
    with tempfile.TemporaryDirectory(prefix="mitigate-om-") as tmp:
        scraper = _Scraper(noise, seed, start, end, Path(tmp))
        scraper.stats.background_events, scraper.stats.bursts = len(events), len(surges)
        for e in events:
            scraper.stats.by_kind[e.kind] = scraper.stats.by_kind.get(e.kind, 0) + 1
        t, dt, next_scrape = start, 1.0, start
        i_inj = i_ev = 0
        live_events: list[Event] = []
        for _ in range(int(end - start)):
            while i_inj + 1 < len(injections) and injections[i_inj].start + schedule.fault_s + 20 < t:
                i_inj += 1
            faults = _active(injections[i_inj], t, schedule.fault_s)
            while i_ev < len(events) and events[i_ev].start <= t:
                live_events.append(events[i_ev])
                i_ev += 1
            live_events = [e for e in live_events if e.end > t]
            factor = demand_factor(t, start, [b for b in surges if b.start <= t < b.end])
            sim.step(t, dt, DEMAND_RPS * factor, faults, live_events)
            t += dt
            if t >= next_scrape:
                scraper.scrape(sim, int(t))
                next_scrape += schedule.step_s
        scraper.close(out)
    return scraper.stats
