"""`mitigate serve`: the FastAPI application. Every way in stores an incident and hands a run to the
worker; the graph does the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from api.body_limit import BodyLimit
from api.doors import CountRejects, RefuseUnstorableUrl
from api.openapi_bodies import install as install_body_schemas
from api.retention_loop import RetentionLoop
from api.runs import RunOutcome
from api.security import RateLimiter
from api.service_metrics import ServiceMetrics
from api.settings import Settings, get_settings
from api.wiring import Store, make_approvers, make_context, open_checkpointer, open_store, warm_index
from api.worker import RunWorker
from store.correlation import Correlator
from store.incident_queries import IncidentQueries
from tools.guard import DEFAULT_POLICY, load_policy
from tools.no_phone_home import quiet

if TYPE_CHECKING:
    from api.pg_queue import PgRunQueue

log = logging.getLogger("mitigate")


@dataclass
class Service:
    settings: Settings
    store: Store
    queries: IncidentQueries
    worker: RunWorker | PgRunQueue
    metrics: ServiceMetrics
    limiter: RateLimiter
    checkpointer: Any
    make_context: Callable[[], Any]
    approvers: Any  # tools.approvers.Approvers: the doors and the guard read this one registry
    policy: Any  # tools.guard.Policy
    correlator: Any  # store.correlation.Correlator


class IngestFirst:
    """Pure ASGI middleware: tells the worker while webhook requests are in flight (see RunWorker)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        service = getattr(scope["app"].state, "service", None) if scope["type"] == "http" else None
        if service is None or not scope["path"].startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        service.worker.ingest_started()
        try:
            await self.app(scope, receive, send)
        finally:
            service.worker.ingest_finished()


def make_worker(
    settings: Settings,
    store: Store,
    make: Callable[[], Any],
    checkpointer: Any,
    on_outcome: Callable[[RunOutcome, float], None] | None,
) -> RunWorker | PgRunQueue:
    """SQLite: the in-process worker, one process owns every run. PostgreSQL: the shared job queue, so
    that several replicas (and `mitigate worker` processes) split the runs and take over a dead one's."""
    if store.local:
        return RunWorker(
            store.recorder, make, checkpointer, settings.worker_threads, on_outcome, retry=settings.retry_policy()
        )
    from api.pg_queue import PgRunQueue

    return PgRunQueue(
        settings.database_url,
        store.recorder,
        make,
        checkpointer,
        concurrency=settings.worker_threads,
        lease_s=settings.queue_lease_s,
        on_outcome=on_outcome,
        retry=settings.retry_policy(),
    )


def start_working(worker: RunWorker | PgRunQueue, settings: Settings) -> asyncio.Task[None] | None:
    if isinstance(worker, RunWorker):
        worker.start()
        return None
    if not settings.serve_worker:
        log.info("MITIGATE_SERVE_WORKER=false: runs are executed by `mitigate worker` processes")
        return None
    task = asyncio.create_task(worker.run(), name="mitigate-queue-worker")
    task.add_done_callback(_worker_ended)
    return task


def _worker_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # Loud: this replica still accepts alerts, but executes none (other replicas and workers do).
        log.error("the queue worker of this replica stopped", exc_info=task.exception())


async def stop_working(worker: RunWorker | PgRunQueue, working: asyncio.Task[None] | None) -> None:
    """Runs in flight finish; queued ones stay in the database for the next start (or another replica)."""
    if isinstance(worker, RunWorker):
        worker.stop()
        return
    if working is not None:
        working.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await working


def queue_heartbeats(engine: Any) -> dict[str, float]:
    """Last heartbeat of every live procrastinate worker (`mitigate worker` and `serve` alike), by its id."""
    from sqlalchemy import text

    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, extract(epoch FROM last_heartbeat) FROM procrastinate_workers")
            ).all()
    except Exception:
        return {}
    return {f"worker-{row[0]}": float(row[1]) for row in rows}


def _workers_alive() -> bool:
    """The in-process worker's threads (api/worker.py names them) are running: this replica's heartbeat."""
    return any(t.name.startswith("mitigate-run-") and t.is_alive() for t in threading.enumerate())


def create_app(
    settings: Settings | None = None,
    *,
    context_factory: Callable[[Store], Any] | None = None,
    teams_credentials: Any = None,
) -> FastAPI:
    """Build the app. `context_factory` lets tests and the simulator inject a cluster, SLA verifier or LLM."""
    quiet()  # no library calls home (tools/no_phone_home.py); `uvicorn api.asgi:app` starts here
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        metrics = ServiceMetrics()
        metrics.watch_database(store.engine)
        replica = f"{socket.gethostname()}:{os.getpid()}"
        if store.local:
            metrics.heartbeat_source = lambda: {replica: time.time()} if _workers_alive() else {}
        else:
            # The queue keeps its workers' heartbeats in the database: every replica reports them all.
            metrics.heartbeat_source = lambda: queue_heartbeats(store.engine)
        approvers = make_approvers(settings)
        policy = load_policy(settings.policy_path or DEFAULT_POLICY)
        with open_checkpointer(settings.database_url) as checkpointer:

            def make() -> Any:
                context = context_factory(store) if context_factory else make_context(settings, store.recorder)
                context.approvers = approvers  # one registry for the doors and the guard
                return context

            hooks: list[Callable[[RunOutcome], None]] = []

            def on_outcome(outcome: RunOutcome, seconds: float) -> None:
                metrics.observe(outcome, seconds)
                for hook in hooks:
                    hook(outcome)

            problem = getattr(make(), "judgement_problem", None)
            if problem:  # named once at start-up, and on /readyz and in every report after
                log.warning("judgement model not used, triaging with the rulebook alone: %s", problem)
            worker = make_worker(settings, store, make, checkpointer, on_outcome)
            app.state.service = Service(
                settings,
                store,
                IncidentQueries(store.sessions),
                worker,
                metrics,
                RateLimiter(settings.rate_limit_per_minute),
                checkpointer,
                make,
                approvers,
                policy,
                Correlator(store.sessions),
            )
            for bot in (slack_bot, teams_bot):
                if bot is not None:
                    bot.bind(app.state.service)
                    hooks.append(bot.on_outcome)
            working = start_working(worker, settings)
            retention = RetentionLoop(store.engine, settings.prune_after_days)
            retention.start()
            app.state.retention = retention
            warm_index(settings)
            try:
                yield
            finally:
                retention.stop()
                await stop_working(worker, working)

    from fastapi.staticfiles import StaticFiles

    from api.routes import approvals, dashboard, health, incidents, webhooks

    app = FastAPI(
        title="mitigate",
        version="0.1.0",
        description="Incident copilot for LLM serving platforms: webhooks and REST start triage runs; "
        "approvals resume paused runs.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans cost every request (the webhook ack path above all) and
        # mitigate exports its own Prometheus metrics; never configure exporters from the environment.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    for module in (webhooks, incidents, approvals, health, dashboard):
        app.include_router(module.router)
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.STATIC_DIR), name="dashboard-static")
    from api.web_pages import install as install_pages  # HTML error pages; /docs served offline

    install_pages(app)
    install_body_schemas(app)
    # Outermost last: rejects are counted whoever refused; bodies are bounded (bytes only) before any
    # route authenticates or parses; a path or query no database can store never reaches a query.
    app.add_middleware(IngestFirst)
    app.add_middleware(RefuseUnstorableUrl)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CountRejects)
    slack_bot = None
    if settings.slack_signing_secret.get_secret_value():
        from api.slack import SlackBot, slack_router

        slack_bot = SlackBot(settings)
        app.include_router(slack_router(slack_bot))
    teams_bot = None
    if settings.teams_app_id:
        from api.teams import TeamsBot, teams_router

        teams_bot = TeamsBot(settings, teams_credentials)
        app.include_router(teams_router(teams_bot))
    return app
