"""Benchmark: answering a question about history (`mitigate ask`, the bots) against a store of past
incidents: latency of `Asker.question` (word search over the newest 2,000 incidents, each hit's newest
run) against the dashboard's SQL substring search (`list_incidents(search=…)`, the baseline, measured in
the same run on the same store), and how often the incident a question was written from is cited first.

The store holds the paper156 incidents, each stored `--copies` times (ids suffixed) with a finished run;
questions are "what did we do last time <title>?" for every case.

usage: .venv/bin/python bench/ask.py [--copies 13] [--postgres postgresql://…/db]   (a fresh schema there,
dropped after; default: a fresh SQLite file)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def _database(postgres: str | None, tmp: str) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{tmp}/ask.db"
        return
    import psycopg

    schema = f"bench_ask_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{postgres}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=13, help="times each incident is stored (156 x 13 = 2,028)")
    parser.add_argument("--postgres", help="a PostgreSQL database to run in (in a schema made and dropped here)")
    args = parser.parse_args()

    from api.ask import Asker
    from api.lookup import list_incidents
    from api.settings import Settings
    from api.wiring import open_store
    from evals.dataset import load_dataset
    from store.incident_search import IncidentSearch

    cases = load_dataset(ROOT / "evals/datasets/paper156.jsonl")
    with tempfile.TemporaryDirectory() as tmp, _database(args.postgres, tmp) as url:
        store = open_store(Settings(database_url=url))
        recorder = store.recorder
        for copy in range(args.copies):
            for case in cases:
                incident = case.incident.model_copy(update={"id": f"{case.incident.id}~{copy}"})
                recorder.save_incident(incident, source="bench", payload={})
                run_id = f"{incident.id}-run"
                recorder.start_run(run_id, incident.id, "rulebook")
                report = {
                    "status": "mitigated",
                    "category": case.labels.get("category"),
                    "subcategory": case.labels.get("subcategory"),
                    "mitigation": case.labels.get("mitigation"),
                    "plan": {"operation": "bench"},
                }
                recorder.finish_run(run_id, status="mitigated", report=report)
        asker = Asker(IncidentSearch(store.sessions))
        ask_ms, like_ms, first = [], [], 0
        for case in cases:
            question = f"what did we do last time {case.incident.title}?"
            started = time.perf_counter()
            answer = asker.question(question)
            ask_ms.append((time.perf_counter() - started) * 1000)
            cited = answer.citations[0]["id"].split("~")[0] if answer.citations else None
            first += cited == case.incident.id
            started = time.perf_counter()
            list_incidents(store.sessions, search=case.incident.title.split()[0] if case.incident.title else "")
            like_ms.append((time.perf_counter() - started) * 1000)
        dialect = store.engine.dialect.name
        store.engine.dispose()  # before its schema is dropped
    stored = len(cases) * args.copies
    print(f"store: {stored} incidents with runs ({dialect}); {len(cases)} questions")
    print(
        f"ask (word search + newest runs): p50 {statistics.median(ask_ms):.1f} ms, "
        f"p95 {_percentile(ask_ms, 0.95):.1f} ms"
    )
    print(
        f"baseline list_incidents(search=first word): p50 {statistics.median(like_ms):.1f} ms, "
        f"p95 {_percentile(like_ms, 0.95):.1f} ms"
    )
    print(f"ratio p50 ask / baseline: {statistics.median(ask_ms) / statistics.median(like_ms):.1f}x")
    print(f"the question's own incident cited first: {first}/{len(cases)} ({first / len(cases):.0%})")


if __name__ == "__main__":
    main()
