"""Pages of the service that are not dashboards: friendly HTML error pages for browsers (the API keeps
its JSON), and the OpenAPI docs at /docs with Swagger UI served from the installed `fastapi-offline`
package — no CDN, so /docs works on an air-gapped cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

SWAGGER_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_STATIC = "/docs-static"
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=select_autoescape(default=True)
)
_TITLES = {
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Not understood",
    429: "Too many requests",
}
_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'"


def _wants_html(request: Request) -> bool:
    """A browser on a page of ours: the dashboard, or anything asked for as HTML."""
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/dashboard") or ("text/html" in accept and "json" not in accept)


def error_page(status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    html = _templates.get_template("error.html").render(
        status=status, title=_TITLES.get(status, "Something went wrong"), message=message, page=""
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={**(headers or {}), "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _wants_html(request):
        return await http_exception_handler(request, exc)
    return error_page(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _wants_html(request):
        return await request_validation_exception_handler(request, exc)
    said = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'request'}: {e['msg']}" for e in exc.errors())
    return error_page(422, said)


async def _crash(request: Request, exc: Exception) -> Response:
    if not _wants_html(request):  # what Starlette answers by default; the error is logged all the same
        return PlainTextResponse("Internal Server Error", status_code=500)
    return error_page(500, "mitigate failed to show this page; the service log has the reason.")


def _docs(app: FastAPI) -> Any:
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
        )

    return docs


def install(app: FastAPI) -> None:
    """HTML error pages, and /docs from local assets (replacing FastAPI's CDN-loaded page and /redoc)."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _crash)
    cdn_pages = {"/docs", "/redoc", "/docs/oauth2-redirect"}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in cdn_pages]
    app.mount(DOCS_STATIC, StaticFiles(directory=SWAGGER_ASSETS), name="docs-static")
    app.add_api_route("/docs", _docs(app), include_in_schema=False, response_class=HTMLResponse)
