"""Benchmark: the incident history lookup (issue #15), the keyed query against the whole-row read it
replaced, in the same run, interleaved, on the same SQLite store.

The store holds the cases of the dataset `--copies` times (as a store does after triaging them a few
times, received within the window); each case is then looked up both ways with the history finding's
bound (`max_items * 20` newest rows) and the answers are checked to be the same ids.

usage: .venv/bin/python bench/recurrence_query.py [--dataset ...] [--copies 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    from sqlalchemy import select

    from api.settings import Settings
    from api.wiring import open_store
    from evals.dataset import load_dataset
    from store.incident_queries import recurrence_key, recurrences
    from store.models import IncidentRow
    from tools.investigate import Bounds

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals/datasets/paper156.jsonl")
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cases = [c.incident for c in load_dataset(args.dataset)]
    limit = Bounds().max_items * 20
    now = datetime.now(UTC)
    since = now - timedelta(days=Bounds().history_days)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Settings(database_url=f"sqlite:///{tmp}/bench.db"))
        with store.sessions.begin() as session:
            for copy in range(args.copies):
                for i, incident in enumerate(cases):
                    session.add(
                        IncidentRow(
                            id=f"{incident.id}-{copy}",
                            title=incident.title,
                            payload=incident.model_dump(mode="json"),
                            received_at=now - timedelta(minutes=copy * len(cases) + i),
                        )
                    )

        def whole_rows(key: tuple[str, str], exclude: str) -> list[str]:
            """The lookup before: the newest `limit` whole rows, matched in Python."""
            with store.sessions() as session:
                rows = session.scalars(
                    select(IncidentRow)
                    .where(IncidentRow.received_at >= since, IncidentRow.id != exclude)
                    .where(IncidentRow.status != "correlated")
                    .order_by(IncidentRow.received_at.desc())
                    .limit(limit)
                ).all()
                return [r.id for r in rows if recurrence_key(r.payload) == key]

        def keyed(key: tuple[str, str], exclude: str) -> list[str]:
            with store.sessions() as session:
                return [r.id for r in recurrences(session, key, since=since, exclude_id=exclude, limit=limit)]

        timings: dict[str, list[float]] = {"whole rows, Python match (before)": [], "keyed query (now)": []}
        lookups = 0
        for _ in range(args.repeat):
            for incident in cases:
                key = recurrence_key(incident.model_dump(mode="json"))
                if key is None:
                    continue
                lookups += 1
                answers = []
                for name, lookup in zip(timings, (whole_rows, keyed), strict=True):
                    start = time.perf_counter()
                    answers.append(sorted(lookup(key, f"{incident.id}-0")))
                    timings[name].append((time.perf_counter() - start) * 1000)
                if answers[0] != answers[1]:
                    raise SystemExit(f"different answers for {incident.id}: {answers}")
    print(f"history lookup, SQLite store of {args.copies * len(cases)} incidents, {lookups} lookups, same answers:")
    base = statistics.median(timings["whole rows, Python match (before)"])
    for name, values in timings.items():
        p50 = statistics.median(values)
        print(
            f"  {name}: p50 {p50:.2f} ms  p95 {_percentile(values, 0.95):.2f} ms  max {max(values):.2f} ms"
            f"   median {p50 / base:.2f}x the whole-row read"
        )


if __name__ == "__main__":
    main()
