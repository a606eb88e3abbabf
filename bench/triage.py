"""Benchmark: triage latency per incident, database writes and checkpoints included: the rulebook alone
(the baseline, measured in the same run), the judgement model loaded, and the model with precedents
(an index of data/postmortems built for the run, so the figure does not depend on what ./.mitigate
holds); the model's load time; and the start-up time of `mitigate --help` against a bare
`python -c pass`.

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

    def triage_latencies(tmp: str, state_dir: Path, use_model: bool) -> list[float]:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db", engine="rulebook", state_dir=state_dir, use_model=use_model
        )
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

    from agent.judgement import DEFAULT_ARTEFACT, load_judgement
    from agent.rulebook import load_rulebook

    started = time.perf_counter()
    load_judgement(DEFAULT_ARTEFACT, load_rulebook())
    load_ms = (time.perf_counter() - started) * 1000

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["rulebook alone, no precedents"] = triage_latencies(tmp, Path(tmp) / "empty-state", False)
    with tempfile.TemporaryDirectory() as tmp:
        results["model, no precedents"] = triage_latencies(tmp, Path(tmp) / "empty-state", True)
    with tempfile.TemporaryDirectory() as tmp:
        open_postmortem_index(Path(tmp), None).ingest(ROOT / "data" / "postmortems")
        results["model, with precedents"] = triage_latencies(tmp, Path(tmp), True)

    bare = _startup([sys.executable, "-c", "pass"], 7)
    help_time = _startup([str(ROOT / ".venv/bin/mitigate"), "--help"], 7)
    baseline = _percentile(results["rulebook alone, no precedents"], 0.95)
    for name, latencies in results.items():
        print(f"triage ({name}; SQLite store + checkpointer), {len(latencies)} runs of {len(cases)} incidents:")
        p95 = _percentile(latencies, 0.95)
        print(
            f"  p50 {_percentile(latencies, 0.50):.1f} ms   p95 {p95:.1f} ms   max {max(latencies):.1f} ms   "
            f"p95 {p95 / baseline:.2f}x the rulebook alone   (target p95 < 150 ms)"
        )
    print(f"judgement model load (artefact + arrays): {load_ms:.0f} ms")
    print(
        f"mitigate --help: {help_time * 1000:.0f} ms median of 7; bare python start-up {bare * 1000:.0f} ms; "
        f"ratio {help_time / bare:.2f}x   (target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
