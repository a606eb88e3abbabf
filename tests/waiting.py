"""Waiting on a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], what: str, deadline_s: float = 30) -> T:
    """Poll `check` until it returns something truthy, and return it; fail naming `what` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.05)
    return value
