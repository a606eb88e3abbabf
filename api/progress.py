"""Progress of long work: a bar on a terminal (rich), periodic plain lines everywhere else (a CI log, a
pipe, `kubectl logs`), so slow work is never silent. Thread-safe: workers may advance it."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO


class Progress:
    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        every_s: float = 10.0,
        steps: int = 10,
        terminal: bool | None = None,
    ) -> None:
        self.what, self.total, self.done = what, total, 0
        self.stream = stream or sys.stderr
        self.every_s, self.steps = every_s, steps
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._lock = threading.Lock()
        self._started = self._last = time.monotonic()
        self._last_step = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.terminal:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn(self.what),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        with self._lock:
            self.done = done
            self.total = total if total is not None else self.total
            if self._bar is not None:
                self._bar.update(self._task, completed=done, total=self.total)
                return
            now = time.monotonic()
            step = int(done * self.steps / self.total) if self.total else 0
            if now - self._last >= self.every_s or step > self._last_step:
                self._last, self._last_step = now, step
                self._line(now)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def _line(self, now: float) -> None:
        of = f"/{self.total} ({self.done / self.total:.0%})" if self.total else ""
        print(f"{self.what}: {self.done}{of}, {now - self._started:.0f} s", file=self.stream, flush=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)
        elif kind is None and (self.total is None or self._last_step < self.steps):
            self._line(time.monotonic())
