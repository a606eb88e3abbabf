"""Benchmark: triage latency per incident in rulebook mode, database writes and checkpoints included,
and the start-up time of `mitigate --help` against a bare `python -c pass` measured in the same run.

usage: .venv/bin/python bench/triage.py [--dataset evals/datasets/paper156.jsonl] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _startup(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals/datasets/paper156.jsonl")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the dataset")
    args = parser.parse_args()

    from api.runs import start_run
    from api.settings import Settings
    from api.wiring import make_context, open_checkpointer, open_store
    from evals.dataset import load_dataset

    cases = load_dataset(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", engine="rulebook")
        store = open_store(settings)
        context = make_context(settings, store.recorder)
        latencies: list[float] = []
        with open_checkpointer(settings.database_url) as checkpointer:
            start_run(
                cases[0].incident,
                source="bench",
                payload={},
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
            )  # warm-up: regex compilation, first connection
            for _ in range(args.repeat):
                for case in cases:
                    started = time.perf_counter()
                    start_run(
                        case.incident,
                        source="bench",
                        payload={},
                        recorder=store.recorder,
                        context=context,
                        checkpointer=checkpointer,
                    )
                    latencies.append((time.perf_counter() - started) * 1000)

    bare = _startup([sys.executable, "-c", "pass"], 7)
    help_time = _startup([str(ROOT / ".venv/bin/mitigate"), "--help"], 7)
    print(f"triage (rulebook, SQLite store + checkpointer), {len(latencies)} runs over {len(cases)} incidents:")
    print(
        f"  p50 {_percentile(latencies, 0.50):.1f} ms   p95 {_percentile(latencies, 0.95):.1f} ms   "
        f"max {max(latencies):.1f} ms   (target p95 < 150 ms)"
    )
    print(
        f"mitigate --help: {help_time * 1000:.0f} ms median of 7; bare python start-up {bare * 1000:.0f} ms; "
        f"ratio {help_time / bare:.2f}x   (target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
