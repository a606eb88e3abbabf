"""Benchmark: eval replay throughput (incidents/s) in rulebook mode, concurrency 1 and 4, same run.

usage: .venv/bin/python bench/replay.py [--dataset evals/datasets/paper156.jsonl] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals/datasets/paper156.jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from agent.context import MemoryRecorder, TriageContext
    from agent.rulebook import load_rulebook
    from evals.dataset import load_dataset
    from evals.replay import replay
    from tools.guard import load_policy

    cases = load_dataset(args.dataset)
    rulebook, policy = load_rulebook(), load_policy()

    def context() -> TriageContext:
        return TriageContext(rulebook=rulebook, policy=policy, recorder=MemoryRecorder())

    replay(cases[:10], context)  # warm-up
    rates = {}
    for concurrency in (1, 4):
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            replay(cases, context, concurrency=concurrency)
            runs.append(len(cases) / (time.perf_counter() - started))
        rates[concurrency] = statistics.median(runs)
        print(
            f"concurrency {concurrency}: {rates[concurrency]:.0f} incidents/s (median of {args.repeat} replays "
            f"of {len(cases)})"
        )
    print(
        f"ratio 4 / 1: {rates[4] / rates[1]:.2f}x (rulebook mode is CPU-bound under the GIL; concurrency pays "
        "off when an LLM endpoint is the engine)"
    )


if __name__ == "__main__":
    main()
