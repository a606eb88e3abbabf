"""Benchmark: an Alertmanager storm against 1 or more replicas of `mitigate serve` sharing one PostgreSQL.

500 distinct alerts, each re-sent 2-6 times as Alertmanager does at every group interval, and 100 of
them resolved afterwards: 2,000 posts, 50 at a time, spread over the replicas as a load balancer would.
Then every run is waited for, and the database is asked what happened:

- refused: posts answered with anything but 2xx (Alertmanager would retry them);
- lost: alerts never stored although sent, plus stored runs that never finished;
- duplicate_incidents: alerts stored as more than one incident, plus incidents with more than one run;
- double_executed: runs executed twice: a checkpoint history with two children of one checkpoint (two
  executions from one state), or more than one action row for one run;
- throughput_rps: posts per second over the storm; p99_ack_ms: the 99th percentile of the 2xx latencies.

--kill-one kill -9s the last replica halfway through the storm; a post in flight to it, or sent to it
afterwards, is re-sent to the next replica (what Alertmanager's retry behind a load balancer does).
Its runs (jobs it was executing, handed back when its heartbeat stopped) must finish on the others.

The replicas run with the default configuration (rulebook, judgement model, no cluster: plans are
proposed, so a run never waits on a cluster, and every limit at its default). The environment holds only
what a deployment sets: the database URL, a state directory, the Alertmanager and API tokens. The output
lists those settings (secrets masked) and the limits in force, read from api/settings.py's defaults.

usage: .venv/bin/python bench/storm.py [--replicas N] [--kill-one] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "storm-token"
POSTGRES_URL = os.environ.get("MITIGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DISTINCT, POSTS, RESOLVED, CONCURRENCY = 500, 2000, 100, 50


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alert(i: int, status: str = "firing") -> dict[str, Any]:
    labels = {"alertname": "EngineRequestsWaitingHigh", "namespace": "llm-serving", "deployment": f"model-{i}"}
    alert: dict[str, Any] = {
        "status": status,
        "startsAt": "2026-11-24T10:00:00Z",
        "fingerprint": f"storm{i:04d}",
        "labels": labels,
        "annotations": {"summary": "429 throttling and queue backlog on every replica"},
    }
    if status == "resolved":
        alert["endsAt"] = "2026-11-24T10:20:00Z"
    return {"version": "4", "groupKey": f"storm-{i}", "status": status, "receiver": "mitigate", "alerts": [alert]}


def storm_plan(seed: int = 14) -> list[tuple[int, str]]:
    """(alert, firing|resolved) in sending order: each alert's first firing, its re-sends at group
    intervals, and for some a resolved at the end; exactly POSTS posts."""
    rng = random.Random(seed)
    sends = [rng.randint(2, 6) for _ in range(DISTINCT)]
    target = POSTS - RESOLVED
    while (total := sum(sends)) != target:  # nudge within 2..6 to hit the total exactly
        i = rng.randrange(DISTINCT)
        if total < target and sends[i] < 6:
            sends[i] += 1
        elif total > target and sends[i] > 2:
            sends[i] -= 1
    events: list[tuple[float, int, str]] = []
    for i, count in enumerate(sends):
        first, interval = rng.uniform(0, 10), rng.uniform(0.5, 3)
        events += [(first + k * interval, i, "firing") for k in range(count)]
    for i in rng.sample(range(DISTINCT), RESOLVED):
        last = max(t for t, j, _ in events if j == i)
        events.append((last + rng.uniform(0.5, 3), i, "resolved"))
    return [(i, kind) for _t, i, kind in sorted(events)]


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen[bytes]
    alive: bool = True


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)
    rerouted: int = 0  # posts a dead replica would have had, sent to the next one
    transport_errors: dict[str, int] = field(default_factory=dict)  # retried, as Alertmanager does
    undelivered: int = 0  # posts that failed every retry
    killed_at: float | None = None  # epoch seconds of the kill -9
    acknowledged: set[int] = field(default_factory=set)  # alerts that got a 2xx at least once


def _start(env: dict[str, str], log: Path) -> Replica:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return Replica(port, proc)
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"a replica exited at start-up; see {log}")
    proc.kill()
    raise SystemExit(f"a replica did not become ready; see {log}")


async def _storm(replicas: list[Replica], plan: list[tuple[int, str]], kill_one: bool, tally: Tally) -> float:
    sent = 0
    semaphore = asyncio.Semaphore(CONCURRENCY)
    killed = asyncio.Event()

    async def post(client: httpx.AsyncClient, n: int, alert: int, kind: str) -> None:
        nonlocal sent
        async with semaphore:
            body = json.dumps(_alert(alert, kind))
            # Alertmanager retries a failed post; a load balancer sends it to a live replica.
            for attempt in range(4 * len(replicas)):
                replica = replicas[(n + attempt) % len(replicas)]
                if not replica.alive:
                    tally.rerouted += 1
                    continue
                started = time.perf_counter()
                try:
                    response = await client.post(
                        f"http://127.0.0.1:{replica.port}/webhooks/alertmanager",
                        content=body,
                        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                    )
                except httpx.TransportError as exc:  # a killed replica, a closed keep-alive connection
                    name = type(exc).__name__
                    tally.transport_errors[name] = tally.transport_errors.get(name, 0) + 1
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                if response.is_success:
                    tally.latencies_ms.append((time.perf_counter() - started) * 1000)
                    if kind == "firing":
                        tally.acknowledged.add(alert)
                else:
                    tally.refused[response.status_code] = tally.refused.get(response.status_code, 0) + 1
                break
            else:
                tally.undelivered += 1
            sent += 1
            if kill_one and sent == len(plan) // 2 and not killed.is_set():
                killed.set()
                victim = replicas[-1]
                victim.alive = False
                victim.proc.send_signal(signal.SIGKILL)
                tally.killed_at = time.time()

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        began = time.perf_counter()
        await asyncio.gather(*(post(client, n, alert, kind) for n, (alert, kind) in enumerate(plan)))
        return time.perf_counter() - began


def _query(engine: Any, sql: str) -> Any:
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def _wait_for_runs(engine: Any, deadline_s: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < deadline_s:
        if not _query(engine, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'retrying')"):
            return time.monotonic() - began
        time.sleep(1)
    return float("nan")


def _jobs_by_worker(engine: Any) -> list[int]:
    """Runs' jobs finished by each live worker (a killed worker's row is pruned, its jobs show as None)."""
    from sqlalchemy import text

    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' GROUP BY worker_id ORDER BY 1")
        )
        return [int(count) for (count,) in rows]


def _after_kill(engine: Any, killed_at: float) -> dict[str, Any]:
    """When the killed replica's jobs were handed back, and when the last of them finished, after the kill."""
    handed = "SELECT job_id FROM procrastinate_events WHERE type = 'deferred_for_retry'"
    first_handed = _query(
        engine, "SELECT extract(epoch FROM min(at)) FROM procrastinate_events WHERE type = 'deferred_for_retry'"
    )
    last_done = _query(
        engine,
        "SELECT extract(epoch FROM max(at)) FROM procrastinate_events "
        f"WHERE type = 'succeeded' AND job_id IN ({handed})",
    )
    return {
        "handed_back_s_after_kill": None if first_handed is None else round(float(first_handed) - killed_at, 1),
        "handed_back_runs_done_s_after_kill": None if last_done is None else round(float(last_done) - killed_at, 1),
    }


def _limits_in_force() -> dict[str, Any]:
    """The limits the replicas run with: the settings' defaults, since the bench overrides none of them."""
    from api.settings import Settings

    fields = Settings.model_fields
    return {
        name: fields[name].default
        for name in ("rate_limit_per_minute", "max_body_bytes", "ingest_wait_s")
        if name in fields
    }


def measure(replica_count: int, kill_one: bool) -> dict[str, Any]:
    import psycopg

    from store.db import make_engine

    schema = f"storm_{uuid.uuid4().hex[:8]}"
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    replicas: list[Replica] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
            deployment = {  # what a real deployment sets; no limit is overridden
                "MITIGATE_DATABASE_URL": url,
                "MITIGATE_STATE_DIR": tmp,
                "MITIGATE_ALERTMANAGER_TOKEN": TOKEN,
                "MITIGATE_API_TOKEN": TOKEN,
            }
            env |= deployment
            subprocess.run(  # migrate once, so the replicas start on a ready schema
                [sys.executable, "-m", "api.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
            )
            replicas = [_start(env, Path(tmp) / f"replica-{n}.log") for n in range(replica_count)]
            plan = storm_plan()
            tally = Tally()
            engine = make_engine(url)
            wall = asyncio.run(_storm(replicas, plan, kill_one, tally))
            drain_s = _wait_for_runs(engine, deadline_s=900)
            firing = {alert for alert, kind in plan if kind == "firing"}
            stored = _query(engine, "SELECT count(DISTINCT fingerprint) FROM incidents WHERE fingerprint LIKE 'storm%'")
            unfinished = _query(engine, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'retrying')")
            result = {
                "replicas": replica_count,
                "kill_one": kill_one,
                "posts": len(plan),
                "distinct_alerts": len(firing),
                "concurrency": CONCURRENCY,
                "settings_set": sorted(deployment),
                "limits_in_force": _limits_in_force(),
                "refused": sum(tally.refused.values()),
                "refused_by_status": {str(k): v for k, v in sorted(tally.refused.items())},
                "rerouted": tally.rerouted,
                "transport_errors_retried": tally.transport_errors,
                "undelivered": tally.undelivered,
                "lost": (len(firing) - int(stored)) + int(unfinished),
                "acknowledged_not_stored": len(tally.acknowledged) - int(stored),
                "duplicate_incidents": int(
                    _query(
                        engine,
                        "SELECT count(*) FROM (SELECT fingerprint FROM incidents GROUP BY fingerprint "
                        "HAVING count(*) > 1) d",
                    )
                    + _query(
                        engine,
                        "SELECT count(*) FROM (SELECT incident_id FROM runs GROUP BY incident_id "
                        "HAVING count(*) > 1) d",
                    )
                ),
                "double_executed": int(
                    _query(
                        engine,
                        "SELECT count(DISTINCT thread_id) FROM (SELECT thread_id, parent_checkpoint_id "
                        "FROM checkpoints WHERE checkpoint_ns = '' AND parent_checkpoint_id IS NOT NULL "
                        "GROUP BY thread_id, parent_checkpoint_id HAVING count(*) > 1) forks",
                    )
                    + _query(
                        engine,
                        "SELECT count(*) FROM (SELECT run_id FROM actions GROUP BY run_id HAVING count(*) > 1) a",
                    )
                ),
                "runs": int(_query(engine, "SELECT count(*) FROM runs")),
                "action_rows": int(_query(engine, "SELECT count(*) FROM actions")),
                "jobs_handed_back": int(
                    _query(engine, "SELECT count(*) FROM procrastinate_events WHERE type = 'deferred_for_retry'")
                ),
                "jobs_by_worker": _jobs_by_worker(engine),
                "throughput_rps": round(len(plan) / wall, 1),
                "p99_ack_ms": round(statistics.quantiles(tally.latencies_ms, n=100)[98], 1),
                "p50_ack_ms": round(statistics.median(tally.latencies_ms), 1),
                "runs_drained_s_after_storm": round(drain_s, 1),
                # The machine's load when measuring: figures from a shared machine are read with it.
                "load_average_1m": round(os.getloadavg()[0], 1),
                "cpus": os.cpu_count(),
            }
            if tally.killed_at is not None:
                result |= _after_kill(engine, tally.killed_at)
            engine.dispose()
            return result
    finally:
        for replica in replicas:
            if replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGTERM)
                try:
                    replica.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    replica.proc.kill()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2, help="replicas of `mitigate serve` (default 2)")
    parser.add_argument("--kill-one", action="store_true", help="kill -9 the last replica halfway")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.kill_one and args.replicas < 2:
        parser.error("--kill-one needs --replicas 2 or more")
    result = measure(args.replicas, args.kill_one)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
