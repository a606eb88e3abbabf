"""FastAPI dependencies, as Annotated aliases ending in Dep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from api.app import Service

T = TypeVar("T")


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
    thread pool when the database is across a network (PostgreSQL)."""
    if service.store.local:
        return write()
    return await run_in_threadpool(write)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"
