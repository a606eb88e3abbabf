"""Human-readable output of the CLI (rich tables); JSON output never goes through here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_console = Console()


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def print_report(outcome: dict[str, Any]) -> None:
    report = outcome.get("report")
    if report is None or outcome.get("status") == "awaiting_approval":
        waiting = outcome.get("waiting_for") or {}
        action = waiting.get("action", {})
        summary = waiting.get("summary") or {}
        dry = summary.get("dry_run") or {}
        _console.print(
            f"[bold]Run {outcome['run_id']}[/bold] is waiting for approval "
            f"({waiting.get('approvals_required')} needed, so far {waiting.get('approvals_so_far')})."
        )
        _console.print(
            f"Classification: {summary.get('category')}/{summary.get('subcategory')}  risk {summary.get('risk')}",
            markup=False,
        )
        _console.print(
            f"Proposed: {action.get('mitigation')} {action.get('operation')} on {action.get('target')}", markup=False
        )
        _console.print(f"Dry run: {dry.get('status', 'not run')} {dry.get('reason', '')}", markup=False)
        _console.print(
            f"Approve with: MITIGATE_APPROVER_TOKEN=... mitigate approve {outcome['run_id']} [--reason TEXT]"
        )
        return
    _console.print(
        f"[bold]Incident {report['incident_id']}[/bold]  run {report['run_id']}  status [bold]{report['status']}[/bold]"
    )
    _console.print(
        f"Classification: {report['category']}/{report['subcategory']} "
        f"(confidence {report['confidence']:.2f}, {report['engine']})"
    )
    for item in report.get("evidence", [])[:8]:
        _console.print(f"  - {item['source']}: {item['detail']} -> {item.get('points_to') or ''}", markup=False)
    plan = report["plan"]
    target = plan.get("target") or {}
    _console.print(
        f"Plan: {plan['mitigation']} {plan['operation']} on {target.get('kind')} "
        f"{target.get('namespace') or ''}/{target.get('name') or ''}  risk {plan['risk']}",
        markup=False,
    )
    _console.print(f"  {plan['rationale']}", markup=False)
    investigation = report.get("investigation") or {}
    if investigation.get("findings") or investigation.get("gaps"):
        from api.chat_summary import investigation_lines

        findings, gaps = investigation_lines(investigation, limit=10)
        _console.print(f"Investigation ({investigation.get('elapsed_ms', 0):.0f} ms):")
        for line in findings:
            _console.print(f"  - {line}", markup=False)
        for line in gaps:
            _console.print(f"  - not looked at: {line}", markup=False)
    if report.get("precedents"):
        _console.print("Precedents:")
        for p in report["precedents"]:
            _console.print(f"  - {p.get('id')}: {p.get('title')} (fixed by {p.get('mitigation')})", markup=False)
    guard = report.get("guard") or {}
    _console.print(f"Guard: {guard.get('verdict')} - {'; '.join(guard.get('reasons', []))}", markup=False)
    if report.get("escalation"):
        _console.print(f"Escalated (M1): {report['escalation']['reason']}", markup=False)
    if report.get("notes"):
        _console.print("Not done / not verified:")
        for note in report["notes"]:
            _console.print(f"  - {note}", markup=False)


def _matrix(title: str, matrix: dict[str, dict[str, int]]) -> Table:
    columns = sorted({c for row in matrix.values() for c in row} | set(matrix))
    table = Table(title=title)
    table.add_column("true \\ predicted")
    for column in columns:
        table.add_column(column, justify="right")
    for row in sorted(matrix):
        table.add_row(row, *(str(matrix[row].get(c, "")) for c in columns))
    return table


def print_metrics(out: dict[str, Any]) -> None:
    table = Table(title=f"Eval on {out['n']} incidents ({out['config']['engine']}, split {out['config']['split']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI (bootstrap)", justify="right")
    for key in (
        "category_accuracy",
        "category_kappa",
        "category_macro_f1",
        "subcategory_accuracy",
        "mitigation_accuracy",
        "m5_precision",
        "m5_recall",
        "m5_f1",
        "abstain_rate",
        "needs_human_rate",
        "fallback_rate",
        "latency_ms_p50",
        "latency_ms_p95",
        "llm_calls",
        "tokens",
        "cost",
        "fallbacks",
    ):
        interval = (out.get("ci95") or {}).get(key)
        table.add_row(key, _fmt(out.get(key)), f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
    _console.print(table)
    if out.get("calibration", {}).get("ece") is not None:
        _console.print(f"calibration: expected calibration error {out['calibration']['ece']:.3f}")
    _console.print(_matrix("Category confusion", out["confusion"]["category"]))
    _console.print(_matrix("Mitigation confusion", out["confusion"]["mitigation"]))
    if out.get("eval_run_id"):
        _console.print(f"recorded as eval run {out['eval_run_id']}")


def print_cv(report: dict[str, Any]) -> None:
    """Leave-one-source-out figures: one row per held-out source, the pooled row, the worst source."""
    table = Table(title="Leave one source out (each source judged by a model trained without it)")
    for column in (
        "source",
        "n",
        "category",
        "κ",
        "subcategory",
        "mitigation",
        "M5 prec",
        "exact low",
        "M5 rec",
        "ECE",
        "needs human",
    ):
        table.add_column(column, justify="left" if column == "source" else "right")
    rows = [*report["sources"].items(), ("pooled", report["pooled"])]
    for name, m in rows:
        label = f"{name} (worst)" if name == report["worst_source"] else name
        table.add_row(
            label,
            str(m["n"]),
            *(
                _fmt(m.get(k))
                for k in (
                    "category_accuracy",
                    "category_kappa",
                    "subcategory_accuracy",
                    "mitigation_accuracy",
                    "m5_precision",
                    "m5_precision_low",
                    "m5_recall",
                    "ece",
                    "needs_human_rate",
                )
            ),
        )
    _console.print(table)
    curve = ", ".join(
        f"≥{row['threshold']:.1f}: {_fmt(row['coverage'])} covered at {_fmt(row['accuracy'])}"
        for row in report["pooled"]["coverage"]
    )
    _console.print(f"pooled accuracy vs coverage as the needs-a-human threshold moves: {curve}")
