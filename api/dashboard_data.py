"""What the dashboard pages show, as plain data: eval runs over time, one run, two runs compared (with
the texts of the cases that flipped), and the automation-gap report. Rendering lives in the templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evals.compare import compare, load_cases
from evals.dataset import DatasetError, load_dataset
from evals.gaps import ACTION_NAMES, CATEGORIES, gap_report
from store.evals import EvalStore

HEADLINE = ("category_accuracy", "subcategory_accuracy", "mitigation_accuracy", "m5_precision", "m5_recall")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")


class NotFound(LookupError):
    """The page's subject does not exist; the message says which."""


def runs_page(evals: EvalStore, m5_target: float) -> dict[str, Any]:
    runs = [r for r in evals.list_runs() if r["metrics"]]
    return {
        "runs": runs,
        "chart": {
            "labels": [f"{r['created_at']:%Y-%m-%d %H:%M} {r['label'] or r['id'][:8]}" for r in runs],
            "series": {metric: [r["metrics"].get(metric) for r in runs] for metric in HEADLINE},
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
    result = compare(load_cases(a, sessions), load_cases(b, sessions), resamples)
    texts = _texts(runs[a]["dataset"])
    for case in result["flipped"]:
        case["text"] = texts.get(case["id"], {"title": "(text not available)", "description": ""})
    deltas = result["deltas"]
    return {
        "a": runs[a],
        "b": runs[b],
        "comparison": result,
        "chart": {
            "labels": list(deltas),
            "delta": [d["delta"] for d in deltas.values()],
            "ci": [d["ci95"] for d in deltas.values()],
        },
    }


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
        from evals.gaps_store import store_cases

        since = since or datetime.now(UTC) - timedelta(days=30)
        source = f"incidents handled by mitigate since {since:%Y-%m-%d}"
        cases, outcome = store_cases(sessions, since)
        report = gap_report(cases)
    n = report["n"] or 1
    table3 = report["table3"]
    lifecycle = report["lifecycle"]
    return {
        "source": source,
        "report": report,
        "outcome": outcome,
        "datasets": sorted(p.stem for p in datasets_dir.glob("*.jsonl")),
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
