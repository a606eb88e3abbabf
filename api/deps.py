"""FastAPI dependencies, as Annotated aliases ending in Dep."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import sqlalchemy.exc
from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from api.app import Service

T = TypeVar("T")
log = logging.getLogger("mitigate")
RETRY_AFTER_S = 5


async def get_service(request: Request) -> Service:  # async: a sync dependency costs a thread hop
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    return bytes(body)


async def store_write(service: Service, write: Callable[[], T]) -> T:
    """Run a short write that must commit before the response: inline on a local SQLite file, on the
    thread pool when the database is across a network (PostgreSQL).

    Backpressure, not refusal: when the database cannot keep up (no connection or commit within
    `ingest_wait_s`, a locked SQLite file, a lost connection) the answer is 503 with Retry-After, which
    Alertmanager and PagerDuty retry; a write that still commits after the 503 makes the retry a
    duplicate, so nothing is stored twice or lost."""
    started = time.perf_counter()
    try:
        if service.store.local:
            return write()
        return await asyncio.wait_for(run_in_threadpool(write), service.settings.ingest_wait_s)
    except (TimeoutError, sqlalchemy.exc.TimeoutError, sqlalchemy.exc.OperationalError) as exc:
        log.warning("database did not keep up with an ingest (%s): answered 503", type(exc).__name__)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the database is not keeping up; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    finally:
        service.metrics.database.labels("ingest").observe(time.perf_counter() - started)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"
