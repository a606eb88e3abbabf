"""Limits every investigation call respects, and the one way a Kubernetes read turns into a gap.

Investigation is advisory: a source that is down, forbidden, missing, slow or answers nonsense is a
stated `Gap`, never an error of the run. Every call carries its own deadline (the client has no global
one), every list a limit, every log a byte cap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.findings import Gap, gap


@dataclass(frozen=True)
class Bounds:
    timeout_s: float = 2.0  # one call to one source
    max_items: int = 50  # objects per list, series per query, rows per store read
    max_log_bytes: int = 16_384  # of a crashing container's log tail
    log_lines: int = 40
    changes_hours: float = 6.0  # how far back "recent" changes go
    trend_minutes: int = 60  # the metric trend's range
    trend_step_s: int = 60  # its (coarse) resolution
    history_days: int = 30


class Unanswered(Exception):
    """A read that produced no answer; carries the gap to report."""

    def __init__(self, stated: Gap) -> None:
        super().__init__(stated["reason"])
        self.gap = stated


def kube_read(what: str, call: Callable[..., Any], *args: Any, timeout_s: float, **kwargs: Any) -> Any:
    """One bounded read with the official client; any refusal or fault raises `Unanswered` naming it."""
    from kubernetes.client import ApiException

    try:
        return call(*args, _request_timeout=timeout_s, **kwargs)
    except ApiException as exc:
        status = int(exc.status or 0)
        if status == 404:
            raise Unanswered(gap("kubernetes", f"{what}: not found")) from exc
        if status in (401, 403):
            raise Unanswered(gap("kubernetes", f"{what}: forbidden ({status}) for mitigate's identity")) from exc
        raise Unanswered(gap("kubernetes", f"{what}: API answered {status or 'a TLS error'}")) from exc
    except Exception as exc:  # a timeout, a refused connection, a body the client cannot parse
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise Unanswered(gap("kubernetes", f"{what}: {type(exc).__name__} {first}".strip())) from exc


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def last_write(meta: Any) -> datetime | None:
    """When an object was last written, from its managedFields (the API server stamps each manager's
    last apply/update), else its creation."""
    times = [m.time for m in (getattr(meta, "managed_fields", None) or []) if getattr(m, "time", None)]
    return max(times) if times else getattr(meta, "creation_timestamp", None)


def object_source(api_version: str, kind: str, meta: Any) -> dict[str, Any]:
    where = f"{meta.namespace}/{meta.name}" if getattr(meta, "namespace", None) else str(meta.name)
    return {"type": "kubernetes", "object": f"{api_version} {kind} {where}", "resourceVersion": meta.resource_version}


# Bearer tokens, API keys, JWTs, long hex/base64 secrets, key=value secrets: redacted in anything shown.
_TOKENS = re.compile(
    r"(?i)(?:bearer\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:sk|xox[abpr]|ghp|gho|github_pat|hf|AKIA)[-_][A-Za-z0-9_-]{8,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}"
    r"|\b[A-Fa-f0-9]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}"
    r"|(?:password|passwd|secret|token|api[_-]?key)\s*[=:]\s*\S+)"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def redact(text: str) -> str:
    return _TOKENS.sub("[redacted]", text)


def safe_text(raw: bytes, max_bytes: int) -> str:
    """The last `max_bytes` of raw output as printable text: undecodable bytes replaced, control
    characters (terminal escapes) shown as `?`, token-looking strings redacted."""
    tail = raw[-max_bytes:]
    text = tail.decode("utf-8", errors="replace")
    return redact(_CONTROL.sub("?", text))
