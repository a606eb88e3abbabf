"""The service's doors, named for metrics, and the ASGI middleware every request passes first.

Outermost to innermost: `CountRejects` (every 401/403/413/422/429/503 is counted per door, whoever
produced it), `BodyLimit` (api/body_limit.py: bytes only, before authentication), `RefuseUnstorableUrl`
(a NUL or unpaired surrogate in the path or query would reach a query: 422, never a database error).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from api.body_limit import Receive, Send

REJECTED = frozenset({400, 401, 403, 413, 415, 422, 429, 503})
_DOORS = (
    ("/webhooks/alertmanager", "alertmanager"),
    ("/webhooks/pagerduty", "pagerduty"),
    ("/webhooks/incident", "incident"),
    ("/incidents", "rest"),
    ("/runs", "approvals"),
    ("/slack/", "slack"),
    ("/teams/", "teams"),
    ("/dashboard", "dashboard"),
    ("/metrics", "metrics"),
)


def door_of(path: str) -> str:
    """A bounded label for a request path (never the path itself: ids would explode the series)."""
    for prefix, door in _DOORS:
        if path.startswith(prefix):
            return door
    return "other"


def _service(scope: MutableMapping[str, Any]) -> Any:
    app = scope.get("app")
    return getattr(getattr(app, "state", None), "service", None)


class CountRejects:
    """Counts refused requests by door and status code on mitigate_requests_rejected_total."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] in REJECTED:
                service = _service(scope)
                if service is not None:
                    service.metrics.rejected.labels(door_of(scope["path"]), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def _unstorable(text: str) -> bool:
    return any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text)


class RefuseUnstorableUrl:
    """422 for a path or query holding a character no database can store."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = None
            if _unstorable(scope["path"]):
                field = "path"
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                for name, value in parse_qsl(query, keep_blank_values=True):
                    if _unstorable(name) or _unstorable(value):
                        field = f"query.{name}" if not _unstorable(name) else "query"
                        break
            if field is not None:
                body = json.dumps(
                    {"detail": {"reason": f"{field} holds a NUL or an unpaired surrogate character", "field": field}}
                ).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 422, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
