"""The baseline for bench/webhook.py: a FastAPI endpoint that reads the body and commits one row to the
same kind of database (BENCH_DATABASE_URL, SQLite or PostgreSQL) with the same SQLAlchemy engine
settings mitigate uses: inline on a local SQLite file, on the thread pool for PostgreSQL."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, insert

from store.db import make_engine

engine = make_engine(os.environ.get("BENCH_DATABASE_URL", "sqlite:///:memory:"))
rows = Table("bare_rows", MetaData(), Column("id", Integer, primary_key=True), Column("body", LargeBinary))
rows.metadata.create_all(engine)
local = engine.dialect.name == "sqlite"
app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _write(body: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(insert(rows).values(body=body))


@app.post("/webhooks/alertmanager", status_code=202)
async def alertmanager(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if local:
        _write(body)
    else:
        await run_in_threadpool(_write, body)
    return {"accepted": [], "duplicates": [], "resolved": []}
