"""The incident's key series over the last hour at a coarse step, from Prometheus: when each started
to move away from its own baseline, and whether it is still away ("ongoing") or back ("recovered").

One bounded HTTP call per series (Prometheus' own query_range API); an unreachable, slow or malformed
answer is a gap ("Prometheus unreachable: no trend"), never an error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.findings import Finding, Gap, finding, gap
from tools.investigate.bounds import Bounds

# How far from its baseline a series must be to have "moved": a share of the baseline, or this floor
# for series that sit at zero when healthy (error rates, queue depth).
RELATIVE, FLOOR = 0.2, {"sla": 0.005, "http_5xx_rate": 0.01, "http_429_rate": 0.01, "http_408_rate": 0.002}
DEFAULT_FLOOR = 0.05


def _points(body: Any) -> list[tuple[float, float]]:
    """The one series' (time, value) points of a query_range answer; ValueError when malformed."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError(f"status {body.get('status') if isinstance(body, dict) else type(body).__name__}")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise ValueError("not a matrix result")
    if not data["result"]:
        return []
    values = data["result"][0].get("values")
    if not isinstance(values, list):
        raise ValueError("a series without values")
    out = []
    for pair in values:
        t, v = float(pair[0]), float(pair[1])
        if not math.isnan(v):
            out.append((t, v))
    return out


def describe_trend(name: str, points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Baseline (median of the first quarter), when it first moved beyond the band, and now. The SLA
    moves down, everything else up."""
    if len(points) < 4:
        return None
    head = [v for _, v in points[: max(2, len(points) // 4)]]
    baseline = statistics.median(head)
    band = max(abs(baseline) * RELATIVE, FLOOR.get(name, DEFAULT_FLOOR))

    def worse(value: float) -> bool:
        return value < baseline - band if name == "sla" else value > baseline + band

    moved = [t for t, v in points if worse(v)]
    last = points[-1][1]
    extreme = min(v for _, v in points) if name == "sla" else max(v for _, v in points)
    if not moved:
        state = "steady"
    elif worse(last):
        state = "ongoing"
    else:
        state = "recovered"
    started = datetime.fromtimestamp(moved[0], UTC).isoformat() if moved else None
    return {
        "series": name,
        "baseline": round(baseline, 6),
        "extreme": round(extreme, 6),
        "last": round(last, 6),
        "started": started,
        "state": state,
        "points": len(points),
    }


def metric_trends(
    prometheus_url: str,
    queries: Mapping[str, str],
    *,
    now: datetime,
    bounds: Bounds | None = None,
    include_steady: bool = False,
) -> tuple[list[Finding], list[Gap]]:
    """One finding per series that moved. `include_steady` (the LLM's `metric_trend` tool, which asked
    for these series by name) also reports the steady ones, and a series with too few points as a gap:
    to a model that asked, "no movement" and "no data" are answers too."""
    import requests

    bounds = bounds or Bounds()
    start = now - timedelta(minutes=bounds.trend_minutes)
    window = {"start": start.isoformat(), "end": now.isoformat(), "step": f"{bounds.trend_step_s}s"}
    findings: list[Finding] = []
    gaps: list[Gap] = []
    for name, query in list(queries.items())[: bounds.max_items]:
        params = {
            "query": query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{now.timestamp():.3f}",
            "step": str(bounds.trend_step_s),
        }
        try:
            response = requests.get(
                f"{prometheus_url.rstrip('/')}/api/v1/query_range", params=params, timeout=bounds.timeout_s
            )
            if response.status_code != 200 and not response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                gaps.append(gap("prometheus", f"Prometheus answered {response.status_code} for {name}: no trend"))
                continue
            points = _points(response.json())
        except requests.Timeout:
            gaps.append(gap("prometheus", f"Prometheus did not answer within {bounds.timeout_s:g} s: no trend"))
            break  # one timeout is the budget of the source: do not wait again per series
        except requests.RequestException as exc:
            gaps.append(gap("prometheus", f"Prometheus unreachable ({type(exc).__name__}): no trend"))
            break
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            gaps.append(gap("prometheus", f"malformed answer for {name} ({exc}): no trend"))
            continue
        trend = describe_trend(name, points)
        if trend is None and include_steady:
            gaps.append(gap("prometheus", f"no data for {name} over the range ({len(points)} points): no trend"))
        if trend is None or (trend["state"] == "steady" and not include_steady):
            continue
        when = f" since {trend['started'][11:16]} UTC" if trend["started"] else ""
        summary = (
            f"{name} {trend['state']}: baseline {trend['baseline']:g}, worst {trend['extreme']:g}, "
            f"now {trend['last']:g}{when}"
        )
        source = {"type": "prometheus", "query": query, "range": window}
        findings.append(finding("metric_trend", summary, source, trend["started"], trend))
    return findings, gaps
