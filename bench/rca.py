"""Benchmark: wall-clock time of `mitigate rca eval` (the default matrix, or a stress), end to end as a
user runs it -- interpreter start, simulation, promtool backfill, Prometheus start, range queries,
every method, bootstrap -- and the phases the command reports, with the CPU time it and its children
(promtool, Prometheus) used and the machine's load when it started (the target is 2 minutes on 2 shared cores).

usage: .venv/bin/python bench/rca.py [--repeat 1] [--stress none|noise|two_faults|unseen] [--seed 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stress", default="none")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    command = [sys.executable, "-m", "api.cli", "rca", "eval", "--json", "--stress", args.stress]
    command += ["--seed", str(args.seed)]
    walls, cpus, phases = [], [], []
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.2f}")
    for _ in range(args.repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        result = json.loads(done.stdout)
        phases.append(result["timings_s"])
        # CPU of the command and of what it ran and waited for (promtool, Prometheus).
        print(f"  {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU, {result['injections']} injections")
    print(f"median wall {statistics.median(walls):.1f} s (target 120 s); phases of the last run: {phases[-1]}")


if __name__ == "__main__":
    main()
