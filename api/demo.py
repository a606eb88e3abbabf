"""`mitigate demo`: the whole mission on one machine. Starts the local control plane, the simulated
fleet, Prometheus, Alertmanager and `mitigate serve`; injects a fault; the real alert reaches the
webhook; the agent triages, acts under the demo policy and verifies the SLA; prints the timeline. With
`--all`, every scenario and a table of their times to mitigate. Stops everything it started on exit,
Ctrl-C included."""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

POSTMORTEMS = Path(__file__).resolve().parent.parent / "data" / "postmortems"  # from any directory


def _fmt(value: float | None, pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def _timeline(console: Console, result: Any) -> None:
    console.print(f"\n[bold]{result.scenario}[/bold]: {result.status}")
    for at, event in result.timeline:
        console.print(f"  +{at:6.1f}s  {event}")
    console.print(
        f"  SLA before {_fmt(result.sla_before)}, after {_fmt(result.sla_after)}; "
        f"TTM {_fmt(result.ttm_s, '{:.1f} s')} (alert start to SLA restored)"
    )


def _table(results: list[Any]) -> Table:
    table = Table(title="Closed loop: every scenario (TTM = alert start to SLA restored)")
    for column in ("scenario", "outcome", "classified", "action", "SLA before", "SLA after", "TTM", "wall"):
        table.add_column(column)
    for r, wall in results:
        table.add_row(
            r.scenario,
            r.status,
            f"{r.category}/{r.subcategory}",
            f"{r.mitigation} {r.operation}",
            _fmt(r.sla_before),
            _fmt(r.sla_after),
            _fmt(r.ttm_s, "{:.1f} s"),
            f"{wall:.0f} s",
        )
    return table


def _ingest(console: Console, state_dir: Path) -> None:
    if not POSTMORTEMS.is_dir():
        return
    from api.wiring import open_postmortem_index

    with console.status(f"indexing {POSTMORTEMS} (first run only; later runs skip unchanged files)"):
        report = open_postmortem_index(state_dir, None).ingest(POSTMORTEMS)
    console.print(f"postmortems: {len(report.added)} added, {report.unchanged} unchanged, {len(report.failed)} failed")


def run_demo(scenarios: list[str], hold: bool, workdir: Path) -> int:
    from api.settings import get_settings
    from sim.loop import ClosedLoop

    # Wide enough for the timeline and the table when the output goes to a file or a CI log.
    console = Console(width=None if sys.stdout.isatty() else 150)
    settings = get_settings()
    _ingest(console, settings.state_dir)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C

    signal.signal(signal.SIGTERM, interrupted)
    results: list[tuple[Any, float]] = []
    try:
        with ClosedLoop(workdir, state_dir=settings.state_dir.resolve(), say=console.print) as loop:
            console.print(
                f"dashboard: {loop.base_url}/dashboard (user: any, password: {loop.api_token}); "
                f"Prometheus {loop.prometheus_url}; Alertmanager {loop.alertmanager_url}"
            )
            for name in scenarios:
                started = time.monotonic()
                result = loop.run_scenario(name)
                results.append((result, time.monotonic() - started))
                _timeline(console, result)
            if len(results) > 1:
                console.print(_table(results))
            if hold:
                console.print(f"\nholding: the dashboard stays at {loop.base_url}/dashboard until Ctrl-C")
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping everything the demo started")
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    expected = {"header_misconfig": "escalated", "transient": "no_action"}
    wrong = [r.scenario for r, _ in results if r.status != expected.get(r.scenario, "mitigated")]
    if wrong:
        console.print(f"[red]not as expected: {', '.join(wrong)}[/red]")
        return 1
    return 0
