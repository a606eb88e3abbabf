"""`mitigate worker`: execute runs from the PostgreSQL queue without the HTTP server (docs/queue.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from api.cli_errors import fail, masked_url

log = logging.getLogger("mitigate.worker")


def add_worker_command(sub: Any) -> None:
    worker = sub.add_parser(
        "worker",
        help="execute runs from the PostgreSQL queue, without the HTTP server (several may run; docs/queue.md)",
        description="Claims queued runs and approvals from the job queue in MITIGATE_DATABASE_URL (PostgreSQL) "
        "and executes them; any number of workers and `mitigate serve` replicas share the queue. A worker "
        "without a heartbeat for MITIGATE_QUEUE_LEASE_S is dead and its runs go to another. SIGTERM or "
        "Ctrl-C: the runs in flight finish (30 s at most), queued ones wait for the next worker.",
    )
    worker.add_argument(
        "--concurrency", type=int, help="runs executed at once (default MITIGATE_WORKER_THREADS)", metavar="N"
    )
    worker.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from api.settings import get_settings

    settings = get_settings()
    if args.concurrency is not None:
        if args.concurrency < 1:
            return fail("--concurrency must be at least 1")
        settings = settings.model_copy(update={"worker_threads": args.concurrency})
    if not settings.database_url.startswith("postgresql"):
        return fail(
            f"`mitigate worker` needs PostgreSQL (MITIGATE_DATABASE_URL is {masked_url(settings.database_url)}): "
            "with SQLite, `mitigate serve` executes its runs itself"
        )
    run_workers(settings)
    return 0


def run_workers(settings: Any, context_factory: Callable[[Any], Any] | None = None) -> None:
    """Work the queue until SIGTERM or SIGINT. `context_factory(store)` lets tests inject a cluster."""
    from api.app import make_worker
    from api.wiring import make_approvers, make_cluster, make_context, open_checkpointer, open_store

    make_cluster(settings)  # an unusable kubeconfig: a message now, not a failed run later
    store = open_store(settings)
    approvers = make_approvers(settings)

    def make() -> Any:
        context = context_factory(store) if context_factory else make_context(settings, store.recorder)
        context.approvers = approvers
        return context

    with open_checkpointer(settings.database_url) as checkpointer:
        queue = make_worker(settings, store, make, checkpointer, None)
        queue.max_ingest_wait_s = 0.0  # no webhooks in this process to give way to
        asyncio.run(_work_until_signal(queue))


async def _work_until_signal(queue: Any) -> None:
    task = asyncio.create_task(queue.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    log.info("worker %s: executing runs from the queue", queue.name)
    try:
        await task
    except asyncio.CancelledError:
        log.info("worker %s stopped; its queued runs wait for another worker", queue.name)
