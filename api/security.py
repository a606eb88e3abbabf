"""Door checks for the service: bearer tokens and HMAC signatures compared in constant time, a
replay window, and a per-credential rate limit checked after them. Secrets are SecretStr and never
appear in messages."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from typing import Any

from fastapi import HTTPException, Request, status
from pydantic import SecretStr


def require_bearer(request: Request, secret: SecretStr, door: str) -> None:
    expected = secret.get_secret_value()
    if not expected:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"{door} is closed: no token configured on the server")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else ""


def _basic(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


def _shared(token: str, secret: SecretStr) -> bool:
    expected = secret.get_secret_value()
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def require_reader(request: Request, service: Any) -> None:
    """Reading (incidents, runs) takes the shared API token or any approver's own token."""
    token = bearer_token(request)
    if not (_shared(token, service.settings.api_token) or service.approvers.by_token(token) is not None):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def require_dashboard(request: Request, service: Any) -> Any:
    """Sign in to the dashboard with HTTP Basic (a browser can) or a bearer token. Your own approver id
    and personal token sign you in as you (you can approve from the pages); any user name with the
    shared API token reads only. Returns the person, or None for a read-only session."""
    user, password = _basic(request)
    token = password or bearer_token(request)
    person = service.approvers.by_token(token) if token else None
    if person is not None and (not user or hmac.compare_digest(user.encode(), person.id.encode())):
        return person
    if _shared(token, service.settings.api_token):
        return None
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "sign in with your approver id and personal token, or any user name and the API token (read-only)",
        headers={"WWW-Authenticate": 'Basic realm="mitigate dashboard", charset="UTF-8"'},
    )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def require_signature(request: Request, body: bytes, secret: SecretStr, window_s: int) -> None:
    """`X-Mitigate-Timestamp` (unix seconds) and `X-Mitigate-Signature: sha256=HMAC(secret, ts + "." + body)`."""
    key = secret.get_secret_value()
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "incident webhook is closed: no secret configured")
    timestamp = request.headers.get("x-mitigate-timestamp", "")
    signature = request.headers.get("x-mitigate-signature", "")
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or malformed X-Mitigate-Timestamp") from None
    if age > window_s:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"timestamp outside the {window_s}s replay window")
    if not hmac.compare_digest(signature.encode(), sign(key, timestamp, body).encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad signature")


class RateLimiter:
    """A moving window of `per_minute` requests per (door, credential), checked after authentication.

    The key is who authenticated (an approver id, "api-token", a Slack workspace), never a source
    address: a noisy or unauthenticated neighbour cannot use up a real sender's allowance, and the keys
    are as few as the configured credentials (the `limits` library's memory storage expires them).
    Alertmanager and PagerDuty are never rate-limited (see ALERT_DOORS).
    """

    def __init__(self, per_minute: int) -> None:
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, door: str, credential: str) -> None:
        if door in ALERT_DOORS:
            return
        if not self._limiter.hit(self._item, door, credential):
            reset = self._limiter.get_window_stats(self._item, door, credential).reset_time
            retry = max(1, math.ceil(reset - time.time()))
            message = f"rate limit for {door} exceeded"
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, message, headers={"Retry-After": str(retry)})


# Alerts are never refused for load: these doors get backpressure (503 + Retry-After, which Alertmanager
# and PagerDuty retry) only when the database cannot keep up (api/deps.py store_write).
ALERT_DOORS = frozenset({"alertmanager", "pagerduty", "incident"})


def credential_of(request: Request, service: Any) -> str:
    """A name for the credential a request authenticated with, for its rate limit; never the secret."""
    token = bearer_token(request)
    person = service.approvers.by_token(token) if token else None
    return f"approver:{person.id}" if person is not None else "api-token"
