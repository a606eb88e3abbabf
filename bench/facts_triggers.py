"""Benchmark: what the incident_facts triggers (migrations 0008-0009: since 0009 they only note the changed
incident; store/facts.py recomputes the noted facts when a report reads) cost the webhook's write,
`StoreRecorder.save_incident_with_run` (an incident and its queued run in one transaction), with the
triggers and without them (dropped on SQLite, disabled on PostgreSQL) in alternating rounds of one run.

usage: .venv/bin/python bench/facts_triggers.py [--database sqlite|postgresql] [--rounds 5] [--writes 300]
PostgreSQL: MITIGATE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test), a fresh schema
dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _switch(store: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """Functions that take the triggers away and put them back."""
    engine = store.engine
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            saved = list(
                conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'incident_facts%'"
                )
            )

        def off() -> None:
            with engine.begin() as conn:
                for name, _ in saved:
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")

        def on() -> None:
            with engine.begin() as conn:
                for _, sql in saved:
                    conn.exec_driver_sql(sql)

        return off, on

    def toggle(state: str) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE incidents {state} TRIGGER incident_facts_incident")
            conn.exec_driver_sql(f"ALTER TABLE runs {state} TRIGGER incident_facts_run")

    return (lambda: toggle("DISABLE")), (lambda: toggle("ENABLE"))


def _round(store: Any, writes: int) -> float:
    """Mean milliseconds per save_incident_with_run over `writes` new alerts."""
    from agent.schemas import Incident

    started = time.perf_counter()
    for _ in range(writes):
        key = uuid.uuid4().hex
        incident = Incident(id=f"bench-{key}", title="bench", started_at=datetime.now(UTC))
        store.recorder.save_incident_with_run(
            incident, f"run-{key}", source="alertmanager", payload={}, engine="rulebook"
        )
    return (time.perf_counter() - started) * 1000 / writes


def measure(url: str, rounds: int, writes: int) -> str:
    from api.settings import Settings
    from api.wiring import open_store

    store = open_store(Settings(database_url=url))
    off, on = _switch(store)
    with_triggers, without = [], []
    for _ in range(rounds):
        with_triggers.append(_round(store, writes))
        off()
        without.append(_round(store, writes))
        on()
    a, b = statistics.median(with_triggers), statistics.median(without)
    store.engine.dispose()
    return (
        f"[{store.engine.dialect.name}] save_incident_with_run: {a:.2f} ms with the triggers, {b:.2f} ms without;"
        f" ratio {a / b:.2f} (medians of {rounds} alternating rounds of {writes};"
        f" with {[round(x, 2) for x in with_triggers]}, without {[round(x, 2) for x in without]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            print(measure(f"sqlite:///{tmp}/facts.db", args.rounds, args.writes))
        return
    from tests.db_urls import postgres_schema_url

    with postgres_schema_url() as url:
        print(measure(url, args.rounds, args.writes))


if __name__ == "__main__":
    main()
