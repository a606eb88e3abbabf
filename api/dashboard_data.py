"""What the dashboard pages show, as plain data: eval runs over time, one run, two runs compared (with
the texts of the cases that flipped), and the automation-gap report. Rendering lives in the templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evals.compare import compare, gate, load_run
from evals.dataset import DatasetError, load_dataset
from evals.gaps import ACTION_NAMES, CATEGORIES, gap_report
from evals.metrics import clopper_pearson
from store.evals import EvalStore

HEADLINE = ("category_accuracy", "subcategory_accuracy", "mitigation_accuracy", "m5_precision", "m5_recall")
COST_FIGURES = ("latency_ms_p50", "latency_ms_p95", "tokens", "llm_calls", "cost", "fallback_rate")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")


class NotFound(LookupError):
    """The page's subject does not exist; the message says which."""


def m5_exact(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """M5 precision as counts with its exact (Clopper-Pearson) 95 % interval: 27 of 27 is not 'certain',
    its lower bound is 0.872. None when the run decided "no action" nowhere."""
    decided, precision = metrics.get("m5_predicted"), metrics.get("m5_precision")
    if not decided or precision is None:
        return None
    right = round(precision * decided)
    low, high = clopper_pearson(right, decided)
    return {"right": right, "decided": decided, "low": low, "high": high}


def runs_page(evals: EvalStore, m5_target: float) -> dict[str, Any]:
    runs = [r | {"m5": m5_exact(r["metrics"])} for r in evals.list_runs() if r["metrics"]]
    return {
        "runs": runs,
        "chart": {
            "labels": [f"{r['created_at']:%Y-%m-%d %H:%M} {r['label'] or r['id'][:8]}" for r in runs],
            "series": {metric: [r["metrics"].get(metric) for r in runs] for metric in HEADLINE},
            "m5_low": [r["m5"]["low"] if r["m5"] else None for r in runs],
            "m5_target": m5_target,
        },
    }


def run_page(evals: EvalStore, run_id: str) -> dict[str, Any]:
    run = evals.get(run_id)
    if run is None:
        raise NotFound(f"no eval run {run_id}")
    metrics = run["metrics"] or {}
    buckets = (metrics.get("calibration") or {}).get("buckets", [])
    return {
        "run": run,
        "metrics": metrics,
        "m5": m5_exact(metrics),
        "confusion": metrics.get("confusion", {}),
        "chart": {
            "labels": [f"{b['bucket'][0]:.1f}-{b['bucket'][1]:.1f}" for b in buckets],
            "accuracy": [b["accuracy"] for b in buckets],
            "confidence": [b["mean_confidence"] for b in buckets],
            "n": [b["n"] for b in buckets],
        },
    }


def _texts(dataset: str) -> dict[str, dict[str, str]]:
    """Titles and descriptions of a run's dataset, when the file is still where the run read it."""
    try:
        return {
            c.id: {"title": c.incident.title, "description": c.incident.description}
            for c in load_dataset(Path(dataset))
        }
    except (OSError, DatasetError):
        return {}


def compare_page(evals: EvalStore, sessions: Any, a: str, b: str, resamples: int = 1000) -> dict[str, Any]:
    runs = {}
    for run_id in (a, b):
        run = evals.get(run_id)
        if run is None:
            raise NotFound(f"no eval run {run_id}")
        runs[run_id] = run
    (a_cases, a_figures), (b_cases, b_figures) = load_run(a, sessions), load_run(b, sessions)
    result = compare(a_cases, b_cases, resamples, a_figures, b_figures)
    texts = _texts(runs[a]["dataset"])
    for case in result["flipped"]:
        case["text"] = texts.get(case["id"], {"title": "(text not available)", "description": ""})
    deltas = result["deltas"]
    reasons = gate(result)
    return {
        "a": runs[a],
        "b": runs[b],
        "comparison": result,
        "costs": _cost_deltas(runs[a]["metrics"] or {}, runs[b]["metrics"] or {}),
        "verdict": {
            "go": not reasons,
            "text": "B is not worse on any gated metric" if not reasons else f"B is significantly worse: {reasons[0]}",
            "reasons": reasons,
        },
        "chart": {
            "labels": list(deltas),
            "delta": [d["delta"] for d in deltas.values()],
            "ci": [d["ci95"] for d in deltas.values()],
        },
    }


def _cost_deltas(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Latency, tokens, LLM calls, cost and fallbacks of the two runs side by side, with B - A."""
    rows = []
    for key in COST_FIGURES:
        va, vb = a.get(key), b.get(key)
        delta = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        rows.append({"metric": key, "a": va, "b": vb, "delta": delta})
    return rows


def dataset_path(datasets_dir: Path, name: str) -> Path:
    """A dataset by name inside the datasets folder; a name can never reach outside it."""
    if not _DATASET_NAME.match(name) or ".." in name:
        raise NotFound(f"no dataset named {name!r}")
    path = datasets_dir / (name if name.endswith(".jsonl") else f"{name}.jsonl")
    if not path.is_file():
        raise NotFound(f"no dataset {path.name} in {datasets_dir}")
    return path


def gaps_page(datasets_dir: Path, sessions: Any, dataset: str | None, since: datetime | None) -> dict[str, Any]:
    outcome = None
    if dataset:
        source = f"dataset {dataset}"
        report = gap_report(load_dataset(dataset_path(datasets_dir, dataset)))
    else:
        if since is None:  # the default view: served from memory, recomputed behind (api/gap_cache.py)
            from api.gap_cache import default_report

            report, age = default_report(sessions)
            since = datetime.now(UTC) - timedelta(days=30, seconds=age)
        else:
            from evals.gaps_store import store_gap_report

            report = store_gap_report(sessions, since)
        source = f"incidents handled by mitigate since {since:%Y-%m-%d}"
        outcome = report.pop("mitigate")
    n = report["n"] or 1
    table3 = report["table3"]
    lifecycle = report["lifecycle"]
    return {
        "source": source,
        "report": report,
        "outcome": outcome,
        "datasets": sorted(p.stem for p in datasets_dir.glob("*.jsonl")),
        "selected": Path(dataset).stem if dataset else "",
        "categories": CATEGORIES,
        "actions": list(ACTION_NAMES),
        "chart": {
            "categories": {
                "labels": [row["category"] for row in report["table2"]],
                "share": [row["count"] / n for row in report["table2"]],
            },
            "actions": {
                "labels": [row["action"] for row in table3],
                "auto": [row["auto_detected"] for row in table3],
                "human": [row["count"] - row["auto_detected"] for row in table3],
            },
            "crosstab": {cat: [report["crosstab"][cat][a] for a in ACTION_NAMES] for cat in CATEGORIES},
            "lifecycle": {
                "labels": list(lifecycle),
                **{key: [row.get(key) for row in lifecycle.values()] for key in ("ttm_p50", "ttm_p75", "ttd_p75")},
            },
        },
    }


def _sla_line(check: dict[str, Any]) -> str:
    """An SLA check with its numbers: before -> after against the target, and the reason as recorded."""
    details = check.get("details") or {}
    before, after, target = details.get("baseline_sla"), details.get("sla"), details.get("sla_target")
    numbers = ""
    if isinstance(before, int | float) or isinstance(after, int | float):
        shown = [f"{v:.4f}" if isinstance(v, int | float) else "n/a" for v in (before, after)]
        numbers = f"SLA {shown[0]} → {shown[1]}" + (f" (target {target})" if target is not None else "")
    reason = str(details.get("reason") or "")
    if details.get("ttm_s") is not None:
        reason += f"; time to mitigate {details['ttm_s']:.0f} s"
    return " — ".join(part for part in (numbers, reason) if part)


def incident_view(timeline: dict[str, Any]) -> dict[str, Any]:
    """The incident page's data: runs newest first (a queued run, with no step yet, on top), SLA checks
    with their numbers, and which paused runs need a confirmation to approve (high risk, destructive)."""

    def started(run: dict[str, Any]) -> str:
        return min((s["at"] for s in run["steps"]), default="9999")  # no step yet: the newest

    runs = sorted(timeline["runs"], key=started, reverse=True)
    for run in runs:
        run["sla_lines"] = [{"status": c["status"], "text": _sla_line(c)} for c in run["sla_checks"]]
        report = run.get("report") or {}
        plan = report.get("plan") or {}
        run["confirm"] = run["status"] == "awaiting_approval" and (
            str(report.get("risk")) in ("high", "critical") or plan.get("operation") == "delete_deployment"
        )
    payload = timeline.get("incident") or {}
    alert = payload.get("alert") or {}
    return timeline | {"runs": runs, "severity": (alert.get("labels") or {}).get("severity", "")}
