"""Liveness, readiness and mitigate's own metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(service: ServiceDep, response: Response) -> dict[str, Any]:
    def check() -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            with service.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # readiness reports, it does not crash
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            service.checkpointer.get_tuple({"configurable": {"thread_id": "readyz-probe"}})
            checks["checkpointer"] = "ok"
        except Exception as exc:
            checks["checkpointer"] = f"error: {type(exc).__name__}"
        try:
            context = service.make_context()
        except Exception as exc:  # a dependency that cannot be built is a reason, never a 500
            checks["context"] = f"error: {type(exc).__name__}: {exc}"[:300]
            return checks
        retriever = context.retriever
        problem = getattr(retriever, "problem", lambda: None)() if retriever is not None else None
        # Triage without precedents still triages: a broken postmortem index degrades, it does not make
        # the service unready (that would stop alerts from arriving at all).
        checks["retriever"] = "not_configured" if retriever is None else f"degraded: {problem}" if problem else "ok"
        # Without the model triage still works (the rulebook alone, uncalibrated): ready, but said.
        if context.judgement is not None:
            checks["judgement"] = f"ok: model {context.judgement.version}"
        else:
            checks["judgement"] = f"degraded: {context.judgement_problem or 'no judgement model configured'}"
        return checks

    checks = await run_in_threadpool(check)
    ready = all(v in ("ok", "not_configured") or v.startswith(("ok:", "degraded")) for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": ready, "checks": checks}


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
