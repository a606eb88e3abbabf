"""Benchmark: mitigate with a long history. Seeds a database with real triages (incidents from the
labelled datasets through the graph, checkpoints and all), replicates their rows in SQL up to
`--incidents` (new ids, timestamps spread back in time at ~1,000 incidents an hour), then starts
`mitigate serve` on it and measures, on loopback: `/dashboard/gaps` (the default view, the last 30
days: every incident; its first view computes it, later views are served from memory and refreshed
behind; and with a chosen `since`, computed on demand) and `GET /incidents` (first page, a filtered
page, a page 50 cursors deep) latency p50/p95, the server process's RSS, and database bytes per
incident before and after `mitigate db prune`.

usage: .venv/bin/python bench/history.py [--incidents 100000] [--seeds 240] [--requests 40]
                                         [--database-url postgresql://postgres@127.0.0.1:5432/test] [--json]
A PostgreSQL URL gets a fresh schema in that database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "bench-token"
SOURCES = ("alertmanager", "alertmanager", "pagerduty", "slack", "rest")
# Columns that carry an id of the copied rows: each copy gets its own by a suffix.
ID_COLUMNS = {
    "incidents": ("id", "correlated_with"),
    "runs": ("id", "incident_id"),
    "run_steps": ("run_id",),
    "actions": ("run_id", "idempotency_key"),
    "approval_attempts": ("attempt_id", "run_id"),
    "sla_checks": ("run_id",),
    "incident_keys": ("incident_id", "run_id"),
    "checkpoints": ("thread_id",),
    "writes": ("thread_id",),
    "checkpoint_blobs": ("thread_id",),
    "checkpoint_writes": ("thread_id",),
}
SERIAL_PK = {"run_steps", "actions", "approval_attempts", "sla_checks", "incident_keys"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _database(url: str | None, workdir: Path) -> Iterator[str]:
    if not url:
        yield f"sqlite:///{workdir}/history.db"
        return
    import psycopg

    schema = f"mitigate_history_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{url}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _seed(url: str, count: int, workdir: Path) -> int:
    """Real triages: incidents of the labelled datasets through the graph with the rulebook and the
    judgement model, propose-only (no cluster), each run checkpointed on this database."""
    from agent.schemas import Incident
    from api.runs import start_run
    from api.settings import Settings
    from api.wiring import make_context, open_checkpointer, open_store
    from evals.dataset import load_dataset

    settings = Settings(database_url=url, engine="rulebook", state_dir=workdir)
    store = open_store(settings)
    context = make_context(settings, store.recorder)
    cases = []
    for name in ("paper156", "external-a3", "fieldnotes-c", "voices-d"):
        cases += load_dataset(ROOT / "evals" / "datasets" / f"{name}.jsonl")
    with open_checkpointer(url) as checkpointer:
        for k, case in enumerate(cases[:count]):
            incident = Incident.model_validate(case.incident.model_dump() | {"id": f"seed-{k:04d}"})
            start_run(
                incident,
                source=SOURCES[k % len(SOURCES)],
                payload=incident.model_dump(mode="json"),
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
            )
    return min(count, len(cases))


def _shifted(dialect: str, column: str) -> str:
    """The column moved back by :shift seconds, in the column's own storage format."""
    if dialect == "sqlite":  # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff': keep the microseconds
        return (
            f"CASE WHEN {column} IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%S', {column}, "
            f"'-' || (copies.k * :step) || ' seconds') || substr({column}, 20) END"
        )
    return f"{column} - make_interval(secs => copies.k * :step)"


def _replicate(engine: Any, seeds: int, total: int) -> None:
    """Copies of the seed rows until `total` incidents: INSERT ... SELECT, a batch of copies at a time."""
    from sqlalchemy import DateTime, inspect, text

    dialect = engine.dialect.name
    copies = total // seeds - 1
    step = 3600.0 * seeds / 1000  # the seeds took ~a minute; each copy lands an hour's 1,000 alerts earlier
    tables = [t for t in ID_COLUMNS if inspect(engine).has_table(t)] + ["approvals"]
    batch = 25
    for first in range(1, copies + 1, batch):
        last = min(copies, first + batch - 1)
        series = (
            f"WITH RECURSIVE copies(k) AS (SELECT {first} UNION ALL SELECT k + 1 FROM copies WHERE k < {last})"
            if dialect == "sqlite"
            else f"WITH copies AS (SELECT generate_series({first}, {last}) AS k)"
        )
        with engine.begin() as conn:
            for table in tables:
                columns = inspect(engine).get_columns(table)
                names, values = [], []
                for column in columns:
                    name = column["name"]
                    if name == "id" and table in SERIAL_PK | {"approvals"}:
                        continue
                    names.append(name)
                    if table == "approvals" and name == "action_id":
                        values.append("copy.id")
                    elif name in ID_COLUMNS.get(table, ()):
                        values.append(f"t.{name} || '~' || copies.k")
                    elif isinstance(column["type"], DateTime) or name in ("created_at", "received_at"):
                        values.append(_shifted(dialect, f"t.{name}"))
                    else:
                        values.append(f"t.{name}")
                source = f"{table} t CROSS JOIN copies"
                seed_filter = f"t.{ID_COLUMNS[table][0]} NOT LIKE '%~%'" if table in ID_COLUMNS else ""
                if table == "approvals":
                    source = (
                        "approvals t JOIN actions a ON a.id = t.action_id CROSS JOIN copies "
                        "JOIN actions copy ON copy.idempotency_key = a.idempotency_key || '~' || copies.k"
                    )
                    seed_filter = "a.idempotency_key NOT LIKE '%~%'"
                sql = f"{series} INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)} FROM {source}"
                sql += f" WHERE {seed_filter}" if seed_filter else ""
                conn.execute(text(sql), {"step": step} if ":step" in sql else {})
        print(f"  replicated {(last + 1) * seeds} incidents", file=sys.stderr, flush=True)
    if dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def _bytes(engine: Any, vacuumed: bool = False) -> int:
    """Bytes the data occupies: SQLite's used pages (freed pages are reused by new rows), PostgreSQL's
    relations of this schema (after VACUUM FULL when asked, which is what gives space back there)."""
    from sqlalchemy import inspect

    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            pages = (
                conn.exec_driver_sql("PRAGMA page_count").scalar()
                - conn.exec_driver_sql("PRAGMA freelist_count").scalar()
            )
            return int(pages * conn.exec_driver_sql("PRAGMA page_size").scalar())
    tables = inspect(engine).get_table_names()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if vacuumed:
            conn.exec_driver_sql("VACUUM FULL")
        return int(sum(conn.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar() for t in tables))


def _serve(url: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MITIGATE_DATABASE_URL": url,
        "MITIGATE_STATE_DIR": str(workdir),
        "MITIGATE_API_TOKEN": TOKEN,
        "MITIGATE_ENGINE": "rulebook",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("mitigate serve did not start")


def _rss_mb(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _timed(client: httpx.Client, path: str, requests: int) -> dict[str, float]:
    times = []
    dashboard = ("bench", TOKEN) if path.startswith("/dashboard") else None  # Basic for pages, bearer for REST
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, auth=dashboard) if dashboard else client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code} {response.text[:200]}")
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
    }


def _measure(url: str, workdir: Path, requests: int, incidents: int) -> dict[str, Any]:
    port = _port()
    proc = _serve(url, workdir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            idle = _rss_mb(proc.pid)[0]
            started = time.perf_counter()  # the first view computes the default report (then cached)
            client.get("/dashboard/gaps", auth=("bench", TOKEN)).raise_for_status()
            cold_ms = (time.perf_counter() - started) * 1000
            month_ago = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
            cursor = None
            deep = max(1, min(50, incidents // 100))
            for _ in range(deep):  # a page 50 deep, reached by following cursors
                response = client.get("/incidents", params={"limit": 50, **({"cursor": cursor} if cursor else {})})
                cursor = response.headers["x-next-cursor"]
            figures = {
                "dashboard_gaps": _timed(client, "/dashboard/gaps", requests) | {"first_view_ms": round(cold_ms, 1)},
                "dashboard_gaps_chosen_since": _timed(client, f"/dashboard/gaps?since={month_ago}", requests),
                "incidents_first_page": _timed(client, "/incidents?limit=50", requests),
                "incidents_filtered": _timed(client, "/incidents?limit=50&source=slack&status=proposed", requests),
                f"incidents_page_{deep}_deep": _timed(client, f"/incidents?limit=50&cursor={cursor}", requests),
                "dashboard_incidents": _timed(client, "/dashboard/incidents", max(5, requests // 4)),
            }
            now, peak = _rss_mb(proc.pid)
        figures["server_rss_mb"] = {"idle": round(idle, 1), "after": round(now, 1), "peak": round(peak, 1)}
        return figures
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=240, help="incidents triaged for real, then replicated")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per endpoint")
    parser.add_argument("--database-url", help="PostgreSQL (a fresh schema is used); default a SQLite file")
    parser.add_argument("--workdir", type=Path, help="keep the database here (default a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from api.settings import Settings
    from api.wiring import open_store
    from store.retention import prune, vacuum

    with tempfile.TemporaryDirectory() as tmp, _database(args.database_url, args.workdir or Path(tmp)) as url:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        seeds = _seed(url, args.seeds, workdir)
        seeded_s = time.perf_counter() - started
        engine = open_store(Settings(database_url=url, state_dir=workdir)).engine
        _replicate(engine, seeds, args.incidents)
        with engine.connect() as conn:
            incidents = int(conn.exec_driver_sql("SELECT count(*) FROM incidents").scalar() or 0)
            runs = int(conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() or 0)
        built_s = time.perf_counter() - started
        before = _bytes(engine)
        figures = _measure(url, workdir, args.requests, incidents)
        started = time.perf_counter()
        pruned = prune(engine, timedelta(0))
        prune_s = time.perf_counter() - started
        after = _bytes(engine)
        if engine.dialect.name == "sqlite":
            vacuum(engine)
            file_after = Path(url.split("///", 1)[1]).stat().st_size
        else:
            file_after = _bytes(engine, vacuumed=True)
        result = {
            "database": engine.dialect.name,
            "incidents": incidents,
            "runs": runs,
            "seeded_by_triage": seeds,
            "seed_s": round(seeded_s, 1),
            "build_s": round(built_s, 1),
            **figures,
            "bytes_per_incident": {
                "before_prune": round(before / incidents),
                "after_prune": round(after / incidents),
                "after_prune_vacuumed": round(file_after / incidents),
            },
            "prune": {"runs": pruned.runs, "checkpoint_rows": pruned.checkpoint_rows, "seconds": round(prune_s, 1)},
        }
        engine.dispose()
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
