"""The dashboard: server-rendered pages over eval runs, comparisons, the gap report and incidents.
Charts are drawn by Chart.js served from the package (api/static/vendor), never from a CDN."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api import dashboard_data as data
from api.approvals_flow import Identity, audit_refusal
from api.deps import ServiceDep, client_of
from api.intake import submit_decision
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


def csrf_token(person: Any, run_id: str) -> str:
    """A form token only this person's session can produce: an HMAC of the run keyed by their token's hash
    (a browser sends Basic credentials to any form post; another site cannot forge this field)."""
    return hmac.new(person.token_sha256.encode(), run_id.encode(), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """Browsers say where a form post came from; a cross-site one is refused. Clients that send neither
    header (curl) are not browsers, and carry the form token anyway."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host", "")


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
    require_dashboard(request, service)
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


STATUSES = ("open", "waiting", "proposed", "mitigated", "escalated", "no_action", "rejected", "correlated")


@router.get("/incidents", response_class=HTMLResponse)
async def incidents(
    request: Request,
    service: ServiceDep,
    status_: Annotated[str, Query(alias="status", max_length=40)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str, Query(max_length=400)] = "",
) -> HTMLResponse:
    from api.lookup import BadCursor, incidents_page

    def page() -> Any:
        filters: dict[str, Any] = {"status": status_ or None, "search": q or None, "cursor": cursor or None}
        return incidents_page(service.store.sessions, limit=200, **filters)

    try:
        found = await _load(request, service, page)
    except BadCursor as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    next_url = ""
    if found.next_cursor:
        params = {"status": status_, "q": q, "cursor": found.next_cursor}
        next_url = "/dashboard/incidents?" + urlencode({k: v for k, v in params.items() if v})
    return _page(
        "incidents.html",
        page="incidents",
        incidents=found.rows,
        statuses=STATUSES,
        status=status_,
        q=q,
        next_url=next_url,
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident(
    incident_id: str, request: Request, service: ServiceDep, message: Annotated[str, Query(max_length=500)] = ""
) -> HTMLResponse:
    person = require_dashboard(request, service)
    timeline = await _load(request, service, service.queries.timeline, incident_id)
    if timeline is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    timeline = data.incident_view(timeline)
    csrf = {
        r["id"]: csrf_token(person, r["id"])
        for r in timeline["runs"]
        if person is not None and r["status"] == "awaiting_approval"
    }
    return _page("incident.html", page="incidents", timeline=timeline, person=person, csrf=csrf, message=message)


@router.post("/runs/{run_id}/decide", include_in_schema=False)
async def decide(
    run_id: str,
    request: Request,
    service: ServiceDep,
    decision: Annotated[str, Form(pattern="^(approve|reject)$")],
    csrf: Annotated[str, Form(max_length=128)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> RedirectResponse:
    """Approve or reject from the incident page, signed in as yourself; the shared token reads only."""
    person = require_dashboard(request, service)
    approved = decision == "approve"
    identity = Identity(person.id if person else None, "dashboard", person.id if person else "", client_of(request))
    problem = "" if person else "signed in read-only (shared token): approvals need your own approver sign-in"
    if person and not (same_origin(request) and hmac.compare_digest(csrf, csrf_token(person, run_id))):
        problem = "the form did not come from this dashboard (origin or form token mismatch)"
    if problem:
        await run_in_threadpool(audit_refusal, service.store.recorder, run_id, identity, approved, problem, reason)
        raise HTTPException(status.HTTP_403_FORBIDDEN, problem)
    run = await run_in_threadpool(service.store.recorder.run, run_id)
    target = f"/dashboard/incidents/{quote(run['incident_id'])}" if run else "/dashboard/incidents"
    pending = await run_in_threadpool(service.store.recorder.pending_approval, run_id)
    risky = pending is not None and (
        pending.get("risk") in ("high", "critical") or pending.get("operation") == "delete_deployment"
    )
    if approved and risky and confirm != "yes":  # the form's checkbox, for anything high-risk or destructive
        message = "not approved: tick the confirmation first (this action is high-risk or destructive)"
        return RedirectResponse(f"{target}?{urlencode({'message': message})}", status.HTTP_303_SEE_OTHER)
    result = await run_in_threadpool(
        lambda: submit_decision(service, run_id, identity, approved=approved, reason=reason)
    )
    return RedirectResponse(f"{target}?{urlencode({'message': result.message})}", status.HTTP_303_SEE_OTHER)


@router.get("/", include_in_schema=False)
async def slash() -> RedirectResponse:
    return RedirectResponse("/dashboard")
