"""What went wrong with a dependency, in terms a run can act on.

A `Fault` names the dependency (kubernetes, prometheus, chroma, llm, database), the kind of failure
(connection, timeout, tls, server_error, conflict, throttled, error) and — the one thing that decides
what happens next — whether nothing changed, so that doing the step again is safe (`retryable`).
A write whose answer was lost (a read timeout, a reset connection, a 5xx) may have been applied: it is
never retried automatically; a human looks.

Nodes raise `DependencyFault` for a retryable fault; the run machinery (api/run_faults.py) records it
as a step, retries the run with backoff a bounded number of times, then escalates with the reason.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict, dataclass
from typing import Any

# API answers that mean "refused, nothing applied, ask again later" for any request.
_REFUSED_RETRYABLE = {409: "conflict", 429: "throttled"}
_SERVER_ERRORS = {500, 502, 503, 504}


@dataclass(frozen=True)
class Fault:
    dependency: str
    kind: str
    retryable: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.dependency} {self.kind}: {self.message}"


class DependencyFault(RuntimeError):
    """Raised by a node when a dependency failed and the step can safely be run again later."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.describe())
        self.fault = fault


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (urllib3's MaxRetryError keeps the cause in `reason`)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return seen


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None) or getattr(exc, "reason", None) or str(exc)
    try:
        return str(json.loads(body).get("message", body))[:500]
    except (TypeError, ValueError, AttributeError):
        return str(body)[:500]


def kube_fault(exc: BaseException, *, write: bool) -> Fault | None:
    """A Kubernetes client error as a Fault; None when it is an answer, not a fault (404, 403, 422 ...)."""
    from kubernetes.client import ApiException
    from urllib3 import exceptions as u3

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        if status in _REFUSED_RETRYABLE:
            return Fault("kubernetes", _REFUSED_RETRYABLE[status], True, f"API answered {status}: {_api_message(exc)}")
        if status == 0:  # the client's own wrapping of a TLS failure: nothing was sent
            return Fault("kubernetes", "tls", True, f"TLS to the API server failed: {_api_message(exc)}")
        if status in _SERVER_ERRORS:
            # A 5xx on a write may have been applied (etcd timeouts do); on a read or dry run it changed nothing.
            return Fault("kubernetes", "server_error", not write, f"API answered {status}: {_api_message(exc)}")
        return None
    chain = _chain(exc)
    if any(isinstance(e, u3.NewConnectionError | u3.ConnectTimeoutError | ConnectionRefusedError) for e in chain):
        return Fault("kubernetes", "connection", True, f"API server unreachable: {_short(exc)}")
    if any(isinstance(e, u3.SSLError | ssl.SSLError) for e in chain):
        return Fault("kubernetes", "tls", True, f"TLS to the API server failed: {_short(exc)}")
    if any(isinstance(e, u3.ReadTimeoutError | u3.ProtocolError | TimeoutError) for e in chain):
        # The request went out; the answer did not come back. A read can be asked again, a write cannot.
        return Fault("kubernetes", "timeout", not write, f"no answer from the API server: {_short(exc)}")
    if any(isinstance(e, u3.HTTPError | OSError) for e in chain):
        return Fault("kubernetes", "connection", not write, f"API server: {_short(exc)}")
    return None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


# Exception types by where they come from, for faults that escape a node (module prefix -> dependency).
_MODULES = (
    ("kubernetes", "kubernetes"),
    ("urllib3", "kubernetes"),
    ("prometheus_api_client", "prometheus"),
    ("requests", "prometheus"),
    ("chromadb", "chroma"),
    ("openai", "llm"),
    ("httpx", "llm"),
    ("sqlalchemy", "database"),
    ("psycopg", "database"),
    ("sqlite3", "database"),
)


def fault_of(exc: BaseException) -> Fault:
    """Any exception that ended a run's step, as a Fault. Unknown errors are not retryable: running the
    same code on the same state would fail the same way, so a human is told at once."""
    if isinstance(exc, DependencyFault):
        return exc.fault
    from tools.metrics import PrometheusUnavailable

    if isinstance(exc, PrometheusUnavailable):
        return Fault("prometheus", "unavailable", True, str(exc)[:500])
    kube = kube_fault(exc, write=True)
    if kube is not None:
        return kube
    module = type(exc).__module__ or ""
    for prefix, dependency in _MODULES:
        if module.startswith(prefix):
            transient = isinstance(exc, ConnectionError | TimeoutError) or any(
                word in type(exc).__name__ for word in ("Connection", "Timeout", "Operational", "Unavailable")
            )
            return Fault(dependency, "connection" if transient else "error", transient, _short(exc))
    if isinstance(exc, ConnectionError | TimeoutError):
        return Fault("network", "connection", True, _short(exc))
    return Fault("mitigate", "error", False, _short(exc))
