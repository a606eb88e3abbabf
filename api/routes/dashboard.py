"""The dashboard: server-rendered pages over eval runs, comparisons, the gap report and incidents.
Charts are drawn by Chart.js served from the package (api/static/vendor), never from a CDN."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api import dashboard_data as data
from api.deps import ServiceDep
from api.security import require_dashboard
from store.evals import EvalStore

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(default=True),  # incident text is data: always escaped
)
# Scripts and styles only from this origin; the chart data is inert JSON in the page.
_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'"

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


_templates.filters["pct"] = _pct
_templates.filters["num"] = _num


def _page(name: str, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})


async def _load(request: Request, service: Any, build: Any, *args: Any) -> Any:
    require_dashboard(request, service.settings.api_token)
    try:
        return await run_in_threadpool(build, *args)
    except data.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.get("", response_class=HTMLResponse)
async def runs(request: Request, service: ServiceDep) -> HTMLResponse:
    evals = EvalStore(service.store.sessions)
    view = await _load(request, service, data.runs_page, evals, service.settings.m5_precision_target)
    return _page("runs.html", page="runs", **view)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run(run_id: str, request: Request, service: ServiceDep) -> HTMLResponse:
    view = await _load(request, service, data.run_page, EvalStore(service.store.sessions), run_id)
    return _page("run.html", page="runs", **view)


@router.get("/compare", response_class=HTMLResponse)
async def compare(
    request: Request, service: ServiceDep, a: str = Query(..., max_length=64), b: str = Query(..., max_length=64)
) -> HTMLResponse:
    evals = EvalStore(service.store.sessions)
    try:
        view = await _load(request, service, data.compare_page, evals, service.store.sessions, a, b)
    except ValueError as exc:  # no shared cases
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _page("compare.html", page="runs", m5_target=service.settings.m5_precision_target, **view)


@router.get("/gaps", response_class=HTMLResponse)
async def gaps(
    request: Request,
    service: ServiceDep,
    dataset: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | None, Query(description="incidents since (ISO)")] = None,
) -> HTMLResponse:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    view = await _load(
        request, service, data.gaps_page, service.settings.datasets_dir, service.store.sessions, dataset, since
    )
    return _page("gaps.html", page="gaps", **view)


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(request: Request, service: ServiceDep) -> HTMLResponse:
    rows = await _load(request, service, service.queries.list_incidents, 200)
    return _page("incidents.html", page="incidents", incidents=rows)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident(incident_id: str, request: Request, service: ServiceDep) -> HTMLResponse:
    timeline = await _load(request, service, service.queries.timeline, incident_id)
    if timeline is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return _page("incident.html", page="incidents", timeline=timeline)


@router.get("/", include_in_schema=False)
async def slash() -> RedirectResponse:
    return RedirectResponse("/dashboard")
