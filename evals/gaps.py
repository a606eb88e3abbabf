"""The automation-gap report (Ranganathan et al., Tables 2-3 and Figures 1-3) computed from labeled
incidents: category and subcategory shares, actions with their automation level, auto-detected share
per action, the category x action cross-tab, and TTD/TTE/TTM percentiles per month."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from evals.dataset import Case

ACTION_NAMES = {
    "M1": ("Hotfix (code/config change, rollback)", "manual"),
    "M2": ("Capacity increase (scale out)", "manual"),
    "M3": ("Traffic routing / failover", "partial automation"),
    "M4": ("Restart / node rebalancing", "partial automation"),
    "M5": ("Manual triage / monitor (no action)", "manual decision"),
    "M6": ("Deleting deployments", "manual decision"),
}
CATEGORIES = ("A1", "A2", "A3", "A4")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _hours(timeline: dict[str, Any], end: str) -> float | None:
    if not timeline.get("started_at") or not timeline.get(end):
        return None
    return (_ts(timeline[end]) - _ts(timeline["started_at"])).total_seconds() / 3600


def _percentile(values: Sequence[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def gap_report(cases: Sequence[Case]) -> dict[str, Any]:
    """The report over labelled cases in memory (a dataset file); the store's own incidents are
    aggregated in SQL by evals/gaps_store.py into the same shape."""
    months: dict[str, dict[str, list[float]]] = {}
    for c in cases:
        if not c.timeline.get("started_at"):
            continue
        month = c.timeline["started_at"][:7]
        bucket = months.setdefault(month, {"ttd": [], "tte": [], "ttm": []})
        for key, end in (("ttd", "detected_at"), ("tte", "engaged_at"), ("ttm", "mitigated_at")):
            if (hours := _hours(c.timeline, end)) is not None:
                bucket[key].append(hours)
    lifecycle = {
        month: {f"{key}_p{q}": _percentile(values, q) for key, values in sorted(bucket.items()) for q in (50, 75)}
        | {"n": len(bucket["ttm"])}
        for month, bucket in sorted(months.items())
    }
    counts: Counter[tuple[str | None, str | None, str | None, bool]] = Counter(
        (c.labels["category"], c.labels["subcategory"], c.labels["mitigation"], bool(c.timeline.get("auto_detected")))
        for c in cases
    )
    return assemble_report(counts, lifecycle)


def assemble_report(
    counts: Counter[tuple[str | None, str | None, str | None, bool]], lifecycle: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Tables 2 and 3, the cross-tab and the lifecycle from incident counts by (category, subcategory,
    mitigation, auto-detected) and per-month percentiles: a few hundred numbers whatever the history."""
    n = sum(counts.values())
    categories: Counter[str] = Counter()
    subcategories: Counter[tuple[str, str]] = Counter()
    actions: Counter[str] = Counter()
    auto: Counter[str] = Counter()
    cross: Counter[tuple[str, str]] = Counter()
    for (category, subcategory, mitigation, auto_detected), k in counts.items():
        if category:
            categories[category] += k
            if mitigation:
                cross[(category, mitigation)] += k
        if category and subcategory:
            subcategories[(category, subcategory)] += k
        if mitigation:
            actions[mitigation] += k
            if auto_detected:
                auto[mitigation] += k
    return {
        "n": n,
        "table2": [
            {
                "category": cat,
                "count": categories[cat],
                "share": categories[cat] / n if n else 0.0,
                "subcategories": [
                    {"subcategory": sub, "count": k, "share_in_category": k / categories[cat]}
                    for (c2, sub), k in sorted(subcategories.items(), key=lambda kv: (-kv[1], kv[0]))
                    if c2 == cat
                ],
            }
            for cat in CATEGORIES
        ],
        "table3": [
            {
                "action": a,
                "name": ACTION_NAMES[a][0],
                "applied": ACTION_NAMES[a][1],
                "count": actions[a],
                "share": actions[a] / n if n else 0.0,
                "auto_detected": auto[a],
            }
            for a in ACTION_NAMES
        ],
        "auto_detected": sum(auto.values()),
        "crosstab": {cat: {a: cross[(cat, a)] for a in ACTION_NAMES} for cat in CATEGORIES},
        "lifecycle": lifecycle,
    }


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    n = report["n"]
    lines = [
        f"# Automation-gap report ({n} incidents)",
        "",
        "## Root-cause categories (Table 2)",
        "",
        "| category | n | % | breakdown |",
        "|---|---|---|---|",
    ]
    for row in report["table2"]:
        parts = ", ".join(
            f"{s['subcategory']} {s['count']} ({s['share_in_category']:.0%})" for s in row["subcategories"]
        )
        lines.append(f"| {row['category']} | {row['count']} | {row['share']:.1%} | {parts} |")
    lines += [
        "",
        "## Mitigation actions (Table 3, Figure 1)",
        "",
        "| action | name | applied | n | % | auto-detected |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["table3"]:
        lines.append(
            f"| {row['action']} | {row['name']} | {row['applied']} | {row['count']} | {row['share']:.1%} | "
            f"{row['auto_detected']}/{row['count']} |"
        )
    lines += [
        "",
        f"Auto-detected: {report['auto_detected']}/{n}",
        "",
        "## Category x action (Figure 3)",
        "",
        "| | " + " | ".join(ACTION_NAMES) + " |",
        "|---" * (len(ACTION_NAMES) + 1) + "|",
    ]
    for cat, row in report["crosstab"].items():
        lines.append(f"| {cat} | " + " | ".join(str(row[a]) for a in ACTION_NAMES) + " |")
    lines += [
        "",
        "## Lifecycle percentiles, hours from start (Figure 2)",
        "",
        "| month | n | TTD P50 | TTD P75 | TTE P50 | TTE P75 | TTM P50 | TTM P75 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for month, row in report["lifecycle"].items():
        lines.append(
            f"| {month} | {row['n']} | {_f(row['ttd_p50'])} | {_f(row['ttd_p75'])} | {_f(row['tte_p50'])} | "
            f"{_f(row['tte_p75'])} | {_f(row['ttm_p50'])} | {_f(row['ttm_p75'])} |"
        )
    if (outcome := report.get("mitigate")) is not None:
        share = outcome["closed_without_human_share"]
        lines += [
            "",
            "## What mitigate closed without a human",
            "",
            f"{outcome['closed_without_human']}/{outcome['incidents']} incidents"
            f' ({"n/a" if share is None else f"{share:.0%}"}): a verified "no action" decision, or an action'
            f" executed without approval and verified. TTM P50 {_f(outcome['closed_without_human_ttm_hours_p50'])} h,"
            f" max {_f(outcome['closed_without_human_ttm_hours_max'])} h.",
            "",
            "Runs by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome["by_status"].items())),
        ]
    return "\n".join(lines) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """One long table (section, key, column, value) so any spreadsheet can pivot it."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "column", "value"])
    for row in report["table2"]:
        writer.writerow(["table2", row["category"], "count", row["count"]])
        for s in row["subcategories"]:
            writer.writerow(["table2", f"{row['category']}/{s['subcategory']}", "count", s["count"]])
    for row in report["table3"]:
        writer.writerow(["table3", row["action"], "count", row["count"]])
        writer.writerow(["table3", row["action"], "auto_detected", row["auto_detected"]])
    for cat, row in report["crosstab"].items():
        for action, count in row.items():
            writer.writerow(["crosstab", cat, action, count])
    for month, row in report["lifecycle"].items():
        for key, value in row.items():
            writer.writerow(["lifecycle", month, key, "" if value is None else round(value, 3)])
    for key, value in (report.get("mitigate") or {}).items():
        if not isinstance(value, dict):
            writer.writerow(["mitigate", key, "value", "" if value is None else value])
    return out.getvalue()
