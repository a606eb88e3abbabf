"""Benchmark: triage latency per incident in rulebook mode, database writes and checkpoints included,
without precedents and with them (an index of data/postmortems built for the run, so the figure does
not depend on what ./.mitigate holds), and the start-up time of `mitigate --help` against a bare
`python -c pass` measured in the same run.

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
from typing import Any

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
    from api.wiring import make_context, open_checkpointer, open_postmortem_index, open_store
    from evals.dataset import load_dataset

    cases = load_dataset(args.dataset)

    def triage_latencies(tmp: str, state_dir: Path) -> list[float]:
        settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", engine="rulebook", state_dir=state_dir)
        store = open_store(settings)
        context = make_context(settings, store.recorder)
        latencies: list[float] = []
        with open_checkpointer(settings.database_url) as checkpointer:

            def triage(case_incident: Any) -> None:
                start_run(
                    case_incident,
                    source="bench",
                    payload={},
                    recorder=store.recorder,
                    context=context,
                    checkpointer=checkpointer,
                )

            triage(cases[0].incident)  # warm-up: regexes, first connection, the embedding model
            for _ in range(args.repeat):
                for case in cases:
                    started = time.perf_counter()
                    triage(case.incident)
                    latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["no precedents"] = triage_latencies(tmp, Path(tmp) / "empty-state")
    with tempfile.TemporaryDirectory() as tmp:
        open_postmortem_index(Path(tmp), None).ingest(ROOT / "data" / "postmortems")
        results["with precedents"] = triage_latencies(tmp, Path(tmp))

    bare = _startup([sys.executable, "-c", "pass"], 7)
    help_time = _startup([str(ROOT / ".venv/bin/mitigate"), "--help"], 7)
    for name, latencies in results.items():
        print(
            f"triage (rulebook, SQLite store + checkpointer, {name}), {len(latencies)} runs of {len(cases)} incidents:"
        )
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
